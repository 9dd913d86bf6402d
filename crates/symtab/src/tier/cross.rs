//! The cross-file pass of a build: which files to resolve again, and resolving
//! them in batches of bounded size.
//!
//! A file's resolution reads its own symbols and the answers to the questions it
//! asks about modules (each module's interface digest, or that there is no such
//! module — both recorded in its `deps` — and whether a name is a namespace
//! package, which is not recorded). So a file is redone when its content or
//! module name changed, or when a module it asked about changed its answer: its
//! interface changed, or it appeared or went (then its parent packages' namespace
//! answers may have changed too, so they count as changed).
//!
//! The files to redo are resolved a batch at a time in a partial
//! [`ProjectState`]: the batch, and the modules it is likely to consult (what its
//! files consulted last time, what their imports name). The state grows until
//! every module a batch file asked about that exists in the project is in it,
//! which makes each answer the one the whole project gives. Members that are not
//! in the batch are given placeholder resolutions that `resolve_incremental`
//! reuses as they are, so only the batch is resolved. A batch holds at most
//! `batch_bytes` of per-file entries (plus what it consults): memory is bounded by
//! the batch, not the project.

use crate::resolve::absolute;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::value::RawValue;

use super::build::{is_package, par_map_n, Clock, Prev, Row, Symbols};
use super::table::bucket_of;
use super::TierError;
use crate::{
    resolve_incremental, FileSymbols, ImportKind, ProjectState, ResolvedGraph, ResolvedModule,
};

/// Batches run side by side only when each gets at least this many bytes.
const MIN_PARALLEL_BATCH: u64 = 32 << 20;

/// One graph bucket's fresh resolutions: (path, compact JSON).
pub(super) type Fragments = Vec<(String, Box<RawValue>)>;

/// The resolutions a build computed.
#[derive(Default)]
pub(super) struct Fresh {
    /// Graph bucket → (path, the compact JSON of its `ResolvedModule`).
    pub fragments: BTreeMap<String, Fragments>,
    /// Path → the modules its resolution consulted.
    pub deps: HashMap<String, Vec<String>>,
    /// How many files were resolved.
    pub resolved: usize,
}

pub(super) struct Pass<'a> {
    pub rows: &'a [Row],
    pub interfaces: &'a [Option<String>],
    pub prev: Option<&'a Prev>,
    pub batch_bytes: u64,
}

impl Pass<'_> {
    pub fn run(&self, symbols: &mut Symbols<'_>, clock: &mut Clock) -> Result<Fresh, TierError> {
        let rows = self.rows;
        // Which path provides each module: the first in path order, as the
        // resolver's own index does.
        let mut providers: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            if let Some(m) = &r.module {
                providers.entry(m).or_insert(i);
            }
        }
        let redo = self.redo(&providers);
        clock.lap("what to resolve");

        // `batch_bytes` is what may be in flight: batches run side by side only
        // when each still gets a fair share (small batches re-read the modules
        // they all consult, the hubs, once each).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
        let threads = (self.batch_bytes / MIN_PARALLEL_BATCH).clamp(1, cores);
        let per_batch = (self.batch_bytes / threads).max(1);
        let mut batches: Vec<Vec<usize>> = Vec::new();
        let mut batch: Vec<usize> = Vec::new();
        let mut bytes = 0u64;
        for &i in &redo {
            let size = symbols.size(&rows[i].digest);
            if !batch.is_empty() && bytes + size > per_batch {
                batches.push(std::mem::take(&mut batch));
                bytes = 0;
            }
            batch.push(i);
            bytes += size;
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        let mut fresh = Fresh {
            resolved: redo.len(),
            ..Fresh::default()
        };
        if threads == 1 || batches.len() == 1 {
            // One batch resolves (one core) while the next one's files are read
            // (the other core).
            std::thread::scope(|scope| {
                let mut next: Option<std::thread::ScopedJoinHandle<'_, _>> = None;
                for (k, batch) in batches.iter().enumerate() {
                    if let Some(loading) = next.take() {
                        match loading.join() {
                            Ok(loaded) => symbols.absorb(loaded?),
                            Err(_) => tracing::warn!("symtab: a reading thread failed"),
                        }
                    }
                    if let Some(following) = batches.get(k + 1) {
                        let reader = symbols.reader();
                        next =
                            Some(scope.spawn(move || {
                                reader.read_all(following.iter().map(|&i| &rows[i]))
                            }));
                    }
                    self.batch(batch, &providers, symbols, &mut fresh)?;
                }
                Ok::<_, TierError>(())
            })?;
            return Ok(fresh);
        }
        let base = &*symbols;
        let done = par_map_n(
            threads as usize,
            &batches,
            || base.fork(),
            |symbols, batch| {
                let mut part = Fresh::default();
                self.batch(batch, &providers, symbols, &mut part)
                    .map(|()| part)
            },
        );
        for part in done {
            let part = part?;
            for (bucket, list) in part.fragments {
                fresh.fragments.entry(bucket).or_default().extend(list);
            }
            fresh.deps.extend(part.deps);
        }
        Ok(fresh)
    }

    /// The named files whose resolution must be computed (in path order).
    fn redo(&self, providers: &BTreeMap<&str, usize>) -> BTreeSet<usize> {
        let rows = self.rows;
        let named = (0..rows.len()).filter(|&i| rows[i].module.is_some());
        let Some(p) = self.prev else {
            return named.collect();
        };
        let answer_now = |m: &str| {
            providers
                .get(m)
                .and_then(|&i| self.interfaces[i].as_deref())
        };
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
            .filter(|&i| {
                let r = &rows[i];
                let same = p
                    .index
                    .files
                    .get(&r.path)
                    .is_some_and(|old| old.digest == r.digest && old.module == r.module);
                let consulted_changed = match p.deps.files.get(&r.path) {
                    Some(ids) => ids.iter().any(|id| changed_ids.contains(id)),
                    None => true,
                };
                !same || consulted_changed
            })
            .collect()
    }

    /// Resolve the files of `batch` into `fresh`.
    fn batch(
        &self,
        batch: &[usize],
        providers: &BTreeMap<&str, usize>,
        symbols: &mut Symbols<'_>,
        fresh: &mut Fresh,
    ) -> Result<(), TierError> {
        let mut clock = Clock::new();
        let rows = self.rows;
        let in_batch: HashSet<usize> = batch.iter().copied().collect();
        symbols.preload(batch.iter().map(|&i| &rows[i]))?;

        // The members: the batch, the providers of its module names, and what its
        // files are likely to consult.
        let mut members: BTreeSet<usize> = batch.iter().copied().collect();
        let mut names: Vec<String> = Vec::new();
        for &i in batch {
            let r = &rows[i];
            let Some(module) = r.module.as_deref() else {
                continue;
            };
            names.push(module.to_owned());
            if let Some(p) = self.prev {
                if let Some(ids) = p.deps.files.get(&r.path) {
                    names.extend(
                        ids.iter()
                            .filter_map(|&id| p.deps.names.get(id as usize).cloned()),
                    );
                }
            }
            let s = symbols.get(&r.digest, &r.path)?;
            import_candidates(module, is_package(&r.path), &s, &mut names);
        }
        members.extend(
            names
                .iter()
                .filter_map(|m| providers.get(m.as_str()).copied()),
        );
        symbols.retain(members.iter().map(|&i| rows[i].digest.as_str()));

        let mut state = ProjectState::new();
        let mut inserted: HashSet<usize> = HashSet::new();
        let mut last = ResolvedGraph::default();
        let graph = loop {
            let new: Vec<usize> = members
                .iter()
                .copied()
                .filter(|i| !inserted.contains(i))
                .collect();
            symbols.preload(new.iter().map(|&i| &rows[i]))?;
            clock.lap("load");
            for &i in &new {
                let r = &rows[i];
                let Some(module) = &r.module else { continue };
                let s = symbols.get(&r.digest, &r.path)?;
                if !in_batch.contains(&i) {
                    // Reused by `resolve_incremental` as it is: only the batch is
                    // resolved. (Its content matches, and it records no question.)
                    last.files.insert(
                        r.path.clone(),
                        ResolvedModule {
                            module: module.clone(),
                            symbols_digest: symbols.symbols_digest(&r.digest, &s),
                            deps: BTreeMap::new(),
                            imports: Vec::new(),
                            calls: Vec::new(),
                        },
                    );
                }
                state.insert(r.path.clone(), module.clone(), s);
                inserted.insert(i);
            }
            clock.lap("partial state");
            let (graph, stats) = resolve_incremental(Some(&last), &state);
            tracing::debug!(
                "symtab: batch of {}: {} members, {} resolved, {} reused",
                batch.len(),
                members.len(),
                stats.resolved,
                stats.reused
            );
            clock.lap("resolve");

            // Modules a batch file asked about that exist in the project but not
            // in the state; and names that are namespace packages in the
            // project but not in the state.
            let member_modules: BTreeMap<&str, ()> = members
                .iter()
                .filter_map(|&i| Some((rows[i].module.as_deref()?, ())))
                .collect();
            let mut missing = BTreeSet::new();
            let mut redo = Vec::new();
            for &i in batch {
                let Some(resolved) = graph.files.get(&rows[i].path) else {
                    continue;
                };
                let before = missing.len();
                for (m, answer) in &resolved.deps {
                    if answer.is_some() {
                        continue;
                    }
                    if let Some(&p) = providers.get(m.as_str()) {
                        missing.insert(p);
                    } else if let Some(p) = first_under(providers, m) {
                        if first_under(&member_modules, m).is_none() {
                            missing.insert(p);
                        }
                    }
                }
                if missing.len() > before {
                    redo.push(i);
                }
            }
            missing.retain(|p| !members.contains(p));
            if missing.is_empty() {
                break graph;
            }
            members.extend(missing);
            // The files that asked about what was missing are resolved again, not
            // reused: whether a name is a namespace package is not among the
            // answers a resolution records.
            last = graph;
            for i in redo {
                last.files.remove(&rows[i].path);
            }
        };
        drop(state);

        let mut files = graph.files;
        for &i in batch {
            let path = &rows[i].path;
            let Some(resolved) = files.remove(path) else {
                continue;
            };
            fresh
                .deps
                .insert(path.clone(), resolved.deps.keys().cloned().collect());
            let json = serde_json::to_string(&resolved).unwrap_or_default();
            let raw = RawValue::from_string(json).map_err(|e| TierError::Corrupt {
                path: path.into(),
                why: e.to_string(),
            })?;
            fresh
                .fragments
                .entry(bucket_of(path))
                .or_default()
                .push((path.clone(), raw));
        }
        clock.lap("batch results");
        Ok(())
    }
}

/// The path index of the first module under `prefix.` in `modules`, if any:
/// what makes `prefix` a namespace package.
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

/// The module names the imports of `symbols` may load: a first guess at what
/// its resolution consults (the rest is found by growing the state).
fn import_candidates(module: &str, is_package: bool, symbols: &FileSymbols, out: &mut Vec<String>) {
    for import in &symbols.imports {
        match import.kind {
            ImportKind::Import => {
                for name in &import.names {
                    prefixes(&name.name, out);
                }
            }
            ImportKind::From => {
                let Some(base) =
                    absolute(module, is_package, import.level, import.module.as_deref())
                else {
                    continue;
                };
                for name in &import.names {
                    out.push(format!("{base}.{}", name.name));
                }
                prefixes(&base, out);
            }
        }
    }
}

fn prefixes(dotted: &str, out: &mut Vec<String>) {
    let mut end = 0;
    for (i, c) in dotted.char_indices() {
        if c == '.' {
            out.push(dotted[..i].to_owned());
        }
        end = i + c.len_utf8();
    }
    out.push(dotted[..end].to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_imports_are_made_absolute() {
        assert_eq!(
            absolute("a.b.c", false, 1, Some("d")).as_deref(),
            Some("a.b.d")
        );
        assert_eq!(absolute("a.b", true, 1, None).as_deref(), Some("a.b"));
        assert_eq!(
            absolute("a.b.c", false, 2, Some("x.y")).as_deref(),
            Some("a.x.y")
        );
        assert_eq!(absolute("top", false, 1, Some("x")), None);
        assert_eq!(
            absolute("m", false, 0, Some("os.path")).as_deref(),
            Some("os.path")
        );
    }

    #[test]
    fn prefixes_of_a_dotted_name() {
        let mut out = Vec::new();
        prefixes("a.b.c", &mut out);
        assert_eq!(out, ["a", "a.b", "a.b.c"]);
    }
}
