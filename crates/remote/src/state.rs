//! What a cache dir knows about one shared cache, kept in `<cache dir>/.remote/`:
//! so that an upload sends only what the server lacks, and a restore downloads
//! only what changed since the last one.
//!
//! ```text
//! .remote/<16 hex of the remote's identity>/
//!   bases/<tier>          the last record this cache dir uploaded or restored for
//!                         the tier, with that entry's marker and tree bytes
//!   indexes/<sha256>      the index of a pack those records name
//! ```
//!
//! All of it is a hint. An upload checks that every pack it names is still on the
//! server before naming it; a restore checks every byte against its digest. Losing
//! the directory costs one upload or restore of everything, nothing else.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use tiers_core::{Digest, Key};

use crate::packs::{PackIndex, PackRef};
use crate::Record;

/// The last record of a tier this cache dir exchanged with the server.
pub struct Base {
    pub record: Record,
    pub marker: Vec<u8>,
    pub tree: Vec<u8>,
}

/// The state kept for one remote; without a directory, nothing is kept.
pub struct State {
    dir: Option<PathBuf>,
}

const BASE_MAGIC: &[u8; 4] = b"TBAS";

impl State {
    /// The state of the remote of `identity` under `cache_dir`.
    pub fn of(cache_dir: Option<&Path>, identity: &str) -> State {
        let id = Key::of_bytes(identity.as_bytes());
        State {
            dir: cache_dir.map(|c| c.join(".remote").join(&id.as_str()[..16])),
        }
    }

    fn base_path(&self, tier: &str) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join("bases").join(tier))
    }

    fn index_path(&self, pack: &Digest) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join("indexes").join(pack.to_string()))
    }

    /// The tier's base, when there is a readable one.
    pub fn base(&self, tier: &str) -> Option<Base> {
        let bytes = fs::read(self.base_path(tier)?).ok()?;
        decode_base(&bytes)
    }

    /// Remember `record` (with its marker and tree) as the tier's base, and forget
    /// the indexes no base names any more.
    pub fn save_base(&self, tier: &str, record: &Record, marker: &[u8], tree: &[u8]) {
        let Some(path) = self.base_path(tier) else {
            return;
        };
        let json = serde_json::to_vec(record).expect("a record serializes");
        let mut out = Vec::with_capacity(16 + json.len() + marker.len() + tree.len());
        out.extend_from_slice(BASE_MAGIC);
        for part in [&json[..], marker, tree] {
            out.extend_from_slice(&(part.len() as u64).to_le_bytes());
            out.extend_from_slice(part);
        }
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        if let Err(e) = tiers_core::write_atomic(&path, &out) {
            tracing::debug!("cannot keep `{}`: {e}", path.display());
        }
        self.prune_indexes();
    }

    /// The cached index of `pack`, checked against the digest its record gives.
    pub fn index(&self, pack: &PackRef) -> Option<PackIndex> {
        let bytes = fs::read(self.index_path(&pack.sha256)?).ok()?;
        if Digest::of(&bytes) != pack.index.sha256 {
            return None;
        }
        PackIndex::decode(&bytes, pack.index.offset).ok()
    }

    /// Keep the index of `pack`, read from the server or just written.
    pub fn save_index(&self, pack: &PackRef, bytes: &[u8]) {
        let Some(path) = self.index_path(&pack.sha256) else {
            return;
        };
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        let _ = tiers_core::write_atomic(&path, bytes);
    }

    /// Forget a pack the server no longer has (or holds damaged).
    pub fn forget(&self, pack: &Digest) {
        if let Some(path) = self.index_path(pack) {
            let _ = fs::remove_file(path);
        }
    }

    /// Every blob in a pack some base names, with that pack.
    pub fn known(&self) -> HashMap<Digest, PackRef> {
        let mut known = HashMap::new();
        for pack in self.based_packs() {
            if let Some(index) = self.index(&pack) {
                for d in index.blobs.keys() {
                    known.entry(*d).or_insert(pack);
                }
            }
        }
        known
    }

    /// The packs named by some base.
    fn based_packs(&self) -> Vec<PackRef> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let Ok(read) = fs::read_dir(dir.join("bases")) else {
            return Vec::new();
        };
        let mut packs: Vec<PackRef> = read
            .flatten()
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| record_of_base(&b))
            .flat_map(|r| r.packs)
            .collect();
        packs.sort_by_key(|p| p.sha256);
        packs.dedup_by_key(|p| p.sha256);
        packs
    }

    fn prune_indexes(&self) {
        let Some(dir) = &self.dir else { return };
        let named: HashSet<String> = self
            .based_packs()
            .iter()
            .map(|p| p.sha256.to_string())
            .collect();
        let Ok(read) = fs::read_dir(dir.join("indexes")) else {
            return;
        };
        for e in read.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !named.contains(&name) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// The record of a base, without copying its marker and tree.
fn record_of_base(bytes: &[u8]) -> Option<Record> {
    let rest = bytes.strip_prefix(BASE_MAGIC)?;
    let n = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
    serde_json::from_slice(rest.get(8..8usize.checked_add(n)?)?).ok()
}

fn decode_base(bytes: &[u8]) -> Option<Base> {
    let mut rest = bytes.strip_prefix(BASE_MAGIC)?;
    let mut part = || -> Option<Vec<u8>> {
        let n = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
        let body = rest.get(8..8usize.checked_add(n)?)?.to_vec();
        rest = &rest[8 + n..];
        Some(body)
    };
    let record = serde_json::from_slice(&part()?).ok()?;
    let (marker, tree) = (part()?, part()?);
    Some(Base {
        record,
        marker,
        tree,
    })
}
