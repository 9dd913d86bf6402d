//! One build of a `symtab` entry: per-file entries first, then the cross-file
//! pass over what changed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::store::{self, BlobStore};
use super::table::{
    bucket_of, file_path, graph_path, read_json, Bucket, Deps, Index, IndexFile, DEPS, FILES,
    GRAPH, INDEX, INDEX_FORMAT,
};
use super::TierError;
use crate::{
    interface_digest, module_name, resolve_incremental, ExtractOptions, Extractor, FileError,
    FileSymbols, Interface, ProjectState, ResolvedGraph, ResolvedModule, EXTRACTOR_VERSION,
    MAX_FILE_BYTES, SCHEMA_VERSION,
};

/// What a build did: recorded in the entry marker's `data` and in `index.json`.
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
    /// Stored files no entry used any more, removed at the start of this build.
    #[serde(default)]
    pub pruned: usize,
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
    pub tier_root: PathBuf,
    pub build_dir: PathBuf,
    /// Path → content digest: the key document's inputs.
    pub inputs: BTreeMap<String, String>,
    /// The entry of the tier's last build, when it is for another key.
    pub previous: Option<PathBuf>,
    /// Parse every file again, whatever the store holds (a forced rebuild).
    pub scratch: bool,
}

/// The previous entry, when its layout and extractor are this build's.
struct Prev {
    dir: PathBuf,
    index: Index,
    deps: Deps,
}

impl Prev {
    fn load(dir: &Path) -> Result<Option<Prev>, TierError> {
        let index = Index::load(dir)?;
        if !index.is_current() {
            return Ok(None);
        }
        let deps = read_json(&dir.join(DEPS))?;
        Ok(Some(Prev {
            dir: dir.to_owned(),
            index,
            deps,
        }))
    }
}

/// One input file.
struct Row {
    path: String,
    digest: String,
    module: Option<String>,
}

fn is_package(path: &str) -> bool {
    path == "__init__.py" || path.ends_with("/__init__.py")
}

fn hex_digest(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

impl Job {
    pub fn run(self) -> Result<Counts, TierError> {
        let mut clock = Clock::new();
        let (store, _lock, pruned) = BlobStore::open(&self.tier_root)?;
        clock.lap("store");
        let prev = match self.previous.as_deref().filter(|_| !self.scratch) {
            Some(dir) => {
                match Prev::load(dir) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!("symtab: the previous entry cannot be read, resolving every module: {e}");
                        None
                    }
                }
            }
            None => None,
        };
        clock.lap("previous entry");
        let mut counts = match self.run_with(&store, prev.as_ref(), clock) {
            Err(e) if prev.is_some() && !matches!(e, TierError::Changed { .. }) => {
                tracing::warn!(
                    "symtab: the previous entry is not usable, building without it: {e}"
                );
                let _ = fs::remove_dir_all(&self.build_dir);
                fs::create_dir_all(&self.build_dir).map_err(|source| TierError::Write {
                    path: self.build_dir.clone(),
                    source,
                })?;
                self.run_with(&store, None, Clock::new())?
            }
            other => other?,
        };
        counts.pruned = pruned;
        Ok(counts)
    }

    fn run_with(
        &self,
        store: &BlobStore,
        prev: Option<&Prev>,
        mut clock: Clock,
    ) -> Result<Counts, TierError> {
        let names: HashSet<String> = self.inputs.keys().cloned().collect();
        let rows: Vec<Row> = self
            .inputs
            .iter()
            .map(|(path, digest)| Row {
                module: module_name(path, &names),
                path: path.clone(),
                digest: digest.clone(),
            })
            .collect();
        drop(names);
        for dir in [FILES, GRAPH] {
            let d = self.build_dir.join(dir);
            fs::create_dir_all(&d).map_err(|source| TierError::Write { path: d, source })?;
        }

        // Per-file entries: link what the store has, parse the rest.
        let mut first_path: BTreeMap<&str, &str> = BTreeMap::new();
        for r in &rows {
            first_path.entry(&r.digest).or_insert(&r.path);
        }
        let distinct: Vec<(&str, &str)> = first_path.iter().map(|(d, p)| (*d, *p)).collect();
        let linked = par_map(
            &distinct,
            || (),
            |_, &(digest, _)| {
                if self.scratch {
                    return Ok(false);
                }
                self.link_stored(store, prev, digest)
            },
        );
        let mut to_parse: Vec<(&str, &str)> = Vec::new();
        for (&(digest, path), linked) in distinct.iter().zip(linked) {
            if !linked? {
                to_parse.push((digest, path));
            }
        }
        clock.lap("links");
        let mut symbols = Symbols {
            job: self,
            store,
            loaded: self.parse(store, &to_parse)?,
        };
        let parsed: HashSet<&str> = to_parse.iter().map(|(d, _)| *d).collect();
        clock.lap("per-file entries");

        // Error counts, from what was parsed or from the previous index.
        let prev_errors: HashMap<&str, u32> = prev
            .map(|p| {
                p.index
                    .files
                    .values()
                    .map(|f| (f.digest.as_str(), f.errors))
                    .collect()
            })
            .unwrap_or_default();
        let mut errors: HashMap<String, u32> = HashMap::new();
        for (&digest, &path) in &first_path {
            let n = match (symbols.loaded.get(digest), prev_errors.get(digest)) {
                (Some(s), _) => s.errors.len() as u32,
                (None, Some(&n)) => n,
                (None, None) => symbols.get(digest, path)?.errors.len() as u32,
            };
            errors.insert(digest.to_owned(), n);
        }

        // Interface digests: carried over for unchanged files, computed for the rest.
        let unchanged = |r: &Row| -> Option<&IndexFile> {
            let old = prev?.index.files.get(&r.path)?;
            (old.digest == r.digest && old.module == r.module && old.interface.is_some())
                .then_some(old)
        };
        let mut interfaces: Vec<Option<String>> = vec![None; rows.len()];
        let mut todo = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            match (&r.module, unchanged(r)) {
                (None, _) => {}
                (Some(_), Some(old)) => interfaces[i] = old.interface.clone(),
                (Some(_), None) => todo.push(i),
            }
        }
        symbols.preload(todo.iter().map(|&i| &rows[i]))?;
        let computed = par_map(
            &todo,
            || (),
            |_, &i| {
                let r = &rows[i];
                let s = symbols.loaded.get(&r.digest)?;
                let module = r.module.as_deref()?;
                Some(interface_digest(&Interface::new(
                    module,
                    is_package(&r.path),
                    s,
                )))
            },
        );
        for (&i, digest) in todo.iter().zip(computed) {
            interfaces[i] = digest;
        }
        clock.lap("interfaces");

        // Which module each name resolves to: the first path in order, as the
        // resolver's own index does.
        let mut providers: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            if let Some(m) = &r.module {
                providers.entry(m).or_insert(i);
            }
        }
        let answer_now = |m: &str| providers.get(m).and_then(|&i| interfaces[i].as_deref());

        // The files to resolve again.
        let named: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].module.is_some())
            .collect();
        let redo: BTreeSet<usize> = match prev {
            None => named.iter().copied().collect(),
            Some(p) => {
                let answer_then = |m: &str| {
                    let path = p.index.modules.get(m)?;
                    p.index.files.get(path)?.interface.as_deref()
                };
                let mut changed: HashSet<&str> = HashSet::new();
                for m in p
                    .index
                    .modules
                    .keys()
                    .map(String::as_str)
                    .chain(providers.keys().copied())
                {
                    let (then, now) = (answer_then(m), answer_now(m));
                    if then == now {
                        continue;
                    }
                    changed.insert(m);
                    // A module that appears or goes may turn its parent into a
                    // namespace package or back: files that asked about the
                    // parent recorded it as a dependency.
                    if then.is_none() || now.is_none() {
                        let mut prefix = m;
                        while let Some((parent, _)) = prefix.rsplit_once('.') {
                            changed.insert(parent);
                            prefix = parent;
                        }
                    }
                }
                let changed_ids: HashSet<u32> = p
                    .deps
                    .names
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| changed.contains(n.as_str()))
                    .map(|(i, _)| i as u32)
                    .collect();
                named
                    .iter()
                    .copied()
                    .filter(|&i| {
                        let r = &rows[i];
                        let same =
                            p.index.files.get(&r.path).is_some_and(|old| {
                                old.digest == r.digest && old.module == r.module
                            });
                        let consulted_changed = match p.deps.files.get(&r.path) {
                            Some(ids) => ids.iter().any(|id| changed_ids.contains(id)),
                            None => true,
                        };
                        !same || consulted_changed
                    })
                    .collect()
            }
        };

        // Resolve them in a partial project state: them, and every module they
        // consult, grown until nothing they ask about is missing.
        clock.lap("what to resolve");
        let mut members: BTreeSet<usize> = redo.clone();
        for &i in &redo {
            if let Some(&p) = rows[i].module.as_deref().and_then(|m| providers.get(m)) {
                members.insert(p);
            }
            let Some(p) = prev else { continue };
            for &id in p.deps.files.get(&rows[i].path).into_iter().flatten() {
                if let Some(&q) = p
                    .deps
                    .names
                    .get(id as usize)
                    .and_then(|m| providers.get(m.as_str()))
                {
                    members.insert(q);
                }
            }
        }
        let mut last: Option<ResolvedGraph> = None;
        let graph = loop {
            symbols.preload(members.iter().map(|&i| &rows[i]))?;
            let mut state = ProjectState::new();
            for &i in &members {
                let r = &rows[i];
                let s = symbols.get(&r.digest, &r.path)?;
                if let Some(m) = &r.module {
                    state.insert(r.path.clone(), m.clone(), s);
                }
            }
            clock.lap("partial state");
            let (graph, _) = resolve_incremental(last.as_ref(), &state);
            clock.lap("resolve");
            drop(state);
            let member_modules: BTreeMap<&str, ()> = members
                .iter()
                .filter_map(|&i| Some((rows[i].module.as_deref()?, ())))
                .collect();
            let mut missing = BTreeSet::new();
            for &i in &redo {
                let Some(resolved) = graph.files.get(&rows[i].path) else {
                    continue;
                };
                for (m, answer) in &resolved.deps {
                    if answer.is_some() {
                        continue;
                    }
                    if let Some(&p) = providers.get(m.as_str()) {
                        missing.insert(p);
                    } else if let Some(p) = first_under(&providers, m) {
                        if first_under(&member_modules, m).is_none() {
                            missing.insert(p);
                        }
                    }
                }
            }
            missing.retain(|p| !members.contains(p));
            if missing.is_empty() {
                break graph;
            }
            members.extend(missing);
            // The files being redone are resolved again, not reused: whether a
            // name is a namespace package is not among the answers a
            // resolution records, and that is what may have changed for them.
            let mut graph = graph;
            for &i in &redo {
                graph.files.remove(&rows[i].path);
            }
            last = Some(graph);
        };
        drop(last);
        let mut graph_files = graph.files;
        let mut fresh: BTreeMap<&str, ResolvedModule> = BTreeMap::new();
        for &i in &redo {
            let path = rows[i].path.as_str();
            if let Some(m) = graph_files.remove(path) {
                fresh.insert(path, m);
            }
        }
        drop(graph_files);
        drop(symbols);
        clock.lap("resolution");

        // deps.json: the fresh files' dependencies, the others' carried over
        // with the previous name table, so that an edit maps only its own.
        let mut deps = Deps {
            names: prev.map(|p| p.deps.names.clone()).unwrap_or_default(),
            files: BTreeMap::new(),
        };
        let mut ids: Option<HashMap<String, u32>> = None;
        for &i in &named {
            let path = &rows[i].path;
            let list: Vec<u32> = match (fresh.get(path.as_str()), prev) {
                (Some(m), _) => {
                    let ids = ids.get_or_insert_with(|| {
                        deps.names
                            .iter()
                            .enumerate()
                            .map(|(i, n)| (n.clone(), i as u32))
                            .collect()
                    });
                    m.deps
                        .keys()
                        .map(|n| {
                            *ids.entry(n.clone()).or_insert_with(|| {
                                deps.names.push(n.clone());
                                deps.names.len() as u32 - 1
                            })
                        })
                        .collect()
                }
                (None, Some(p)) => p.deps.files.get(path).cloned().unwrap_or_default(),
                (None, None) => Vec::new(),
            };
            deps.files.insert(path.clone(), list);
        }
        deps.compact();
        self.write_json(&self.build_dir.join(DEPS), &deps)?;
        drop(deps);
        clock.lap("deps.json");

        // Graph buckets: the ones holding a fresh or a departed file are
        // rewritten, the others linked from the previous entry as they are.
        let named_paths: HashSet<&str> = named.iter().map(|&i| rows[i].path.as_str()).collect();
        let mut touched: BTreeMap<String, Vec<(&str, ResolvedModule)>> = BTreeMap::new();
        for (path, m) in fresh {
            touched.entry(bucket_of(path)).or_default().push((path, m));
        }
        if let Some(p) = prev {
            for (path, f) in &p.index.files {
                if f.module.is_some() && !named_paths.contains(path.as_str()) {
                    touched.entry(bucket_of(path)).or_default();
                }
            }
        }
        let mut buckets: BTreeMap<String, String> = BTreeMap::new();
        if let Some(p) = prev {
            for (b, digest) in &p.index.graph {
                if touched.contains_key(b) {
                    continue;
                }
                let theirs = graph_path(&p.dir, digest);
                let ours = graph_path(&self.build_dir, digest);
                store::link(&theirs, &ours).map_err(|source| TierError::Read {
                    path: theirs.clone(),
                    source,
                })?;
                // Keep the store whole (the previous entry may come from a
                // shared cache): a later build links from it.
                let _ = store::link(&theirs, &store.graph_blob(digest));
                buckets.insert(b.clone(), digest.clone());
            }
        }
        let results: Vec<Result<Option<(String, String)>, TierError>> = {
            let touched: Vec<_> = touched.into_iter().collect();
            par_map(
                &touched,
                || (),
                |_, (b, fresh)| {
                    let mut bucket: Bucket =
                        match prev.and_then(|p| Some((p, p.index.graph.get(b)?))) {
                            Some((p, digest)) => read_json(&graph_path(&p.dir, digest))?,
                            None => Bucket::new(),
                        };
                    bucket.retain(|path, _| named_paths.contains(path.as_str()));
                    for (path, m) in fresh {
                        bucket.insert((*path).to_owned(), m.clone());
                    }
                    if bucket.is_empty() {
                        return Ok(None);
                    }
                    let bytes = serde_json::to_vec(&bucket).unwrap_or_default();
                    let digest = hex_digest(&bytes);
                    let stored = store.graph_blob(&digest);
                    store::put(&stored, &bytes, false)?;
                    let ours = graph_path(&self.build_dir, &digest);
                    store::link(&stored, &ours)
                        .map_err(|source| TierError::Write { path: ours, source })?;
                    Ok(Some((b.clone(), digest)))
                },
            )
        };
        for r in results {
            if let Some((b, digest)) = r? {
                buckets.insert(b, digest);
            }
        }

        clock.lap("graph buckets");

        // index.json
        let counts = Counts {
            files: rows.len(),
            parsed: to_parse.len(),
            reused: rows
                .iter()
                .filter(|r| !parsed.contains(r.digest.as_str()))
                .count(),
            modules: named.len(),
            resolved: redo.len(),
            resolve_reused: named.len() - redo.len(),
            files_with_errors: rows
                .iter()
                .filter(|r| errors.get(&r.digest).is_some_and(|&n| n > 0))
                .count(),
            pruned: 0,
        };
        let index = Index {
            format: INDEX_FORMAT,
            extractor_version: EXTRACTOR_VERSION,
            schema_version: SCHEMA_VERSION,
            counts: counts.clone(),
            files: rows
                .iter()
                .zip(interfaces)
                .map(|(r, interface)| {
                    (
                        r.path.clone(),
                        IndexFile {
                            digest: r.digest.clone(),
                            module: r.module.clone(),
                            interface,
                            errors: errors.get(&r.digest).copied().unwrap_or(0),
                        },
                    )
                })
                .collect(),
            modules: providers
                .iter()
                .map(|(m, &i)| ((*m).to_owned(), rows[i].path.clone()))
                .collect(),
            graph: buckets,
        };
        self.write_json(&self.build_dir.join(INDEX), &index)?;
        clock.lap("index.json");
        Ok(counts)
    }

    /// Link the stored per-file entry of `digest` into the entry; adopt it from
    /// the previous entry when the store lacks it. `false`: it must be parsed.
    fn link_stored(
        &self,
        store: &BlobStore,
        prev: Option<&Prev>,
        digest: &str,
    ) -> Result<bool, TierError> {
        let stored = store.file_blob(digest);
        let ours = file_path(&self.build_dir, digest);
        match store::link(&stored, &ours) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(TierError::Write { path: ours, source }),
        }
        let Some(p) = prev else { return Ok(false) };
        let theirs = file_path(&p.dir, digest);
        if store::link(&theirs, &stored).is_ok() && store::link(&stored, &ours).is_ok() {
            return Ok(true);
        }
        Ok(false)
    }

    /// Parse `(digest, path)` on every core; each result is stored and linked
    /// into the entry on the worker, and kept for the cross-file pass.
    fn parse(
        &self,
        store: &BlobStore,
        todo: &[(&str, &str)],
    ) -> Result<HashMap<String, Arc<FileSymbols>>, TierError> {
        let results = par_map(
            todo,
            || Extractor::new(ExtractOptions::default()),
            |extractor, &(digest, path)| -> Result<(String, Arc<FileSymbols>), TierError> {
                let symbols = read_and_extract(extractor, &self.project, path, digest)?;
                let bytes = serde_json::to_vec(&symbols).unwrap_or_default();
                let stored = store.file_blob(digest);
                store::put(&stored, &bytes, self.scratch)?;
                let ours = file_path(&self.build_dir, digest);
                store::link(&stored, &ours)
                    .map_err(|source| TierError::Write { path: ours, source })?;
                Ok((digest.to_owned(), Arc::new(symbols)))
            },
        );
        results.into_iter().collect()
    }

    fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), TierError> {
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        fs::write(path, bytes).map_err(|source| TierError::Write {
            path: path.to_owned(),
            source,
        })
    }
}

/// The path of the first module under `prefix.` in `modules`, if any: what
/// makes `prefix` a namespace package.
fn first_under<V: Copy>(modules: &BTreeMap<&str, V>, prefix: &str) -> Option<V> {
    let dotted = format!("{prefix}.");
    modules
        .range::<str, _>((
            std::ops::Bound::Excluded(prefix),
            std::ops::Bound::Unbounded,
        ))
        .next()
        .filter(|(m, _)| m.starts_with(&dotted))
        .map(|(_, v)| *v)
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
    let read = |source| TierError::Read {
        path: abs.clone(),
        source,
    };
    let size = fs::metadata(&abs).map_err(read)?.len();
    if size > MAX_FILE_BYTES as u64 {
        return Ok(FileSymbols {
            errors: vec![FileError::TooLarge {
                size,
                limit: MAX_FILE_BYTES as u64,
            }],
            ..FileSymbols::default()
        });
    }
    let bytes = fs::read(&abs).map_err(read)?;
    if hex_digest(&bytes) != digest {
        return Err(TierError::Changed {
            path: path.to_owned(),
        });
    }
    Ok(extractor.extract(&bytes))
}

/// Per-file symbols of this build: parsed ones, and stored ones read on demand.
struct Symbols<'a> {
    job: &'a Job,
    store: &'a BlobStore,
    loaded: HashMap<String, Arc<FileSymbols>>,
}

impl Symbols<'_> {
    fn get(&mut self, digest: &str, path: &str) -> Result<Arc<FileSymbols>, TierError> {
        if let Some(s) = self.loaded.get(digest) {
            return Ok(s.clone());
        }
        let s = self.load(digest, path)?;
        self.loaded.insert(digest.to_owned(), s.clone());
        Ok(s)
    }

    /// Read the per-file entries of `rows` not read yet, on every core.
    fn preload<'r>(&mut self, rows: impl Iterator<Item = &'r Row>) -> Result<(), TierError> {
        let mut seen = HashSet::new();
        let todo: Vec<(&str, &str)> = rows
            .filter(|r| !self.loaded.contains_key(&r.digest) && seen.insert(r.digest.as_str()))
            .map(|r| (r.digest.as_str(), r.path.as_str()))
            .collect();
        let this = &*self;
        let results = par_map(&todo, || (), |_, &(digest, path)| this.load(digest, path));
        for (&(digest, _), s) in todo.iter().zip(results) {
            self.loaded.insert(digest.to_owned(), s?);
        }
        Ok(())
    }

    /// A stored per-file entry; one that cannot be read back is parsed again
    /// from the file (when it still has this content) and replaced.
    fn load(&self, digest: &str, path: &str) -> Result<Arc<FileSymbols>, TierError> {
        let ours = file_path(&self.job.build_dir, digest);
        match read_json::<FileSymbols>(&ours) {
            Ok(s) => Ok(Arc::new(s)),
            Err(e) => {
                tracing::warn!("symtab: {e}; parsing `{path}` again");
                let mut extractor = Extractor::new(ExtractOptions::default());
                let symbols = read_and_extract(&mut extractor, &self.job.project, path, digest)?;
                let bytes = serde_json::to_vec(&symbols).unwrap_or_default();
                let stored = self.store.file_blob(digest);
                store::put(&stored, &bytes, true)?;
                let _ = fs::remove_file(&ours);
                store::link(&stored, &ours)
                    .map_err(|source| TierError::Write { path: ours, source })?;
                Ok(Arc::new(symbols))
            }
        }
    }
}

/// Phase timings, logged at debug level.
struct Clock(std::time::Instant);

impl Clock {
    fn new() -> Self {
        Clock(std::time::Instant::now())
    }

    fn lap(&mut self, what: &str) {
        // Resident memory too, where the platform says (Linux).
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

/// `f` over `items` on every core, each thread with its own state from
/// `init`; results in item order.
fn par_map<T: Sync, S, R: Send>(
    items: &[T],
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, &T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
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
