//! What an entry holds, read back: the index, the graph buckets, the export.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::build::Counts;
use super::per_file;
use super::TierError;
use py_symbols::{codec, FileSymbols, ResolvedGraph, EXTRACTOR_VERSION, SCHEMA_VERSION};
use tiers_core::{Blobs, Digest};

/// Version of the export document (and of [`SymbolTable`]); bumped when its
/// shape changes. `FileSymbols` carries its own [`SCHEMA_VERSION`].
pub const EXPORT_SCHEMA_VERSION: u32 = 2;

/// Version of an entry's layout (`index.bin`, the directories).
pub(crate) const INDEX_FORMAT: u32 = 4;
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

impl Index {
    /// The index of `entry_dir`; an error if it is not of this layout.
    pub fn load(entry_dir: &Path) -> Result<Index, TierError> {
        let path = entry_dir.join(INDEX);
        let bytes = read(&path)?;
        let format = Index::format_of(&bytes).map_err(corrupt(&path))?;
        if format != INDEX_FORMAT {
            return Err(TierError::Corrupt {
                path,
                why: format!("its format is {format}, this version of tiers reads {INDEX_FORMAT}"),
            });
        }
        Index::decode(&bytes).map_err(corrupt(&path))
    }

    /// The index of `entry_dir` when its layout, extractor and schema are
    /// this build's; `None` for an entry another version of tiers made.
    pub fn load_current(entry_dir: &Path) -> Result<Option<Index>, TierError> {
        let path = entry_dir.join(INDEX);
        let bytes = read(&path)?;
        if Index::format_of(&bytes).map_err(corrupt(&path))? != INDEX_FORMAT {
            return Ok(None);
        }
        let index = Index::decode(&bytes).map_err(corrupt(&path))?;
        Ok(index.is_current().then_some(index))
    }

    fn format_of(bytes: &[u8]) -> Result<u32, codec::CodecError> {
        let mut r = codec::Reader::new(bytes);
        r.header(INDEX_MAGIC)?;
        r.u32()
    }

    pub fn save(&self, entry_dir: &Path) -> Result<(), TierError> {
        let path = entry_dir.join(INDEX);
        let bytes = self.encode().ok_or_else(|| TierError::Write {
            path: path.clone(),
            source: std::io::Error::other("a digest is not 64 lowercase hex digits"),
        })?;
        std::fs::write(&path, bytes).map_err(|source| TierError::Write { path, source })
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

    /// The binary layout of `codec.rs`: magic `TIDX`, the versions, the
    /// counts, the consulted module names, then files and graph buckets in
    /// key order, digests as their 32 bytes. `None` if a digest is not hex.
    fn encode(&self) -> Option<Vec<u8>> {
        let size: usize = self
            .files
            .iter()
            .map(|(p, f)| {
                90 + p.len() + f.module.as_ref().map_or(0, String::len) + 2 * f.deps.len()
            })
            .sum();
        let names = self.names.text.len() + 2 * self.names.len();
        let mut w = codec::Writer::with_capacity(64 + size + names + self.graph.len() * 40);
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
        self.names.encode(&mut w);
        w.len(self.files.len());
        for (path, f) in &self.files {
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
        w.len(self.graph.len());
        for (bucket, digest) in &self.graph {
            w.str(bucket);
            w.digest(digest)?;
        }
        Some(w.buf)
    }

    fn decode(bytes: &[u8]) -> Result<Index, codec::CodecError> {
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
        let names = Names::decode(&mut r)?;
        let files = sorted(&mut r, |r| {
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
        })?;
        let graph = sorted(&mut r, |r| r.digest())?;
        if let Some(bucket) = graph.keys().find(|b| !is_hex(b, 2)) {
            return Err(r.error(0, format!("`{bucket}` is not a graph bucket")));
        }
        r.finish()?;
        Ok(Index {
            format,
            extractor_version,
            schema_version,
            counts,
            files,
            names,
            graph,
        })
    }

    /// Whether per-file entries and resolutions of this index are those this
    /// build would make.
    pub fn is_current(&self) -> bool {
        self.extractor_version == EXTRACTOR_VERSION && self.schema_version == SCHEMA_VERSION
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A map written in key order: a count, then (key, value) pairs whose keys
/// must be strictly increasing.
fn sorted<T>(
    r: &mut codec::Reader<'_>,
    mut value: impl FnMut(&mut codec::Reader<'_>) -> Result<T, codec::CodecError>,
) -> Result<BTreeMap<String, T>, codec::CodecError> {
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
    // Already sorted: the map is built in one pass.
    Ok(pairs.into_iter().collect())
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
    let index = Index::load(entry_dir)?;
    let per_file = per_file::load(entry_dir)?;
    let mut files = Vec::with_capacity(index.files.len());
    for (path, f) in &index.files {
        files.push(TableFile {
            path: path.clone(),
            module: f.module.clone(),
            digest: f.digest.clone(),
            interface: f.interface.clone(),
            errors: f.errors,
            symbols: read_symbols(blobs, per_file::of(&per_file, entry_dir, &f.digest)?)?,
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
    hex: &str,
    what: &'static str,
) -> Result<Vec<u8>, TierError> {
    let digest = blob_digest(hex)?;
    match blobs.read(&digest) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(TierError::Blob {
            what,
            path: blobs.path(&digest, false),
        }),
        Err(e) => Err(TierError::Read {
            path: blobs.path(&digest, false),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// Graph bucket `digest`, from the store.
pub(crate) fn read_bucket(blobs: &Blobs, digest: &str) -> Result<Vec<u8>, TierError> {
    read_blob(blobs, digest, "graph bucket")
}

/// The per-file entry `digest`, from the store.
pub(crate) fn read_symbols(blobs: &Blobs, digest: &str) -> Result<FileSymbols, TierError> {
    let bytes = read_blob(blobs, digest, "per-file entry")?;
    let path = blobs.path(&blob_digest(digest)?, false);
    codec::decode_symbols(&bytes).map_err(corrupt(&path))
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
    let index = Index::load(entry_dir)?;
    let per_file = per_file::load(entry_dir)?;
    let w = |r: std::io::Result<()>| r.map_err(TierError::Output);
    let json = |r: serde_json::Result<()>| r.map_err(|e| TierError::Output(e.into()));
    w(write!(
        out,
        "{{\"schema_version\":{EXPORT_SCHEMA_VERSION},\"extractor_version\":{},\"symbols_schema_version\":{},\"files\":[",
        index.extractor_version, index.schema_version
    ))?;
    for (i, (path, f)) in index.files.iter().enumerate() {
        let symbols = read_symbols(blobs, per_file::of(&per_file, entry_dir, &f.digest)?)?;
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
    fn the_index_round_trips_and_a_damaged_one_is_an_error() {
        let index = sample();
        let bytes = index.encode().unwrap();
        assert_eq!(Index::decode(&bytes).unwrap(), index);
        for cut in 0..bytes.len() {
            assert!(
                Index::decode(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Index::decode(&longer).is_err(), "trailing bytes");
        // Digests are stored as bytes: one that is not hex cannot be written,
        // and none read back can name a file outside the entry.
        let mut escaping = index.clone();
        escaping
            .graph
            .insert("40".into(), format!("../../{}", "e".repeat(58)));
        assert!(escaping.encode().is_none());
        let mut dangling = index.clone();
        dangling.names = ["a"].into_iter().collect();
        let err = Index::decode(&dangling.encode().unwrap()).unwrap_err();
        assert!(err.what.contains("not in the table"), "{err}");
        let mut swapped = index.clone();
        swapped.format += 1;
        let dir = std::env::temp_dir().join(format!("tiers-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        swapped.save(&dir).unwrap();
        let err = Index::load(&dir).unwrap_err();
        let current = Index::load_current(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            matches!(&err, TierError::Corrupt { path, why } if path.ends_with("index.bin") && why.contains("format is 5")),
            "{err:?}"
        );
        assert!(
            matches!(current, Ok(None)),
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
