//! What an entry holds, read back: the index, the graph buckets, the export.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::build::Counts;
use super::per_file::{self, Loc};
use super::TierError;
use py_symbols::{codec, FileSymbols, ResolvedGraph, EXTRACTOR_VERSION, SCHEMA_VERSION};
use tiers_core::{Blobs, Digest};

/// Version of the export document (and of [`SymbolTable`]); bumped when its
/// shape changes. `FileSymbols` carries its own [`SCHEMA_VERSION`].
pub const EXPORT_SCHEMA_VERSION: u32 = 2;

/// Version of an entry's layout (`index.bin`, the directories).
pub(crate) const INDEX_FORMAT: u32 = 6;
pub(crate) const INDEX: &str = "index.bin";
const INDEX_MAGIC: [u8; 4] = *b"TIDX";

/// `index.bin`: one project state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    pub format: u32,
    pub extractor_version: u32,
    pub schema_version: u32,
    pub counts: Counts,
    /// Project-relative path → what is known of the file there.
    pub files: BTreeMap<String, IndexFile>,
    /// The module names resolutions consulted, which [`IndexFile::deps`]
    /// index (modules that do not exist count: their appearing changes the
    /// answer).
    pub names: Names,
    /// Graph bucket (2 hex digits) → digest of its blob.
    pub graph: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexFile {
    /// SHA-256 of the content: `per-file.bin` names its per-file entry.
    pub digest: String,
    /// `None` for a file without a module name (see [`py_symbols::module_name`]).
    pub module: Option<String>,
    /// Digest of the module's [`Interface`](py_symbols::Interface).
    pub interface: Option<String>,
    /// How many [`FileError`](py_symbols::FileError)s the per-file entry holds.
    pub errors: u32,
    /// The modules this file's resolution consulted, as indices into
    /// [`Index::names`].
    /// Shared: an edit carries over the lists of every file it did not
    /// resolve again, 11,000 of them, without copying one.
    pub deps: Arc<[u32]>,
}

/// A table of module names in one buffer: an index of 11,000 files holds
/// 36,000 of them, read, copied and written on every edit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Names {
    text: String,
    /// Where each name ends in `text`.
    ends: Vec<usize>,
}

impl Names {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Name `i`; panics past the end, as a slice does.
    pub fn get(&self, i: usize) -> &str {
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p]);
        &self.text[start..self.ends[i]]
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i))
    }

    pub fn push(&mut self, name: &str) {
        self.text.push_str(name);
        self.ends.push(self.text.len());
    }

    /// Written as a list of strings (`codec.rs`).
    fn encode(&self, w: &mut codec::Writer) {
        w.len(self.len());
        for name in self.iter() {
            w.str(name);
        }
    }

    fn decode(r: &mut codec::Reader<'_>) -> Result<Names, codec::CodecError> {
        let n = r.len("name count")?;
        let mut names = Names {
            text: String::new(),
            // A count is checked against the bytes left, not trusted further.
            ends: Vec::with_capacity(n.min(1 << 16)),
        };
        for _ in 0..n {
            let len = r.len("string length")?;
            let at = r.at;
            let name = std::str::from_utf8(r.take(len)?)
                .map_err(|e| r.error(at + e.valid_up_to(), "invalid UTF-8"))?;
            names.push(name);
        }
        Ok(names)
    }
}

impl<'a> FromIterator<&'a str> for Names {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Names {
        let mut names = Names::default();
        for name in iter {
            names.push(name);
        }
        names
    }
}

/// The bucket of a path: the first byte of its SHA-256, in hex.
pub(crate) fn bucket_of(path: &str) -> String {
    use sha2::Digest;
    format!("{:02x}", sha2::Sha256::digest(path.as_bytes())[0])
}

/// Where `index.bin` keeps its parts: the header names a blob of module
/// names and the row chunks, in path order, each a blob of the cache's store.
/// A chunk ends after a row whose path hashes to a multiple of
/// [`CHUNK_ROWS`], so its bounds move only with the paths beside them: a
/// one-file edit writes one chunk of some 128 rows, not the whole index.
const CHUNK_ROWS: u64 = 128;
const CHUNK_MAGIC: [u8; 4] = *b"TIXC";
const NAMES_MAGIC: [u8; 4] = *b"TINM";

/// Whether the row of `path` ends its chunk (FNV-1a of the path).
fn ends_chunk(path: &str) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h.is_multiple_of(CHUNK_ROWS)
}

/// The digests of an index's parts, for the build that starts from it: the
/// names blob, and each chunk by its first and last path and row count.
#[derive(Debug, Default)]
pub(crate) struct Parts {
    names: String,
    chunks: HashMap<(String, String, usize), String>,
}

/// `index.bin` itself: the versions, the counts, the names blob, the chunks
/// and the graph buckets.
struct Header {
    format: u32,
    extractor_version: u32,
    schema_version: u32,
    counts: Counts,
    names: String,
    chunks: Vec<String>,
    graph: BTreeMap<String, String>,
}

impl Index {
    /// The index of `entry_dir`, its parts read from `blobs`; an error if it
    /// is not of this layout.
    pub fn load(entry_dir: &Path, blobs: &Blobs) -> Result<Index, TierError> {
        Index::load_with_parts(entry_dir, blobs).map(|(index, _)| index)
    }

    /// [`Index::load`], with the digests of its parts: a build that starts
    /// from it names the parts it leaves as they are instead of writing them.
    pub fn load_with_parts(entry_dir: &Path, blobs: &Blobs) -> Result<(Index, Parts), TierError> {
        let path = entry_dir.join(INDEX);
        let bytes = read(&path)?;
        let format = Index::format_of(&bytes).map_err(corrupt(&path))?;
        if format != INDEX_FORMAT {
            return Err(TierError::Corrupt {
                path,
                why: format!("its format is {format}, this version of tiers reads {INDEX_FORMAT}"),
            });
        }
        Index::assemble(&path, &bytes, blobs)
    }

    /// The index of `entry_dir` when its layout, extractor and schema are
    /// this build's; `None` for an entry another version of tiers made.
    pub fn load_current(
        entry_dir: &Path,
        blobs: &Blobs,
    ) -> Result<Option<(Index, Parts)>, TierError> {
        let path = entry_dir.join(INDEX);
        let bytes = read(&path)?;
        if Index::format_of(&bytes).map_err(corrupt(&path))? != INDEX_FORMAT {
            return Ok(None);
        }
        let (index, parts) = Index::assemble(&path, &bytes, blobs)?;
        Ok(index.is_current().then_some((index, parts)))
    }

    fn format_of(bytes: &[u8]) -> Result<u32, codec::CodecError> {
        let mut r = codec::Reader::new(bytes);
        r.header(INDEX_MAGIC)?;
        r.u32()
    }

    /// The header at `path` and the parts it names.
    fn assemble(path: &Path, bytes: &[u8], blobs: &Blobs) -> Result<(Index, Parts), TierError> {
        let header = Header::decode(bytes).map_err(corrupt(path))?;
        let names_blob = blob_digest(&header.names)?;
        let names_bytes = read_blob(blobs, &names_blob, "index part")?;
        let names = {
            let mut r = codec::Reader::new(&names_bytes);
            r.header(NAMES_MAGIC)
                .and_then(|()| Names::decode(&mut r))
                .and_then(|n| r.finish().map(|()| n))
                .map_err(corrupt(&blobs.path(&names_blob, false)))?
        };
        // The chunks are read and decoded on every core.
        let decoded = super::build::par_map(&header.chunks, |chunk| {
            let digest = blob_digest(chunk)?;
            let bytes = read_blob(blobs, &digest, "index part")?;
            let at = blobs.path(&digest, false);
            let mut r = codec::Reader::new(&bytes);
            r.header(CHUNK_MAGIC).map_err(corrupt(&at))?;
            let rows = sorted_vec(&mut r, |r| {
                let file = IndexFile {
                    digest: r.digest()?,
                    module: r.opt_str()?,
                    interface: r.opt(codec::Reader::digest)?,
                    errors: r.u32()?,
                    deps: r.vec(codec::Reader::u32)?.into(),
                };
                if let Some(&id) = file.deps.iter().find(|&&id| id as usize >= names.len()) {
                    return Err(r.error(r.at, format!("module name {id} is not in the table")));
                }
                Ok(file)
            })
            .and_then(|m| r.finish().map(|()| m))
            .map_err(corrupt(&at))?;
            Ok::<_, TierError>((at, rows))
        });
        let mut rows: Vec<(String, IndexFile)> = Vec::with_capacity(header.counts.files);
        let mut parts = Parts {
            names: header.names.clone(),
            chunks: HashMap::new(),
        };
        for (chunk, digest) in decoded.into_iter().zip(&header.chunks) {
            let (at, decoded) = chunk?;
            if let (Some((first, _)), Some((last, _))) = (decoded.first(), decoded.last()) {
                parts
                    .chunks
                    .insert((first.clone(), last.clone(), decoded.len()), digest.clone());
            }
            if let (Some((last, _)), Some((first, _))) = (rows.last(), decoded.first()) {
                if last >= first {
                    return Err(TierError::Corrupt {
                        path: at,
                        why: "its rows do not follow the chunk before".into(),
                    });
                }
            }
            rows.extend(decoded);
        }
        let index = Index {
            format: header.format,
            extractor_version: header.extractor_version,
            schema_version: header.schema_version,
            counts: header.counts,
            files: rows.into_iter().collect(),
            names,
            graph: header.graph,
        };
        Ok((index, parts))
    }

    /// Write `index.bin` into `entry_dir` and its parts through `put`, which
    /// stores a blob and returns its digest; returns the parts' digests, which
    /// the entry names. A part whose rows (or names) are those of the index
    /// it was built from, `from`, is named as it is, not written again.
    pub fn save(
        &self,
        entry_dir: &Path,
        from: Option<(&Index, &Parts)>,
        put: impl Fn(&[u8]) -> Result<String, TierError> + Sync,
    ) -> Result<Vec<String>, TierError> {
        let path = entry_dir.join(INDEX);
        let not_hex = || TierError::Write {
            path: path.clone(),
            source: std::io::Error::other("a digest is not 64 lowercase hex digits"),
        };
        let names = match from {
            Some((old, parts)) if old.names == self.names => parts.names.clone(),
            _ => {
                let mut w =
                    codec::Writer::with_capacity(self.names.text.len() + 2 * self.names.len() + 16);
                w.header(NAMES_MAGIC);
                self.names.encode(&mut w);
                put(&w.buf)?
            }
        };
        // Chunks: runs of rows, each ending at a row whose path ends a chunk.
        let mut bounds = Vec::new();
        let mut start = 0;
        let rows: Vec<(&String, &IndexFile)> = self.files.iter().collect();
        for (i, (path, _)) in rows.iter().enumerate() {
            if ends_chunk(path) || i + 1 == rows.len() {
                bounds.push((start, i + 1));
                start = i + 1;
            }
        }
        // Each row's line in the old index: both are in path order, walked
        // side by side.
        let old_rows: Vec<Option<&IndexFile>> = match from {
            Some((old, _)) => {
                let mut old = old.files.iter().peekable();
                rows.iter()
                    .map(|(path, _)| {
                        while old.next_if(|(p, _)| p.as_str() < path.as_str()).is_some() {}
                        old.next_if(|(p, _)| *p == *path).map(|(_, f)| f)
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        let unchanged = |from_row: usize, to_row: usize| -> Option<String> {
            let (_, parts) = from?;
            let chunk = &rows[from_row..to_row];
            let key = (
                chunk[0].0.clone(),
                chunk[chunk.len() - 1].0.clone(),
                chunk.len(),
            );
            let digest = parts.chunks.get(&key)?;
            chunk
                .iter()
                .zip(&old_rows[from_row..to_row])
                .all(|((_, f), old)| old.is_some_and(|o| o == *f))
                .then(|| digest.clone())
        };
        let chunks = super::build::par_map(&bounds, |&(from, to)| {
            if let Some(digest) = unchanged(from, to) {
                return Some(Ok(digest));
            }
            let mut w = codec::Writer::with_capacity((to - from) * 120);
            w.header(CHUNK_MAGIC);
            w.len(to - from);
            for (path, f) in &rows[from..to] {
                w.str(path);
                w.digest(&f.digest)?;
                w.opt_str(&f.module);
                match &f.interface {
                    None => w.tag(0),
                    Some(d) => {
                        w.tag(1);
                        w.digest(d)?;
                    }
                }
                w.u32(f.errors);
                w.vec(&f.deps, |w, &id| w.u32(id));
            }
            Some(put(&w.buf))
        });
        let chunks = chunks
            .into_iter()
            .map(|c| c.ok_or_else(not_hex)?)
            .collect::<Result<Vec<_>, _>>()?;
        let header = Header {
            format: self.format,
            extractor_version: self.extractor_version,
            schema_version: self.schema_version,
            counts: self.counts.clone(),
            names,
            chunks,
            graph: self.graph.clone(),
        };
        let bytes = header.encode().ok_or_else(not_hex)?;
        std::fs::write(&path, bytes).map_err(|source| TierError::Write {
            path: path.clone(),
            source,
        })?;
        let mut parts = header.chunks;
        parts.push(header.names);
        Ok(parts)
    }

    /// Which path provides each module: the first in path order.
    pub fn modules(&self) -> BTreeMap<&str, &str> {
        let mut modules = BTreeMap::new();
        for (path, f) in &self.files {
            if let Some(m) = &f.module {
                modules.entry(m.as_str()).or_insert(path.as_str());
            }
        }
        modules
    }

    /// Drop the names no file refers to any more, once they are most of the
    /// table (edits leave names behind; a rebuild of the table costs a remap).
    pub fn compact_names(&mut self) {
        let mut used = vec![false; self.names.len()];
        for &id in self.files.values().flat_map(|f| f.deps.iter()) {
            if let Some(u) = used.get_mut(id as usize) {
                *u = true;
            }
        }
        let live = used.iter().filter(|u| **u).count();
        if live * 2 >= self.names.len() {
            return;
        }
        let mut new_id = vec![u32::MAX; self.names.len()];
        let mut names = Names::default();
        for (i, name) in self.names.iter().enumerate() {
            if used[i] {
                new_id[i] = names.len() as u32;
                names.push(name);
            }
        }
        for f in self.files.values_mut() {
            f.deps = f
                .deps
                .iter()
                .filter_map(|&id| new_id.get(id as usize).copied())
                .filter(|&n| n != u32::MAX)
                .collect();
        }
        self.names = names;
    }

    /// Whether per-file entries and resolutions of this index are those this
    /// build would make.
    pub fn is_current(&self) -> bool {
        self.extractor_version == EXTRACTOR_VERSION && self.schema_version == SCHEMA_VERSION
    }
}

impl Header {
    /// The binary layout of `codec.rs`: magic `TIDX`, the versions, the
    /// counts, the names blob, the chunk blobs in order, then the graph
    /// buckets in key order; digests as their 32 bytes. `None` if a digest is
    /// not hex.
    fn encode(&self) -> Option<Vec<u8>> {
        let mut w =
            codec::Writer::with_capacity(128 + 32 * self.chunks.len() + 40 * self.graph.len());
        w.header(INDEX_MAGIC);
        for n in [self.format, self.extractor_version, self.schema_version] {
            w.u32(n);
        }
        let c = &self.counts;
        for n in [
            c.files,
            c.parsed,
            c.reused,
            c.modules,
            c.resolved,
            c.resolve_reused,
            c.files_with_errors,
        ] {
            w.len(n);
        }
        w.digest(&self.names)?;
        w.len(self.chunks.len());
        for chunk in &self.chunks {
            w.digest(chunk)?;
        }
        w.len(self.graph.len());
        for (bucket, digest) in &self.graph {
            w.str(bucket);
            w.digest(digest)?;
        }
        Some(w.buf)
    }

    fn decode(bytes: &[u8]) -> Result<Header, codec::CodecError> {
        let mut r = codec::Reader::new(bytes);
        r.header(INDEX_MAGIC)?;
        let (format, extractor_version, schema_version) = (r.u32()?, r.u32()?, r.u32()?);
        let mut n = || r.u64().map(|n| n as usize);
        let counts = Counts {
            files: n()?,
            parsed: n()?,
            reused: n()?,
            modules: n()?,
            resolved: n()?,
            resolve_reused: n()?,
            files_with_errors: n()?,
        };
        let names = r.digest()?;
        let n = r.len("chunk count")?;
        let mut chunks = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            chunks.push(r.digest()?);
        }
        let graph = sorted(&mut r, |r| r.digest())?;
        if let Some(bucket) = graph.keys().find(|b| !is_hex(b, 2)) {
            return Err(r.error(0, format!("`{bucket}` is not a graph bucket")));
        }
        r.finish()?;
        Ok(Header {
            format,
            extractor_version,
            schema_version,
            counts,
            names,
            chunks,
            graph,
        })
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A map written in key order: a count, then (key, value) pairs whose keys
/// must be strictly increasing.
fn sorted<T>(
    r: &mut codec::Reader<'_>,
    value: impl FnMut(&mut codec::Reader<'_>) -> Result<T, codec::CodecError>,
) -> Result<BTreeMap<String, T>, codec::CodecError> {
    // Already sorted: the map is built in one pass.
    Ok(sorted_vec(r, value)?.into_iter().collect())
}

/// [`sorted`], the pairs as they are.
fn sorted_vec<T>(
    r: &mut codec::Reader<'_>,
    mut value: impl FnMut(&mut codec::Reader<'_>) -> Result<T, codec::CodecError>,
) -> Result<Vec<(String, T)>, codec::CodecError> {
    let n = r.len("map size")?;
    let mut pairs: Vec<(String, T)> = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let at = r.at;
        let key = r.str()?;
        if pairs.last().is_some_and(|(last, _)| *last >= key) {
            return Err(r.error(at, "keys not in strictly increasing order"));
        }
        let v = value(r)?;
        pairs.push((key, v));
    }
    Ok(pairs)
}

/// The whole symbol table of one project state, as typed structs: what
/// [`load_table`] returns and what `tiers export` writes (as JSON, this shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolTable {
    /// [`EXPORT_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// [`EXTRACTOR_VERSION`] of the extractor that made the per-file entries.
    pub extractor_version: u32,
    /// [`SCHEMA_VERSION`] of [`FileSymbols`].
    pub symbols_schema_version: u32,
    /// Every input file, in path order.
    pub files: Vec<TableFile>,
    /// Cross-file facts: each named module's resolved imports and calls.
    pub graph: ResolvedGraph,
}

/// One file of a [`SymbolTable`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFile {
    /// Project-relative, `/`-separated.
    pub path: String,
    /// Dotted module name; `None` when the path has none.
    pub module: Option<String>,
    /// SHA-256 (hex) of the content.
    pub digest: String,
    /// SHA-256 (hex) of the module's interface (what other modules can see
    /// of it): it changes only when a change can affect other modules.
    /// `None` when the path has no module name.
    pub interface: Option<String>,
    /// How many entries `symbols.errors` has.
    pub errors: u32,
    pub symbols: FileSymbols,
}

/// Read the symbol table of an entry (a `symtab` tier's path, as `tiers paths`
/// reports it), whose per-file entries and graph buckets are in `blobs`, the
/// store of the cache dir it is in.
pub fn load_table(entry_dir: &Path, blobs: &Blobs) -> Result<SymbolTable, TierError> {
    let index = Index::load(entry_dir, blobs)?;
    let per_file = per_file::load(entry_dir, blobs)?;
    let mut files = Vec::with_capacity(index.files.len());
    for (path, f) in &index.files {
        files.push(TableFile {
            path: path.clone(),
            module: f.module.clone(),
            digest: f.digest.clone(),
            interface: f.interface.clone(),
            errors: f.errors,
            symbols: read_symbols(blobs, &per_file::of(&per_file, entry_dir, &f.digest)?)?,
        });
    }
    let mut graph = ResolvedGraph {
        files: BTreeMap::new(),
        modules: index
            .modules()
            .into_iter()
            .map(|(m, p)| (m.to_owned(), p.to_owned()))
            .collect(),
    };
    for digest in index.graph.values() {
        let bytes = read_bucket(blobs, digest)?;
        let path = blobs.path(&blob_digest(digest)?, false);
        for (file, body) in codec::decode_bucket(&bytes).map_err(corrupt(&path))? {
            let resolved = codec::decode_resolved(body).map_err(corrupt(&path))?;
            graph.files.insert(file, resolved);
        }
    }
    Ok(SymbolTable {
        schema_version: EXPORT_SCHEMA_VERSION,
        extractor_version: index.extractor_version,
        symbols_schema_version: index.schema_version,
        files,
        graph,
    })
}

/// A digest of the index as the store's.
pub(crate) fn blob_digest(hex: &str) -> Result<Digest, TierError> {
    Digest::parse(hex).ok_or_else(|| TierError::Corrupt {
        path: INDEX.into(),
        why: format!("`{hex}` is not a digest"),
    })
}

/// A blob of the store, checked against its digest: one missing or damaged is
/// an error naming it ([`TierError::Blob`]).
pub(crate) fn read_blob(
    blobs: &Blobs,
    digest: &Digest,
    what: &'static str,
) -> Result<Vec<u8>, TierError> {
    match blobs.read(digest) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(TierError::Blob {
            what,
            path: blobs.path(digest, false),
        }),
        Err(e) => Err(TierError::Read {
            path: blobs.path(digest, false),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// Graph bucket `digest`, from the store.
pub(crate) fn read_bucket(blobs: &Blobs, digest: &str) -> Result<Vec<u8>, TierError> {
    read_blob(blobs, &blob_digest(digest)?, "graph bucket")
}

/// The per-file entry at `loc`, from its pack in the store, checked against
/// its digest and decoded whole: one missing or damaged is an error naming the
/// pack ([`TierError::Blob`]).
pub(crate) fn read_symbols(blobs: &Blobs, loc: &Loc) -> Result<FileSymbols, TierError> {
    read_symbols_with(blobs, loc, codec::decode_symbols)
}

/// [`read_symbols`], decoded by `decode`.
pub(crate) fn read_symbols_with(
    blobs: &Blobs,
    loc: &Loc,
    decode: fn(&[u8]) -> Result<FileSymbols, codec::CodecError>,
) -> Result<FileSymbols, TierError> {
    let pack = Digest::from_bytes(loc.pack);
    let path = blobs.path(&pack, false);
    let read = blobs.read_part(
        &pack,
        u64::from(loc.offset),
        loc.len as usize,
        &Digest::from_bytes(loc.symbols),
    );
    match read {
        Ok(Some(bytes)) => decode(&bytes).map_err(corrupt(&path)),
        Ok(None) => Err(TierError::Blob {
            what: "pack of per-file entries",
            path,
        }),
        Err(e) => Err(TierError::Read {
            path,
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TierError> {
    std::fs::read(path).map_err(|source| TierError::Read {
        path: path.to_owned(),
        source,
    })
}

fn corrupt(path: &Path) -> impl Fn(codec::CodecError) -> TierError + '_ {
    move |e| TierError::Corrupt {
        path: path.to_owned(),
        why: e.to_string(),
    }
}

/// Write the table of `entry_dir` (its blobs in `blobs`) as one JSON document
/// (the shape of [`SymbolTable`]), streaming: one file's symbols in memory at a
/// time. What `tiers export` writes.
pub fn export(entry_dir: &Path, blobs: &Blobs, out: &mut dyn Write) -> Result<(), TierError> {
    let index = Index::load(entry_dir, blobs)?;
    let per_file = per_file::load(entry_dir, blobs)?;
    let w = |r: std::io::Result<()>| r.map_err(TierError::Output);
    let json = |r: serde_json::Result<()>| r.map_err(|e| TierError::Output(e.into()));
    w(write!(
        out,
        "{{\"schema_version\":{EXPORT_SCHEMA_VERSION},\"extractor_version\":{},\"symbols_schema_version\":{},\"files\":[",
        index.extractor_version, index.schema_version
    ))?;
    for (i, (path, f)) in index.files.iter().enumerate() {
        let symbols = read_symbols(blobs, &per_file::of(&per_file, entry_dir, &f.digest)?)?;
        w(write!(
            out,
            "{}{{\"path\":{},\"module\":{},\"digest\":{},\"interface\":{},\"errors\":{},\"symbols\":",
            if i == 0 { "\n" } else { ",\n" },
            js(path),
            js(&f.module),
            js(&f.digest),
            js(&f.interface),
            f.errors
        ))?;
        json(serde_json::to_writer(&mut *out, &symbols))?;
        w(out.write_all(b"}"))?;
    }
    w(out.write_all(b"\n],\"graph\":{\"files\":{"))?;
    // Buckets are by hash; the document lists paths in order.
    let mut buckets: Vec<(PathBuf, Vec<u8>)> = Vec::with_capacity(index.graph.len());
    for digest in index.graph.values() {
        let path = blobs.path(&blob_digest(digest)?, false);
        buckets.push((path, read_bucket(blobs, digest)?));
    }
    let mut modules: BTreeMap<String, (&Path, &[u8])> = BTreeMap::new();
    for (path, bytes) in &buckets {
        for (file, body) in codec::decode_bucket(bytes).map_err(corrupt(path))? {
            modules.insert(file, (path.as_path(), body));
        }
    }
    for (i, (file, (bucket, body))) in modules.iter().enumerate() {
        let resolved = codec::decode_resolved(body).map_err(corrupt(bucket))?;
        w(write!(
            out,
            "{}{}:",
            if i == 0 { "\n" } else { ",\n" },
            js(file)
        ))?;
        json(serde_json::to_writer(&mut *out, &resolved))?;
    }
    w(write!(
        out,
        "\n}},\"modules\":{}}}}}\n",
        js(&index.modules())
    ))?;
    Ok(())
}

fn js<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Index {
        let row = |module: Option<&str>, errors| IndexFile {
            digest: "ab".repeat(32),
            module: module.map(str::to_owned),
            interface: module.map(|_| "cd".repeat(32)),
            errors,
            deps: module.map_or(vec![], |_| vec![0, 1]).into(),
        };
        Index {
            format: INDEX_FORMAT,
            extractor_version: EXTRACTOR_VERSION,
            schema_version: SCHEMA_VERSION,
            counts: Counts {
                files: 2,
                parsed: 1,
                reused: 1,
                modules: 1,
                resolved: 1,
                resolve_reused: 0,
                files_with_errors: 1,
            },
            files: [
                ("a/__init__.py".to_owned(), row(None, 0)),
                ("a/ünï.py".to_owned(), row(Some("a.ünï"), 2)),
            ]
            .into_iter()
            .collect(),
            names: ["a", "os.path"].into_iter().collect(),
            graph: [("3f".to_owned(), "ef".repeat(32))].into(),
        }
    }

    #[test]
    fn the_index_round_trips_in_chunks_and_a_damaged_one_is_an_error() {
        let cache = tempfile::tempdir().unwrap();
        let blobs = Blobs::of_cache_dir(cache.path());
        let put = |b: &[u8]| Ok(blobs.put(b).unwrap().to_string());
        let dir = cache.path().join("entry");
        std::fs::create_dir_all(&dir).unwrap();
        // Enough rows for several chunks.
        let mut index = sample();
        let row = index.files.values().next().unwrap().clone();
        for i in 0..1000 {
            index.files.insert(format!("m/{i:04}.py"), row.clone());
        }
        let parts = index.save(&dir, None, put).unwrap();
        assert!(parts.len() > 3, "{} parts", parts.len());
        assert_eq!(Index::load(&dir, &blobs).unwrap(), index);
        // One more row changes one chunk (and the header), not the others.
        index.files.insert("m/0500a.py".into(), row.clone());
        let again = index.save(&dir, None, put).unwrap();
        let new: Vec<_> = again.iter().filter(|p| !parts.contains(p)).collect();
        assert_eq!(new.len(), 1, "{new:?}");
        // Saved from the index it was built from, only the changed chunk (and
        // nothing else) is written.
        let (old, parts) = Index::load_with_parts(&dir, &blobs).unwrap();
        let mut edited = old.clone();
        edited.files.get_mut("m/0007.py").unwrap().errors += 1;
        let written = std::sync::atomic::AtomicUsize::new(0);
        let counted = |b: &[u8]| {
            written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            put(b)
        };
        let third = edited.save(&dir, Some((&old, &parts)), counted).unwrap();
        assert_eq!(written.into_inner(), 1);
        assert_eq!(third.iter().filter(|p| !again.contains(p)).count(), 1);
        assert_eq!(Index::load(&dir, &blobs).unwrap(), edited);
        index.save(&dir, None, put).unwrap();
        // Every prefix of the header is an error, and so is a damaged part.
        let bytes = std::fs::read(dir.join(INDEX)).unwrap();
        for cut in 0..bytes.len() {
            assert!(
                Header::decode(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes"
            );
        }
        let chunk = blobs.path(&blob_digest(new[0]).unwrap(), false);
        std::fs::write(&chunk, b"damaged").unwrap();
        let err = Index::load(&dir, &blobs).unwrap_err();
        assert!(matches!(err, TierError::Blob { .. }), "{err:?}");
        // Digests are stored as bytes: one that is not hex cannot be written,
        // and none read back can name a file outside the store.
        let mut escaping = index.clone();
        escaping
            .graph
            .insert("40".into(), format!("../../{}", "e".repeat(58)));
        assert!(escaping.save(&dir, None, put).is_err());
        let mut dangling = sample();
        dangling.names = ["a"].into_iter().collect();
        dangling.save(&dir, None, put).unwrap();
        let err = Index::load(&dir, &blobs).unwrap_err();
        assert!(
            err.to_string().contains("not in the table")
                || format!("{err:?}").contains("not in the table"),
            "{err:?}"
        );
        let mut swapped = sample();
        swapped.format += 1;
        swapped.save(&dir, None, put).unwrap();
        let err = Index::load(&dir, &blobs).unwrap_err();
        assert!(
            matches!(&err, TierError::Corrupt { path, why } if path.ends_with("index.bin") && why.contains("format is 7")),
            "{err:?}"
        );
        assert!(
            matches!(Index::load_current(&dir, &blobs), Ok(None)),
            "another layout is not this build's"
        );
    }

    #[test]
    fn unused_names_are_dropped_once_they_are_most_of_the_table() {
        let mut index = sample();
        let ten: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        index.names = ten.iter().map(String::as_str).collect();
        for f in index.files.values_mut() {
            f.deps = Arc::new([]);
        }
        index.files.values_mut().last().unwrap().deps = Arc::new([7, 3]);
        index.compact_names();
        assert_eq!(index.names.iter().collect::<Vec<_>>(), ["m3", "m7"]);
        assert_eq!(*index.files.values().last().unwrap().deps, [1, 0]);
    }
}
