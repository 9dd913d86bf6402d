//! What an entry holds, read back: the index, the graph buckets, the export.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::build::Counts;
use super::TierError;
use crate::{codec, FileSymbols, ResolvedGraph, EXTRACTOR_VERSION, SCHEMA_VERSION};

/// Version of the export document (and of [`SymbolTable`]); bumped when its
/// shape changes. `FileSymbols` carries its own [`SCHEMA_VERSION`].
pub const EXPORT_SCHEMA_VERSION: u32 = 1;

/// Version of an entry's layout (`index.json`, `deps.bin`, the directories).
pub(crate) const INDEX_FORMAT: u32 = 2;
pub(crate) const INDEX: &str = "index.json";
pub(crate) const DEPS: &str = "deps.bin";
pub(crate) const FILES: &str = "files";
pub(crate) const GRAPH: &str = "graph";

/// `index.json`: one project state.
#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IndexFile {
    /// SHA-256 of the content: its per-file entry is `files/<digest>.json`.
    pub digest: String,
    /// `None` for a file without a module name (see [`crate::module_name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Digest of the module's [`Interface`](crate::Interface).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// How many [`FileError`](crate::FileError)s the per-file entry holds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub errors: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, TierError> {
    let bytes = std::fs::read(path).map_err(|source| TierError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| TierError::Corrupt {
        path: path.to_owned(),
        why: e.to_string(),
    })
}

impl Index {
    pub fn load(entry_dir: &Path) -> Result<Index, TierError> {
        let path = entry_dir.join(INDEX);
        let index: Index = read_json(&path)?;
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

    /// Whether per-file entries and resolutions of this index are those this
    /// build would make.
    pub fn is_current(&self) -> bool {
        self.extractor_version == EXTRACTOR_VERSION && self.schema_version == SCHEMA_VERSION
    }
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
            "{}{{\"path\":{},\"module\":{},\"digest\":{},\"symbols\":",
            if i == 0 { "\n" } else { ",\n" },
            js(path),
            js(&f.module),
            js(&f.digest)
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
