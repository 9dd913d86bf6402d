//! How the key read each manifest, kept beside the digest of the bytes it read.
//!
//! Parsing a large `uv.lock` on every warm check would cost milliseconds; its digest
//! comes through the stat cache. One file per manifest path in
//! `<cache dir>/.venv-probes/` (`manifest-*.json`), replaced when the manifest
//! changes. The directory's older `python-*` and `tool-*` records are no longer
//! read: the interpreter's and installers' identities are in the engine's
//! [`tiers_core::ToolCache`].

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tiers_core::{write_atomic, Key};

use crate::deps::Reading;

/// Version of the kept manifest readings; bump when [`crate::deps`] reads
/// differently.
const READING_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct KeptReading {
    format: u32,
    rel: String,
    digest: String,
    reading: Reading,
}

/// The kept manifest readings of one cache dir.
#[derive(Clone, Debug)]
pub struct ReadingCache {
    dir: Option<PathBuf>,
}

impl ReadingCache {
    /// Readings are kept in `<cache dir>/.venv-probes`. With no cache dir yet (a
    /// first `tiers status`), nothing is written and every manifest is parsed.
    pub fn new(cache_dir: &Path) -> Self {
        ReadingCache {
            dir: cache_dir.is_dir().then(|| cache_dir.join(".venv-probes")),
        }
    }

    /// A cache that keeps nothing.
    pub fn disabled() -> Self {
        ReadingCache { dir: None }
    }

    fn file(&self, rel: &str) -> Option<PathBuf> {
        let name = Key::of_bytes(format!("manifest\0{rel}").as_bytes());
        self.dir
            .as_ref()
            .map(|d| d.join(format!("manifest-{}.json", &name.as_str()[..24])))
    }

    /// The kept reading of the manifest `rel` whose bytes have `digest`.
    pub fn reading(&self, rel: &str, digest: &str) -> Option<Reading> {
        let bytes = fs::read(self.file(rel)?).ok()?;
        let kept: KeptReading = serde_json::from_slice(&bytes).ok()?;
        (kept.format == READING_FORMAT && kept.rel == rel && kept.digest == digest)
            .then_some(kept.reading)
    }

    /// Keep `reading` of `rel` for [`ReadingCache::reading`]; a failure only costs a parse.
    pub fn keep_reading(&self, rel: &str, reading: &Reading) {
        let Some(file) = self.file(rel) else {
            return;
        };
        let kept = KeptReading {
            format: READING_FORMAT,
            rel: rel.to_owned(),
            digest: reading.file_digest.clone(),
            reading: reading.clone(),
        };
        let bytes = serde_json::to_vec(&kept).expect("a reading serializes");
        if let Some(dir) = file.parent() {
            let _ = fs::create_dir_all(dir);
        }
        if let Err(e) = write_atomic(&file, &bytes) {
            tracing::debug!("cannot keep the reading of `{rel}`: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_reading_is_kept_for_its_bytes_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ReadingCache::new(dir.path());
        let a = crate::deps::read("requirements.txt", b"tinya\n");
        let b = crate::deps::read("requirements.txt", b"tinyb\n");
        assert_eq!(cache.reading("requirements.txt", &a.file_digest), None);
        cache.keep_reading("requirements.txt", &a);
        assert_eq!(
            cache.reading("requirements.txt", &a.file_digest),
            Some(a.clone())
        );
        assert_eq!(cache.reading("requirements.txt", &b.file_digest), None);
        assert_eq!(cache.reading("dev/requirements.txt", &a.file_digest), None);
        cache.keep_reading("requirements.txt", &b);
        assert_eq!(cache.reading("requirements.txt", &a.file_digest), None);
        assert_eq!(cache.reading("requirements.txt", &b.file_digest), Some(b));
        assert!(ReadingCache::disabled()
            .reading("requirements.txt", &a.file_digest)
            .is_none());
    }
}
