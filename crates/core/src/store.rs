//! The entry store of one tier: `<tier root>/<key>/`, published only when complete.
//!
//! ```text
//! <tier root>/
//!   .tiers-root          the tier that owns this root: tiers writes and deletes only
//!                        in a root that holds it (or that it made empty)
//!   <key>/entry.json     the marker, written last: its presence is what makes an entry
//!   .staging/<key>-<n>   builds in progress; one without its key's lock is debris
//!   .locks/<key>.lock    one exclusive lock per key, held while building it
//!   .trash/<n>           entries being replaced or removed
//!   .pointers/<checkout> per checkout (project directory): the key its last
//!                        successful build resolved to, what `paths` reports
//! ```
//!
//! Every name tiers removes is one it makes: a key, `<key>-<pid>-<n>` in `.staging`,
//! `<pid>-<n>` in `.trash`. A root tiers did not make is refused before anything
//! is written (see [`Store::check_owned`]).
//!
//! Publication is a rename of a complete staging dir (marker inside) into place, so a
//! reader sees a whole entry or none; a build killed at any moment leaves only debris
//! that no lookup accepts. Kinds that build in place (venvs) get the final dir under
//! the key's lock and the marker written last, by rename.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{is_unique_suffix, open_lock_file, remove_dir, unique_suffix, write_atomic};
use crate::key::{Key, KeyDoc};

/// Version of the marker layout; a marker of another version is not an entry.
pub const MARKER_FORMAT: u32 = 1;
pub const MARKER: &str = "entry.json";
/// The file that says which tier owns a root.
pub const ROOT_MARKER: &str = ".tiers-root";
const ROOT_FORMAT: u32 = 1;
/// A pointer is rewritten (to record its use) at most this often.
const POINTER_REFRESH: Duration = Duration::from_secs(3600);

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
    tier: String,
}

/// One checkout of a project (its directory): checkouts sharing a cache dir each
/// have their own pointer per tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkout {
    id: String,
    project: PathBuf,
}

impl Checkout {
    /// The checkout at `project`, an absolute, canonical directory.
    pub fn of(project: &Path) -> Checkout {
        let digest = Key::of_bytes(project.as_os_str().as_encoded_bytes());
        Checkout {
            id: digest.as_str()[..32].to_owned(),
            project: project.to_owned(),
        }
    }

    /// The file name of this checkout's pointers.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// `.tiers-root`: which tier owns the root.
#[derive(Serialize, Deserialize)]
struct RootMarker {
    format: u32,
    tier: String,
}

/// `.aliases/<key>`: the entry serving a key restored through discovered inputs,
/// and that key's own document.
#[derive(Serialize, Deserialize)]
struct Alias {
    target: Key,
    doc: Option<KeyDoc>,
}

/// A pointer file: the key, and the checkout it is for (for people reading it;
/// lossy where the path is not UTF-8).
#[derive(Serialize, Deserialize)]
struct Pointer {
    key: Key,
    project: String,
}

impl Store {
    /// The store of tier `tier` at `root`.
    pub fn new(root: impl Into<PathBuf>, tier: impl Into<String>) -> Self {
        Store {
            root: root.into(),
            tier: tier.into(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tier(&self) -> &str {
        &self.tier
    }

    /// Refuse a root tiers does not own: one that exists, is not empty and holds no
    /// `.tiers-root` (unless `adopt`: a root inside the cache dir, made by an earlier
    /// tiers), or whose `.tiers-root` names another tier. Reads only.
    pub fn check_owned(&self, adopt: bool) -> Result<()> {
        let meta = match fs::symlink_metadata(&self.root) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&self.root, e)),
        };
        let foreign = |why: &str| {
            Error::config(format!(
                "tier `{}`: its root `{}` {why}\nhint: point `root` (or the cache dir) at a new or empty directory; tiers writes and deletes only in directories it made",
                self.tier,
                self.root.display()
            ))
        };
        if !meta.is_dir() {
            return Err(foreign("is not a directory"));
        }
        let marker = self.root.join(ROOT_MARKER);
        match fs::read(&marker) {
            Ok(bytes) => match serde_json::from_slice::<RootMarker>(&bytes) {
                Ok(m) if m.format == ROOT_FORMAT && m.tier == self.tier => Ok(()),
                Ok(m) if m.format == ROOT_FORMAT => Err(foreign(&format!(
                    "belongs to tier `{}` (its `{ROOT_MARKER}` says so)",
                    m.tier
                ))),
                Ok(_) | Err(_) => Err(foreign(&format!(
                    "holds a `{ROOT_MARKER}` that tiers cannot read"
                ))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let empty = fs::read_dir(&self.root).at(&self.root)?.next().is_none();
                if empty || adopt {
                    Ok(())
                } else {
                    Err(foreign(&format!(
                        "exists, is not empty and was not made by tiers (it has no `{ROOT_MARKER}`)"
                    )))
                }
            }
            Err(e) => Err(Error::io(&marker, e)),
        }
    }

    pub fn entry_dir(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }

    /// Make the root (with its `.tiers-root`) and its working directories.
    fn ensure_dirs(&self) -> Result<()> {
        self.ensure_root()?;
        for sub in [".locks", ".staging", ".trash"] {
            let d = self.root.join(sub);
            fs::create_dir_all(&d).at(&d)?;
        }
        Ok(())
    }

    fn ensure_root(&self) -> Result<()> {
        let marker = self.root.join(ROOT_MARKER);
        if marker.exists() {
            return Ok(());
        }
        fs::create_dir_all(&self.root).at(&self.root)?;
        let bytes = serde_json::to_vec(&RootMarker {
            format: ROOT_FORMAT,
            tier: self.tier.clone(),
        })
        .expect("a root marker always serializes");
        write_atomic(&marker, &bytes)
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
        self.clean(&[".staging", ".trash"])
    }

    /// Remove the staging dirs of killed builds (any key not locked now), after
    /// killing the processes those builds left running.
    pub fn clean_staging(&self) -> Result<usize> {
        // Most builds find it empty: one read of a small directory.
        let staging = self.root.join(".staging");
        if fs::read_dir(&staging).map_or(true, |mut d| d.next().is_none()) {
            return Ok(0);
        }
        self.clean(&[".staging"])
    }

    fn clean(&self, subs: &[&str]) -> Result<usize> {
        let mut removed = 0;
        for &sub in subs {
            let dir = self.root.join(sub);
            let Ok(read) = fs::read_dir(&dir) else {
                continue;
            };
            for item in read.flatten() {
                let name = item.file_name().to_string_lossy().into_owned();
                // Trash is never in use; staging is while its key is locked.
                let _lock = if sub == ".staging" {
                    let Some(key) = staging_key(&name) else {
                        continue;
                    };
                    match self.try_lock(&key)? {
                        Some(l) => {
                            crate::process::kill_orphans(&self.entry_dir(&key));
                            Some(l)
                        }
                        None => continue,
                    }
                } else if is_unique_suffix(&name) {
                    None
                } else {
                    continue;
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
        let mut killed = false;
        for old in fs::read_dir(&staging).at(&staging)?.flatten() {
            if staging_key(&old.file_name().to_string_lossy()).as_ref() == Some(key) {
                // A killed build's processes may still be writing there.
                if !killed {
                    crate::process::kill_orphans(&self.entry_dir(key));
                    killed = true;
                }
                remove_dir(&old.path())?;
            }
        }
        let dir = staging.join(format!("{key}-{}", unique_suffix()));
        fs::create_dir(&dir).at(&dir)?;
        Ok(dir)
    }

    /// Empty final dir for an in-place build of `key`, debris removed first.
    pub fn prepare_in_place(&self, key: &Key, _lock: &KeyLock) -> Result<PathBuf> {
        self.ensure_dirs()?;
        let dir = self.entry_dir(key);
        if dir.exists() {
            crate::process::kill_orphans(&dir);
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

    /// Remove `key`'s entry (retention) unless a pointer used within `ttl` names
    /// it, directly or through an alias: checked under the key's lock, which a
    /// build holds until it has pointed at its entry. Returns whether it went.
    pub fn remove_unless_pointed(&self, key: &Key, ttl: Duration) -> Result<bool> {
        let lock = self.lock(key)?;
        let pointed = self.pointed(ttl);
        // A pointed key without an entry of its own is served by its alias.
        let named = pointed.iter().any(|p| {
            p == key
                || (!self.entry_dir(p).join(MARKER).exists() && self.alias(p).as_ref() == Some(key))
        });
        if named {
            return Ok(false);
        }
        self.remove_locked(key, lock)?;
        Ok(true)
    }

    /// Remove `key`'s entry (retention), under its lock, and what names it.
    pub fn remove(&self, key: &Key) -> Result<()> {
        let lock = self.lock(key)?;
        self.remove_locked(key, lock)
    }

    fn remove_locked(&self, key: &Key, lock: KeyLock) -> Result<()> {
        let dir = self.entry_dir(key);
        if dir.exists() {
            self.discard(&dir)?;
        }
        if let Ok(remotes) = fs::read_dir(self.root.join(".uploaded")) {
            for r in remotes.flatten() {
                let _ = fs::remove_file(r.path().join(key.as_str()));
            }
        }
        drop(lock);
        Ok(())
    }

    fn read_alias(&self, key: &Key) -> Option<Alias> {
        let bytes = fs::read(self.root.join(".aliases").join(key.as_str())).ok()?;
        match serde_json::from_slice::<Alias>(&bytes) {
            Ok(a) => Some(a),
            // Written by an older tiers: the target's key alone.
            Err(_) => Some(Alias {
                target: Key::parse(std::str::from_utf8(&bytes).ok()?)?,
                doc: None,
            }),
        }
    }

    /// The entry `key` was restored to through discovered inputs, if it was.
    pub fn alias(&self, key: &Key) -> Option<Key> {
        self.read_alias(key).map(|a| a.target)
    }

    /// Record that `key`, whose key document is `doc`, is served by `target`'s entry.
    pub fn set_alias(&self, key: &Key, target: &Key, doc: &KeyDoc) -> Result<()> {
        let dir = self.root.join(".aliases");
        fs::create_dir_all(&dir).at(&dir)?;
        let bytes = serde_json::to_vec(&Alias {
            target: target.clone(),
            doc: Some(doc.clone()),
        })
        .expect("an alias always serializes");
        write_atomic(&dir.join(key.as_str()), &bytes)
    }

    /// The key document of `key`: its entry's, else the one its alias recorded.
    /// What the next build's reasons compare against.
    pub fn doc_of(&self, key: &Key) -> Option<KeyDoc> {
        if let Ok(Some(m)) = self.marker(key) {
            return Some(m.doc);
        }
        let alias = self.read_alias(key)?;
        match alias.doc {
            Some(doc) => Some(doc),
            // An alias an older tiers wrote: the serving entry's document, the
            // nearest there is.
            None => self.marker(&alias.target).ok().flatten().map(|m| m.doc),
        }
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

    fn pointer_path(&self, checkout: &Checkout) -> PathBuf {
        self.root.join(".pointers").join(checkout.id())
    }

    /// The key `checkout`'s last successful build of this tier resolved to.
    pub fn current(&self, checkout: &Checkout) -> Option<Key> {
        let bytes = fs::read(self.pointer_path(checkout)).ok()?;
        serde_json::from_slice::<Pointer>(&bytes)
            .ok()
            .map(|p| p.key)
    }

    /// Point `checkout` at `key`. A warm run writes nothing but, once an hour, the
    /// pointer's time (a used pointer keeps its entry from retention).
    pub fn set_current(&self, checkout: &Checkout, key: &Key) -> Result<()> {
        let path = self.pointer_path(checkout);
        if self.current(checkout).as_ref() == Some(key) {
            let recent = fs::metadata(&path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < POINTER_REFRESH));
            if !recent {
                if let Ok(f) = File::options().write(true).open(&path) {
                    let _ = f.set_modified(SystemTime::now());
                }
            }
            return Ok(());
        }
        self.ensure_root()?;
        let dir = self.root.join(".pointers");
        fs::create_dir_all(&dir).at(&dir)?;
        let bytes = serde_json::to_vec(&Pointer {
            key: key.clone(),
            project: checkout.project.to_string_lossy().into_owned(),
        })
        .expect("a pointer always serializes");
        write_atomic(&path, &bytes)
    }

    fn uploaded_path(&self, remote: &str, key: &Key) -> PathBuf {
        let remote = Key::of_bytes(remote.as_bytes());
        self.root
            .join(".uploaded")
            .join(&remote.as_str()[..16])
            .join(key.as_str())
    }

    /// Whether `key`'s entry is known to be in the shared cache `remote` (its
    /// description): uploaded or restored from there by this cache dir.
    pub fn uploaded(&self, remote: &str, key: &Key) -> bool {
        self.uploaded_path(remote, key).exists()
    }

    /// Remember that `remote` has `key`'s entry.
    pub fn set_uploaded(&self, remote: &str, key: &Key) -> Result<()> {
        let path = self.uploaded_path(remote, key);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).at(dir)?;
        }
        File::create(&path).at(&path).map(drop)
    }

    /// Keys named by a checkout's pointer used within `ttl`: retention keeps them.
    pub fn pointed(&self, ttl: Duration) -> Vec<Key> {
        let Ok(read) = fs::read_dir(self.root.join(".pointers")) else {
            return Vec::new();
        };
        read.flatten()
            .filter(|e| {
                e.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t.elapsed().map_or(true, |age| age < ttl))
            })
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<Pointer>(&b).ok())
            .map(|p| p.key)
            .collect()
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

fn write_marker(dir: &Path, marker: &Marker) -> Result<()> {
    let bytes = serde_json::to_vec(marker).expect("a marker always serializes");
    write_atomic(&dir.join(MARKER), &bytes)
}

/// The key of a staging dir name `<key>-<pid>-<n>` (or of the dep file a command
/// writes beside it, `<key>-<pid>-<n>.deps`), `None` for names tiers does not make.
fn staging_key(name: &str) -> Option<Key> {
    let name = name.strip_suffix(".deps").unwrap_or(name);
    let (key, rest) = name.split_at_checked(64)?;
    let key = Key::parse(key)?;
    (rest.strip_prefix('-').is_some_and(is_unique_suffix)).then_some(key)
}

/// The line of the `CACHEDIR.TAG` tiers writes that says tiers made the directory.
const TAG_OWNER: &str = "created by tiers";

/// Refuse a cache dir tiers did not make: one that exists and is not empty, but
/// holds no `CACHEDIR.TAG` written by tiers (another tool's tag is not tiers'), or
/// that is not a directory. Reads only.
pub fn check_cache_dir(dir: &Path) -> Result<()> {
    let refuse = |why: String| {
        Error::config(format!(
            "the cache dir `{}` {why}\nhint: use a new or empty directory (`[cache] dir`, `--cache-dir` or `TIERS_CACHE_DIR`); tiers writes and deletes only in directories it made",
            dir.display()
        ))
    };
    let meta = match fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refuse(format!("cannot be read: {e}"))),
    };
    if !meta.is_dir() {
        return Err(refuse("is not a directory".into()));
    }
    let tag = fs::read_to_string(dir.join("CACHEDIR.TAG")).unwrap_or_default();
    if tag.contains(TAG_OWNER) {
        return Ok(());
    }
    let empty = fs::read_dir(dir)
        .map_err(|e| refuse(format!("cannot be read: {e}")))?
        .next()
        .is_none();
    if empty {
        Ok(())
    } else {
        Err(refuse(
            "exists, is not empty and was not made by tiers (it has no `CACHEDIR.TAG` written by tiers)"
                .into(),
        ))
    }
}

const CACHEDIR_TAG: &[u8] = b"Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by tiers.\n\
# For information about cache directory tags see https://bford.info/cachedir/\n";

/// Create the cache dir with its `CACHEDIR.TAG` and a `.gitignore` of `*`. A new
/// one appears with both at once (made beside it and renamed into place), so a
/// concurrent `tiers` never sees it untagged and takes it for a foreign directory.
pub fn init_cache_dir(dir: &Path) -> Result<()> {
    let cache_err = |e: Error| match e {
        Error::Io { path, source } => Error::CacheDir { path, source },
        other => other,
    };
    let tag = dir.join("CACHEDIR.TAG");
    let ignore = dir.join(".gitignore");
    if tag.exists() && ignore.exists() {
        return Ok(());
    }
    if !dir.exists() {
        if let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) {
            fs::create_dir_all(parent).at(parent).map_err(cache_err)?;
            let tmp = parent.join(format!(
                ".{}.{}.tmp",
                name.to_string_lossy(),
                unique_suffix()
            ));
            let made = fs::create_dir(&tmp)
                .at(&tmp)
                .and_then(|()| write_atomic(&tmp.join("CACHEDIR.TAG"), CACHEDIR_TAG))
                .and_then(|()| write_atomic(&tmp.join(".gitignore"), b"*\n"))
                .and_then(|()| fs::rename(&tmp, dir).at(dir));
            if made.is_ok() {
                return Ok(());
            }
            let _ = remove_dir(&tmp);
            // Another process made it first (the rename found it not empty).
            if !dir.is_dir() {
                return made.map_err(cache_err);
            }
        }
    }
    // An existing directory: empty (checked at open), or made by an older tiers.
    fs::create_dir_all(dir).map_err(|source| Error::CacheDir {
        path: dir.to_owned(),
        source,
    })?;
    if !tag.exists() {
        write_atomic(&tag, CACHEDIR_TAG).map_err(cache_err)?;
    }
    if !ignore.exists() {
        write_atomic(&ignore, b"*\n").map_err(cache_err)?;
    }
    Ok(())
}
