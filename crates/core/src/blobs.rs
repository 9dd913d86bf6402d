//! The blob store: one per cache dir, shared by every tier and entry.
//!
//! ```text
//! <cache dir>/blobs/
//!   .lock                  builds hold it shared; a sweep holds it exclusively
//!   .roots/<hash>          a tier root whose entries name blobs here (its path)
//!   .removed               one byte per entry retention removed since the last sweep
//!   .tmp/<pid>-<n>         a file being stored
//!   <2 hex>/.<pid>-<n>.tmp a blob being written, beside its final name
//!   <2 hex>/<64 hex>       one blob: a file named by the SHA-256 of its bytes
//!   <2 hex>/<64 hex>.x     the same, executable
//! ```
//!
//! A blob is written once, by rename, read-only, and never changed. An entry is its
//! marker plus a [`Tree`] (`entry.tree`): the entry's files, each a hard link to its
//! blob (a copy across file systems), and the blobs a kind names without
//! materializing them (the symtab kind's packs of per-file symbols). Who deletes what:
//! retention and `tiers gc` remove entries; only a sweep removes blobs, and only
//! those no entry of a registered root names, under the exclusive lock, so never
//! while a build (which holds the lock shared from its first read to its
//! publication) may still name one.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::hex;
use crate::fsutil::{open_lock_file, unique_suffix};
use crate::key::Key;

/// The name of an entry's tree, beside its marker.
pub const TREE: &str = "entry.tree";
/// Where an uploaded entry carries the blobs it names (see [`Tree::named`]).
pub const CARRIED: &str = ".tiers-blobs";
const TREE_FORMAT: u32 = 1;
/// Entries removed since the last sweep before a build sweeps.
const SWEEP_AFTER: u64 = 4;

/// The SHA-256 of a blob's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// 64 lowercase hex digits, or `None`.
    pub fn parse(s: &str) -> Option<Digest> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return None;
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 32];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
        }
        Some(Digest(out))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Digest, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Digest::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{s}` is not a digest (64 lowercase hexadecimal digits)"
            ))
        })
    }
}

/// One file of a [`Tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeFile {
    /// Relative, `/`-separated; any bytes but `/` and NUL in a name.
    pub path: PathBuf,
    pub digest: Digest,
    pub exec: bool,
}

/// A symbolic link of a [`Tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeLink {
    pub path: PathBuf,
    pub target: PathBuf,
}

/// What an entry is made of: relative path → blob, links, directories, and the
/// blobs it names without holding them as files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    pub format: u32,
    pub files: Vec<TreeFile>,
    pub links: Vec<TreeLink>,
    pub dirs: Vec<PathBuf>,
    /// Blobs the kind named ([`BuildOutcome::blobs`](crate::BuildOutcome::blobs)).
    pub named: Vec<Digest>,
}

impl Tree {
    /// Read `<entry>/entry.tree`; `Ok(None)` when the entry has none (built in
    /// place, or by an older tiers).
    pub fn read(entry_dir: &Path) -> Result<Option<Tree>> {
        let path = entry_dir.join(TREE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        Tree::decode(&bytes)
            .map(Some)
            .map_err(|why| Error::Marker { path, why })
    }

    /// The binary layout: `TTRE`, the format (u32), then files (exec byte,
    /// digest, path), links (path, target), directories (path) and named
    /// digests, each list after its u32 count; paths are a u32 length and
    /// their bytes; integers little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(16 + self.files.len() * 48 + self.named.len() * 32);
        let put_str = |w: &mut Vec<u8>, p: &Path| {
            let b = p.as_os_str().as_encoded_bytes();
            w.extend_from_slice(&(b.len() as u32).to_le_bytes());
            w.extend_from_slice(b);
        };
        w.extend_from_slice(TREE_MAGIC);
        w.extend_from_slice(&self.format.to_le_bytes());
        w.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for f in &self.files {
            w.push(u8::from(f.exec));
            w.extend_from_slice(f.digest.as_bytes());
            put_str(&mut w, &f.path);
        }
        w.extend_from_slice(&(self.links.len() as u32).to_le_bytes());
        for l in &self.links {
            put_str(&mut w, &l.path);
            put_str(&mut w, &l.target);
        }
        w.extend_from_slice(&(self.dirs.len() as u32).to_le_bytes());
        for d in &self.dirs {
            put_str(&mut w, d);
        }
        w.extend_from_slice(&(self.named.len() as u32).to_le_bytes());
        for d in &self.named {
            w.extend_from_slice(d.as_bytes());
        }
        w
    }

    /// [`Tree::encode`] read back; every path must be relative and stay inside
    /// the entry.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Tree, String> {
        let mut r = ByteReader::new(bytes, "the tree");
        if r.take(4)? != TREE_MAGIC {
            return Err("not a tree".into());
        }
        let format = r.u32()?;
        if format != TREE_FORMAT {
            return Err(format!("tree format {format} is not {TREE_FORMAT}"));
        }
        let mut tree = Tree {
            format,
            ..Tree::default()
        };
        for _ in 0..r.count(37)? {
            let exec = match r.take(1)?[0] {
                0 => false,
                1 => true,
                b => return Err(format!("{b} is not an executable flag")),
            };
            let digest = r.digest()?;
            let path = r.path()?;
            tree.files.push(TreeFile { path, digest, exec });
        }
        for _ in 0..r.count(8)? {
            let path = r.path()?;
            let target = r.bytes_path()?;
            tree.links.push(TreeLink { path, target });
        }
        for _ in 0..r.count(4)? {
            tree.dirs.push(r.path()?);
        }
        for _ in 0..r.count(32)? {
            tree.named.push(r.digest()?);
        }
        if !r.is_done() {
            return Err("trailing bytes after the tree".into());
        }
        Ok(tree)
    }

    /// Every blob the tree uses, as file names in the store.
    fn blob_names(&self) -> impl Iterator<Item = (Digest, bool)> + '_ {
        self.files
            .iter()
            .map(|f| (f.digest, f.exec))
            .chain(self.named.iter().map(|d| (*d, false)))
    }
}

const TREE_MAGIC: &[u8; 4] = b"TTRE";

#[cfg(unix)]
fn path_of_bytes(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

#[cfg(not(unix))]
fn path_of_bytes(b: &[u8]) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(b).into_owned())
}

/// A bounded reader of the store's binary formats (a tree here, a pack index
/// in the shared cache): every read is checked against the bytes left, and
/// an error says where, in `what`.
pub struct ByteReader<'a> {
    bytes: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> ByteReader<'a> {
    /// A reader at the start of `bytes`, which hold `what` ("the tree").
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        ByteReader { bytes, at: 0, what }
    }

    /// Whether every byte was read.
    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> std::result::Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("{} ends early, at byte {}", self.what, self.at))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    /// A count of items of at least `min` bytes each, checked against the
    /// bytes left, not trusted further.
    pub fn count(&mut self, min: usize) -> std::result::Result<usize, String> {
        let n = self.u32()? as usize;
        match n.checked_mul(min) {
            Some(need) if need <= self.bytes.len() - self.at => Ok(n),
            _ => Err(format!("a count of {n} at byte {} is too large", self.at)),
        }
    }

    /// A SHA-256, as its 32 bytes.
    pub fn digest(&mut self) -> std::result::Result<Digest, String> {
        Ok(Digest(self.take(32)?.try_into().expect("32 bytes")))
    }

    /// A path of a tree, as its bytes.
    fn bytes_path(&mut self) -> std::result::Result<PathBuf, String> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        if b.contains(&0) {
            return Err(format!("a path at byte {} holds a NUL", self.at - n));
        }
        Ok(path_of_bytes(b))
    }

    /// A relative path of a tree, with no `..`, `.` or empty component.
    fn path(&mut self) -> std::result::Result<PathBuf, String> {
        let p = self.bytes_path()?;
        let b = p.as_os_str().as_encoded_bytes();
        if b.is_empty()
            || b.split(|c| *c == b'/')
                .any(|c| c.is_empty() || c == b"." || c == b"..")
        {
            return Err(format!("`{}` is not a path inside the entry", p.display()));
        }
        Ok(p)
    }
}

/// The blob store of one cache dir.
#[derive(Clone, Debug)]
pub struct Blobs {
    dir: PathBuf,
}

/// Held shared by a build from its first read of a blob to its publication: no
/// sweep runs meanwhile. Released on drop (also when the process dies).
#[derive(Debug)]
pub struct Lease {
    _file: File,
}

/// What a sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    pub blobs: u64,
    pub bytes: u64,
}

impl Blobs {
    /// The store of `cache_dir` (nothing is created until something is written).
    pub fn of_cache_dir(cache_dir: &Path) -> Blobs {
        Blobs {
            dir: cache_dir.join("blobs"),
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob of `digest` is (whether or not it is there).
    pub fn path(&self, digest: &Digest, exec: bool) -> PathBuf {
        let name = digest.to_string();
        let shard = self.dir.join(&name[..2]);
        match exec {
            true => shard.join(format!("{name}.x")),
            false => shard.join(name),
        }
    }

    /// Whether the blob of `digest` is there.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest, false).is_file()
    }

    /// Store `bytes`; returns their digest. A blob already there is kept.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest> {
        self.put_with(bytes, false)
    }

    /// [`Blobs::put`], writing the blob even when one of that name is there
    /// (it may be the damaged one that made the caller make it again).
    pub fn put_replacing(&self, bytes: &[u8]) -> Result<Digest> {
        self.put_with(bytes, true)
    }

    fn put_with(&self, bytes: &[u8], replace: bool) -> Result<Digest> {
        let digest = Digest::of(bytes);
        let dest = self.path(&digest, false);
        if !replace && dest.is_file() {
            return Ok(digest);
        }
        // Made read-only from the start: one system call less per blob.
        let tmp = self.dir.join(".tmp").join(unique_suffix());
        let mut f = match create_read_only(&tmp) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let dir = self.dir.join(".tmp");
                fs::create_dir_all(&dir).at(&dir)?;
                create_read_only(&tmp).at(&tmp)?
            }
            Err(e) => return Err(Error::io(&tmp, e)),
        };
        f.write_all(bytes).at(&tmp)?;
        drop(f);
        self.rename_into(&tmp, &dest)?;
        Ok(digest)
    }

    /// The bytes of `digest`, checked against it. `Ok(None)` when the blob is
    /// missing or its bytes do not match (it is then removed, with a warning): the
    /// caller makes it again.
    pub fn read(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        let path = self.path(digest, false);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        if Digest::of(&bytes) != *digest {
            tracing::warn!(
                "the blob `{}` does not match its digest: removed, to be made again",
                path.display()
            );
            let _ = fs::remove_file(&path);
            return Ok(None);
        }
        Ok(Some(bytes))
    }

    /// `len` bytes at `offset` of the blob `digest`, checked against `part`, the
    /// digest of those bytes: what a kind that packs many small things into one
    /// blob reads of one of them, without reading the rest. `Ok(None)` when the
    /// blob is missing or the bytes do not match; the whole blob is then checked
    /// as [`Blobs::read`] does, and removed if it is damaged.
    pub fn read_part(
        &self,
        digest: &Digest,
        offset: u64,
        len: usize,
        part: &Digest,
    ) -> Result<Option<Vec<u8>>> {
        use std::os::unix::fs::FileExt;
        let path = self.path(digest, false);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        // A part the blob cannot hold is not read (nor its room allocated).
        let size = file.metadata().at(&path)?.len();
        if (offset.checked_add(len as u64)).is_none_or(|end| end > size) {
            drop(file);
            return Ok(self.read(digest)?.and(None));
        }
        let mut bytes = vec![0; len];
        let read = file.read_exact_at(&mut bytes, offset);
        drop(file);
        match read {
            Ok(()) if Digest::of(&bytes) == *part => Ok(Some(bytes)),
            Ok(()) => Ok(self.read(digest)?.and(None)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(self.read(digest)?.and(None)),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Which blobs are in the store, for a caller that knows which were there at
    /// `then`: a shard whose directory has not changed since (its change time,
    /// which no one can set back, as `touch` sets a modification time) still
    /// holds them, so only the shards written or swept since are read. Without
    /// `then`, or with one from the future, every shard is.
    pub fn present_since(&self, then: Option<std::time::SystemTime>) -> Result<Present> {
        let mut present = Present {
            listed: HashSet::new(),
            unchanged: [false; 256],
        };
        let then = then.filter(|t| *t <= std::time::SystemTime::now());
        for b in 0..=255u8 {
            let shard = self.dir.join(format!("{b:02x}"));
            let unchanged = then.is_some_and(|then| {
                fs::metadata(&shard)
                    .ok()
                    .and_then(|m| changed_at(&m))
                    .is_some_and(|changed| changed < then)
            });
            present.unchanged[usize::from(b)] = unchanged;
            if unchanged {
                continue;
            }
            let read = match fs::read_dir(&shard) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&shard, e)),
            };
            present.listed.extend(
                read.flatten()
                    .filter_map(|b| b.file_name().to_str().and_then(Digest::parse)),
            );
        }
        Ok(present)
    }

    /// Take the build lease (see [`Lease`]). Creates the store.
    pub fn lease(&self) -> Result<Lease> {
        fs::create_dir_all(&self.dir).at(&self.dir)?;
        let path = self.dir.join(".lock");
        let file = open_lock_file(&path)?;
        file.lock_shared().at(&path)?;
        Ok(Lease { _file: file })
    }

    /// A new temp path in the store (the store made if need be).
    fn tmp(&self) -> Result<PathBuf> {
        let dir = self.dir.join(".tmp");
        if !dir.is_dir() {
            fs::create_dir_all(&dir).at(&dir)?;
        }
        Ok(dir.join(unique_suffix()))
    }

    /// Make `tmp` read-only and rename it to `dest`, its shard made if need be.
    fn settle(&self, tmp: &Path, dest: &Path, exec: bool) -> Result<()> {
        set_read_only(tmp, exec).at(tmp)?;
        self.rename_into(tmp, dest)
    }

    /// Rename `tmp` to `dest`, its shard made if need be.
    fn rename_into(&self, tmp: &Path, dest: &Path) -> Result<()> {
        match fs::rename(tmp, dest) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let shard = dest.parent().expect("a blob is in a shard");
                fs::create_dir_all(shard).at(shard)?;
                fs::rename(tmp, dest).at(dest)
            }
            Err(e) => Err(Error::io(dest, e)),
        }
    }

    /// Store every file of `dir`, a staging dir of `tier_root`, and write its tree there (with
    /// `named`, the blobs the kind named: the kind makes sure they are stored,
    /// and whoever reads one finds it missing or damaged if it is not). Each file
    /// becomes a hard link to its blob, read-only, so identical files of any
    /// entries are stored once. The top-level marker and tree are not part of it.
    pub fn ingest(&self, tier_root: &Path, dir: &Path, named: Vec<Digest>) -> Result<Tree> {
        self.register_root(tier_root)?;
        let mut tree = Tree {
            format: TREE_FORMAT,
            named,
            ..Tree::default()
        };
        let walk = walkdir::WalkDir::new(dir)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name();
        for item in walk {
            let item = item.map_err(|e| {
                let path = e.path().unwrap_or(dir).to_owned();
                Error::io(&path, e.into())
            })?;
            let path = item.path();
            let rel = path
                .strip_prefix(dir)
                .expect("walkdir stays under its root");
            if item.depth() == 1
                && (rel == Path::new(crate::store::MARKER) || rel == Path::new(TREE))
            {
                continue;
            }
            let rel = rel.to_owned();
            let ft = item.file_type();
            if ft.is_dir() {
                tree.dirs.push(rel);
            } else if ft.is_symlink() {
                let target = fs::read_link(path).at(path)?;
                tree.links.push(TreeLink { path: rel, target });
            } else if ft.is_file() {
                let meta = item.metadata().map_err(|e| Error::io(path, e.into()))?;
                let digest = self.put_file(path, &meta)?;
                let exec = is_exec(&meta);
                tree.files.push(TreeFile {
                    path: rel,
                    digest,
                    exec,
                });
            }
            // Sockets and fifos are not content: left out of the tree.
        }
        crate::fsutil::write_atomic(&dir.join(TREE), &tree.encode())?;
        Ok(tree)
    }

    /// Store the file at `path` (whose metadata is `meta`) as a blob and make
    /// `path` a hard link to it. A blob already there is checked first: one
    /// whose bytes do not match its name is replaced. A file with other links
    /// (the build linked it from elsewhere, maybe from the project) is copied,
    /// never made read-only or adopted as the blob.
    fn put_file(&self, path: &Path, meta: &fs::Metadata) -> Result<Digest> {
        let exec = is_exec(meta);
        let digest = hash_file(path)?;
        let blob = self.path(&digest, exec);
        let foreign = links(meta) > 1;
        let sound = blob.is_file() && self.holds(&blob, &digest, meta.len());
        if !sound && !foreign {
            set_read_only(path, exec).at(path)?;
            let tmp = self.tmp()?;
            let adopted = fs::hard_link(path, &tmp).is_ok();
            if adopted {
                self.settle(&tmp, &blob, exec)?;
                return Ok(digest);
            }
        }
        if !sound {
            // A copy (another file system, or a file the build does not own),
            // renamed into place whole, over a damaged blob if there is one.
            let tmp = self.tmp()?;
            fs::copy(path, &tmp).at(&tmp)?;
            self.settle(&tmp, &blob, exec)?;
        }
        // Identical content is stored once: the file becomes the blob's link.
        // Where that is not possible (another file system, too many links) the
        // file stays as it is.
        let tmp = path.with_file_name(format!(".tiers-link-{}", unique_suffix()));
        if fs::hard_link(&blob, &tmp).is_ok() && fs::rename(&tmp, path).is_err() {
            let _ = fs::remove_file(&tmp);
        }
        Ok(digest)
    }

    /// Whether the blob at `blob` holds the bytes of `digest` (`len` of them).
    fn holds(&self, blob: &Path, digest: &Digest, len: u64) -> bool {
        fs::metadata(blob).is_ok_and(|m| m.len() == len)
            && hash_file(blob).is_ok_and(|d| d == *digest)
    }

    /// Move the blobs an entry from a shared cache carried (`<dir>/.tiers-blobs/`)
    /// into the store, each checked against its name; returns their digests. A
    /// blob whose bytes do not match its name rejects the entry.
    pub fn take_carried(&self, dir: &Path) -> Result<Vec<Digest>> {
        let carried = dir.join(CARRIED);
        let read = match fs::read_dir(&carried) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&carried, e)),
        };
        let mut named = Vec::new();
        for item in read {
            let item = item.at(&carried)?;
            let path = item.path();
            let name = item.file_name();
            let Some(digest) = name.to_str().and_then(Digest::parse) else {
                return Err(Error::Marker {
                    path,
                    why: "a carried blob must be named by its digest".into(),
                });
            };
            if !item.file_type().at(&path)?.is_file() {
                return Err(Error::Marker {
                    path,
                    why: "a carried blob must be a file".into(),
                });
            }
            if hash_file(&path)? != digest {
                return Err(Error::Marker {
                    path,
                    why: "the carried blob does not match its name".into(),
                });
            }
            let blob = self.path(&digest, false);
            if !blob.is_file() {
                self.settle(&path, &blob, false)?;
            }
            named.push(digest);
        }
        crate::fsutil::remove_dir(&carried)?;
        named.sort();
        Ok(named)
    }

    /// Remember that `root` holds entries naming blobs here, so a sweep reads them.
    ///
    /// A root inside the cache dir is recorded relative to it, so the record
    /// still holds when the cache dir moves with its project (or is copied);
    /// one outside is recorded by its absolute path.
    pub(crate) fn register_root(&self, root: &Path) -> Result<()> {
        let cache_dir = self.dir.parent().unwrap_or(&self.dir);
        let recorded = root.strip_prefix(cache_dir).unwrap_or(root);
        let dir = self.dir.join(".roots");
        let id = Key::of_bytes(recorded.as_os_str().as_encoded_bytes());
        let path = dir.join(&id.as_str()[..32]);
        if path.is_file() {
            return Ok(());
        }
        fs::create_dir_all(&dir).at(&dir)?;
        crate::fsutil::write_atomic(&path, recorded.as_os_str().as_encoded_bytes())
    }

    /// Record that retention removed `n` entries: a build sweeps once enough went.
    pub(crate) fn note_removed(&self, n: usize) {
        if n == 0 || !self.dir.is_dir() {
            return;
        }
        let path = self.dir.join(".removed");
        if let Ok(mut f) = File::options().create(true).append(true).open(&path) {
            let _ = f.write_all(&vec![b'.'; n]);
        }
    }

    /// Whether enough entries went since the last sweep for a build to sweep.
    pub(crate) fn sweep_due(&self) -> bool {
        fs::metadata(self.dir.join(".removed")).is_ok_and(|m| m.len() >= SWEEP_AFTER)
    }

    /// Remove every blob no entry of a registered root names, if no build holds
    /// the lease; `Ok(None)` when one does (the sweep waits for another time). A
    /// root that cannot be read, or an entry whose tree cannot, stops the sweep
    /// before it removes anything.
    pub fn sweep(&self) -> Result<Option<Swept>> {
        if !self.dir.is_dir() {
            return Ok(Some(Swept::default()));
        }
        let lock_path = self.dir.join(".lock");
        let lock = open_lock_file(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let marked = self.mark()?;
        let mut swept = Swept::default();
        for shard in fs::read_dir(&self.dir).at(&self.dir)?.flatten() {
            let name = shard.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.len() != 2 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue;
            }
            let Ok(read) = fs::read_dir(shard.path()) else {
                continue;
            };
            for blob in read.flatten() {
                let file = blob.file_name();
                let Some(file) = file.to_str() else { continue };
                // A blob a killed build was writing (no build writes now).
                let stale = file
                    .strip_prefix('.')
                    .and_then(|f| f.strip_suffix(".tmp"))
                    .is_some_and(crate::fsutil::is_unique_suffix);
                if stale {
                    let _ = fs::remove_file(blob.path());
                    continue;
                }
                let (hex, exec) = match file.strip_suffix(".x") {
                    Some(h) => (h, true),
                    None => (file, false),
                };
                let Some(digest) = Digest::parse(hex) else {
                    continue;
                };
                if marked.contains(&(digest, exec)) {
                    continue;
                }
                let bytes = blob.metadata().map_or(0, |m| m.len());
                if fs::remove_file(blob.path()).is_ok() {
                    swept.blobs += 1;
                    swept.bytes += bytes;
                }
            }
        }
        // Under the exclusive lock no build writes: what is left in `.tmp` is a
        // killed one's.
        if let Ok(read) = fs::read_dir(self.dir.join(".tmp")) {
            for t in read.flatten() {
                if crate::fsutil::is_unique_suffix(&t.file_name().to_string_lossy()) {
                    let _ = fs::remove_file(t.path());
                }
            }
        }
        let _ = fs::remove_file(self.dir.join(".removed"));
        drop(lock);
        Ok(Some(swept))
    }

    /// Every blob an entry of a registered root names.
    ///
    /// The roots are those recorded in `.roots/` and every directory of the
    /// cache dir that holds a `.tiers-root` (a cache dir moved or copied with
    /// its project holds its own roots wherever it now is).
    fn mark(&self) -> Result<HashSet<(Digest, bool)>> {
        let mut marked = HashSet::new();
        let cache_dir = self.dir.parent().unwrap_or(&self.dir).to_owned();
        let mut roots: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
        if let Ok(read) = fs::read_dir(&cache_dir) {
            for d in read.flatten() {
                if d.path().join(crate::store::ROOT_MARKER).is_file() {
                    roots.push((d.path(), None));
                }
            }
        }
        let roots_dir = self.dir.join(".roots");
        match fs::read_dir(&roots_dir) {
            Ok(read) => {
                for record in read.flatten() {
                    let bytes = fs::read(record.path()).at(record.path())?;
                    // Relative: inside this cache dir, wherever it is now.
                    roots.push((cache_dir.join(path_of_bytes(&bytes)), Some(record.path())));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&roots_dir, e)),
        }
        roots.sort();
        roots.dedup_by(|a, b| a.0 == b.0);
        for (root, record) in roots {
            let read = match fs::read_dir(&root) {
                Ok(r) => r,
                // The root went, and its entries with it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if let Some(record) = record {
                        let _ = fs::remove_file(record);
                    }
                    continue;
                }
                Err(e) => return Err(Error::io(&root, e)),
            };
            for item in read.flatten() {
                let name = item.file_name();
                if name.to_str().and_then(Key::parse).is_none() {
                    continue;
                }
                if let Some(tree) = Tree::read(&item.path())? {
                    marked.extend(tree.blob_names());
                }
            }
        }
        Ok(marked)
    }
}

/// Which blobs are in the store ([`Blobs::present_since`]).
pub struct Present {
    listed: HashSet<Digest>,
    unchanged: [bool; 256],
}

impl Present {
    /// Whether the blob of `digest` is there: one of those that were there at
    /// the time given to [`Blobs::present_since`], or any listed.
    pub fn contains(&self, digest: &Digest) -> bool {
        self.unchanged[usize::from(digest.0[0])] || self.listed.contains(digest)
    }
}

/// When the inode of `m` last changed (its ctime).
#[cfg(unix)]
fn changed_at(m: &fs::Metadata) -> Option<std::time::SystemTime> {
    use std::os::unix::fs::MetadataExt;
    let secs = u64::try_from(m.ctime()).ok()?;
    let nanos = u32::try_from(m.ctime_nsec()).ok()?;
    std::time::SystemTime::UNIX_EPOCH.checked_add(std::time::Duration::new(secs, nanos))
}

#[cfg(not(unix))]
fn changed_at(m: &fs::Metadata) -> Option<std::time::SystemTime> {
    m.modified().ok()
}

/// The SHA-256 of a file's bytes (the inputs' hasher).
fn hash_file(path: &Path) -> Result<Digest> {
    Ok(Digest(crate::inputs::hash_into(path, &mut Vec::new())?.0))
}

#[cfg(unix)]
fn links(m: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.nlink()
}

#[cfg(not(unix))]
fn links(_m: &fs::Metadata) -> u64 {
    1
}

#[cfg(unix)]
fn is_exec(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_exec(_m: &fs::Metadata) -> bool {
    false
}

/// A new file for a blob's bytes, read-only once closed.
fn create_read_only(path: &Path) -> io::Result<File> {
    let mut options = File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o444);
    }
    let f = options.open(path)?;
    #[cfg(not(unix))]
    set_read_only(path, false)?;
    Ok(f)
}

/// Blobs are never written again: read-only (and executable if `exec`).
fn set_read_only(path: &Path, exec: bool) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = if exec { 0o555 } else { 0o444 };
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        let mut p = fs::metadata(path)?.permissions();
        p.set_readonly(true);
        let _ = exec;
        fs::set_permissions(path, p)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    /// A tier root with one staged entry holding `files`.
    fn staged(root: &Path, key: char, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = root
            .join(".staging")
            .join(format!("{}-1-0", key.to_string().repeat(64)));
        for (rel, bytes) in files {
            let path = dir.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, bytes).unwrap();
        }
        dir
    }

    /// Publish a staged dir as the entry of its key (what the store does).
    fn publish(root: &Path, staged: &Path) -> PathBuf {
        let name = staged.file_name().unwrap().to_str().unwrap()[..64].to_owned();
        let dir = root.join(name);
        fs::rename(staged, &dir).unwrap();
        dir
    }

    fn blob_count(blobs: &Blobs) -> usize {
        fs::read_dir(blobs.dir())
            .unwrap()
            .flatten()
            .filter(|s| s.file_name().len() == 2)
            .map(|s| fs::read_dir(s.path()).unwrap().count())
            .sum()
    }

    #[test]
    fn a_part_is_read_alone_and_a_damaged_blob_found_through_it_is_removed() {
        use std::os::unix::fs::PermissionsExt;
        let cache = tempfile::tempdir().unwrap();
        let blobs = Blobs::of_cache_dir(cache.path());
        let pack = blobs.put(b"onetwothree").unwrap();
        let two = Digest::of(b"two");
        assert_eq!(
            blobs.read_part(&pack, 3, 3, &two).unwrap().as_deref(),
            Some(&b"two"[..])
        );
        // Beyond the end, or another part's digest: not this part.
        assert_eq!(blobs.read_part(&pack, 9, 3, &two).unwrap(), None);
        assert_eq!(
            blobs.read_part(&pack, 3, u32::MAX as usize, &two).unwrap(),
            None
        );
        assert_eq!(blobs.read_part(&pack, u64::MAX, 3, &two).unwrap(), None);
        assert_eq!(blobs.read_part(&pack, 0, 3, &two).unwrap(), None);
        assert!(blobs.contains(&pack), "a whole blob is kept");
        // The blob damaged in place: the part's check fails, the whole blob's
        // too, and it goes.
        let path = blobs.path(&pack, false);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        fs::write(&path, b"oneTWOthree").unwrap();
        assert_eq!(blobs.read_part(&pack, 3, 3, &two).unwrap(), None);
        assert!(!blobs.contains(&pack), "the damaged blob is removed");
        assert_eq!(blobs.read_part(&pack, 3, 3, &two).unwrap(), None);
    }

    #[test]
    fn identical_files_of_two_tiers_are_stored_once_and_linked() {
        let cache = tempfile::tempdir().unwrap();
        let blobs = Blobs::of_cache_dir(cache.path());
        let (a, b) = (cache.path().join("a"), cache.path().join("b"));
        let one = staged(&a, 'a', &[("out/x.txt", b"same"), ("y", b"other")]);
        let two = staged(&b, 'b', &[("x.txt", b"same")]);
        let t1 = blobs.ingest(&a, &one, vec![]).unwrap();
        let t2 = blobs.ingest(&b, &two, vec![]).unwrap();
        assert_eq!(blob_count(&blobs), 2);
        assert_eq!(t1.files[0].digest, t2.files[0].digest);
        assert_eq!(t1.dirs, [PathBuf::from("out")]);
        let ino = |p: PathBuf| fs::metadata(p).unwrap().ino();
        assert_eq!(ino(one.join("out/x.txt")), ino(two.join("x.txt")));
        assert_eq!(fs::read(two.join("x.txt")).unwrap(), b"same");
        assert_eq!(Tree::read(&two).unwrap().unwrap(), t2);
    }

    #[test]
    fn a_blob_that_does_not_match_its_digest_is_removed_when_read() {
        let cache = tempfile::tempdir().unwrap();
        let blobs = Blobs::of_cache_dir(cache.path());
        let d = blobs.put(b"symbols").unwrap();
        assert_eq!(blobs.read(&d).unwrap().unwrap(), b"symbols");
        let path = blobs.path(&d, false);
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        fs::write(&path, b"symbolz").unwrap();
        assert_eq!(blobs.read(&d).unwrap(), None);
        assert!(!path.exists());
        assert_eq!(blobs.put(b"symbols").unwrap(), d);
        assert_eq!(blobs.read(&d).unwrap().unwrap(), b"symbols");
    }

    #[test]
    fn a_sweep_keeps_what_entries_name_and_waits_for_builds() {
        let cache = tempfile::tempdir().unwrap();
        let blobs = Blobs::of_cache_dir(cache.path());
        let root = cache.path().join("t");
        let named = blobs.put(b"named by the entry").unwrap();
        let loose = blobs.put(b"named by no one").unwrap();
        let entry = publish(&root, &staged(&root, 'a', &[("f", b"file")]));
        let gone = publish(&root, &staged(&root, 'b', &[("g", b"gone")]));
        blobs.ingest(&root, &entry, vec![named]).unwrap();
        blobs.ingest(&root, &gone, vec![]).unwrap();
        fs::remove_dir_all(&gone).unwrap();
        // A build holds the lease: nothing is swept.
        let lease = blobs.lease().unwrap();
        assert_eq!(blobs.sweep().unwrap(), None);
        drop(lease);
        let swept = blobs.sweep().unwrap().unwrap();
        assert_eq!(swept.blobs, 2, "`loose` and the removed entry's file");
        assert!(blobs.contains(&named) && !blobs.contains(&loose));
        assert_eq!(fs::read(entry.join("f")).unwrap(), b"file");
        // Every entry gone: the store is empty.
        fs::remove_dir_all(&entry).unwrap();
        blobs.sweep().unwrap().unwrap();
        assert_eq!(blob_count(&blobs), 0);
        // A damaged tree stops the sweep before it removes anything.
        let kept = publish(&root, &staged(&root, 'c', &[("h", b"kept")]));
        blobs.ingest(&root, &kept, vec![]).unwrap();
        fs::write(kept.join(TREE), b"TTRE").unwrap();
        blobs.sweep().unwrap_err();
        assert_eq!(blob_count(&blobs), 1);
    }

    #[test]
    fn a_tree_round_trips_and_a_damaged_or_escaping_one_is_refused() {
        let tree = Tree {
            format: TREE_FORMAT,
            files: vec![TreeFile {
                path: PathBuf::from(std::ffi::OsStr::from_bytes(b"db/caf\xe9.txt")),
                digest: Digest::of(b"a"),
                exec: true,
            }],
            links: vec![TreeLink {
                path: "db/link".into(),
                target: "ünï.txt".into(),
            }],
            dirs: vec!["db".into()],
            named: vec![Digest::of(b"b")],
        };
        let bytes = tree.encode();
        assert_eq!(Tree::decode(&bytes).unwrap(), tree);
        for cut in 0..bytes.len() {
            assert!(
                Tree::decode(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes"
            );
        }
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            let mut t = tree.clone();
            t.dirs = vec![bad.into()];
            let e = Tree::decode(&t.encode()).unwrap_err();
            assert!(e.contains("not a path inside"), "{bad}: {e}");
        }
        // A count larger than the bytes left is refused before anything is made.
        let mut huge = bytes[..8].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(Tree::decode(&huge).unwrap_err().contains("too large"));
    }

    #[test]
    fn carried_blobs_are_checked_against_their_names() {
        let cache = tempfile::tempdir().unwrap();
        let blobs = Blobs::of_cache_dir(cache.path());
        let dir = cache.path().join("staged");
        let carried = dir.join(CARRIED);
        fs::create_dir_all(&carried).unwrap();
        let good = Digest::of(b"good");
        fs::write(carried.join(good.to_string()), b"good").unwrap();
        assert_eq!(blobs.take_carried(&dir).unwrap(), [good]);
        assert!(blobs.contains(&good) && !carried.exists());
        fs::create_dir_all(&carried).unwrap();
        fs::write(carried.join(Digest::of(b"x").to_string()), b"not x").unwrap();
        let e = blobs.take_carried(&dir).unwrap_err().to_string();
        assert!(e.contains("does not match its name"), "{e}");
        assert!(!blobs.contains(&Digest::of(b"x")));
    }
}
