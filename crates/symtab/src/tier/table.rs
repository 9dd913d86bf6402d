//! What an entry holds, read back: the index, the graph buckets, the export.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::build::Counts;
use super::TierError;
use crate::{codec, FileSymbols, ResolvedGraph, EXTRACTOR_VERSION, SCHEMA_VERSION};

/// Version of the export document (and of [`SymbolTable`]); bumped when its
/// shape changes. `FileSymbols` carries its own [`SCHEMA_VERSION`].
pub const EXPORT_SCHEMA_VERSION: u32 = 2;

/// Version of an entry's layout (`index.bin`, `deps.bin`, the directories).
pub(crate) const INDEX_FORMAT: u32 = 2;
pub(crate) const INDEX: &str = "index.bin";
const INDEX_MAGIC: [u8; 4] = *b"TIDX";
pub(crate) const DEPS: &str = "deps.bin";
pub(crate) const FILES: &str = "files";
pub(crate) const GRAPH: &str = "graph";

/// `index.bin`: one project state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Index {
    pub format: u32,
    pub extractor_version: u32,
    pub schema_version: u32,
    pub counts: Counts,
    /// Project-relative path → what is known of the file there.
    pub files: BTreeMap<String, IndexFile>,
    /// Module name → the path that provides it (the first in path order).
    pub modules: BTreeMap<String, String>,
    /// Graph bucket (2 hex digits) → digest of its file under `graph/`.
    pub graph: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexFile {
    /// SHA-256 of the content: its per-file entry is `files/<digest>.sym`.
    pub digest: String,
    /// `None` for a file without a module name (see [`crate::module_name`]).
    pub module: Option<String>,
    /// Digest of the module's [`Interface`](crate::Interface).
    pub interface: Option<String>,
    /// How many [`FileError`](crate::FileError)s the per-file entry holds.
    pub errors: u32,
}

/// `deps.bin`: the modules each file's resolution consulted, as indices into
/// `names` (modules that do not exist count: their appearing changes the answer).
#[derive(Debug, Clone, Default)]
pub(crate) struct Deps {
    pub names: Vec<String>,
    pub files: BTreeMap<String, Vec<u32>>,
}

impl Deps {
    pub fn load(entry_dir: &Path) -> Result<Deps, TierError> {
        let path = entry_dir.join(DEPS);
        let (names, files) = codec::decode_deps(&read(&path)?).map_err(corrupt(&path))?;
        Ok(Deps { names, files })
    }

    pub fn save(&self, entry_dir: &Path) -> Result<(), TierError> {
        let path = entry_dir.join(DEPS);
        std::fs::write(&path, codec::encode_deps(&self.names, &self.files))
            .map_err(|source| TierError::Write { path, source })
    }

    /// Drop the names no file refers to any more, once they are most of the
    /// table (edits leave names behind; a rebuild of the table costs a remap).
    pub fn compact(&mut self) {
        let mut used = vec![false; self.names.len()];
        for &id in self.files.values().flatten() {
            if let Some(u) = used.get_mut(id as usize) {
                *u = true;
            }
        }
        let live = used.iter().filter(|u| **u).count();
        if live * 2 >= self.names.len() {
            return;
        }
        let mut new_id = vec![u32::MAX; self.names.len()];
        let mut names = Vec::with_capacity(live);
        for (i, name) in std::mem::take(&mut self.names).into_iter().enumerate() {
            if used[i] {
                new_id[i] = names.len() as u32;
                names.push(name);
            }
        }
        for ids in self.files.values_mut() {
            ids.retain(|id| new_id.get(*id as usize).is_some_and(|&n| n != u32::MAX));
            for id in ids.iter_mut() {
                *id = new_id[*id as usize];
            }
        }
        self.names = names;
    }
}

/// The bucket of a path: the first byte of its SHA-256, in hex.
pub(crate) fn bucket_of(path: &str) -> String {
    use sha2::Digest;
    format!("{:02x}", sha2::Sha256::digest(path.as_bytes())[0])
}

impl Index {
    pub fn load(entry_dir: &Path) -> Result<Index, TierError> {
        let path = entry_dir.join(INDEX);
        let index = Index::decode(&read(&path)?).map_err(corrupt(&path))?;
        if index.format != INDEX_FORMAT {
            return Err(TierError::Corrupt {
                path,
                why: format!(
                    "its format is {}, this version of tiers reads {INDEX_FORMAT}",
                    index.format
                ),
            });
        }
        Ok(index)
    }

    pub fn save(&self, entry_dir: &Path) -> Result<(), TierError> {
        let path = entry_dir.join(INDEX);
        std::fs::write(&path, self.encode()).map_err(|source| TierError::Write { path, source })
    }

    /// The binary layout of `codec.rs`: magic `TIDX`, the versions, the
    /// counts, then files, modules and graph buckets in key order.
    fn encode(&self) -> Vec<u8> {
        let mut w = codec::Writer::with_capacity(64 + self.files.len() * 200);
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
            c.pruned,
        ] {
            w.len(n);
        }
        w.len(self.files.len());
        for (path, f) in &self.files {
            w.str(path);
            w.str(&f.digest);
            w.opt_str(&f.module);
            w.opt_str(&f.interface);
            w.u32(f.errors);
        }
        for map in [&self.modules, &self.graph] {
            w.len(map.len());
            for (k, v) in map {
                w.str(k);
                w.str(v);
            }
        }
        w.buf
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
            pruned: n()?,
        };
        let files = sorted(&mut r, |r| {
            Ok(IndexFile {
                digest: digest(r)?,
                module: r.opt_str()?,
                interface: r.opt(digest)?,
                errors: r.u32()?,
            })
        })?;
        let modules = sorted(&mut r, |r| r.str())?;
        // Digests name files: nothing but 64 hex digits may become a path.
        let graph = sorted(&mut r, digest)?;
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
            modules,
            graph,
        })
    }

    /// Whether per-file entries and resolutions of this index are those this
    /// build would make.
    pub fn is_current(&self) -> bool {
        self.extractor_version == EXTRACTOR_VERSION && self.schema_version == SCHEMA_VERSION
    }
}

/// A SHA-256 digest: 64 lowercase hex digits, else an error.
fn digest(r: &mut codec::Reader<'_>) -> Result<String, codec::CodecError> {
    let at = r.at;
    let d = r.str()?;
    if !is_hex(&d, 64) {
        return Err(r.error(at, "not a SHA-256 digest"));
    }
    Ok(d)
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
    let mut map = BTreeMap::new();
    for _ in 0..n {
        let at = r.at;
        let key = r.str()?;
        if map.last_key_value().is_some_and(|(last, _)| *last >= key) {
            return Err(r.error(at, "keys not in strictly increasing order"));
        }
        let v = value(r)?;
        map.insert(key, v);
    }
    Ok(map)
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
/// reports it).
pub fn load_table(entry_dir: &Path) -> Result<SymbolTable, TierError> {
    let index = Index::load(entry_dir)?;
    let mut files = Vec::with_capacity(index.files.len());
    for (path, f) in &index.files {
        files.push(TableFile {
            path: path.clone(),
            module: f.module.clone(),
            digest: f.digest.clone(),
            interface: f.interface.clone(),
            errors: f.errors,
            symbols: read_symbols(&file_path(entry_dir, &f.digest))?,
        });
    }
    let mut graph = ResolvedGraph {
        files: BTreeMap::new(),
        modules: index.modules.clone(),
    };
    for digest in index.graph.values() {
        let path = graph_path(entry_dir, digest);
        let bytes = read(&path)?;
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

/// `files/<digest>.sym`: one content's [`FileSymbols`], in the binary
/// encoding of `codec.rs`.
pub(crate) fn file_path(entry_dir: &Path, digest: &str) -> PathBuf {
    entry_dir
        .join(FILES)
        .join(format!("{digest}.{SYMBOLS_EXT}"))
}

/// `graph/<digest>.bin`: one graph bucket.
pub(crate) fn graph_path(entry_dir: &Path, digest: &str) -> PathBuf {
    entry_dir.join(GRAPH).join(format!("{digest}.{GRAPH_EXT}"))
}

pub(crate) const SYMBOLS_EXT: &str = "sym";
pub(crate) const GRAPH_EXT: &str = "bin";

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

/// A stored per-file entry, decoded.
pub(crate) fn read_symbols(path: &Path) -> Result<FileSymbols, TierError> {
    codec::decode_symbols(&read(path)?).map_err(corrupt(path))
}

/// Write the table of `entry_dir` as one JSON document (the shape of
/// [`SymbolTable`]), streaming: one file's symbols in memory at a time.
pub(crate) fn export(entry_dir: &Path, out: &mut dyn Write) -> tiers_core::Result<()> {
    let index = Index::load(entry_dir)?;
    let w = |r: std::io::Result<()>| r.map_err(|e| tiers_core::Error::io("the export output", e));
    let json = |r: serde_json::Result<()>| {
        r.map_err(|e| tiers_core::Error::io("the export output", std::io::Error::other(e)))
    };
    w(write!(
        out,
        "{{\"schema_version\":{EXPORT_SCHEMA_VERSION},\"extractor_version\":{},\"symbols_schema_version\":{},\"files\":[",
        index.extractor_version, index.schema_version
    ))?;
    for (i, (path, f)) in index.files.iter().enumerate() {
        let symbols = read_symbols(&file_path(entry_dir, &f.digest))?;
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
        let path = graph_path(entry_dir, digest);
        let bytes = read(&path)?;
        buckets.push((path, bytes));
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
    w(write!(out, "\n}},\"modules\":{}}}}}\n", js(&index.modules)))?;
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
                pruned: 3,
            },
            files: [
                ("a/__init__.py".to_owned(), row(None, 0)),
                ("a/ünï.py".to_owned(), row(Some("a.ünï"), 2)),
            ]
            .into_iter()
            .collect(),
            modules: [("a.ünï".to_owned(), "a/ünï.py".to_owned())].into(),
            graph: [("3f".to_owned(), "ef".repeat(32))].into(),
        }
    }

    #[test]
    fn the_index_round_trips_and_a_damaged_one_is_an_error() {
        let index = sample();
        let bytes = index.encode();
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
        let mut escaping = index.clone();
        escaping
            .graph
            .insert("40".into(), format!("../../{}", "e".repeat(58)));
        let err = Index::decode(&escaping.encode()).unwrap_err();
        assert!(err.what.contains("digest"), "{err}");
        let mut swapped = index.clone();
        swapped.format += 1;
        let dir = std::env::temp_dir().join(format!("tiers-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        swapped.save(&dir).unwrap();
        let err = Index::load(&dir).unwrap_err();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            matches!(&err, TierError::Corrupt { path, why } if path.ends_with("index.bin") && why.contains("format is 3")),
            "{err:?}"
        );
    }
}
