//! `per-file.bin`: an entry's content digest → per-file entry pairs, sorted, so
//! that a build finds a content in the tier's other entries with a binary search
//! of each file instead of decoding their indexes.
//!
//! Layout: the magic `TPFM`, a little-endian `u32` format, then 64-byte records
//! (content digest, per-file entry digest, 32 bytes each) in content order.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use py_symbols::codec::digest_bytes;
use tiers_core::Digest;

use super::TierError;

pub(crate) const PER_FILE: &str = "per-file.bin";
const MAGIC: [u8; 4] = *b"TPFM";
const FORMAT: u32 = 1;
const HEADER: usize = 8;
const RECORD: usize = 64;

/// Write the `pairs` (content digest, per-file entry digest, both hex) into `dir`.
pub(crate) fn save<'a>(
    dir: &Path,
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), TierError> {
    let mut pairs: Vec<([u8; 32], [u8; 32])> = pairs
        .into_iter()
        .filter_map(|(c, s)| Some((digest_bytes(c)?, digest_bytes(s)?)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup_by(|a, b| a.0 == b.0);
    let mut bytes = Vec::with_capacity(HEADER + pairs.len() * RECORD);
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&FORMAT.to_le_bytes());
    for (content, symbols) in pairs {
        bytes.extend_from_slice(&content);
        bytes.extend_from_slice(&symbols);
    }
    let path = dir.join(PER_FILE);
    std::fs::write(&path, bytes).map_err(|source| TierError::Write { path, source })
}

/// The per-file entries of `wanted` contents that `entries` know, the first
/// entry that knows one winning. An entry whose file is missing or not of this
/// layout knows nothing.
pub(crate) fn find(entries: &[PathBuf], wanted: &[&str]) -> HashMap<String, String> {
    let mut found = HashMap::new();
    let mut left: Vec<(&str, [u8; 32])> = wanted
        .iter()
        .filter_map(|d| Some((*d, digest_bytes(d)?)))
        .collect();
    for dir in entries {
        if left.is_empty() {
            break;
        }
        let Ok(bytes) = std::fs::read(dir.join(PER_FILE)) else {
            continue;
        };
        let Some(records) = records(&bytes) else {
            continue;
        };
        left.retain(|(hex, content)| {
            let hit = records
                .binary_search_by(|r| r[..32].cmp(content.as_slice()))
                .ok()
                .map(|i| &records[i][32..]);
            match hit {
                Some(symbols) => {
                    let symbols: [u8; 32] = symbols.try_into().expect("32 bytes");
                    found.insert((*hex).to_owned(), Digest::from_bytes(symbols).to_string());
                    false
                }
                None => true,
            }
        });
    }
    found
}

/// The pairs of `dir`'s `per-file.bin`: content digest → per-file entry.
pub(crate) fn load(dir: &Path) -> Result<HashMap<String, String>, TierError> {
    let path = dir.join(PER_FILE);
    let bytes = std::fs::read(&path).map_err(|source| TierError::Read {
        path: path.clone(),
        source,
    })?;
    let records = records(&bytes).ok_or_else(|| TierError::Corrupt {
        path,
        why: "not a list of per-file entries".into(),
    })?;
    Ok(records
        .into_iter()
        .map(|r| {
            let half = |b: &[u8]| Digest::from_bytes(b.try_into().expect("32 bytes")).to_string();
            (half(&r[..32]), half(&r[32..]))
        })
        .collect())
}

/// The per-file entry of `content` in `map`, read from `dir`.
pub(crate) fn of<'m>(
    map: &'m HashMap<String, String>,
    dir: &Path,
    content: &str,
) -> Result<&'m str, TierError> {
    map.get(content)
        .map(String::as_str)
        .ok_or_else(|| TierError::Corrupt {
            path: dir.join(PER_FILE),
            why: format!("it names no per-file entry for the content {content}"),
        })
}

/// The records of a `per-file.bin`, or `None` if it is not one.
fn records(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let body = bytes.strip_prefix(&MAGIC)?;
    let (format, body) = body.split_at_checked(4)?;
    if u32::from_le_bytes(format.try_into().ok()?) != FORMAT || body.len() % RECORD != 0 {
        return None;
    }
    let records: Vec<&[u8]> = body.chunks_exact(RECORD).collect();
    records
        .windows(2)
        .all(|w| w[0][..32] < w[1][..32])
        .then_some(records)
}
