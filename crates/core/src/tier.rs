//! The one trait every kind implements.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::blobs::{Blobs, Digest};
use crate::error::Result;
use crate::inputs::{InputSet, InputSpec, Inputs};
use crate::key::{Freshness, Key, KeyDoc};
use crate::progress::Progress;

/// A kind of artifact: what its key is made of, how to build it, how to check it.
///
/// Who implements it: each kind crate (`tiers-command`, the venv kinds, `codeql`,
/// `symtab`) and embedders with a tool of their own. Who calls it: only the
/// [`Engine`](crate::Engine), which owns everything that must be right once —
/// hashing, locking, publication, policy, upstream ordering and reasons.
///
/// `key`, `build` and `path` are required: they are what differs between kinds.
/// `probe` defaults to "the marker is there, so it is fresh"; kinds whose artifact can
/// rot in place (a venv whose interpreter vanished) override it. The other methods
/// are capabilities with defaults most kinds keep.
#[async_trait]
pub trait Tier: Send + Sync {
    /// The key document: every input that can change the artifact. Hash declared
    /// inputs through [`Context::inputs`]; the engine adds upstream keys itself.
    async fn key(&self, cx: &Context) -> Result<KeyDoc>;

    /// Is the published entry for this key usable? Cheap: a health check, no rebuild.
    /// The engine has already checked that the entry's marker exists and matches.
    async fn probe(&self, cx: &Context, entry: &Entry) -> Result<Freshness> {
        let _ = (cx, entry);
        Ok(Freshness::Fresh)
    }

    /// Produce the artifact into `entry.build_dir`: a fresh staging directory, or the
    /// final directory itself for kinds that [`build in place`](Tier::builds_in_place).
    async fn build(&self, cx: &Context, entry: &Entry) -> Result<BuildOutcome>;

    /// Where a consumer finds the artifact of this (published) entry.
    fn path(&self, entry: &Entry) -> PathBuf;

    /// Whether the artifact must be built at its final path (venvs are not
    /// relocatable). The engine then builds under the key's lock in the final
    /// directory and writes the marker last, instead of renaming a staging dir.
    fn builds_in_place(&self) -> bool {
        false
    }

    /// For kinds that [build in place](Tier::builds_in_place): bring `entry` — the
    /// published entry of this very key, which [`Tier::probe`] found stale — up to
    /// date where it stands, instead of building it again from nothing (a venv whose
    /// dependencies are unchanged re-installs only the project itself).
    ///
    /// `entry.data` is the marker's. `Ok(None)`: the kind cannot, and the engine
    /// rebuilds as usual. `Ok(Some(outcome))`: done; the engine writes a marker with
    /// `outcome` (same key, same document) and reports the tier `rebuilt` with the
    /// probe's reasons. The engine calls it only when the rebuild is not forced,
    /// under the key's lock, after taking the marker away, so an update that fails
    /// or is killed leaves a directory without a marker: debris, rebuilt next time.
    async fn update_in_place(&self, cx: &Context, entry: &Entry) -> Result<Option<BuildOutcome>> {
        let _ = (cx, entry);
        Ok(None)
    }

    /// What changed since `entry` was built that its key does not cover, one
    /// sentence each, for `tiers explain` ("`pyproject.toml`: [tool.ruff] changed;
    /// the key does not cover it"). `entry` is the one serving the current key.
    async fn uncovered_changes(&self, cx: &Context, entry: &Entry) -> Result<Vec<String>> {
        let _ = (cx, entry);
        Ok(Vec::new())
    }

    /// The `eager` policy when the configuration does not set one: whether
    /// `tiers build --eager` forces this tier.
    fn eager_default(&self) -> bool {
        true
    }

    /// How many entries retention keeps when the configuration sets no `keep`;
    /// `None` keeps every entry.
    fn keep_default(&self) -> Option<usize> {
        None
    }

    /// Whether entries may go to and come from a shared cache. Venvs are not
    /// relocatable, so their kinds say no.
    fn shareable(&self) -> bool {
        true
    }
}

/// What a build reports besides its artifact.
#[derive(Clone, Debug, Default)]
pub struct BuildOutcome {
    /// The declared inputs the build actually read, when the kind can tell; `None`
    /// means all of them.
    pub used_inputs: Option<Vec<String>>,
    /// Kind-specific facts recorded in the entry marker (which backend ran…), given
    /// back to [`Tier::probe`] as [`Entry::data`].
    pub data: Value,
    /// One line for the report ("parsed 1 file, reused 11,599").
    pub summary: Option<String>,
    /// Blobs the entry names besides its files: those the kind stored through
    /// [`Context::blobs`] (or found there) and reads back later. The engine keeps
    /// them while the entry lives and carries them to a shared cache with it.
    pub blobs: Vec<Digest>,
}

/// One entry of a tier: a key and its directory.
#[derive(Clone, Debug)]
pub struct Entry {
    pub key: Key,
    /// The published directory, `<tier root>/<key>`.
    pub dir: PathBuf,
    /// Where [`Tier::build`] writes: a staging directory or `dir` itself.
    pub build_dir: PathBuf,
    /// The key document of this entry.
    pub doc: Arc<KeyDoc>,
    /// [`BuildOutcome::data`] as recorded in the marker; `Null` while building.
    pub data: Value,
}

/// What the engine knows of an upstream tier when a downstream one runs.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub key: Key,
    /// The upstream artifact's [`Tier::path`].
    pub path: PathBuf,
}

/// The engine's view given to a tier for one run.
#[derive(Clone)]
pub struct Context {
    pub(crate) tier: String,
    pub(crate) project: PathBuf,
    pub(crate) cache_dir: PathBuf,
    pub(crate) blobs: Blobs,
    pub(crate) tier_root: PathBuf,
    pub(crate) checkout: crate::store::Checkout,
    pub(crate) inputs: Arc<Inputs>,
    pub(crate) upstream: BTreeMap<String, Upstream>,
    pub(crate) verbose: bool,
    pub(crate) building: bool,
    /// The last entry, once read: its marker holds the whole key document,
    /// which the engine's lookup has often parsed already.
    pub(crate) previous: Arc<std::sync::OnceLock<Option<Entry>>>,
    /// This tier's line on the display; dropped with the last clone of the context.
    pub(crate) progress: Progress,
}

impl Context {
    /// A context outside the engine, for a kind's own tests and for tools that
    /// drive one tier by hand: no upstream tiers, not verbose. `tier_root` holds
    /// the tier's entries; `inputs` must be the project's, with the cache dir and
    /// `tier_root` among its skipped directories.
    pub fn new(
        tier: impl Into<String>,
        project: PathBuf,
        cache_dir: PathBuf,
        tier_root: PathBuf,
        inputs: Arc<Inputs>,
    ) -> Context {
        Context {
            tier: tier.into(),
            checkout: crate::store::Checkout::of(&project),
            project,
            blobs: Blobs::of_cache_dir(&cache_dir),
            cache_dir,
            tier_root,
            inputs,
            upstream: BTreeMap::new(),
            verbose: false,
            building: true,
            previous: Default::default(),
            progress: Progress::none(),
        }
    }

    /// The tier's name in `tiers.toml`.
    pub fn tier(&self) -> &str {
        &self.tier
    }
    /// The project directory (absolute).
    pub fn project(&self) -> &Path {
        &self.project
    }
    /// The cache dir (absolute).
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }
    /// The cache dir's blob store: kinds that produce content-addressed parts put
    /// and read them here, and name them in [`BuildOutcome::blobs`]. A build holds
    /// the store's lease, so no blob an entry names goes while it runs.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }
    /// The directory holding this tier's entries.
    pub fn tier_root(&self) -> &Path {
        &self.tier_root
    }
    /// Hash the project files `spec` matches (cached for the run, shared by tiers).
    pub fn inputs(&self, spec: &InputSpec) -> Result<InputSet> {
        self.inputs.collect_with(spec, &self.progress)
    }
    /// The project's walkable files, relative and sorted.
    pub fn project_files(&self) -> &[String] {
        self.inputs.files()
    }
    /// The current digest of one project file.
    pub fn digest_of(&self, rel: &str) -> Result<Option<String>> {
        self.inputs.digest_of(rel)
    }
    /// The upstream tiers named in `after`, with their keys and paths.
    pub fn upstream(&self) -> &BTreeMap<String, Upstream> {
        &self.upstream
    }
    /// The entry to build incrementally from: the one this checkout's last
    /// successful build of the tier resolved to, else (a checkout new to a shared
    /// cache dir) the tier's most recently used entry. It may be for other inputs;
    /// never write into it.
    pub fn previous(&self) -> Option<Entry> {
        self.previous
            .get_or_init(|| {
                let store = self.store();
                let marker = match store.current(&self.checkout) {
                    Some(key) => store.resolve(&key).ok().flatten(),
                    None => store
                        .entries()
                        .ok()?
                        .into_iter()
                        .find_map(|e| store.marker(&e.key).ok().flatten()),
                }?;
                Some(crate::engine::entry_of(&store, marker))
            })
            .clone()
    }

    /// The directories of the tier's published entries, most recently used
    /// first (no marker is read): for kinds that reuse parts of any of them.
    /// One may be gone by the time it is read; never write into one.
    pub fn entry_dirs(&self) -> Vec<PathBuf> {
        self.store()
            .entries()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.dir)
            .collect()
    }

    fn store(&self) -> crate::store::Store {
        crate::store::Store::new(&self.tier_root, &self.tier)
    }

    /// Whether this run may build (`tiers build`) rather than only report what a
    /// build would do (`tiers status`, `explain`): a kind may start work for its
    /// build from [`Tier::key`] only then, and must finish or join it itself.
    pub fn building(&self) -> bool {
        self.building
    }

    /// Whether the user asked for verbose output: kinds may stream tool output.
    pub fn verbose(&self) -> bool {
        self.verbose
    }

    /// Where this tier reports what it is doing and how far along it is (a no-op
    /// unless a display listens). Kinds report here and never print.
    pub fn progress(&self) -> &Progress {
        &self.progress
    }
}
