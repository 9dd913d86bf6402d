//! One build of a `symtab` entry: per-file entries first, then the cross-file
//! pass over what changed (`cross.rs`), then the entry's files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tiers_core::{Blobs, Digest, KeyDoc, Progress, Unit};

use serde::{Deserialize, Serialize};

use super::cross::{Fragments, Fresh, Pass};
use super::per_file::{self, Loc, PerFile};
use super::table::{
    blob_digest, bucket_of, read_bucket, read_symbols_with, Index, IndexFile, Names, Parts, INDEX,
    INDEX_FORMAT,
};
use super::TierError;
use py_symbols::codec::{digest_bytes, FastMap};
use py_symbols::{
    codec, module_name, ExtractOptions, Extractor, FileSymbols, Interface, EXTRACTOR_VERSION,
    MAX_FILE_BYTES, SCHEMA_VERSION,
};
use py_symbols::{read_source, sha256_hex, ModuleInfo};

/// A build that parses at most this many files keeps their symbols in memory
/// for the cross-file pass; a larger one reads them back from the store.
const KEEP_PARSED: usize = 2000;

/// A pack of per-file entries is sealed once it holds this many bytes: a full
/// build of 9,350 contents stores 71 blobs, not 9,350.
const PACK_BYTES: usize = 1 << 20;

/// What a build did: recorded in the entry marker's `data` and in `index.bin`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Input files.
    pub files: usize,
    /// Distinct contents this build parsed (identical content at two paths is
    /// parsed once).
    pub parsed: usize,
    /// Files whose content already had a per-file entry.
    pub reused: usize,
    /// Files with a module name.
    pub modules: usize,
    /// Modules whose cross-file facts this build computed.
    pub resolved: usize,
    /// Modules whose cross-file facts were carried over from the previous entry.
    pub resolve_reused: usize,
    /// Files whose per-file entry lists errors (syntax, encoding, size…).
    pub files_with_errors: usize,
}

impl Counts {
    /// "parsed 1 file, reused 11,599; resolved 3 modules, reused 11,597; …"
    pub fn summary(&self) -> String {
        let mut s = format!(
            "parsed {} {}, reused {}; resolved {} {}, reused {}",
            thousands(self.parsed),
            plural(self.parsed, "file", "files"),
            thousands(self.reused),
            thousands(self.resolved),
            plural(self.resolved, "module", "modules"),
            thousands(self.resolve_reused),
        );
        if self.files_with_errors > 0 {
            s.push_str(&format!(
                "; {} {} with errors",
                thousands(self.files_with_errors),
                plural(self.files_with_errors, "file", "files")
            ));
        }
        s
    }
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Everything a build needs, owned, so that it runs on a blocking thread.
pub(crate) struct Job {
    pub project: PathBuf,
    /// The cache's blob store: per-file entries and graph buckets.
    pub blobs: Blobs,
    pub build_dir: PathBuf,
    /// The key document: its inputs are path → content digest.
    pub doc: Arc<KeyDoc>,
    /// The entry to build from, when it is for another key.
    pub previous: Option<PathBuf>,
    /// That entry, read since the key was computed ([`Preload`]).
    pub preloaded: Option<Preload>,
    /// The tier's other entries, most recently used first: their per-file
    /// entries count too (a file back to an earlier content is not parsed).
    pub others: Vec<PathBuf>,
    /// Parse every file again, whatever the store holds (a forced rebuild).
    pub scratch: bool,
    /// Files parsed and modules resolved, for the progress display.
    pub progress: Progress,
}

/// The previous entry, when its layout and extractor are this build's.
pub(super) struct Prev {
    pub dir: PathBuf,
    pub index: Index,
    /// The digests of the index's parts.
    pub parts: Parts,
    /// Content digest → digest of its per-file entry in the store.
    pub per_file: PerFile,
}

/// The entry a build will start from, read on a thread of its own from the
/// moment the key is known (only in a run that builds): while the engine
/// hashes the key document and reads the last marker on one core, this
/// decodes the index on the other. Joined by the build, or when dropped.
pub(crate) struct Preload {
    read: Option<std::thread::JoinHandle<Option<Preloaded>>>,
}

type Preloaded = (PathBuf, Result<Option<Prev>, TierError>);

impl Preload {
    /// Read the entry `previous` finds, on a thread of its own.
    pub fn start(
        previous: impl FnOnce() -> Option<PathBuf> + Send + 'static,
        blobs: Blobs,
    ) -> Option<Preload> {
        let read = std::thread::Builder::new()
            .name("symtab-preload".into())
            .spawn(move || {
                let dir = previous()?;
                let prev = Prev::load(&dir, &blobs);
                Some((dir, prev))
            })
            .ok()?;
        Some(Preload { read: Some(read) })
    }

    /// The entry, if this read is of `dir`.
    fn take(mut self, dir: &Path) -> Option<Result<Option<Prev>, TierError>> {
        let read = match self.read.take()?.join() {
            Ok(read) => read,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        read.filter(|(at, _)| at == dir).map(|(_, prev)| prev)
    }
}

impl Drop for Preload {
    fn drop(&mut self) {
        if let Some(read) = self.read.take() {
            let _ = read.join();
        }
    }
}

impl Prev {
    fn load(dir: &Path, blobs: &Blobs) -> Result<Option<Prev>, TierError> {
        let Some((index, parts)) = Index::load_current(dir, blobs)? else {
            return Ok(None);
        };
        Ok(Some(Prev {
            dir: dir.to_owned(),
            index,
            parts,
            per_file: per_file::load(dir, blobs)?,
        }))
    }
}

/// One input file.
pub(super) struct Row {
    pub path: String,
    pub digest: String,
    /// The digest as bytes (`None` if it is not one).
    pub content: Option<[u8; 32]>,
    pub module: Option<String>,
}

pub(super) fn is_package(path: &str) -> bool {
    path == "__init__.py" || path.ends_with("/__init__.py")
}

/// What parsing one content gave, besides the stored per-file entry.
struct Parsed {
    digest: String,
    /// Where its per-file entry goes.
    slot: Slot,
    errors: u32,
    /// The module each row holding this content provides, as others see it.
    infos: Vec<(usize, Option<ModuleInfo>)>,
    /// Kept only when the build parses few files.
    symbols: Option<Arc<FileSymbols>>,
    /// Its encoding, kept when its symbols are not: the cross-file pass
    /// decodes it rather than read back and check what this build just stored.
    encoded: Option<Arc<[u8]>>,
}

impl Job {
    /// Build the entry; returns what it did and the blobs its index names.
    pub fn run(mut self) -> Result<(Counts, Vec<Digest>), TierError> {
        let mut clock = Clock::new();
        let preloaded = self.preloaded.take();
        self.make_dirs()?;
        let (rows, mut prev) = std::thread::scope(|scope| {
            let rows = scope.spawn(|| self.rows());
            let preloaded = preloaded;
            let read = |dir: &Path| match preloaded.and_then(|p| p.take(dir)) {
                Some(Ok(prev)) => Ok(prev),
                _ => Prev::load(dir, &self.blobs),
            };
            let prev = match self.previous.as_deref().filter(|_| !self.scratch) {
                Some(dir) => match read(dir) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(
                            "symtab: the previous entry cannot be read, resolving every module: {e}"
                        );
                        None
                    }
                },
                None => None,
            };
            match rows.join() {
                Ok(rows) => (rows, prev),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        });
        clock.lap("previous entry and rows");
        // Content digest → per-file entry, from the previous index.
        let known: PerFile = prev
            .as_mut()
            .map(|p| std::mem::take(&mut p.per_file))
            .unwrap_or_default();
        let built = match self.run_with(prev.as_ref(), known, &rows, clock) {
            // About the previous entry: its index, or a blob it names.
            Err(e)
                if prev.as_ref().is_some_and(|p| {
                    e.is_about(&p.dir)
                        || e.is_about(self.blobs.dir())
                        || matches!(e, TierError::Blob { .. })
                }) =>
            {
                tracing::warn!(
                    "symtab: the previous entry is not usable, building without it: {e}"
                );
                let _ = fs::remove_dir_all(&self.build_dir);
                self.make_dirs()?;
                // Its per-file entries still count: each is checked as it is used.
                let known = prev
                    .as_ref()
                    .and_then(|p| per_file::load(&p.dir, &self.blobs).ok())
                    .unwrap_or_default();
                let job = Job {
                    scratch: true,
                    ..self.clone_settings()
                };
                job.run_with(None, known, &rows, Clock::new())
            }
            other => other,
        }?;
        free_later((rows, prev));
        Ok(built)
    }

    /// This job's settings, for a second attempt.
    fn clone_settings(&self) -> Job {
        Job {
            project: self.project.clone(),
            blobs: self.blobs.clone(),
            build_dir: self.build_dir.clone(),
            doc: self.doc.clone(),
            previous: None,
            preloaded: None,
            others: self.others.clone(),
            scratch: self.scratch,
            progress: self.progress.clone(),
        }
    }

    fn make_dirs(&self) -> Result<(), TierError> {
        let d = &self.build_dir;
        fs::create_dir_all(d).map_err(|source| TierError::Write {
            path: d.clone(),
            source,
        })
    }

    /// The rows, found while the previous entry is read.
    fn rows(&self) -> Vec<Row> {
        let inputs = &self.doc.inputs;
        // The layout rule consults the file set for `src/__init__.py` only.
        let names: HashSet<String> = ["src/__init__.py"]
            .into_iter()
            .filter(|p| inputs.contains_key(*p))
            .map(String::from)
            .collect();
        inputs
            .iter()
            .map(|(path, digest)| Row {
                module: module_name(path, &names),
                path: path.clone(),
                digest: digest.clone(),
                content: digest_bytes(digest),
            })
            .collect()
    }

    /// The build with `prev` to resolve incrementally from and `known`, the
    /// per-file entries of contents: one still in the store is used as it is;
    /// the rest is parsed.
    fn run_with(
        &self,
        prev: Option<&Prev>,
        mut known: PerFile,
        rows: &[Row],
        clock: Clock,
    ) -> Result<(Counts, Vec<Digest>), TierError> {
        let mut by_digest: FastMap<&str, Vec<usize>> =
            FastMap::with_capacity_and_hasher(rows.len(), Default::default());
        for (i, r) in rows.iter().enumerate() {
            by_digest.entry(&r.digest).or_default().push(i);
        }
        // Contents the previous entry does not know: the other entries may.
        let mut elsewhere: PerFile = PerFile::default();
        if !self.scratch {
            let unknown: Vec<[u8; 32]> = by_digest
                .values()
                .filter_map(|rs| rows[rs[0]].content)
                .filter(|d| !known.contains_key(d))
                .collect();
            elsewhere.extend(per_file::find(&self.others, &unknown, &self.blobs));
        }
        // The previous entry's per-file entries were all stored when it wrote
        // its index: only the shards of the store changed since are read.
        let then = prev.and_then(|p| {
            fs::metadata(p.dir.join(INDEX))
                .and_then(|m| m.modified())
                .ok()
        });
        let present = self
            .blobs
            .present_since(then)
            .map_err(|e| TierError::Read {
                path: self.blobs.dir().to_owned(),
                source: std::io::Error::other(e.to_string()),
            })?;
        let stored = |content: Option<[u8; 32]>| {
            let Some(content) = content else {
                return false;
            };
            match (known.get(&content), elsewhere.get(&content)) {
                (Some(at), _) => present.contains(&Digest::from_bytes(at.pack)),
                (None, Some(at)) => self.blobs.contains(&Digest::from_bytes(at.pack)),
                (None, None) => false,
            }
        };
        let mut to_parse: Vec<(&str, &[usize])> = by_digest
            .iter()
            .filter(|(_, rs)| !stored(rows[rs[0]].content))
            .map(|(d, rs)| (*d, rs.as_slice()))
            .collect();
        to_parse.sort_unstable_by_key(|(digest, _)| *digest);
        known.extend(elsewhere);
        self.build_with(prev, known, rows, &to_parse, clock)
    }

    /// The build once the contents to parse are known.
    fn build_with(
        &self,
        prev: Option<&Prev>,
        known: PerFile,
        rows: &[Row],
        to_parse: &[(&str, &[usize])],
        mut clock: Clock,
    ) -> Result<(Counts, Vec<Digest>), TierError> {
        let keep = to_parse.len() <= KEEP_PARSED;
        self.progress.phase_with_total(
            "parsing files",
            to_parse.len() as u64,
            Unit::Items("files"),
        );
        let (parsed, packs) = self.parse(rows, to_parse, keep)?;
        let mut loader = Loader {
            job: self,
            per_file: known,
            kept: HashMap::new(),
            encoded: HashMap::new(),
            repaired: Mutex::new(HashMap::new()),
            damaged: Mutex::new(HashSet::new()),
        };
        let infos: Vec<OnceLock<Option<ModuleInfo>>> = std::iter::repeat_with(OnceLock::new)
            .take(rows.len())
            .collect();
        let mut errors: FastMap<&str, u32> = FastMap::default();
        let mut interfaces: Vec<Option<String>> = vec![None; rows.len()];
        for (&(digest, _), p) in to_parse.iter().zip(parsed) {
            for (i, info) in p.infos {
                interfaces[i] = info.as_ref().map(|m| m.digest.clone());
                if let Some(info) = info {
                    let _ = infos[i].set(Some(info));
                }
            }
            errors.insert(digest, p.errors);
            if let Some(e) = p.encoded {
                loader.encoded.insert(p.digest.clone(), e);
            }
            if let Some(s) = p.symbols {
                loader.kept.insert(p.digest.clone(), s);
            }
            if let Some(content) = digest_bytes(&p.digest) {
                loader.per_file.insert(content, p.slot.at(&packs));
            }
        }
        let parsed_digests: HashSet<&str> = to_parse.iter().map(|(d, _)| *d).collect();
        clock.lap("parsed");

        // Error counts and interface digests of the other contents: carried
        // over from the previous index, or read from their per-file entries.
        let mut known: Vec<bool> = (0..rows.len())
            .map(|i| parsed_digests.contains(rows[i].digest.as_str()))
            .collect();
        let before = previous_rows(rows, prev);
        for (i, (r, old)) in rows.iter().zip(&before).enumerate() {
            let Some(old) = old.filter(|old| old.digest == r.digest) else {
                continue;
            };
            errors.entry(&r.digest).or_insert(old.errors);
            if !known[i] && old.module == r.module && old.interface.is_some() {
                interfaces[i] = old.interface.clone();
                known[i] = true;
            }
        }
        let todo: Vec<usize> = (0..rows.len())
            .filter(|&i| {
                (rows[i].module.is_some() && !known[i])
                    || !errors.contains_key(rows[i].digest.as_str())
            })
            .collect();
        let loaded = par_map(&todo, |&i| {
            let r = &rows[i];
            let s = loader.load(r)?;
            let info = r
                .module
                .as_deref()
                .map(|m| ModuleInfo::new(Interface::new(m, is_package(&r.path), &s)));
            Ok::<_, TierError>((s.errors.len() as u32, info))
        });
        for (&i, result) in todo.iter().zip(loaded) {
            let (n, info) = result?;
            errors.entry(&rows[i].digest).or_insert(n);
            if let (Some(info), false) = (info, known[i]) {
                interfaces[i] = Some(info.digest.clone());
                let _ = infos[i].set(Some(info));
            }
        }
        clock.lap("interfaces");

        // The cross-file pass.
        let fresh = Pass {
            rows,
            interfaces: &interfaces,
            prev,
            progress: &self.progress,
        }
        .run(&loader, &infos)?;
        drop(infos);
        loader.repair_damaged_packs(rows)?;
        // Per-file entries the pass found damaged and made again.
        let mut per_file = loader.per_file;
        for (digest, (_, blob)) in loader
            .repaired
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
        {
            per_file.insert(digest, blob);
        }
        free_later((loader.kept, loader.encoded));
        clock.lap("cross-file pass");
        let named: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].module.is_some())
            .collect();
        let resolved = fresh.resolved;

        self.progress.phase("writing the index");
        let (names, mut deps) = self.deps(rows, prev, &before, &fresh);
        clock.lap("deps");
        let buckets = self.write_graph(rows, &named, prev, fresh)?;
        clock.lap("graph buckets");

        let counts = Counts {
            files: rows.len(),
            parsed: to_parse.len(),
            reused: rows
                .iter()
                .filter(|r| !parsed_digests.contains(r.digest.as_str()))
                .count(),
            modules: named.len(),
            resolved,
            resolve_reused: named.len() - resolved,
            files_with_errors: rows
                .iter()
                .filter(|r| errors.get(r.digest.as_str()).is_some_and(|&n| n > 0))
                .count(),
        };
        let pair_of = |r: &Row| -> Result<([u8; 32], Loc), TierError> {
            r.content
                .and_then(|c| Some((c, *per_file.get(&c)?)))
                .ok_or_else(|| TierError::Corrupt {
                    path: self.project.join(&r.path),
                    why: "no per-file entry was made for it".into(),
                })
        };
        let pairs = rows.iter().map(pair_of).collect::<Result<Vec<_>, _>>()?;
        let buckets_named = buckets
            .values()
            .map(|d| blob_digest(d))
            .collect::<Result<Vec<_>, _>>()?;
        let mut named: Vec<Digest> = pairs
            .iter()
            .map(|(_, at)| Digest::from_bytes(at.pack))
            .chain(buckets_named)
            .collect();
        // The per-file list and the index are written side by side.
        let (per_file_parts, index_parts) = std::thread::scope(|scope| {
            let per_file = scope.spawn(|| per_file::save(&self.build_dir, pairs, |b| self.put(b)));
            let mut index = Index {
                format: INDEX_FORMAT,
                extractor_version: EXTRACTOR_VERSION,
                schema_version: SCHEMA_VERSION,
                counts: counts.clone(),
                files: rows
                    .iter()
                    .zip(interfaces)
                    .zip(deps.iter_mut())
                    .map(|((r, interface), deps)| {
                        (
                            r.path.clone(),
                            IndexFile {
                                digest: r.digest.clone(),
                                module: r.module.clone(),
                                interface,
                                errors: errors.get(r.digest.as_str()).copied().unwrap_or(0),
                                deps: std::mem::replace(deps, Arc::new([])),
                            },
                        )
                    })
                    .collect(),
                names,
                graph: buckets,
            };
            index.compact_names();
            let from = prev.map(|p| (&p.index, &p.parts));
            let index_parts = index.save(&self.build_dir, from, |bytes| self.put(bytes));
            free_later(index);
            let per_file_parts = match per_file.join() {
                Ok(parts) => parts,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            (per_file_parts, index_parts)
        });
        named.extend(per_file_parts?);
        for part in index_parts? {
            named.push(blob_digest(&part)?);
        }
        named.sort_unstable();
        named.dedup();
        clock.lap("index.bin");
        Ok((counts, named))
    }

    /// Each row's dependencies, as indices into the returned module names:
    /// the fresh files' mapped, the others' carried over with the previous
    /// name table, so that an edit maps only its own.
    fn deps(
        &self,
        rows: &[Row],
        prev: Option<&Prev>,
        before: &[Option<&IndexFile>],
        fresh: &Fresh,
    ) -> (Names, Vec<Arc<[u32]>>) {
        let no_names = Names::default();
        let old_names = prev.map_or(&no_names, |p| &p.index.names);
        // The ids of the names fresh resolutions consulted: one pass over the
        // old table, looking each up among those few; the others are new.
        let mut ids: FastMap<&str, u32> = fresh
            .deps
            .values()
            .flatten()
            .map(|n| (n.as_str(), u32::MAX))
            .collect();
        for (i, n) in old_names.iter().enumerate() {
            if let Some(id) = ids.get_mut(n) {
                if *id == u32::MAX {
                    *id = i as u32;
                }
            }
        }
        let mut new_names: Vec<&str> = Vec::new();
        let lists = rows
            .iter()
            .zip(before)
            .map(|(r, before)| -> Arc<[u32]> {
                let before = before.map(|f| &f.deps);
                if r.module.is_none() {
                    return Arc::new([]);
                }
                let Some(names) = fresh.deps.get(&r.path) else {
                    return before.cloned().unwrap_or_else(|| Arc::new([]));
                };
                names
                    .iter()
                    .map(|n| {
                        let id = ids.entry(n.as_str()).or_insert(u32::MAX);
                        if *id == u32::MAX {
                            new_names.push(n);
                            *id = (old_names.len() + new_names.len() - 1) as u32;
                        }
                        *id
                    })
                    .collect()
            })
            .collect();
        let mut names = old_names.clone();
        for n in new_names {
            names.push(n);
        }
        (names, lists)
    }

    /// Graph buckets: the ones holding a fresh or a departed file are
    /// rewritten into the store, the others named as they are. Returns
    /// bucket → digest.
    fn write_graph(
        &self,
        rows: &[Row],
        named: &[usize],
        prev: Option<&Prev>,
        fresh: Fresh,
    ) -> Result<BTreeMap<String, String>, TierError> {
        // The row of a named path: `named` is in path order, as rows are.
        let named_row = |path: &str| {
            named
                .binary_search_by(|&i| rows[i].path.as_str().cmp(path))
                .ok()
                .map(|k| named[k])
        };
        let mut touched = fresh.fragments;
        if let Some(p) = prev {
            // Departed: named then, not now (both walked in path order).
            let mut now = named.iter().map(|&i| rows[i].path.as_str()).peekable();
            for (path, f) in &p.index.files {
                if f.module.is_none() {
                    continue;
                }
                while now.next_if(|n| *n < path.as_str()).is_some() {}
                if now.peek() != Some(&path.as_str()) {
                    touched.entry(bucket_of(path)).or_default();
                }
            }
        }
        let mut buckets: BTreeMap<String, String> = BTreeMap::new();
        if let Some(p) = prev {
            // Each bucket named as it is must be in the store (one stat): a
            // missing one sends the build down the path without the previous
            // entry.
            for (b, digest) in &p.index.graph {
                if touched.contains_key(b) {
                    continue;
                }
                let blob = blob_digest(digest)?;
                if !self.blobs.contains(&blob) {
                    return Err(TierError::Blob {
                        what: "graph bucket",
                        path: self.blobs.path(&blob, false),
                    });
                }
                buckets.insert(b.clone(), digest.clone());
            }
        }
        let touched: Vec<(String, Fragments)> = touched.into_iter().collect();
        let written = par_map(&touched, |(b, fresh)| {
            let old = match prev.and_then(|p| p.index.graph.get(b)) {
                Some(digest) => {
                    let path = self.blobs.path(&blob_digest(digest)?, false);
                    Some((path, read_bucket(&self.blobs, digest)?))
                }
                None => None,
            };
            let mut bucket: BTreeMap<&str, &[u8]> = BTreeMap::new();
            if let Some((path, bytes)) = &old {
                let records = codec::decode_bucket(bytes).map_err(|e| TierError::Corrupt {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
                for (path, body) in records {
                    if let Some(i) = named_row(&path) {
                        bucket.insert(rows[i].path.as_str(), body);
                    }
                }
            }
            for (path, body) in fresh {
                bucket.insert(path, body);
            }
            if bucket.is_empty() {
                return Ok(None);
            }
            let bytes = codec::encode_bucket(bucket);
            let digest = self.put(&bytes)?;
            Ok::<_, TierError>(Some((b.clone(), digest)))
        });
        for w in written {
            if let Some((b, digest)) = w? {
                buckets.insert(b, digest);
            }
        }
        Ok(buckets)
    }

    /// Parse each content on every core; each result is packed on the worker,
    /// with the interfaces of the rows holding it. Returns the results and the
    /// packs' digests, in the order of [`Slot::pack`].
    fn parse(
        &self,
        rows: &[Row],
        todo: &[(&str, &[usize])],
        keep: bool,
    ) -> Result<(Vec<Parsed>, Vec<[u8; 32]>), TierError> {
        let packer = Packer {
            job: self,
            open: Mutex::new((0, Vec::new())),
            sealed: Mutex::new(Vec::new()),
        };
        let results = par_map_with(
            todo,
            || Extractor::new(ExtractOptions::default()),
            |extractor, &(digest, holders)| -> Result<Parsed, TierError> {
                let path = &rows[holders[0]].path;
                let symbols = read_and_extract(extractor, &self.project, path, digest)?;
                let encoded = codec::encode_symbols(&symbols);
                let slot = packer.add(&encoded, path)?;
                self.progress.advance(1);
                let infos = holders
                    .iter()
                    .map(|&i| {
                        let r = &rows[i];
                        let info = r.module.as_deref().map(|m| {
                            ModuleInfo::new(Interface::new(m, is_package(&r.path), &symbols))
                        });
                        (i, info)
                    })
                    .collect();
                Ok(Parsed {
                    digest: digest.to_owned(),
                    slot,
                    errors: symbols.errors.len() as u32,
                    infos,
                    encoded: (!keep).then(|| Arc::from(encoded)),
                    symbols: keep.then(|| Arc::new(symbols)),
                })
            },
        );
        let results = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok((results, packer.finish()?))
    }

    /// [`Job::put`], the digest as bytes.
    fn put_blob(&self, bytes: &[u8]) -> Result<[u8; 32], TierError> {
        let hex = self.put(bytes)?;
        Ok(*blob_digest(&hex)?.as_bytes())
    }

    /// Store one per-file entry as a pack of its own.
    fn put_alone(&self, encoded: &[u8], path: &str) -> Result<Loc, TierError> {
        let pack = self.put_blob(encoded)?;
        Ok(Loc {
            symbols: pack,
            pack,
            offset: 0,
            len: entry_len(encoded, path)?,
        })
    }

    /// Put `bytes` in the store; returns their digest. A build from scratch
    /// writes each blob again: one already there may be the damaged one that
    /// made it build from scratch.
    fn put(&self, bytes: &[u8]) -> Result<String, TierError> {
        let put = match self.scratch {
            true => self.blobs.put_replacing(bytes),
            false => self.blobs.put(bytes),
        };
        match put {
            Ok(d) => Ok(d.to_string()),
            Err(e) => Err(TierError::Write {
                path: self.blobs.dir().to_owned(),
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }
}

/// Each row's line in the previous index, if it had one: both are in path
/// order, so they are walked side by side.
fn previous_rows<'p>(rows: &[Row], prev: Option<&'p Prev>) -> Vec<Option<&'p IndexFile>> {
    let Some(p) = prev else {
        return vec![None; rows.len()];
    };
    let mut old = p.index.files.iter().peekable();
    rows.iter()
        .map(|r| {
            while old
                .next_if(|(path, _)| path.as_str() < r.path.as_str())
                .is_some()
            {}
            old.next_if(|(path, _)| **path == r.path).map(|(_, f)| f)
        })
        .collect()
}

/// Read a project file and extract it, checking that its content is the one
/// the key was made of. A file over the size limit is not read at all.
fn read_and_extract(
    extractor: &mut Extractor,
    project: &Path,
    path: &str,
    digest: &str,
) -> Result<FileSymbols, TierError> {
    let abs = project.join(path);
    let bytes = match read_source(&abs, MAX_FILE_BYTES) {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(too_large)) => return Ok(too_large),
        Err(source) => return Err(TierError::Read { path: abs, source }),
    };
    if sha256_hex(&bytes) != digest {
        return Err(TierError::Changed {
            path: path.to_owned(),
        });
    }
    Ok(extractor.extract(&bytes))
}

/// The length of a per-file entry, which a [`Loc`] holds in 32 bits.
fn entry_len(encoded: &[u8], path: &str) -> Result<u32, TierError> {
    u32::try_from(encoded.len()).map_err(|_| TierError::Corrupt {
        path: path.into(),
        why: "its symbols take more than 4 GiB".into(),
    })
}

/// The per-file entries a build writes, packed into blobs of some
/// [`PACK_BYTES`] each, shared by the parse workers: a file per entry made a
/// full build create 9,350 files, whose cost depends on the file system's
/// state (ext4 scans for recently deleted inodes on each create).
struct Packer<'j> {
    job: &'j Job,
    /// The number of the pack being filled, and its bytes.
    open: Mutex<(usize, Vec<u8>)>,
    /// Sealed packs: number → digest.
    sealed: Mutex<Vec<(usize, [u8; 32])>>,
}

/// Where a per-file entry went: its pack by number, known by digest once the
/// build's packs are sealed ([`Packer::finish`]).
#[derive(Debug, Clone, Copy)]
struct Slot {
    pack: usize,
    offset: u32,
    len: u32,
    symbols: [u8; 32],
}

impl Slot {
    fn at(&self, packs: &[[u8; 32]]) -> Loc {
        Loc {
            symbols: self.symbols,
            pack: packs[self.pack],
            offset: self.offset,
            len: self.len,
        }
    }
}

impl Packer<'_> {
    /// Add the per-file entry `encoded` (of the file at `path`); the worker
    /// that fills a pack stores it.
    fn add(&self, encoded: &[u8], path: &str) -> Result<Slot, TierError> {
        let symbols = *Digest::of(encoded).as_bytes();
        let len = entry_len(encoded, path)?;
        let (slot, full) = {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let (number, bytes) = &mut *open;
            let offset = u32::try_from(bytes.len()).map_err(|_| TierError::Corrupt {
                path: path.into(),
                why: "its symbols do not fit in a pack".into(),
            })?;
            bytes.extend_from_slice(encoded);
            let slot = Slot {
                pack: *number,
                offset,
                len,
                symbols,
            };
            let full = (bytes.len() >= PACK_BYTES).then(|| {
                *number += 1;
                (*number - 1, std::mem::take(bytes))
            });
            (slot, full)
        };
        if let Some((number, bytes)) = full {
            self.seal(number, &bytes)?;
        }
        Ok(slot)
    }

    fn seal(&self, number: usize, bytes: &[u8]) -> Result<(), TierError> {
        let digest = self.job.put_blob(bytes)?;
        let mut sealed = self.sealed.lock().unwrap_or_else(|p| p.into_inner());
        sealed.push((number, digest));
        Ok(())
    }

    /// Store the last pack; returns every pack's digest, by number.
    fn finish(self) -> Result<Vec<[u8; 32]>, TierError> {
        let (number, bytes) =
            std::mem::take(&mut *self.open.lock().unwrap_or_else(|p| p.into_inner()));
        if !bytes.is_empty() {
            self.seal(number, &bytes)?;
        }
        let mut sealed = self.sealed.into_inner().unwrap_or_else(|p| p.into_inner());
        sealed.sort_unstable();
        debug_assert!(sealed.iter().enumerate().all(|(i, (n, _))| i == *n));
        Ok(sealed.into_iter().map(|(_, digest)| digest).collect())
    }
}

/// A content parsed again: its symbols and its new per-file entry.
type Repaired = (Arc<FileSymbols>, Loc);

/// The per-file symbols of this build's rows: those parsed by a small build
/// kept in memory, the others read from the store. Used from every thread of
/// the cross-file pass.
pub(super) struct Loader<'a> {
    job: &'a Job,
    /// Content digest → digest of its per-file entry in the store.
    per_file: PerFile,
    kept: HashMap<String, Arc<FileSymbols>>,
    /// The encodings of the other contents this build parsed.
    encoded: HashMap<String, Arc<[u8]>>,
    /// Contents whose per-file entry was missing or damaged, parsed again by
    /// this build: their symbols and new entry.
    repaired: Mutex<HashMap<[u8; 32], Repaired>>,
    /// Packs a per-file entry could not be read from.
    damaged: Mutex<HashSet<[u8; 32]>>,
}

impl Loader<'_> {
    /// The symbols of `row`'s content, from the store, as resolution reads
    /// them: the text it does not read may be left out
    /// ([`codec::decode_symbols_to_resolve`]). A per-file entry that is
    /// missing or cannot be read back is parsed again from the file (when it
    /// still has this content) and stored again.
    pub fn load(&self, row: &Row) -> Result<Arc<FileSymbols>, TierError> {
        if let Some(s) = self.kept.get(&row.digest) {
            return Ok(s.clone());
        }
        if let Some(e) = self.encoded.get(&row.digest) {
            if let Ok(s) = codec::decode_symbols_to_resolve(e) {
                return Ok(Arc::new(s));
            }
        }
        let content = digest_bytes(&row.digest).ok_or_else(|| TierError::Corrupt {
            path: self.job.project.join(&row.path),
            why: format!("`{}` is not a digest", row.digest),
        })?;
        let read = match self.per_file.get(&content) {
            Some(at) => read_symbols_with(&self.job.blobs, at, codec::decode_symbols_to_resolve)
                .inspect_err(|_| {
                    let mut damaged = self.damaged.lock().unwrap_or_else(|p| p.into_inner());
                    damaged.insert(at.pack);
                }),
            None => Err(TierError::Corrupt {
                path: self.job.project.join(&row.path),
                why: "no per-file entry was made for it".into(),
            }),
        };
        match read {
            Ok(s) => Ok(Arc::new(s)),
            Err(e) => self.repair(row, content, Some(e)),
        }
    }

    /// Parse `row`'s content again and store its per-file entry, once: several
    /// rows and threads may ask for it. Warns with `why` when it is the first.
    fn repair(
        &self,
        row: &Row,
        content: [u8; 32],
        why: Option<TierError>,
    ) -> Result<Arc<FileSymbols>, TierError> {
        let mut repaired = self.repaired.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, _)) = repaired.get(&content) {
            return Ok(s.clone());
        }
        if let Some(e) = why {
            tracing::warn!("symtab: {e}; parsing `{}` again", row.path);
        }
        let mut extractor = Extractor::new(ExtractOptions::default());
        let symbols = read_and_extract(&mut extractor, &self.job.project, &row.path, &row.digest)?;
        let at = self
            .job
            .put_alone(&codec::encode_symbols(&symbols), &row.path)?;
        let symbols = Arc::new(symbols);
        repaired.insert(content, (symbols.clone(), at));
        Ok(symbols)
    }

    /// Parse again every content whose per-file entry is in a pack a read
    /// found missing or damaged, so that the entry names none: the pass reads
    /// only the entries it needs, and a pack holds many.
    fn repair_damaged_packs(&self, rows: &[Row]) -> Result<(), TierError> {
        let damaged = std::mem::take(&mut *self.damaged.lock().unwrap_or_else(|p| p.into_inner()));
        if damaged.is_empty() {
            return Ok(());
        }
        let mut n = 0;
        for row in rows {
            let Some(content) = digest_bytes(&row.digest) else {
                continue;
            };
            let in_damaged = self
                .per_file
                .get(&content)
                .is_some_and(|at| damaged.contains(&at.pack));
            let repaired = self
                .repaired
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&content);
            if in_damaged && !repaired {
                self.repair(row, content, None)?;
                n += 1;
            }
        }
        if n > 0 {
            tracing::warn!(
                "symtab: {n} {} whose per-file entries were in a missing or damaged pack parsed again",
                plural(n, "file", "files")
            );
        }
        Ok(())
    }
}

/// Frees `value` on a thread of its own: an edit's largest structures (two
/// indexes of 11,000 files) take milliseconds to free, and nothing waits on it.
fn free_later<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new().spawn(move || drop(value));
}

/// Phase timings and resident memory, logged at debug level (`tiers -v`).
pub(super) struct Clock(std::time::Instant);

impl Clock {
    pub fn new() -> Self {
        Clock(std::time::Instant::now())
    }

    pub fn lap(&mut self, what: &str) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        let rss = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
                Some(format!(
                    ", {} resident",
                    line.trim_start_matches("VmRSS:").trim()
                ))
            })
            .unwrap_or_default();
        tracing::debug!(
            "symtab: {what}: {:.3} s{rss}",
            self.0.elapsed().as_secs_f64()
        );
        self.0 = std::time::Instant::now();
    }
}

/// `f` over `items` on every core; results in item order.
pub(super) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    par_map_with(items, || (), |_, item| f(item))
}

/// [`par_map`], each thread with its own state from `init`.
pub(super) fn par_map_with<T: Sync, S, R: Send>(
    items: &[T],
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R> {
    let cores = py_symbols::cores();
    let threads = cores.min(items.len());
    if threads <= 1 {
        let mut state = init();
        return items.iter().map(|it| f(&mut state, it)).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<R>>> =
        Mutex::new(std::iter::repeat_with(|| None).take(items.len()).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut state = init();
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    done.push((i, f(&mut state, item)));
                }
                let mut slots = slots.lock().unwrap_or_else(|p| p.into_inner());
                for (i, r) in done {
                    slots[i] = Some(r);
                }
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("every item is mapped once"))
        .collect()
}
