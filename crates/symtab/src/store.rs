//! The tier's own content-addressed store: per-file entries, which entries
//! name in their index, and graph buckets, which entries hard-link; pruned of
//! what no entry uses any more.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use super::table::{GRAPH_EXT, SYMBOLS_EXT};
use super::TierError;
use py_symbols::codec::{digest_bytes, DigestSet};
use py_symbols::EXTRACTOR_VERSION;

const LOCK: &str = ".symtab.lock";
const SEEN: &str = ".symtab-entries";

/// `files-v{E}/` and `graph-buckets-v{E}/` under the tier root.
pub(crate) struct BlobStore {
    pub files: PathBuf,
    pub graph: PathBuf,
}

/// Held for a whole build: shared, so that no prune runs meanwhile; or, by
/// the build that prunes, exclusive until [`StoreLock::settle`] has pruned.
pub(crate) struct StoreLock {
    file: File,
    path: PathBuf,
    pending: Mutex<Option<Pending>>,
    pruned: AtomicUsize,
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> TierError + '_ {
    move |source| TierError::Write {
        path: path.to_owned(),
        source,
    }
}

impl Pending {
    /// Write the entries seen. Only an optimisation: a failure means the next
    /// build looks again.
    fn record(&self) {
        let text: String = self.entries.iter().map(|k| format!("{k}\n")).collect();
        let _ = tiers_core::write_atomic(&self.tier_root.join(SEEN), text.as_bytes());
    }
}

/// A prune `open` found due, done by `settle`.
struct Pending {
    tier_root: PathBuf,
    /// What to record as seen: the entries there are now, and unless the
    /// store is swept, those that went since it last was.
    entries: BTreeSet<String>,
    /// An entry went since the last build: stored files may be unused.
    sweep: bool,
}

impl StoreLock {
    /// Do the prune `open` found due, if any, then share the lock. `using`
    /// are the contents the build uses, kept with those of every entry.
    /// Called once the build knows them; again at the end, in case the build
    /// stopped earlier.
    /// `using` is read only when a sweep is due: most builds pass it by.
    pub fn settle<'a>(&self, using: impl IntoIterator<Item = &'a str>) -> Result<(), TierError> {
        let Some(p) = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Ok(());
        };
        if p.sweep {
            let pruned = sweep(&p.tier_root, using);
            if pruned > 0 {
                tracing::info!("symtab: pruned {pruned} stored files no entry uses");
            }
            self.pruned.store(pruned, Ordering::Relaxed);
        }
        p.record();
        self.file.unlock().map_err(write_err(&self.path))?;
        self.file.lock_shared().map_err(write_err(&self.path))
    }

    /// Stored files the prune removed.
    pub fn pruned(&self) -> usize {
        self.pruned.load(Ordering::Relaxed)
    }
}

impl BlobStore {
    /// Open the store of `tier_root`. When a sweep is due (see `prune_due`)
    /// and no other build of this tier is running, the lock is held
    /// exclusively until [`StoreLock::settle`] prunes the store.
    pub fn open(tier_root: &Path) -> Result<(BlobStore, StoreLock), TierError> {
        let store = BlobStore {
            files: files_dir(tier_root, EXTRACTOR_VERSION),
            graph: graph_dir(tier_root, EXTRACTOR_VERSION),
        };
        for dir in [&store.files, &store.graph] {
            // The 256 shards are made once; the last one tells they all are.
            if !dir.join("ff").is_dir() {
                for b in 0..=255u8 {
                    let shard = dir.join(format!("{b:02x}"));
                    fs::create_dir_all(&shard).map_err(write_err(&shard))?;
                }
            }
        }
        let lock_path = tier_root.join(LOCK);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(write_err(&lock_path))?;
        let mut pending = None;
        match file.try_lock() {
            // Only a sweep keeps the lock exclusive; the record of the
            // entries seen is written at once otherwise.
            Ok(()) => match prune_due(tier_root)? {
                Some(p) if !p.sweep => p.record(),
                due => pending = due,
            },
            Err(fs::TryLockError::WouldBlock) => {}
            Err(fs::TryLockError::Error(e)) => return Err(write_err(&lock_path)(e)),
        }
        let exclusive = pending.is_some();
        let lock = StoreLock {
            file,
            path: lock_path,
            pending: Mutex::new(pending),
            pruned: AtomicUsize::new(0),
        };
        if !exclusive {
            lock.file.unlock().map_err(write_err(&lock.path))?;
            lock.file.lock_shared().map_err(write_err(&lock.path))?;
        }
        Ok((store, lock))
    }

    /// The contents the store has a per-file entry for: one read of each
    /// shard, not a look-up per file.
    pub fn present(&self) -> Result<Present, TierError> {
        let mut present = Present::new(self);
        for b in 0..=255u8 {
            present.list(b)?;
        }
        Ok(present)
    }

    /// [`BlobStore::present`], knowing that the store held every content of
    /// `named` at `then` (a build that named them wrote its index then): a
    /// shard not modified since — one `stat` — still holds them, and only the
    /// shards written or pruned since are read. Files are only removed by the
    /// sweep, and removing or adding a file stamps its shard's mtime.
    pub fn present_since<'a>(
        &self,
        named: impl IntoIterator<Item = &'a str>,
        then: SystemTime,
    ) -> Result<Present, TierError> {
        // A stamp from the future (a clock stepped back, a restored copy)
        // proves nothing.
        if then > SystemTime::now() {
            return self.present();
        }
        let mut present = Present::new(self);
        let mut unchanged = [false; 256];
        for b in 0..=255u8 {
            let shard = self.files.join(format!("{b:02x}"));
            // Same file system, same clock: a change after `then` is
            // stamped `then` or later. The change time, which no one can set
            // back (`touch`, `rsync -a` and `tar` set the modification time).
            unchanged[usize::from(b)] = fs::metadata(&shard)
                .ok()
                .and_then(|m| changed_at(&m))
                .is_some_and(|m| m < then);
            if !unchanged[usize::from(b)] {
                present.list(b)?;
            }
        }
        for digest in named.into_iter().filter_map(digest_bytes) {
            if unchanged[usize::from(digest[0])] {
                present.known.insert(digest);
            }
        }
        present.unlisted = unchanged;
        Ok(present)
    }
    /// Store a per-file entry. One already there is kept — its name is the
    /// content's digest — unless `replace` (it may be damaged); either way
    /// the file appears complete or not at all.
    pub fn put_file(&self, digest: &str, bytes: &[u8], replace: bool) -> Result<(), TierError> {
        put_blob(&self.file_blob(digest), bytes, replace)
    }

    /// Store a graph bucket, as [`BlobStore::put_file`] does.
    pub fn put_graph(&self, digest: &str, bytes: &[u8], replace: bool) -> Result<(), TierError> {
        put_blob(&self.graph_blob(digest), bytes, replace)
    }

    pub fn file_blob(&self, digest: &str) -> PathBuf {
        shard_path(&self.files, digest, SYMBOLS_EXT)
    }

    /// Where the graph buckets are.
    pub fn graph_root(&self) -> &Path {
        &self.graph
    }

    pub fn graph_blob(&self, digest: &str) -> PathBuf {
        shard_path(&self.graph, digest, GRAPH_EXT)
    }
}

/// Where the tier's store keeps graph bucket `digest` of extractor `version`.
pub(crate) fn stored_bucket(tier_root: &Path, version: u32, digest: &str) -> PathBuf {
    shard_path(&graph_dir(tier_root, version), digest, GRAPH_EXT)
}

/// The graph buckets of extractor `version` under `tier_root`.
///
/// Not `graph-v{E}`, where entries of kind version 3 linked their buckets: a
/// `tiers` of that version sweeps every bucket there that no entry links, and
/// entries now name theirs without linking them.
pub(crate) fn graph_dir(tier_root: &Path, version: u32) -> PathBuf {
    tier_root.join(format!("graph-buckets-v{version}"))
}

/// When the inode of `m` last changed (its ctime).
#[cfg(unix)]
fn changed_at(m: &fs::Metadata) -> Option<SystemTime> {
    use std::os::unix::fs::MetadataExt;
    let secs = u64::try_from(m.ctime()).ok()?;
    let nanos = u32::try_from(m.ctime_nsec()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::new(secs, nanos))
}

#[cfg(not(unix))]
fn changed_at(m: &fs::Metadata) -> Option<SystemTime> {
    m.modified().ok()
}

/// Which contents the store has a per-file entry for ([`BlobStore::present`]).
pub(crate) struct Present {
    known: DigestSet,
    /// Shards not read: a content of one that is not in `known` is looked up.
    unlisted: [bool; 256],
    files: PathBuf,
}

impl Present {
    fn new(store: &BlobStore) -> Present {
        Present {
            known: DigestSet::with_capacity_and_hasher(1 << 14, Default::default()),
            unlisted: [false; 256],
            files: store.files.clone(),
        }
    }

    /// Nothing is stored (a build from scratch parses every file).
    pub fn none(store: &BlobStore) -> Present {
        Present::new(store)
    }

    pub fn contains(&self, digest: &str) -> bool {
        let Some(bytes) = digest_bytes(digest) else {
            return false;
        };
        self.known.contains(&bytes)
            || (self.unlisted[usize::from(bytes[0])]
                && shard_path(&self.files, digest, SYMBOLS_EXT).is_file())
    }

    /// Read shard `b`: what it holds is known.
    fn list(&mut self, b: u8) -> Result<(), TierError> {
        let shard = self.files.join(format!("{b:02x}"));
        let read = match fs::read_dir(&shard) {
            Ok(read) => read,
            // A shard removed behind our back holds nothing: made again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return fs::create_dir_all(&shard).map_err(write_err(&shard));
            }
            Err(source) => {
                return Err(TierError::Read {
                    path: shard,
                    source,
                })
            }
        };
        for e in read.flatten() {
            let name = e.file_name();
            let Some(digest) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SYMBOLS_EXT))
                .and_then(|n| n.strip_suffix('.'))
                .and_then(digest_bytes)
            else {
                continue;
            };
            self.known.insert(digest);
        }
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.known.len()
    }
}

/// The per-file entries of extractor `version` under `tier_root`.
pub(crate) fn files_dir(tier_root: &Path, version: u32) -> PathBuf {
    tier_root.join(format!("files-v{version}"))
}

/// The stored per-file entry of `digest` under `tier_root`, extractor `version`.
pub(crate) fn stored_symbols(tier_root: &Path, version: u32, digest: &str) -> PathBuf {
    shard_path(&files_dir(tier_root, version), digest, SYMBOLS_EXT)
}

/// Where a store directory keeps the file of `digest`.
pub(crate) fn shard_path(dir: &Path, digest: &str, ext: &str) -> PathBuf {
    dir.join(digest.get(..2).unwrap_or("00"))
        .join(format!("{digest}.{ext}"))
}

fn put_blob(stored: &Path, bytes: &[u8], replace: bool) -> Result<(), TierError> {
    if !replace && stored.is_file() {
        return Ok(());
    }
    write_atomic(stored, bytes)
}

/// [`tiers_core::write_atomic`]: a temp file of its own, renamed into place.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TierError> {
    tiers_core::write_atomic(path, bytes).map_err(|e| match e {
        tiers_core::Error::Io { path, source } => TierError::Write { path, source },
        other => TierError::Write {
            path: path.to_owned(),
            source: io::Error::other(other.to_string()),
        },
    })
}

/// Hard-link `src` at `dst`, copying where linking is not possible (another
/// file system, too many links). `NotFound` is returned as is: the caller
/// decides what a missing source means.
pub(crate) fn link(src: &Path, dst: &Path) -> io::Result<()> {
    match fs::hard_link(src, dst) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
        // A copy appears whole or not at all: a torn one would keep its
        // content's name for good.
        Err(_) => {
            let bytes = fs::read(src)?;
            tiers_core::write_atomic(dst, &bytes).map_err(|e| io::Error::other(e.to_string()))
        }
    }
}

/// Under the exclusive lock: whether the entries changed since the last
/// build, and whether enough went (retention or `tiers gc` removed them) that
/// the stored files no entry uses any more are to be removed:
/// as many as half of those left, so that with `keep = 10` a build sweeps the
/// store every fifth build, not every build, and unused files take at most
/// half again the space of the entries kept. Listing the entries is one
/// directory read, so a build that finds them all still there costs nothing
/// more.
fn prune_due(tier_root: &Path) -> Result<Option<Pending>, TierError> {
    let entries: BTreeSet<String> = match fs::read_dir(tier_root) {
        Ok(read) => read
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| tiers_core::Key::parse(n).is_some())
            .collect(),
        Err(source) => {
            return Err(TierError::Read {
                path: tier_root.to_owned(),
                source,
            })
        }
    };
    let seen: BTreeSet<String> = fs::read_to_string(tier_root.join(SEEN))
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default();
    let gone = seen.iter().filter(|k| !entries.contains(*k)).count();
    let sweep = gone > 0 && gone * 2 >= entries.len();
    // Until the store is swept, the entries that went stay listed: they count.
    let record = match sweep {
        true => entries,
        false => seen.union(&entries).cloned().collect(),
    };
    if !sweep && record == seen {
        return Ok(None);
    }
    Ok(Some(Pending {
        tier_root: tier_root.to_owned(),
        sweep,
        entries: record,
    }))
}

/// Remove the stored files no entry uses: per-file entries and graph buckets
/// that no entry's index names, that no entry links (an entry uploaded to a
/// shared cache, or of an older layout, links them) and, for per-file
/// entries, that are not in `using`. When an entry's index cannot be read,
/// every stored file is kept: it may need any of them.
#[cfg(unix)]
fn sweep<'a>(tier_root: &Path, using: impl IntoIterator<Item = &'a str>) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(read) = fs::read_dir(tier_root) else {
        return 0;
    };
    let mut stores = Vec::new();
    let mut named_files: DigestSet = using.into_iter().filter_map(digest_bytes).collect();
    let mut named_graph = DigestSet::default();
    let mut complete = true;
    // Entries, and builds that wrote their index but are not published yet
    // (their lock on the store is gone by then).
    let staging = fs::read_dir(tier_root.join(".staging"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (true, e));
    for (staged, e) in read.flatten().map(|e| (false, e)).chain(staging) {
        let name = e.file_name().to_string_lossy().into_owned();
        let is_store = ["files-v", "graph-v", "graph-buckets-v"]
            .iter()
            .any(|p| name.starts_with(p));
        if !staged && is_store {
            stores.push((name.starts_with("files-v"), e.path()));
        } else if staged || tiers_core::Key::parse(&name).is_some() {
            match super::table::named_digests(&e.path()) {
                Ok(named) => {
                    named_files.extend(named.files);
                    named_graph.extend(named.graph);
                }
                Err(err) => {
                    tracing::warn!("symtab: keeping every stored file: {err}");
                    complete = false;
                }
            }
        }
    }
    if !complete {
        return 0;
    }
    let mut removed = 0;
    for (files, store) in stores {
        let named = match files {
            true => &named_files,
            false => &named_graph,
        };
        let Ok(shards) = fs::read_dir(&store) else {
            continue;
        };
        for shard in shards.flatten() {
            let Ok(entries) = fs::read_dir(shard.path()) else {
                continue;
            };
            for file in entries.flatten() {
                let name = file.file_name();
                let digest = name
                    .to_str()
                    .and_then(|n| py_symbols::codec::digest_bytes(n.split('.').next()?));
                let used = digest.is_some_and(|d| named.contains(&d));
                if !used
                    && file.metadata().is_ok_and(|m| m.is_file() && m.nlink() == 1)
                    && fs::remove_file(file.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
    }
    removed
}

#[cfg(not(unix))]
fn sweep<'a>(_tier_root: &Path, _using: impl IntoIterator<Item = &'a str>) -> usize {
    0
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::table::{Index, IndexFile, INDEX_FORMAT};
    use py_symbols::SCHEMA_VERSION;

    struct Root(PathBuf);

    impl Root {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn digest(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    /// An empty tier root under the temp dir, removed on drop, and its store.
    fn fresh_store(name: &str) -> (Root, BlobStore) {
        let dir = std::env::temp_dir().join(format!("tiers-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let root = Root(dir);
        let (store, lock) = BlobStore::open(root.path()).unwrap();
        lock.settle(std::iter::empty()).unwrap();
        (root, store)
    }

    /// An index of one file whose content is `file` and one graph bucket.
    fn index_naming(file: String, bucket: String) -> Index {
        Index {
            format: INDEX_FORMAT,
            extractor_version: EXTRACTOR_VERSION,
            schema_version: SCHEMA_VERSION,
            counts: Default::default(),
            files: [(
                "a.py".to_owned(),
                IndexFile {
                    digest: file,
                    module: Some("a".into()),
                    interface: None,
                    errors: 0,
                    deps: std::sync::Arc::new([]),
                },
            )]
            .into(),
            names: Default::default(),
            graph: [("3a".to_owned(), bucket)].into(),
        }
    }

    #[test]
    fn a_sweep_keeps_what_an_index_or_the_build_names_and_all_while_an_index_is_damaged() {
        let (root, store) = fresh_store("sweep");
        for n in 1..=4 {
            store.put_file(&digest(n), b"symbols", false).unwrap();
            store.put_graph(&digest(n + 4), b"bucket", false).unwrap();
        }
        // A bucket another entry links (an older layout's) stays, named or not.
        let older = root.path().join(digest(10)).join("graph");
        fs::create_dir_all(&older).unwrap();
        fs::hard_link(store.graph_blob(&digest(8)), older.join("b.bin")).unwrap();
        let graph_left = || -> Vec<String> {
            let mut left: Vec<String> = (5..=8)
                .map(digest)
                .filter(|d| store.graph_blob(d).is_file())
                .collect();
            left.sort();
            left
        };
        let entry = root.path().join(digest(9));
        fs::create_dir_all(&entry).unwrap();
        let index = index_naming(digest(1), digest(5));
        // A shard removed behind the store's back is made again, empty.
        fs::remove_dir_all(store.files.join("00")).unwrap();
        assert_eq!(store.present().unwrap().len(), 4);
        assert!(store.files.join("00").is_dir());
        // A damaged index: nothing is removed.
        fs::write(entry.join("index.bin"), b"TIDX\x01\0\0\0\x03").unwrap();
        let using = digest(2);
        assert_eq!(sweep(root.path(), [using.as_str()]), 0);
        assert_eq!(store.present().unwrap().len(), 4);
        assert_eq!(graph_left().len(), 4);
        // Readable: what it names and what the build uses stay.
        index.save(&entry).unwrap();
        assert_eq!(sweep(root.path(), [using.as_str()]), 2 + 2);
        assert_eq!(graph_left(), [digest(5), digest(8)]);
        let present = store.present().unwrap();
        let expected = [digest(1), digest(2)].map(|d| digest_bytes(&d).unwrap());
        assert_eq!(present.known, DigestSet::from_iter(expected));
    }

    #[test]
    fn a_sweep_keeps_what_a_build_not_yet_published_names() {
        let (root, store) = fresh_store("staged");
        for n in 1..=2 {
            store.put_file(&digest(n), b"symbols", false).unwrap();
            store.put_graph(&digest(n + 4), b"bucket", false).unwrap();
        }
        // A build that wrote its index and released the store, not published.
        let staged = root
            .path()
            .join(".staging")
            .join(format!("{}-1-0", digest(9)));
        fs::create_dir_all(&staged).unwrap();
        let index = index_naming(digest(1), digest(5));
        index.save(&staged).unwrap();
        assert_eq!(sweep(root.path(), std::iter::empty()), 2);
        assert!(store.file_blob(&digest(1)).is_file() && store.graph_blob(&digest(5)).is_file());
        assert!(!store.file_blob(&digest(2)).is_file() && !store.graph_blob(&digest(6)).is_file());
    }

    #[test]
    fn what_an_index_named_is_present_in_shards_unmodified_since_it_was_written() {
        use std::time::Duration;
        let (root, store) = fresh_store("present");
        // Digests `NN…` land in shard `NN`.
        for n in [0x11, 0x22, 0x33, 0x44] {
            store.put_file(&digest(n), b"symbols", false).unwrap();
        }
        // The index is stamped by the file system's clock, as a build's is.
        std::thread::sleep(Duration::from_millis(30));
        let index = root.path().join("index.bin");
        fs::write(&index, b"").unwrap();
        let then = fs::metadata(&index).unwrap().modified().unwrap();
        let named = [digest(0x11), digest(0x22), digest(0x33)];
        let names = || named.iter().map(String::as_str);
        // Nothing changed since: no shard is read, the index is believed.
        let p = store.present_since(names(), then).unwrap();
        assert_eq!(p.len(), 3);
        assert!(named.iter().all(|d| p.contains(d)));
        // A content the index did not name, in a shard not read, is looked up.
        assert!(p.contains(&digest(0x44)) && !p.contains(&digest(0x55)));
        // Removed since (its shard's change time moves): that shard is read.
        fs::remove_file(store.file_blob(&digest(0x22))).unwrap();
        let p = store.present_since(names(), then).unwrap();
        assert!(!p.contains(&digest(0x22)));
        assert!(p.contains(&digest(0x11)) && p.contains(&digest(0x33)));
        // Setting a shard's times back does not hide a change.
        fs::remove_file(store.file_blob(&digest(0x33))).unwrap();
        let shard = store.files.join("33");
        File::open(&shard)
            .unwrap()
            .set_modified(then - Duration::from_secs(60))
            .unwrap();
        assert!(!store
            .present_since(names(), then)
            .unwrap()
            .contains(&digest(0x33)));
        // Its shard removed altogether: made again, empty.
        fs::remove_dir_all(store.files.join("11")).unwrap();
        let p = store.present_since(names(), then).unwrap();
        assert!(!p.contains(&digest(0x11)) && store.files.join("11").is_dir());
        // A stamp from the future proves nothing: every shard is read.
        let p = store
            .present_since(names(), SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
        assert_eq!(p.len(), 1, "only 0x44 is left");
        // Not a digest: not stored.
        assert!(!p.contains("../../etc/passwd"));
    }
}
