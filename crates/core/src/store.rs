//! The entry store of one tier: `<tier root>/<key>/`, published only when complete.
//!
//! ```text
//! <tier root>/
//!   <key>/entry.json   the marker, written last: its presence is what makes an entry
//!   .staging/          builds in progress; anything here without its lock is debris
//!   .locks/<key>.lock  one exclusive lock per key, held while building it
//!   .trash/            entries being replaced or removed
//!   current            the key the last successful build resolved to
//! ```
//!
//! Publication is a rename of a complete staging dir (marker inside) into place, so a
//! reader sees a whole entry or none; a build killed at any moment leaves only debris
//! that no lookup accepts. Kinds that build in place (venvs) get the final dir under
//! the key's lock and the marker written last, by rename.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, IoContext, Result};
use crate::key::{Key, KeyDoc};

/// Version of the marker layout; a marker of another version is not an entry.
pub const MARKER_FORMAT: u32 = 1;
pub const MARKER: &str = "entry.json";
const CURRENT: &str = "current";

/// The contents of `entry.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Marker {
    pub format: u32,
    pub tier: String,
    pub key: Key,
    pub doc: KeyDoc,
    pub created_unix: u64,
    pub build_seconds: f64,
    #[serde(default)]
    pub used_inputs: Option<Vec<String>>,
    #[serde(default)]
    pub data: Value,
}

/// The fields of `entry.json` but the key document (serde skips it unparsed).
#[derive(Clone, Debug, Deserialize)]
pub struct MarkerHead {
    pub format: u32,
    pub key: Key,
    #[serde(default)]
    pub used_inputs: Option<Vec<String>>,
    #[serde(default)]
    pub data: Value,
}

/// A published entry as listed for retention.
#[derive(Clone, Debug)]
pub struct StoredEntry {
    pub key: Key,
    pub dir: PathBuf,
    pub last_used: SystemTime,
}

/// Exclusive lock on one key; released on drop (also when the process dies).
pub struct KeyLock {
    _file: File,
}

pub struct Store {
    root: PathBuf,
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A name no other process or thread uses at the same time.
pub(crate) fn unique_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Write `bytes` to `path` atomically: a temp file beside it, renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        unique_suffix()
    ));
    let mut f = File::create(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    drop(f);
    fs::rename(&tmp, path).at(path)
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn entry_dir(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }

    fn ensure_dirs(&self) -> Result<()> {
        for sub in [".locks", ".staging", ".trash"] {
            let d = self.root.join(sub);
            fs::create_dir_all(&d).at(&d)?;
        }
        Ok(())
    }

    /// The marker of `key`'s entry; `Ok(None)` when there is no entry,
    /// `Err(Error::Marker)` when one is there but unreadable.
    pub fn marker(&self, key: &Key) -> Result<Option<Marker>> {
        self.read_marker(key, |m: &Marker| (m.format, &m.key))
    }

    /// [`Store::marker`] without the key document, which a lookup by exact key does
    /// not need (the key names it) and which is most of the marker's size.
    pub fn head(&self, key: &Key) -> Result<Option<MarkerHead>> {
        self.read_marker(key, |m: &MarkerHead| (m.format, &m.key))
    }

    fn read_marker<T: serde::de::DeserializeOwned>(
        &self,
        key: &Key,
        id: impl Fn(&T) -> (u32, &Key),
    ) -> Result<Option<T>> {
        let path = self.entry_dir(key).join(MARKER);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let marker: T = serde_json::from_slice(&bytes).map_err(|e| Error::Marker {
            path: path.clone(),
            why: e.to_string(),
        })?;
        let (format, marker_key) = id(&marker);
        if format != MARKER_FORMAT || marker_key != key {
            return Err(Error::Marker {
                path,
                why: format!(
                    "it is for key {marker_key} in format {format}, not key {key} in format {MARKER_FORMAT}"
                ),
            });
        }
        Ok(Some(marker))
    }

    fn lock_path(&self, key: &Key) -> PathBuf {
        self.root.join(".locks").join(format!("{key}.lock"))
    }

    /// Block until this process holds `key`'s lock.
    pub fn lock(&self, key: &Key) -> Result<KeyLock> {
        self.ensure_dirs()?;
        let path = self.lock_path(key);
        let file = open_lock_file(&path)?;
        file.lock().at(&path)?;
        Ok(KeyLock { _file: file })
    }

    /// `key`'s lock if no other process holds it now.
    pub fn try_lock(&self, key: &Key) -> Result<Option<KeyLock>> {
        self.ensure_dirs()?;
        let path = self.lock_path(key);
        let file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    /// Remove staging and trash left by killed builds whose key is not locked now.
    pub fn clean_debris(&self) -> Result<usize> {
        let mut removed = 0;
        for sub in [".staging", ".trash"] {
            let dir = self.root.join(sub);
            let Ok(read) = fs::read_dir(&dir) else {
                continue;
            };
            for item in read.flatten() {
                let name = item.file_name().to_string_lossy().into_owned();
                let key = name.split('-').next().and_then(Key::parse);
                // Trash is never in use; staging is while its key is locked.
                let _lock = match &key {
                    Some(k) if sub == ".staging" => match self.try_lock(k)? {
                        Some(l) => Some(l),
                        None => continue,
                    },
                    _ => None,
                };
                remove_dir(&item.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// A new empty staging dir for `key`. Call with the key's lock held: staging dirs
    /// left for this key by killed builds are removed first.
    pub fn stage(&self, key: &Key, _lock: &KeyLock) -> Result<PathBuf> {
        self.ensure_dirs()?;
        let staging = self.root.join(".staging");
        let prefix = format!("{key}-");
        for old in fs::read_dir(&staging).at(&staging)?.flatten() {
            if old.file_name().to_string_lossy().starts_with(&prefix) {
                remove_dir(&old.path())?;
            }
        }
        let dir = staging.join(format!("{key}-{}", unique_suffix()));
        fs::create_dir(&dir).at(&dir)?;
        Ok(dir)
    }

    /// Empty final dir for an in-place build of `key`, debris removed first.
    pub fn prepare_in_place(&self, key: &Key, _lock: &KeyLock) -> Result<PathBuf> {
        let dir = self.entry_dir(key);
        if dir.exists() {
            self.discard(&dir)?;
        }
        fs::create_dir_all(&dir).at(&dir)?;
        Ok(dir)
    }

    /// Write the marker into `staging` and rename it into place, replacing any
    /// previous entry of the key (forced rebuild) or debris.
    pub fn publish(&self, staging: &Path, marker: &Marker, _lock: &KeyLock) -> Result<PathBuf> {
        write_marker(staging, marker)?;
        let dir = self.entry_dir(&marker.key);
        if dir.symlink_metadata().is_ok() {
            self.discard(&dir)?;
        }
        fs::rename(staging, &dir).at(&dir)?;
        Ok(dir)
    }

    /// Write the marker of an entry built in place: the last step of its build.
    pub fn publish_in_place(&self, marker: &Marker, _lock: &KeyLock) -> Result<PathBuf> {
        let dir = self.entry_dir(&marker.key);
        write_marker(&dir, marker)?;
        Ok(dir)
    }

    /// Take the marker of an entry built in place away before it is updated in
    /// place ([`Tier::update_in_place`](crate::Tier::update_in_place)): until
    /// [`Store::publish_in_place`] writes the new one, the directory is debris, so an
    /// update that fails or is killed is never mistaken for a complete entry.
    pub fn unpublish_in_place(&self, key: &Key, _lock: &KeyLock) -> Result<PathBuf> {
        let dir = self.entry_dir(key);
        let marker = dir.join(MARKER);
        match fs::remove_file(&marker) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(dir),
            Err(e) => Err(Error::io(&marker, e)),
        }
    }

    /// Move a directory out of the way, then delete it: readers never see it half gone.
    fn discard(&self, dir: &Path) -> Result<()> {
        self.ensure_dirs()?;
        let trash = self.root.join(".trash").join(unique_suffix());
        fs::rename(dir, &trash).at(dir)?;
        remove_dir(&trash)
    }

    /// Remove `key`'s entry (retention), under its lock.
    pub fn remove(&self, key: &Key) -> Result<()> {
        let lock = self.lock(key)?;
        let dir = self.entry_dir(key);
        if dir.exists() {
            self.discard(&dir)?;
        }
        drop(lock);
        Ok(())
    }

    /// The entry `key` was restored to through discovered inputs, if it was.
    pub fn alias(&self, key: &Key) -> Option<Key> {
        let text = fs::read_to_string(self.root.join(".aliases").join(key.as_str())).ok()?;
        Key::parse(&text)
    }

    /// Record that `key` is served by `target`'s entry.
    pub fn set_alias(&self, key: &Key, target: &Key) -> Result<()> {
        let dir = self.root.join(".aliases");
        fs::create_dir_all(&dir).at(&dir)?;
        write_atomic(&dir.join(key.as_str()), target.as_str().as_bytes())
    }

    /// The marker of the entry serving `key`: its own, else its alias's.
    pub fn resolve(&self, key: &Key) -> Result<Option<Marker>> {
        match self.marker(key)? {
            Some(m) => Ok(Some(m)),
            None => match self.alias(key) {
                Some(target) => Ok(self.marker(&target).ok().flatten()),
                None => Ok(None),
            },
        }
    }

    /// The key the last successful build of this tier resolved to.
    pub fn current(&self) -> Option<Key> {
        let text = fs::read_to_string(self.root.join(CURRENT)).ok()?;
        Key::parse(&text)
    }

    pub fn set_current(&self, key: &Key) -> Result<()> {
        // A warm run writes nothing.
        if self.current().as_ref() == Some(key) {
            return Ok(());
        }
        fs::create_dir_all(&self.root).at(&self.root)?;
        write_atomic(&self.root.join(CURRENT), key.as_str().as_bytes())
    }

    /// Record a use of `key`'s entry, for least-recently-used retention.
    pub fn touch(&self, key: &Key) {
        let path = self.entry_dir(key).join(MARKER);
        if let Ok(f) = File::options().write(true).open(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// Published entries, most recently used first.
    pub fn entries(&self) -> Result<Vec<StoredEntry>> {
        let mut out = Vec::new();
        let read = match fs::read_dir(&self.root) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(Error::io(&self.root, e)),
        };
        for item in read.flatten() {
            let Some(key) = Key::parse(&item.file_name().to_string_lossy()) else {
                continue;
            };
            let Ok(meta) = fs::metadata(item.path().join(MARKER)) else {
                continue;
            };
            out.push(StoredEntry {
                key,
                dir: item.path(),
                last_used: meta.modified().unwrap_or(UNIX_EPOCH),
            });
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        Ok(out)
    }
}

/// Open (creating) a file used only for its advisory lock.
pub(crate) fn open_lock_file(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at(path)
}

fn write_marker(dir: &Path, marker: &Marker) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(marker).expect("a marker always serializes");
    write_atomic(&dir.join(MARKER), &bytes)
}

fn remove_dir(dir: &Path) -> Result<()> {
    let removed = if dir.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
        fs::remove_file(dir)
    } else {
        fs::remove_dir_all(dir)
    };
    match removed {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

/// Create the cache dir with its `CACHEDIR.TAG` and a `.gitignore` of `*`.
pub fn init_cache_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|source| Error::CacheDir {
        path: dir.to_owned(),
        source,
    })?;
    let tag = dir.join("CACHEDIR.TAG");
    if !tag.exists() {
        write_atomic(
            &tag,
            b"Signature: 8a477f597d28d172789f06886806bc55\n\
              # This file is a cache directory tag created by tiers.\n\
              # For information about cache directory tags see https://bford.info/cachedir/\n",
        )
        .map_err(|e| match e {
            Error::Io { path, source } => Error::CacheDir { path, source },
            other => other,
        })?;
    }
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        write_atomic(&ignore, b"*\n").map_err(|e| match e {
            Error::Io { path, source } => Error::CacheDir { path, source },
            other => other,
        })?;
    }
    Ok(())
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Bytes under `dir`, links not followed.
pub fn dir_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| !m.is_dir())
        .map(|m| m.len())
        .sum()
}
