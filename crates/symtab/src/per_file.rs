//! `per-file.bin`: an entry's content digest → per-file entry pairs, so that a
//! build finds a content in the tier's other entries with a binary search
//! instead of decoding their indexes.
//!
//! A per-file entry lives in a pack, a blob of the cache's store that holds the
//! per-file entries one build wrote, one after the other; it is found by its
//! [`Loc`] and checked against its own digest when read.
//!
//! The pairs are split by the first four bits of the content digest into
//! [`PARTS`] blobs of the cache's store, each `TPFM`, a little-endian `u32`
//! format, then 104-byte records (content digest, per-file entry digest, pack
//! digest, offset and length in the pack as little-endian `u32`s) in content
//! order; `per-file.bin` itself is `TPFH`, the format, and the parts' digests.
//! A one-file edit writes one part of some 76 KB, not all 1.2 MB.

use std::path::{Path, PathBuf};

use py_symbols::codec::{digest_bytes, FastMap};
use tiers_core::{Blobs, Digest};

use super::table::read_blob;
use super::TierError;

pub(crate) const PER_FILE: &str = "per-file.bin";
const HEADER_MAGIC: [u8; 4] = *b"TPFH";
const PART_MAGIC: [u8; 4] = *b"TPFM";
const FORMAT: u32 = 3;
const PREFIX: usize = 8;
const RECORD: usize = 104;
const PARTS: usize = 16;

/// Where a per-file entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Loc {
    /// The digest of the per-file entry's bytes.
    pub symbols: [u8; 32],
    /// The pack that holds them.
    pub pack: [u8; 32],
    pub offset: u32,
    pub len: u32,
}

impl Loc {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.symbols);
        out.extend_from_slice(&self.pack);
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
    }

    /// The location in the last 72 bytes of a record.
    fn decode(b: &[u8]) -> Loc {
        let at = |i: usize| -> [u8; 32] { b[i..i + 32].try_into().expect("32 bytes") };
        let word = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Loc {
            symbols: at(0),
            pack: at(32),
            offset: word(64),
            len: word(68),
        }
    }
}

/// Content digest → where its per-file entry is.
pub(crate) type PerFile = FastMap<[u8; 32], Loc>;

fn part_of(content: &[u8; 32]) -> usize {
    usize::from(content[0] >> 4)
}

/// Write the `pairs` (content digest, its per-file entry): the parts through
/// `put`, which stores a blob and returns its digest, and `per-file.bin` into
/// `dir`. Returns the parts' digests, which the entry names.
pub(crate) fn save(
    dir: &Path,
    pairs: impl IntoIterator<Item = ([u8; 32], Loc)>,
    put: impl Fn(&[u8]) -> Result<String, TierError>,
) -> Result<Vec<Digest>, TierError> {
    let mut pairs: Vec<([u8; 32], Loc)> = pairs.into_iter().collect();
    pairs.sort_unstable();
    pairs.dedup_by(|a, b| a.0 == b.0);
    let mut parts: Vec<Vec<u8>> = (0..PARTS)
        .map(|_| {
            let mut p = Vec::with_capacity(PREFIX + pairs.len() / PARTS * RECORD * 2);
            p.extend_from_slice(&PART_MAGIC);
            p.extend_from_slice(&FORMAT.to_le_bytes());
            p
        })
        .collect();
    for (content, loc) in pairs {
        let part = &mut parts[part_of(&content)];
        part.extend_from_slice(&content);
        loc.encode(part);
    }
    let mut header = Vec::with_capacity(PREFIX + PARTS * 32);
    header.extend_from_slice(&HEADER_MAGIC);
    header.extend_from_slice(&FORMAT.to_le_bytes());
    let mut digests = Vec::with_capacity(PARTS);
    for part in &parts {
        let hex = put(part)?;
        let digest = Digest::parse(&hex).expect("the store names a blob by its digest");
        header.extend_from_slice(digest.as_bytes());
        digests.push(digest);
    }
    let path = dir.join(PER_FILE);
    std::fs::write(&path, header).map_err(|source| TierError::Write { path, source })?;
    Ok(digests)
}

/// The digests of the parts `dir`'s `per-file.bin` names, or why not.
fn parts(dir: &Path) -> Result<Vec<Digest>, TierError> {
    let path = dir.join(PER_FILE);
    let bytes = std::fs::read(&path).map_err(|source| TierError::Read {
        path: path.clone(),
        source,
    })?;
    if bytes.len() != PREFIX + PARTS * 32 || !has_prefix(&bytes, HEADER_MAGIC) {
        return Err(TierError::Corrupt {
            path,
            why: "not a list of per-file entries of this version".into(),
        });
    }
    Ok(bytes[PREFIX..]
        .chunks_exact(32)
        .map(|d| Digest::from_bytes(d.try_into().expect("32 bytes")))
        .collect())
}

/// The records of one part, checked: its magic, whole records, in order.
fn records<'a>(bytes: &'a [u8], path: &Path) -> Result<Vec<&'a [u8]>, TierError> {
    let corrupt = |why: &str| TierError::Corrupt {
        path: path.to_owned(),
        why: why.into(),
    };
    if !has_prefix(bytes, PART_MAGIC) || !(bytes.len() - PREFIX).is_multiple_of(RECORD) {
        return Err(corrupt("not a part of a list of per-file entries"));
    }
    let records: Vec<&[u8]> = bytes[PREFIX..].chunks_exact(RECORD).collect();
    if !records.windows(2).all(|w| w[0][..32] < w[1][..32]) {
        return Err(corrupt("its records are not in order"));
    }
    Ok(records)
}

/// The pairs of `dir`'s `per-file.bin`, its parts read from `blobs`.
pub(crate) fn load(dir: &Path, blobs: &Blobs) -> Result<PerFile, TierError> {
    let mut map = PerFile::default();
    for digest in parts(dir)? {
        let bytes = read_blob(blobs, &digest, "list of per-file entries")?;
        for r in records(&bytes, &blobs.path(&digest, false))? {
            map.insert(r[..32].try_into().expect("32 bytes"), Loc::decode(&r[32..]));
        }
    }
    Ok(map)
}

/// The per-file entry of the content `digest` (hex) in `map`, read from `dir`.
pub(crate) fn of(map: &PerFile, dir: &Path, digest: &str) -> Result<Loc, TierError> {
    digest_bytes(digest)
        .and_then(|d| map.get(&d))
        .copied()
        .ok_or_else(|| TierError::Corrupt {
            path: dir.join(PER_FILE),
            why: format!("it names no per-file entry for the content {digest}"),
        })
}

/// The per-file entries of `wanted` contents that `entries` know, the first
/// entry that knows one winning: per entry one small read of `per-file.bin`,
/// then a binary search of the part that holds the content (read whole and
/// checked against its digest). An entry whose list is missing, damaged or not
/// of this layout knows nothing.
pub(crate) fn find(
    entries: &[PathBuf],
    wanted: &[[u8; 32]],
    blobs: &Blobs,
) -> Vec<([u8; 32], Loc)> {
    let mut found = Vec::new();
    let mut left: Vec<[u8; 32]> = wanted.to_vec();
    for dir in entries {
        if left.is_empty() {
            break;
        }
        let Ok(parts) = parts(dir) else {
            continue;
        };
        left.retain(
            |content| match search(blobs, &parts[part_of(content)], content) {
                Some(symbols) => {
                    found.push((*content, symbols));
                    false
                }
                None => true,
            },
        );
    }
    found
}

/// Binary search of the part `digest` for `content`.
fn search(blobs: &Blobs, digest: &Digest, content: &[u8; 32]) -> Option<Loc> {
    let bytes = blobs.read(digest).ok()??;
    let records = records(&bytes, &blobs.path(digest, false)).ok()?;
    let i = records
        .binary_search_by(|r| r[..32].cmp(content.as_slice()))
        .ok()?;
    Some(Loc::decode(&records[i][32..]))
}

fn has_prefix(bytes: &[u8], magic: [u8; 4]) -> bool {
    bytes.len() >= PREFIX
        && bytes[..4] == magic
        && u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) == FORMAT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_content_is_found_in_the_first_entry_that_knows_it() {
        let cache = tempfile::tempdir().unwrap();
        let blobs = Blobs::of_cache_dir(cache.path());
        let put = |b: &[u8]| Ok(blobs.put(b).unwrap().to_string());
        let paths: Vec<PathBuf> = (0..2).map(|i| cache.path().join(format!("e{i}"))).collect();
        for p in &paths {
            std::fs::create_dir_all(p).unwrap();
        }
        let d = |n: u8| [n; 32];
        let l = |n: u8| Loc {
            symbols: d(n),
            pack: d(n / 2),
            offset: u32::from(n) << 20,
            len: u32::from(n) + 1,
        };
        save(&paths[0], (1..=9).map(|n| (d(n * 20), l(100 + n))), put).unwrap();
        save(&paths[1], [(d(40), l(200)), (d(50), l(201))], put).unwrap();
        let mut got = find(&paths, &[d(40), d(50), d(180), d(70)], &blobs);
        got.sort();
        assert_eq!(got, [(d(40), l(102)), (d(50), l(201)), (d(180), l(109))]);
        assert_eq!(load(&paths[1], &blobs).unwrap().get(&d(50)), Some(&l(201)));
        // Not a list of this layout: knows nothing, and `load` says why.
        std::fs::write(paths[1].join(PER_FILE), b"TPFH\x03\0\0\0short").unwrap();
        assert!(find(&paths[1..], &[d(50)], &blobs).is_empty());
        assert!(load(&paths[1], &blobs).is_err());
    }
}
