//! The cross-file pass of a build: which files to resolve again, and
//! resolving them on every core.
//!
//! A file's resolution reads its own symbols and the answers to the questions it
//! asks about modules: each module's interface and its digest, or that there is
//! no such module (both recorded in its `deps`), and whether a name is a
//! namespace package (not recorded). So a file is redone when its content or
//! module name changed, or when a module it asked about changed its answer: its
//! interface changed, or it appeared or went (then its parent packages'
//! namespace answers may have changed too, so they count as changed).
//!
//! The files to redo are resolved against the whole project state through
//! [`World`]: every module name is known from the paths, and a module's
//! interface is computed the first time a resolution asks for it — from the
//! symbols a build just parsed, or from the module's per-file entry. An edit
//! thus reads the edited files and the modules they consult, not the project;
//! a full build has every interface from the parse already.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Mutex, OnceLock};

use super::build::{is_package, par_map, Loader, Prev, Row};
use super::table::bucket_of;
use super::TierError;
use py_symbols::codec::FastMap;
use py_symbols::{codec, Interface};
use py_symbols::{first_under, resolve_file, FileToResolve, ModuleInfo, Modules};
use tiers_core::{Progress, Unit};

/// One graph bucket's fresh resolutions: (path, encoded `ResolvedModule`).
pub(super) type Fragments = Vec<(String, Vec<u8>)>;

/// The resolutions a build computed.
#[derive(Default)]
pub(super) struct Fresh {
    /// Graph bucket → (path, its encoded `ResolvedModule`).
    pub fragments: BTreeMap<String, Fragments>,
    /// Path → the modules its resolution consulted.
    pub deps: FastMap<String, Vec<String>>,
    /// How many files were resolved.
    pub resolved: usize,
}

pub(super) struct Pass<'a> {
    pub rows: &'a [Row],
    /// Interface digest of each named row.
    pub interfaces: &'a [Option<String>],
    pub prev: Option<&'a Prev>,
    pub progress: &'a Progress,
}

impl Pass<'_> {
    /// Resolve what must be. `infos` holds, per row, the module info already
    /// known (the build parsed it, or read it for its digest); the others are
    /// computed as they are asked for.
    pub fn run(
        &self,
        loader: &Loader<'_>,
        infos: &[OnceLock<Option<ModuleInfo>>],
    ) -> Result<Fresh, TierError> {
        let rows = self.rows;
        // Which path provides each module: the first in path order, as the
        // index does.
        let mut providers: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, r) in rows.iter().enumerate() {
            if let Some(m) = &r.module {
                providers.entry(m).or_insert(i);
            }
        }
        let redo: Vec<usize> = self.redo(&providers).into_iter().collect();
        self.progress.phase_with_total(
            "resolving modules",
            redo.len() as u64,
            Unit::Items("modules"),
        );
        let world = World {
            rows,
            interfaces: self.interfaces,
            by_name: providers.iter().map(|(&m, &i)| (m, i)).collect(),
            providers,
            infos,
            loader,
            failed: Mutex::new(None),
        };
        let done = par_map(&redo, |&i| {
            let r = &rows[i];
            let Some(module) = r.module.as_deref() else {
                return Ok(None);
            };
            let symbols = loader.load(r)?;
            let resolved = resolve_file(
                &world,
                FileToResolve {
                    module,
                    is_package: is_package(&r.path),
                    symbols: &symbols,
                    symbols_digest: &r.digest,
                    interface: infos[i]
                        .get()
                        .and_then(Option::as_ref)
                        .map(|m| &m.interface),
                },
            );
            let deps: Vec<String> = resolved.deps.keys().cloned().collect();
            self.progress.advance(1);
            Ok::<_, TierError>(Some((deps, codec::encode_resolved(&resolved))))
        });
        if let Some(e) = world.failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        let mut fresh = Fresh {
            resolved: redo.len(),
            ..Fresh::default()
        };
        for (&i, result) in redo.iter().zip(done) {
            let Some((deps, body)) = result? else {
                continue;
            };
            let path = &rows[i].path;
            fresh.deps.insert(path.clone(), deps);
            fresh
                .fragments
                .entry(bucket_of(path))
                .or_default()
                .push((path.clone(), body));
        }
        Ok(fresh)
    }

    /// The named files whose resolution must be computed (in path order).
    ///
    /// Rows and the previous index are both in path order, so they are walked
    /// side by side: only the modules of rows that differ can have another
    /// answer now, and only those are looked up.
    fn redo(&self, providers: &BTreeMap<&str, usize>) -> BTreeSet<usize> {
        let rows = self.rows;
        let named = (0..rows.len()).filter(|&i| rows[i].module.is_some());
        let Some(p) = self.prev else {
            return named.collect();
        };
        // Rows whose content and module are the previous ones; the modules of
        // every row added, removed or changed.
        let mut same = vec![false; rows.len()];
        let mut touched: HashSet<&str> = HashSet::new();
        let mut old = p.index.files.iter().peekable();
        for (i, r) in rows.iter().enumerate() {
            while let Some((_, f)) = old.next_if(|(path, _)| path.as_str() < r.path.as_str()) {
                touched.extend(f.module.as_deref());
            }
            match old.next_if(|(path, _)| **path == r.path) {
                Some((_, f)) => {
                    same[i] = f.digest == r.digest && f.module == r.module;
                    if !same[i] || f.interface != self.interfaces[i] {
                        touched.extend(f.module.as_deref());
                        touched.extend(r.module.as_deref());
                    }
                }
                None => touched.extend(r.module.as_deref()),
            }
        }
        touched.extend(old.filter_map(|(_, f)| f.module.as_deref()));

        let answer_now = |m: &str| {
            providers
                .get(m)
                .and_then(|&i| self.interfaces[i].as_deref())
        };
        // Which file provided each module then: the first in path order.
        let mut then_modules: FastMap<&str, Option<&str>> = FastMap::default();
        if !touched.is_empty() {
            for f in p.index.files.values() {
                if let Some(m) = &f.module {
                    then_modules.entry(m).or_insert(f.interface.as_deref());
                }
            }
        }
        let answer_then = |m: &str| then_modules.get(m).copied().flatten();
        let mut changed: HashSet<&str> = HashSet::new();
        for m in touched {
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
        let changed_ids: HashSet<u32> = match changed.is_empty() {
            true => HashSet::new(),
            false => p
                .index
                .names
                .iter()
                .enumerate()
                .filter(|(_, n)| changed.contains(n))
                .map(|(i, _)| i as u32)
                .collect(),
        };
        let mut deps = p.index.files.iter().peekable();
        named
            .filter(|&i| {
                let r = &rows[i];
                while deps
                    .next_if(|(path, _)| path.as_str() < r.path.as_str())
                    .is_some()
                {}
                let consulted_changed = match deps.next_if(|(path, _)| **path == r.path) {
                    Some((_, f)) => f.deps.iter().any(|id| changed_ids.contains(id)),
                    None => true,
                };
                !same[i] || consulted_changed
            })
            .collect()
    }
}

/// The project state as the resolver sees it: every module by name, each
/// module's interface computed once, when first asked for.
struct World<'a> {
    rows: &'a [Row],
    interfaces: &'a [Option<String>],
    /// Module → the row that provides it, in name order (for namespaces) and
    /// hashed (for lookups).
    providers: BTreeMap<&'a str, usize>,
    by_name: FastMap<&'a str, usize>,
    infos: &'a [OnceLock<Option<ModuleInfo>>],
    loader: &'a Loader<'a>,
    /// The first module whose symbols could not be read: the build fails.
    failed: Mutex<Option<TierError>>,
}

impl World<'_> {
    fn info(&self, i: usize) -> Option<ModuleInfo> {
        let r = &self.rows[i];
        let module = r.module.as_deref()?;
        match self.loader.load(r) {
            Ok(symbols) => {
                let interface = Interface::new(module, is_package(&r.path), &symbols);
                Some(match &self.interfaces[i] {
                    // The digest the redo decision used, of this same interface.
                    Some(digest) => ModuleInfo {
                        interface,
                        digest: digest.clone(),
                    },
                    None => ModuleInfo::new(interface),
                })
            }
            Err(e) => {
                let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                failed.get_or_insert(e);
                None
            }
        }
    }
}

impl Modules for World<'_> {
    fn get(&self, module: &str) -> Option<&ModuleInfo> {
        let &i = self.by_name.get(module)?;
        self.infos[i].get_or_init(|| self.info(i)).as_ref()
    }

    fn has_submodules(&self, module: &str) -> bool {
        first_under(&self.providers, module).is_some()
    }
}
