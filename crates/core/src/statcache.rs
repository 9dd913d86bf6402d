//! The stat cache: `relative path → (inode, size, mtime_ns, ctime_ns) → SHA-256`, so
//! that a warm check reads no file content.
//!
//! One file per project under `<cache dir>/.state/` (a name no tier can take), loaded
//! once per run and replaced atomically at its end, when the run learned enough to be
//! worth it (`RESAVE_FILES` in `inputs.rs`). Two processes may race: each
//! writes a whole view of its own and the last rename wins, which is safe because
//! every record in a view was true when that view was written.
//!
//! A record is trusted only when the file's stat data equals the record's **and** the
//! record is not *racy*. A file edited just after it was hashed, within one timestamp
//! tick, keeps the stat data of the version that was hashed; but such a file was
//! stamped no earlier than one tick before the cache was written. So a record whose
//! mtime or ctime is not at least [`RACY_MARGIN_NS`] older than the moment its cache
//! was written is re-hashed (git's "racy git" rule, ccache's "too new" check). The
//! margin covers coarse kernel clocks and filesystems that keep whole (FAT: even)
//! seconds.
//!
//! Directory listings are kept the same way: a directory whose stat data matches its
//! listing's, and is not racy, is not read again (adding, removing or renaming an
//! entry changes a directory's mtime). A warm check then costs one `open` and `fstat`
//! per directory and one `fstatat` per file, where reading a directory costs several
//! system calls and the filesystem's own bookkeeping.
//!
//! Layout, little endian: magic `TIERSSC\0`, `u32` version, `u32` zero, `i64` write
//! time (ns since the epoch), `u32` length + bytes of the project path; `u64` record
//! count and the file records sorted by path (`u32` length + path bytes, `u64` inode,
//! `u64` size, `i64` mtime_ns, `i64` ctime_ns, 32-byte digest); `u64` directory count
//! and the listings sorted by path (path, the same stat data, `u32` entry count, each
//! entry a kind byte and a `u32` length + name); a 64-bit checksum of all of the
//! above. Anything else — another version, another project, a bad checksum, a
//! truncated file — is discarded with a debug log and never trusted.

use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fsutil::hex;

const MAGIC: &[u8; 8] = b"TIERSSC\0";
const VERSION: u32 = 2;
/// Directory of the cache dir holding tiers' own state; `.` keeps it from being a tier.
const STATE_DIR: &str = ".state";

/// How much older than the cache's write time a file's mtime and ctime must be for
/// its record to be trusted.
pub(crate) const RACY_MARGIN_NS: i64 = 2_000_000_000;

/// The stat data a record is keyed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl Stat {
    /// `None` where the platform has no inode and ctime: nothing is then trusted.
    #[cfg(unix)]
    pub fn of(meta: &Metadata) -> Option<Stat> {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| s.saturating_mul(1_000_000_000).saturating_add(n);
        Some(Stat {
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        })
    }

    #[cfg(not(unix))]
    pub fn of(_meta: &Metadata) -> Option<Stat> {
        None
    }

    /// Too recent, relative to a cache written at `written_ns`, to vouch for content.
    pub fn racy(&self, written_ns: i64) -> bool {
        let safe_before = written_ns.saturating_sub(RACY_MARGIN_NS);
        self.mtime_ns >= safe_before || self.ctime_ns >= safe_before
    }
}

/// What the cache knows of one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    pub stat: Stat,
    pub digest: [u8; 32],
}

/// What a directory entry is, as a listing records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File = 0,
    Dir = 1,
    Link = 2,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::File),
            1 => Some(Kind::Dir),
            2 => Some(Kind::Link),
            _ => None,
        }
    }
}

/// One directory's listing as it goes into the cache: its stat data and its
/// entries (files, directories and links; nothing else is an input).
pub(crate) struct DirRecord<'a> {
    pub rel: &'a str,
    pub stat: Stat,
    pub entries: Entries<'a>,
}

/// A directory's entries as they go into the cache.
pub(crate) enum Entries<'a> {
    /// Read in this run.
    Listed(Vec<(Kind, &'a str)>),
    /// A listing of the loaded cache, copied as it was encoded: most
    /// directories are not read again, and a save need not take their
    /// 30,000 names apart.
    Kept { count: u32, encoded: &'a [u8] },
}

/// A directory listing in a loaded cache: its path, stat data, and its range in
/// `StatCache::entries`.
struct DirAt {
    path: (u32, u32),
    stat: Stat,
    first: u32,
    count: u32,
    /// The entries' bytes in the file.
    encoded: (u32, u32),
}

/// A loaded stat cache: file records and directory listings, each sorted by path,
/// and when they were written.
pub(crate) struct StatCache {
    pub written_ns: i64,
    /// The file as read; everything below indexes into it, so loading allocates a
    /// few vectors, not a string per path.
    bytes: Vec<u8>,
    paths: Vec<(u32, u32)>,
    records: Vec<Record>,
    dirs: Vec<DirAt>,
    entries: Vec<(Kind, u32, u32)>,
    /// Files (not directories) the listings hold, and the bytes of their
    /// paths: what a walk of the same tree finds.
    walk_size: (usize, usize),
}

/// Where the stat cache of `project` lives in `cache_dir`. The name carries a digest
/// of the project path, so projects sharing one cache dir keep one file each.
pub(crate) fn path_for(cache_dir: &Path, project: &Path) -> PathBuf {
    let id = Sha256::digest(project.as_os_str().as_encoded_bytes());
    cache_dir
        .join(STATE_DIR)
        .join(format!("stat-cache-v{VERSION}-{}", &hex(&id)[..16]))
}

pub(crate) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl StatCache {
    /// The cache at `path`, or `None` when it is absent or cannot be trusted.
    pub fn load(path: &Path, project: &Path) -> Option<StatCache> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::debug!("stat cache `{}` unreadable, ignored: {e}", path.display());
                return None;
            }
        };
        match Self::parse(bytes, project) {
            Ok(c) => Some(c),
            Err(why) => {
                tracing::debug!("stat cache `{}` discarded: {why}", path.display());
                None
            }
        }
    }

    fn parse(bytes: Vec<u8>, project: &Path) -> std::result::Result<StatCache, String> {
        if bytes.len() < MAGIC.len() + 8 || &bytes[..MAGIC.len()] != MAGIC {
            return Err("not a stat cache".into());
        }
        let (body, sum) = bytes
            .split_at_checked(bytes.len().saturating_sub(8))
            .ok_or("truncated")?;
        if body.len() < MAGIC.len() + 8 || checksum(body).to_le_bytes() != sum {
            return Err("bad checksum (truncated or corrupt)".into());
        }
        let mut r = Reader {
            bytes: body,
            at: MAGIC.len(),
        };
        let version = r.u32()?;
        if version != VERSION {
            return Err(format!("version {version}, this tiers reads {VERSION}"));
        }
        r.u32()?;
        let written_ns = r.i64()?;
        let (at, len) = r.bytes()?;
        if &body[at..at + len] != project.as_os_str().as_encoded_bytes() {
            return Err("written for another project".into());
        }
        let count = usize::try_from(r.u64()?).map_err(|_| "bad count")?;
        // Each record takes at least 68 bytes: a huge count is corruption, not a
        // reason to allocate.
        if count > body.len() / 68 {
            return Err("bad count".into());
        }
        let mut paths = Vec::with_capacity(count);
        let mut records = Vec::with_capacity(count);
        let mut prev: Option<&[u8]> = None;
        for _ in 0..count {
            let (at, len) = r.bytes()?;
            let path = &body[at..at + len];
            if prev.is_some_and(|p| p >= path) {
                return Err("records out of order".into());
            }
            prev = Some(path);
            let stat = r.stat()?;
            let digest = r.take(32)?.try_into().expect("32 bytes");
            paths.push((at as u32, len as u32));
            records.push(Record { stat, digest });
        }
        let count = usize::try_from(r.u64()?).map_err(|_| "bad count")?;
        if count > body.len() / 40 {
            return Err("bad directory count".into());
        }
        let mut dirs = Vec::with_capacity(count);
        let mut entries = Vec::new();
        let mut walk_size = (0, 0);
        let mut prev: Option<&[u8]> = None;
        for _ in 0..count {
            let (at, len) = r.bytes()?;
            let path = &body[at..at + len];
            if prev.is_some_and(|p| p >= path) {
                return Err("directories out of order".into());
            }
            prev = Some(path);
            let stat = r.stat()?;
            let n = r.u32()?;
            let first = entries.len() as u32;
            let encoded_at = r.at;
            for _ in 0..n {
                let kind = Kind::from_byte(r.take(1)?[0]).ok_or("bad entry kind")?;
                let (at, len) = r.bytes()?;
                let name = std::str::from_utf8(&body[at..at + len]).map_err(|_| "bad name")?;
                if name.is_empty() || name.contains('/') {
                    return Err("bad name".into());
                }
                entries.push((kind, at as u32, len as u32));
                if kind != Kind::Dir {
                    walk_size.0 += 1;
                    walk_size.1 += path.len() + 1 + len;
                }
            }
            dirs.push(DirAt {
                path: (at as u32, len as u32),
                stat,
                first,
                count: n,
                encoded: (encoded_at as u32, (r.at - encoded_at) as u32),
            });
        }
        if r.at != body.len() {
            return Err("trailing bytes".into());
        }
        Ok(StatCache {
            written_ns,
            bytes,
            paths,
            records,
            dirs,
            entries,
            walk_size,
        })
    }

    /// How many files a walk of the tree the listings came from finds, and
    /// the bytes of their paths.
    pub fn walk_size(&self) -> (usize, usize) {
        self.walk_size
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    fn path(&self, i: usize) -> &[u8] {
        self.span(self.paths[i])
    }

    fn span(&self, (at, len): (u32, u32)) -> &[u8] {
        &self.bytes[at as usize..(at + len) as usize]
    }

    /// Index of the listing of directory `rel`, if the cache has one.
    pub fn dir(&self, rel: &str) -> Option<usize> {
        self.dirs
            .binary_search_by(|d| self.span(d.path).cmp(rel.as_bytes()))
            .ok()
    }

    /// The stat data directory listing `i` was taken with.
    pub fn dir_stat(&self, i: usize) -> Stat {
        self.dirs[i].stat
    }

    /// The entries of directory listing `i`.
    pub fn dir_entries(&self, i: usize) -> impl Iterator<Item = (Kind, &str)> {
        let d = &self.dirs[i];
        self.entries[d.first as usize..(d.first + d.count) as usize]
            .iter()
            .filter_map(|&(kind, at, len)| {
                // Checked when loading.
                let name = std::str::from_utf8(self.span((at, len))).ok()?;
                Some((kind, name))
            })
    }

    /// The entries of directory listing `i` as the cache holds them.
    pub fn dir_kept(&self, i: usize) -> Entries<'_> {
        let d = &self.dirs[i];
        Entries::Kept {
            count: d.count,
            encoded: self.span(d.encoded),
        }
    }

    pub fn dir_count(&self) -> usize {
        self.dirs.len()
    }

    /// The record of each of `files` (sorted, as the walk returns them), by one merge.
    pub fn align<'a>(&self, files: impl ExactSizeIterator<Item = &'a str>) -> Vec<Option<Record>> {
        let mut out = Vec::with_capacity(files.len());
        let mut j = 0;
        for f in files {
            let f = f.as_bytes();
            while j < self.records.len() && self.path(j) < f {
                j += 1;
            }
            out.push((j < self.records.len() && self.path(j) == f).then(|| self.records[j]));
        }
        out
    }
}

/// Write the records (sorted by path) to `path` atomically, stamped with the current
/// time. The `.state` directory is created, but not the cache dir itself: a project
/// that was never built gets nothing written.
pub(crate) fn save<'a>(
    path: &Path,
    project: &Path,
    records: impl ExactSizeIterator<Item = (&'a str, Record)>,
    dirs: &[DirRecord<'_>],
) -> Result<()> {
    let state = path.parent().expect("stat cache path has a parent");
    if !state.parent().is_some_and(Path::is_dir) {
        return Ok(());
    }
    std::fs::create_dir_all(state).map_err(|e| Error::io(state, e))?;
    let dir_bytes: usize = dirs
        .iter()
        .map(|d| {
            48 + d.rel.len()
                + match &d.entries {
                    Entries::Listed(e) => e.iter().map(|(_, n)| 5 + n.len()).sum(),
                    Entries::Kept { encoded, .. } => encoded.len(),
                }
        })
        .sum();
    let mut out = Vec::with_capacity(64 + records.len() * 120 + dir_bytes);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    // Every record was hashed before this moment, which is what the racy rule needs.
    out.extend_from_slice(&now_ns().to_le_bytes());
    put_bytes(&mut out, project.as_os_str().as_encoded_bytes());
    out.extend_from_slice(&(records.len() as u64).to_le_bytes());
    for (rel, rec) in records {
        put_bytes(&mut out, rel.as_bytes());
        put_stat(&mut out, &rec.stat);
        out.extend_from_slice(&rec.digest);
    }
    out.extend_from_slice(&(dirs.len() as u64).to_le_bytes());
    for d in dirs {
        put_bytes(&mut out, d.rel.as_bytes());
        put_stat(&mut out, &d.stat);
        match &d.entries {
            Entries::Listed(entries) => {
                out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
                for (kind, name) in entries {
                    out.push(*kind as u8);
                    put_bytes(&mut out, name.as_bytes());
                }
            }
            Entries::Kept { count, encoded } => {
                out.extend_from_slice(&count.to_le_bytes());
                out.extend_from_slice(encoded);
            }
        }
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    // Renamed over the old cache, the new one would be written out to disk at
    // once (ext4's `auto_da_alloc`), 3-4 ms of every edit's build; the old one
    // goes first instead. A run that looks in between finds no cache and
    // hashes its inputs, as on a cold cache.
    let _ = std::fs::remove_file(path);
    crate::fsutil::write_atomic(path, &out)
}

/// A 64-bit checksum against truncation and corruption (not tampering: whoever can
/// write the cache dir can write entries too). Four independent lanes of a
/// multiply-rotate round, a few times faster than SHA-256 on a 10 MB cache. Each round
/// and the final merge are bijective in the word or lane they take in, so any change
/// confined to one 8-byte word always changes the sum.
fn checksum(bytes: &[u8]) -> u64 {
    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const P3: u64 = 0x1656_67B1_9E37_79F9;
    let round = |acc: u64, w: u64| {
        acc.wrapping_add(w.wrapping_mul(P2))
            .rotate_left(31)
            .wrapping_mul(P1)
    };
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let mut lanes = [P1.wrapping_add(P2), P2, 0, P1.wrapping_neg()];
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(8)) {
            *lane = round(*lane, word(w));
        }
    }
    let mut h = (bytes.len() as u64).wrapping_mul(P3);
    for lane in lanes {
        h = (h ^ round(0, lane)).wrapping_mul(P1).wrapping_add(P3);
    }
    let mut tail = blocks.remainder().chunks_exact(8);
    for w in &mut tail {
        h = (h ^ round(0, word(w)))
            .rotate_left(27)
            .wrapping_mul(P1)
            .wrapping_add(P3);
    }
    for &b in tail.remainder() {
        h = (h ^ u64::from(b).wrapping_mul(P3))
            .rotate_left(11)
            .wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

fn put_stat(out: &mut Vec<u8>, s: &Stat) {
    out.extend_from_slice(&s.ino.to_le_bytes());
    out.extend_from_slice(&s.size.to_le_bytes());
    out.extend_from_slice(&s.mtime_ns.to_le_bytes());
    out.extend_from_slice(&s.ctime_ns.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        let end = end.ok_or("truncated")?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn i64(&mut self) -> std::result::Result<i64, String> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn stat(&mut self) -> std::result::Result<Stat, String> {
        Ok(Stat {
            ino: self.u64()?,
            size: self.u64()?,
            mtime_ns: self.i64()?,
            ctime_ns: self.i64()?,
        })
    }
    /// A length-prefixed byte string, as (offset, length).
    fn bytes(&mut self) -> std::result::Result<(usize, usize), String> {
        let len = self.u32()? as usize;
        let at = self.at;
        self.take(len)?;
        Ok((at, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ino: u64, mtime_ns: i64, d: u8) -> Record {
        Record {
            stat: Stat {
                ino,
                size: 10,
                mtime_ns,
                ctime_ns: mtime_ns,
            },
            digest: [d; 32],
        }
    }

    #[test]
    fn round_trip_and_align() {
        let dir = tempfile::tempdir().unwrap();
        let project = Path::new("/some/project");
        let path = path_for(dir.path(), project);
        let recs = [("a.py", rec(1, 5, 1)), ("b/c.py", rec(2, 6, 2))];
        let dirs = [DirRecord {
            rel: "b",
            stat: rec(3, 7, 0).stat,
            entries: Entries::Listed(vec![(Kind::File, "c.py"), (Kind::Dir, "d")]),
        }];
        save(&path, project, recs.iter().map(|(p, r)| (*p, *r)), &dirs).unwrap();
        let c = StatCache::load(&path, project).unwrap();
        assert_eq!(c.len(), 2);
        let files = ["a.py", "b/b.py", "b/c.py", "z.py"].map(String::from);
        assert_eq!(
            c.align(files.iter().map(String::as_str)),
            [Some(recs[0].1), None, Some(recs[1].1), None]
        );
        assert!(now_ns() - c.written_ns < 60_000_000_000);
        let d = c.dir("b").unwrap();
        assert_eq!(c.dir_stat(d), dirs[0].stat);
        let listed = [(Kind::File, "c.py"), (Kind::Dir, "d")];
        assert_eq!(c.dir_entries(d).collect::<Vec<_>>(), listed);
        assert_eq!(c.walk_size(), (1, "b/c.py".len()), "one file, `b/c.py`");
        assert!(c.dir("").is_none() && c.dir("a").is_none());
        // A listing kept from the loaded cache is saved as it was.
        let kept = [DirRecord {
            rel: "b",
            stat: c.dir_stat(d),
            entries: c.dir_kept(d),
        }];
        let again = path_for(&dir.path().join("again"), project);
        std::fs::create_dir_all(again.parent().unwrap()).unwrap();
        save(&again, project, recs.iter().map(|(p, r)| (*p, *r)), &kept).unwrap();
        let c2 = StatCache::load(&again, project).unwrap();
        let d2 = c2.dir("b").unwrap();
        assert_eq!(c2.dir_entries(d2).collect::<Vec<_>>(), listed);
        // Another project's cache is not this one's.
        assert!(StatCache::load(&path, Path::new("/other")).is_none());
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let project = Path::new("/p");
        let path = path_for(dir.path(), project);
        let dirs = [DirRecord {
            rel: "",
            stat: rec(2, 5, 0).stat,
            entries: Entries::Listed(vec![(Kind::File, "a.py")]),
        }];
        save(&path, project, [("a.py", rec(1, 5, 1))].into_iter(), &dirs).unwrap();
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x40;
            assert!(StatCache::parse(bad, project).is_err(), "byte {i}");
        }
        for n in 0..good.len() {
            assert!(StatCache::parse(good[..n].to_vec(), project).is_err());
        }
    }

    #[test]
    fn records_young_relative_to_the_write_are_racy() {
        let written = 100 * 1_000_000_000;
        let old = Stat {
            ino: 1,
            size: 1,
            mtime_ns: written - RACY_MARGIN_NS - 1,
            ctime_ns: written - RACY_MARGIN_NS - 1,
        };
        assert!(!old.racy(written));
        assert!(Stat {
            mtime_ns: written - 5,
            ..old
        }
        .racy(written));
        // An edit keeps mtime (e.g. restored by a tool) but ctime is recent.
        assert!(Stat {
            ctime_ns: written,
            ..old
        }
        .racy(written));
    }

    #[test]
    fn save_writes_nothing_without_a_cache_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("never-built"), Path::new("/p"));
        save(&path, Path::new("/p"), std::iter::empty(), &[]).unwrap();
        assert!(!dir.path().join("never-built").exists());
    }
}
