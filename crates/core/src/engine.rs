//! The engine: plans tiers in `after` order and decides, per tier, whether to reuse,
//! build or skip — and why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::blobs::{Blobs, Swept};
use crate::candidates::{Candidates, CANDIDATE_LIMIT};
use crate::config::{self, ConfigSource, Rebuild, RemoteConfig, TierCommon, TierSpec};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::inputs::Inputs;
use crate::key::{Freshness, Key, KeyDoc, Reason};
use crate::process;
use crate::progress::Reporter;
use crate::registry::Registry;
use crate::report::{PathsReport, Report, Status, TierPath, TierReport};
use crate::shared::SharedCache;
use crate::store::{self, Checkout, KeyLock, Marker, Store};
use crate::tier::{Context, Entry, Tier, Upstream};

/// Which tiers a build forces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Force {
    #[default]
    None,
    /// `--rebuild all`
    All,
    /// `--rebuild a,b`
    Tiers(Vec<String>),
}

/// One `tiers build`.
#[derive(Clone, Debug, Default)]
pub struct BuildRequest {
    /// Tiers to build, with their upstreams; empty means all.
    pub tiers: Vec<String>,
    pub rebuild: Force,
    /// Force every tier whose `eager` policy is true.
    pub eager: bool,
}

/// How to open a project.
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    pub config: ConfigSource,
    /// Kinds may stream their tools' output to stderr.
    pub verbose: bool,
}

struct Planned {
    name: String,
    kind: String,
    common: TierCommon,
    eager: bool,
    keep: Option<usize>,
    tier: Box<dyn Tier>,
    store: Store,
}

/// A project opened with its configuration: the tiers planned in dependency order.
pub struct Engine {
    project: PathBuf,
    /// This checkout: its pointers are its own, whoever else shares the cache dir.
    checkout: Checkout,
    /// Pointers unused for longer no longer keep their entries from retention.
    pointer_ttl: std::time::Duration,
    cache_dir: PathBuf,
    config_file: Option<PathBuf>,
    tiers: Vec<Planned>,
    inputs: Arc<Inputs>,
    verbose: bool,
    remote: RemoteConfig,
    shared: Option<Arc<dyn SharedCache>>,
    progress: Reporter,
}

/// What the engine found for one tier before acting on it.
struct Lookup {
    doc: Arc<KeyDoc>,
    key: Key,
    freshness: Freshness,
    /// The entry serving `key` (its own or, through an alias, another's), when one
    /// is there and readable.
    serving: Option<Entry>,
    /// An entry built for other inputs that this key can reuse (discovered inputs).
    restored: Option<(Marker, Vec<Reason>)>,
    /// The tier's last used entry, when it differs from `key`'s.
    current: Option<Key>,
}

impl Lookup {
    /// Whether the tier had an entry: one serving the key, a last one of this
    /// checkout, or a corrupt one (stale without either).
    fn existed(&self) -> bool {
        self.serving.is_some()
            || self.current.is_some()
            || matches!(self.freshness, Freshness::Stale(_))
    }
}

/// An entry retention removed (or, in a dry run, would remove).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Removed {
    pub tier: String,
    pub key: Key,
    pub dir: PathBuf,
    pub bytes: u64,
}

/// What `tiers gc` removed: entries, then blobs no entry names.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Collected {
    pub removed: Vec<Removed>,
    /// `None` in a dry run, or when a build held the blob store.
    pub swept: Option<Swept>,
}

/// `tiers explain`: a tier's key document against its last entry's.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Explanation {
    pub tier: String,
    pub kind: String,
    pub key: Key,
    pub doc: KeyDoc,
    /// The key the tier's last successful build resolved to.
    pub last_key: Option<Key>,
    pub last_doc: Option<KeyDoc>,
    pub fresh: bool,
    pub reasons: Vec<Reason>,
    /// The inputs the last entry's build reported using (`None`: all of them).
    pub used_inputs: Option<Vec<String>>,
    /// Entry reused through discovered inputs, when one would be.
    pub restored_from: Option<Key>,
    /// The entry serving this key when it is another key's (restored earlier
    /// through discovered inputs).
    pub served_by: Option<Key>,
    /// What changed since the serving entry was built that its key does not cover
    /// ([`Tier::uncovered_changes`]), one sentence each.
    pub uncovered: Vec<String>,
    /// Every candidate of this key's structure key, with why it matches or not.
    pub candidates: Vec<CandidateVerdict>,
}

/// One discovered-inputs candidate as `tiers explain` judges it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct CandidateVerdict {
    pub entry: Key,
    pub used: Vec<String>,
    /// Used inputs whose digest differs now: the candidate is rejected when non-empty.
    pub changed: Vec<String>,
    /// Whether the candidate's entry is still in the store.
    pub present: bool,
    /// Whether the candidate agrees with its entry's marker: the inputs it lists
    /// are those the entry's build reported using, with the digests they had then.
    pub consistent: bool,
}

impl Engine {
    /// Load the configuration, make every tier through `registry`, and order them.
    /// Configuration errors come back here, before anything is built.
    pub fn open(options: EngineOptions, registry: &Registry) -> Result<Engine> {
        let mut source = options.config;
        source.project = source.project.canonicalize().map_err(|e| {
            Error::config(format!(
                "the project directory `{}` cannot be opened: {e}",
                source.project.display()
            ))
        })?;
        let project = source.project.clone();
        let loaded = config::load(&source)?;
        let cache_dir = resolve(&project.join(&loaded.config.cache.dir));
        store::check_cache_dir(&cache_dir)?;
        if project.starts_with(&cache_dir) {
            return Err(Error::config(format!(
                "the cache dir `{}` holds the project `{}`: choose a cache dir inside the project or beside it",
                cache_dir.display(),
                project.display()
            )));
        }
        let mut tiers = Vec::new();
        for name in loaded.config.tiers.keys() {
            let spec = TierSpec::new(&loaded, name, &project)?;
            let factory = registry
                .get(&spec.common.kind)
                .ok_or_else(|| Error::UnknownKind {
                    tier: name.clone(),
                    kind: spec.common.kind.clone(),
                    known: registry.kinds().collect::<Vec<_>>().join(", "),
                })?;
            let tier = factory(&spec)?;
            let root = match &spec.common.root {
                Some(r) => resolve(&project.join(r)),
                None => cache_dir.join(name),
            };
            tiers.push(Planned {
                name: name.clone(),
                kind: spec.common.kind.clone(),
                eager: spec.common.eager.unwrap_or_else(|| tier.eager_default()),
                keep: spec.common.keep.or_else(|| tier.keep_default()),
                common: spec.common,
                tier,
                store: Store::new(root, name.clone()),
            });
        }
        check_roots(&tiers, &project, &cache_dir)?;
        let tiers = order(tiers)?;
        let mut skip: Vec<PathBuf> = loaded
            .config
            .inputs
            .ignore
            .iter()
            .map(|d| resolve(&project.join(d)))
            .collect();
        skip.push(cache_dir.clone());
        skip.extend(tiers.iter().map(|t| t.store.root().to_owned()));
        Ok(Engine {
            inputs: Arc::new(
                Inputs::new(&project, skip)
                    .with_stat_cache(loaded.config.inputs.stat_cache.then_some(&*cache_dir)),
            ),
            checkout: Checkout::of(&project),
            pointer_ttl: std::time::Duration::from_secs(
                loaded.config.cache.pointer_days.saturating_mul(24 * 3600),
            ),
            project,
            cache_dir,
            config_file: loaded.file,
            remote: loaded.config.remote,
            shared: None,
            progress: Reporter::default(),
            tiers,
            verbose: options.verbose,
        })
    }

    pub fn project(&self) -> &Path {
        &self.project
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The configuration file in use, if any.
    pub fn config_file(&self) -> Option<&Path> {
        self.config_file.as_deref()
    }

    /// The `[remote]` configuration, for the driver to open the shared cache.
    pub fn remote_config(&self) -> &RemoteConfig {
        &self.remote
    }

    /// Put a shared cache level behind the local store.
    pub fn with_shared(mut self, shared: Option<Arc<dyn SharedCache>>) -> Self {
        self.shared = shared;
        self
    }

    /// Report each running tier's progress to `reporter` (the driver's terminal display).
    pub fn with_progress(mut self, reporter: Reporter) -> Self {
        self.progress = reporter;
        self
    }

    /// The shared level, when there is one and `t`'s entries may use it.
    fn shared_for(&self, t: &Planned) -> Option<&Arc<dyn SharedCache>> {
        self.shared.as_ref().filter(|_| t.tier.shareable())
    }

    /// Tier names in build order.
    pub fn tier_names(&self) -> impl Iterator<Item = &str> {
        self.tiers.iter().map(|t| t.name.as_str())
    }

    /// Build the requested tiers (and their upstreams). Tier failures are in the
    /// report; `Err` is for requests that cannot run at all (unknown tier, cache dir).
    pub async fn build(&self, req: &BuildRequest) -> Result<Report> {
        let selected = self.select(&req.tiers)?;
        self.check_forced(req)?;
        store::init_cache_dir(&self.cache_dir)?;
        let blobs = Blobs::of_cache_dir(&self.cache_dir);
        let lease = blobs.lease()?;
        let reports = self.run(&selected, req, Mode::Build).await;
        drop(lease);
        if blobs.sweep_due() {
            match blobs.sweep() {
                Ok(Some(swept)) if swept.blobs > 0 => tracing::info!(
                    "swept {} blobs ({} bytes) no entry names",
                    swept.blobs,
                    swept.bytes
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot sweep the blob store: {e}"),
            }
        }
        self.inputs.finish();
        Ok(self.report(reports))
    }

    /// What `tiers build` would do, and why. Builds, locks and writes nothing but the
    /// stat cache.
    pub async fn status(&self, names: &[String]) -> Result<Report> {
        self.status_of(&BuildRequest {
            tiers: names.to_vec(),
            ..BuildRequest::default()
        })
        .await
    }

    /// What `tiers build` with this request (`--rebuild`, `--eager`) would do: the
    /// decision [`Engine::build`] makes, without acting on it.
    pub async fn status_of(&self, req: &BuildRequest) -> Result<Report> {
        let selected = self.select(&req.tiers)?;
        self.check_forced(req)?;
        let reports = self.run(&selected, req, Mode::Status).await;
        self.inputs.finish();
        Ok(self.report(reports))
    }

    fn check_forced(&self, req: &BuildRequest) -> Result<()> {
        if let Force::Tiers(names) = &req.rebuild {
            for n in names {
                self.planned(n)?;
            }
        }
        Ok(())
    }

    /// Each selected tier in `after` order: decided, then built or only reported.
    async fn run(
        &self,
        selected: &BTreeSet<&str>,
        req: &BuildRequest,
        mode: Mode,
    ) -> Vec<TierReport> {
        let mut done: BTreeMap<&str, Option<Upstream>> = BTreeMap::new();
        let mut reports = Vec::new();
        for t in self
            .tiers
            .iter()
            .filter(|t| selected.contains(t.name.as_str()))
        {
            let started = Instant::now();
            let mut report = match self.upstreams(t, &done) {
                Ok(up) => self.one(t, up, forced_by(t, req), mode).await,
                Err(upstream) => skipped(t, format!("upstream tier `{upstream}` has no entry")),
            };
            report.seconds = started.elapsed().as_secs_f64();
            // A downstream key is made of upstream keys, known whether or not the
            // upstream is built yet; a build passes on only what it produced.
            let up = match mode {
                _ if report.status == Status::Failed => None,
                Mode::Build => report.key.clone().zip(report.path.clone()),
                Mode::Status => report
                    .key
                    .clone()
                    .map(|k| (k, report.path.clone().unwrap_or_default())),
            };
            done.insert(
                t.name.as_str(),
                up.map(|(key, path)| Upstream { key, path }),
            );
            reports.push(report);
        }
        reports
    }

    /// The entry this checkout's last successful build of each tier resolved to.
    /// Computes no key; another checkout sharing the cache dir has its own.
    pub fn paths(&self) -> PathsReport {
        let tiers = self
            .tiers
            .iter()
            .map(|t| {
                // An entry removed behind our back is reported as none, not as a key
                // without a path. The key is the one the build reported, also when
                // an entry built for other inputs serves it.
                let current = t.store.current(&self.checkout);
                let marker = self.last_marker(t);
                let key = marker.as_ref().and(current);
                let path = marker.map(|m| t.tier.path(&entry_of(&t.store, m)));
                let info = TierPath {
                    kind: t.kind.clone(),
                    exists: path.as_ref().is_some_and(|p| p.exists()),
                    key,
                    path,
                };
                (t.name.clone(), info)
            })
            .collect();
        PathsReport {
            project: self.project.clone(),
            cache_dir: self.cache_dir.clone(),
            tiers,
        }
    }

    /// The marker of the entry serving the key this checkout last resolved `t` to.
    fn last_marker(&self, t: &Planned) -> Option<Marker> {
        let key = t.store.current(&self.checkout)?;
        t.store.resolve(&key).ok().flatten()
    }

    /// Apply every tier's retention: entries beyond `keep` or `max_bytes` go, least
    /// recently used first; an entry a checkout's pointer names (used within
    /// `pointer_days`) is never removed.
    ///
    /// Then, unless a dry run, sweep the blob store of every blob no entry names;
    /// [`Collected::swept`] is `None` when a build running meanwhile holds the store
    /// (its blobs are swept another time).
    pub fn gc(&self, dry_run: bool) -> Result<Collected> {
        let mut removed = Vec::new();
        for t in &self.tiers {
            removed.extend(self.retain(t, Retain::Report { dry_run })?);
            if !dry_run {
                t.store.clean_debris()?;
            }
        }
        let blobs = Blobs::of_cache_dir(&self.cache_dir);
        if !dry_run && blobs.dir().is_dir() {
            // Roots outside the cache dir are found by their record: one moved
            // since its last build is recorded before the sweep reads them.
            for t in self.tiers.iter().filter(|t| !t.tier.builds_in_place()) {
                if t.store.root().join(store::ROOT_MARKER).is_file() {
                    blobs.register_root(t.store.root())?;
                }
            }
        }
        let swept = match dry_run {
            true => None,
            false => blobs.sweep()?,
        };
        Ok(Collected { removed, swept })
    }

    /// The entry this checkout's last build of `name` resolved to, and the tier's
    /// kind: `tiers export` hands it to the kind's library.
    pub fn last_entry(&self, name: &str) -> Result<(String, Entry)> {
        let t = self.planned(name)?;
        let marker = self.last_marker(t).ok_or_else(|| {
            Error::build(format!(
                "tier `{name}` has no entry yet\nhint: run `tiers build {name}` first"
            ))
        })?;
        Ok((t.kind.clone(), entry_of(&t.store, marker)))
    }

    /// The cache dir's blob store.
    pub fn blobs(&self) -> Blobs {
        Blobs::of_cache_dir(&self.cache_dir)
    }

    /// A tier's key document against its last entry's.
    pub async fn explain(&self, name: &str) -> Result<Explanation> {
        let t = self.planned(name)?;
        // Upstream keys come from a status pass over the upstreams.
        let upstream_names: Vec<String> = t.common.after.clone();
        let status = self.status(&upstream_names).await?;
        let mut upstream = BTreeMap::new();
        for u in &t.common.after {
            if let Some(r) = status.tier(u) {
                if let Some(key) = &r.key {
                    upstream.insert(
                        u.clone(),
                        Upstream {
                            key: key.clone(),
                            path: r.path.clone().unwrap_or_default(),
                        },
                    );
                }
            }
        }
        let cx = self.context(t, upstream, Mode::Status);
        let look = self.lookup(t, &cx).await?;
        let last_key = t.store.current(&self.checkout);
        let last = last_key
            .as_ref()
            .and_then(|k| t.store.resolve(k).ok().flatten());
        let serving = t.store.resolve(&look.key).ok().flatten();
        let used_inputs = serving
            .as_ref()
            .or(last.as_ref())
            .and_then(|m| m.used_inputs.clone());
        let last_doc = last_key.as_ref().and_then(|k| t.store.doc_of(k));
        let candidates = Candidates::new(t.store.root())
            .load(&look.doc.structure_key())
            .into_iter()
            .map(|c| {
                let marker = t.store.marker(&c.entry).ok().flatten();
                CandidateVerdict {
                    changed: c
                        .mismatches(&look.doc.inputs)
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                    present: marker.is_some(),
                    consistent: marker.as_ref().is_none_or(|m| consistent(&c, m, &look.doc)),
                    used: c.used.keys().cloned().collect(),
                    entry: c.entry,
                }
            })
            .collect();
        let served_by = look
            .serving
            .as_ref()
            .map(|e| e.key.clone())
            .filter(|k| *k != look.key);
        let uncovered = match (&look.freshness, &look.serving) {
            (Freshness::Fresh, Some(entry)) => t.tier.uncovered_changes(&cx, entry).await?,
            _ => Vec::new(),
        };
        let (fresh, reasons) = match (look.freshness, &look.restored) {
            (Freshness::Fresh, _) => (true, Vec::new()),
            (_, Some((_, why))) => (false, why.clone()),
            (Freshness::Missing, None) => (false, Vec::new()),
            (Freshness::Stale(r), None) => (false, r),
        };
        Ok(Explanation {
            tier: t.name.clone(),
            kind: t.kind.clone(),
            key: look.key,
            doc: (*look.doc).clone(),
            last_key,
            last_doc,
            fresh,
            reasons,
            used_inputs,
            restored_from: look.restored.map(|(m, _)| m.key),
            served_by,
            uncovered,
            candidates,
        })
    }

    fn report(&self, tiers: Vec<TierReport>) -> Report {
        Report {
            project: self.project.clone(),
            cache_dir: self.cache_dir.clone(),
            tiers,
        }
    }

    fn planned(&self, name: &str) -> Result<&Planned> {
        self.tiers
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::UnknownTier {
                name: name.to_owned(),
                known: self.tier_names().collect::<Vec<_>>().join(", "),
            })
    }

    /// The named tiers and everything upstream of them; all tiers when none is named.
    fn select(&self, names: &[String]) -> Result<BTreeSet<&str>> {
        if names.is_empty() {
            return Ok(self.tier_names().collect());
        }
        let mut selected = BTreeSet::new();
        let mut todo: Vec<&str> = Vec::new();
        for n in names {
            todo.push(self.planned(n)?.name.as_str());
        }
        while let Some(n) = todo.pop() {
            if selected.insert(n) {
                todo.extend(self.planned(n)?.common.after.iter().map(String::as_str));
            }
        }
        Ok(selected)
    }

    /// The upstreams of `t`, or the name of one that produced nothing.
    fn upstreams<'a>(
        &self,
        t: &'a Planned,
        done: &BTreeMap<&str, Option<Upstream>>,
    ) -> std::result::Result<BTreeMap<String, Upstream>, &'a str> {
        let mut up = BTreeMap::new();
        for u in &t.common.after {
            match done.get(u.as_str()) {
                Some(Some(info)) => {
                    up.insert(u.clone(), info.clone());
                }
                _ => return Err(u),
            }
        }
        Ok(up)
    }

    fn context(&self, t: &Planned, upstream: BTreeMap<String, Upstream>, mode: Mode) -> Context {
        Context {
            building: mode == Mode::Build,
            tier: t.name.clone(),
            project: self.project.clone(),
            cache_dir: self.cache_dir.clone(),
            blobs: Blobs::of_cache_dir(&self.cache_dir),
            tier_root: t.store.root().to_owned(),
            checkout: self.checkout.clone(),
            inputs: self.inputs.clone(),
            upstream,
            verbose: self.verbose,
            previous: Default::default(),
            progress: self.progress.start(&t.name, &t.kind),
        }
    }

    /// Key the tier and find out whether its entry is usable.
    async fn lookup(&self, t: &Planned, cx: &Context) -> Result<Lookup> {
        let mut doc = t.tier.key(cx).await?;
        doc.upstream = cx
            .upstream
            .iter()
            .map(|(n, u)| (n.clone(), u.key.clone()))
            .collect();
        let key = doc.key();
        let doc = Arc::new(doc);
        let current = t.store.current(&self.checkout).filter(|c| *c != key);
        let mut restored = None;
        let (freshness, serving) = match serving_entry(&t.store, &key, &doc) {
            Ok(Some(entry)) => (t.tier.probe(cx, &entry).await?, Some(entry)),
            Ok(None) => {
                if !doc.inputs.is_empty() {
                    restored = self.candidate(t, cx, &doc).await?;
                }
                // Reasons compare with the document of the key this checkout last
                // had (its own entry's, or the one recorded with its alias); a kind
                // builds incrementally from the entry that served it.
                // The marker is read once (it holds the whole key document).
                let own = current
                    .as_ref()
                    .and_then(|c| t.store.marker(c).ok().flatten());
                let (reasons, serving) = match (own, &current) {
                    (Some(m), _) => (Some(doc.diff(&m.doc)), Some(m)),
                    (None, Some(c)) => (
                        t.store.doc_of(c).map(|last| doc.diff(&last)),
                        t.store.resolve(c).ok().flatten(),
                    ),
                    (None, None) => (None, None),
                };
                if let Some(m) = serving {
                    let _ = cx.previous.set(Some(entry_of(&t.store, m)));
                }
                match reasons {
                    Some(reasons) => (Freshness::Stale(reasons), None),
                    None => (Freshness::Missing, None),
                }
            }
            Err(Error::Marker { why, .. }) => {
                (Freshness::Stale(vec![Reason::Corrupt { why }]), None)
            }
            Err(e) => return Err(e),
        };
        Ok(Lookup {
            doc,
            key,
            freshness,
            serving,
            restored,
            current,
        })
    }

    /// The first local candidate of `doc`'s structure key that [`consistent`] says
    /// may serve it and whose entry is healthy, with the reasons it is reusable.
    async fn candidate(
        &self,
        t: &Planned,
        cx: &Context,
        doc: &KeyDoc,
    ) -> Result<Option<(Marker, Vec<Reason>)>> {
        let candidates = Candidates::new(t.store.root());
        if !candidates.any() {
            return Ok(None);
        }
        for c in candidates.load(&doc.structure_key()) {
            if !c.mismatches(&doc.inputs).is_empty() {
                continue;
            }
            let Ok(Some(marker)) = t.store.marker(&c.entry) else {
                continue;
            };
            if !consistent(&c, &marker, doc) {
                continue;
            }
            let entry = entry_of(&t.store, marker.clone());
            if t.tier.probe(cx, &entry).await? != Freshness::Fresh {
                continue;
            }
            let reasons = reuse_reasons(doc, &marker.doc);
            return Ok(Some((marker, reasons)));
        }
        Ok(None)
    }

    /// Decide, then build (`Mode::Build`) or report the decision (`Mode::Status`).
    /// Both modes go through [`decide`], so `tiers status` says what `tiers build`
    /// does.
    async fn one(
        &self,
        t: &Planned,
        upstream: BTreeMap<String, Upstream>,
        forced: Option<Forced>,
        mode: Mode,
    ) -> TierReport {
        let cx = self.context(t, upstream, mode);
        let look = match self.lookup(t, &cx).await {
            Ok(l) => l,
            Err(e) => return failed_or_skipped(t, None, e),
        };
        let plan = decide(t, &look, &self.checkout, forced);
        match (plan, mode) {
            (Plan::Fresh(entry), Mode::Status) => {
                let path = t.tier.path(&entry);
                tier_report(t, Some(look.key), Some(path), Status::Fresh, vec![])
            }
            (Plan::Fresh(entry), Mode::Build) => {
                self.owe_upload(t, &entry.key).await;
                self.reuse(t, &look, &entry, Status::Fresh, vec![])
            }
            (Plan::Restore { marker, reasons }, Mode::Status) => {
                let path = t.tier.path(&entry_of(&t.store, marker));
                tier_report(t, Some(look.key), Some(path), Status::Restored, reasons)
            }
            (Plan::Restore { marker, reasons }, Mode::Build) => {
                self.restore(t, &look, &marker, reasons)
            }
            (
                Plan::Keep {
                    marker,
                    mut reasons,
                },
                _,
            ) => {
                reasons.push(Reason::Skipped {
                    why: "`rebuild = \"never\"` keeps the last entry".into(),
                });
                let key = marker.key.clone();
                let path = t.tier.path(&entry_of(&t.store, marker));
                tier_report(t, Some(key), Some(path), Status::Skipped, reasons)
            }
            // Restoring from the shared cache is not building: a `never` tier
            // with no entry here takes the shared cache's, and fails only
            // without one.
            (Plan::NeverWithoutEntry, Mode::Status) => {
                if self.available_remotely(t, &look).await == Some(true) {
                    let path = t.tier.path(&planned_entry(t, &look));
                    let mut report = tier_report(
                        t,
                        Some(look.key.clone()),
                        Some(path),
                        Status::Missing,
                        vec![],
                    );
                    report.available_remotely = Some(true);
                    return report;
                }
                never_without_entry(t, &look)
            }
            (Plan::NeverWithoutEntry, Mode::Build) => {
                if self.shared_for(t).is_some() {
                    let lock = match lock(&t.store, &look.key).await {
                        Ok(l) => l,
                        Err(e) => return failed_or_skipped(t, Some(look.key.clone()), e),
                    };
                    if let Some(report) = self.restore_from_shared(t, &cx, &look, &lock).await {
                        return report;
                    }
                }
                never_without_entry(t, &look)
            }
            (Plan::Build { reasons, forced }, Mode::Status) => {
                let status = if look.existed() {
                    Status::Stale
                } else {
                    Status::Missing
                };
                let path = t.tier.path(&planned_entry(t, &look));
                let mut report =
                    tier_report(t, Some(look.key.clone()), Some(path), status, reasons);
                if !forced {
                    report.available_remotely = self.available_remotely(t, &look).await;
                }
                report
            }
            (Plan::Build { reasons, forced }, Mode::Build) => {
                self.build_one(t, &cx, &look, reasons, forced).await
            }
        }
    }

    /// Build `look.key` under its lock: unless forced, first what another process
    /// published meanwhile, then the shared cache.
    async fn build_one(
        &self,
        t: &Planned,
        cx: &Context,
        look: &Lookup,
        reasons: Vec<Reason>,
        forced: bool,
    ) -> TierReport {
        tracing::info!(tier = %t.name, key = look.key.short(), "building");
        // A killed build of another key (the inputs changed since) may have left
        // processes and a staging dir: end both before building anew.
        if let Err(e) = t.store.clean_staging() {
            tracing::warn!(tier = %t.name, "cannot remove a killed build's staging dir: {e}");
        }
        let lock = match lock(&t.store, &look.key).await {
            Ok(l) => l,
            Err(e) => return failed_or_skipped(t, Some(look.key.clone()), e),
        };
        if !forced {
            // Another process may have published this key while we waited for the
            // lock; or the key's own entry, built in place, can be brought up to
            // date where it stands.
            if let Ok(Some(marker)) = t.store.marker(&look.key) {
                let entry = entry_of(&t.store, marker);
                match t.tier.probe(cx, &entry).await {
                    Ok(Freshness::Fresh) => {
                        drop(lock);
                        return self.reuse(t, look, &entry, Status::Fresh, vec![]);
                    }
                    Ok(Freshness::Stale(_)) if t.tier.builds_in_place() => {
                        if let Some(report) = self
                            .update_in_place(t, cx, look, &entry, &lock, &reasons)
                            .await
                        {
                            return report;
                        }
                    }
                    _ => {}
                }
            }
            if let Some(report) = self.restore_from_shared(t, cx, look, &lock).await {
                return report;
            }
        }
        match self.run_build(t, cx, look, &lock).await {
            Ok((path, summary)) => {
                // Pointed at before the lock goes: retention in another process
                // never takes a published entry no pointer names yet.
                if let Err(e) = t.store.set_current(&self.checkout, &look.key) {
                    return failed_or_skipped(t, Some(look.key.clone()), e);
                }
                drop(lock);
                self.upload(t, &look.key).await;
                let status = if look.existed() {
                    Status::Rebuilt
                } else {
                    Status::Built
                };
                self.retain_quietly(t);
                let mut report =
                    tier_report(t, Some(look.key.clone()), Some(path), status, reasons);
                report.summary = summary;
                report
            }
            Err(e) => failed_or_skipped(t, Some(look.key.clone()), e),
        }
    }

    /// `tiers status`: whether the build would restore `look.key` from the shared
    /// cache — its own entry there, or a candidate there whose used inputs match.
    /// `None` without a shared cache for this tier.
    async fn available_remotely(&self, t: &Planned, look: &Lookup) -> Option<bool> {
        let shared = self.shared_for(t)?;
        let attempt = async {
            if shared.contains(&t.name, &look.key).await? {
                return Ok(true);
            }
            for c in shared_candidates(shared.as_ref(), t, look).await? {
                let here = t
                    .store
                    .marker(&c.entry)
                    .ok()
                    .flatten()
                    .is_some_and(|m| consistent(&c, &m, &look.doc));
                if here || shared.contains(&t.name, &c.entry).await? {
                    return Ok(true);
                }
            }
            Ok::<_, Error>(false)
        };
        match attempt.await {
            Ok(there) => Some(there),
            Err(e) => {
                tracing::warn!("shared cache {}: {e}", shared.describe());
                Some(false)
            }
        }
    }

    /// Restore `look.key` from the shared cache: its own entry, else a candidate's.
    /// Any failure is one warning and `None` (a miss).
    async fn restore_from_shared(
        &self,
        t: &Planned,
        cx: &Context,
        look: &Lookup,
        lock: &KeyLock,
    ) -> Option<TierReport> {
        let shared = self.shared_for(t)?;
        let from = shared.describe();
        let attempt = async {
            if let Some(marker) = self.fetch_shared(t, shared, &look.key, lock).await? {
                return Ok(Some((marker, vec![])));
            }
            for c in shared_candidates(shared.as_ref(), t, look).await? {
                // Never wait for a second lock while holding one: skip a busy candidate.
                let Some(c_lock) = t.store.try_lock(&c.entry)? else {
                    continue;
                };
                let marker = match t.store.marker(&c.entry).ok().flatten() {
                    Some(m) => Some(m),
                    None => self.fetch_shared(t, shared, &c.entry, &c_lock).await?,
                };
                drop(c_lock);
                let Some(marker) = marker else { continue };
                if !consistent(&c, &marker, &look.doc) {
                    tracing::warn!(
                        "shared cache {from}: ignoring a candidate of `{}` that does not match its entry {}'s own record of the inputs it used",
                        t.name,
                        c.entry.short()
                    );
                    continue;
                }
                let entry = entry_of(&t.store, marker.clone());
                if t.tier.probe(cx, &entry).await? != Freshness::Fresh {
                    continue;
                }
                t.store.set_alias(&look.key, &marker.key, &look.doc)?;
                Candidates::new(t.store.root()).touch(
                    &look.doc.structure_key(),
                    &marker.key,
                    Some(c.used.clone()),
                )?;
                let why = reuse_reasons(&look.doc, &marker.doc);
                return Ok(Some((marker, why)));
            }
            Ok::<_, Error>(None)
        };
        match attempt.await {
            Ok(Some((marker, mut why))) => {
                why.push(Reason::SharedCache { from: from.clone() });
                let _ = t.store.set_uploaded(&shared.identity(), &marker.key);
                let _ = t.store.set_current(&self.checkout, &look.key);
                self.retain_quietly(t);
                let path = t.tier.path(&entry_of(&t.store, marker));
                Some(tier_report(
                    t,
                    Some(look.key.clone()),
                    Some(path),
                    Status::Restored,
                    why,
                ))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!("shared cache {from}: {e}; building `{}` locally", t.name);
                None
            }
        }
    }

    /// Download `key`'s entry into staging and publish it locally, under its lock.
    async fn fetch_shared(
        &self,
        t: &Planned,
        shared: &Arc<dyn SharedCache>,
        key: &Key,
        lock: &KeyLock,
    ) -> Result<Option<Marker>> {
        let staging = Debris::new(t.store.stage(key, lock)?);
        let blobs = Blobs::of_cache_dir(&self.cache_dir);
        let mut marker = match shared.fetch(&t.name, key, staging.path(), &blobs).await? {
            Some(m) => m,
            None => return Ok(None),
        };
        // The record must be for this key and its document must hash to it.
        if marker.key != *key || marker.doc.key() != *key {
            return Err(Error::Marker {
                path: staging.path().to_owned(),
                why: format!("the shared cache's record for {key} describes another key"),
            });
        }
        marker.tier = t.name.clone();
        let mut named = blobs.take_carried(staging.path())?;
        // The entry's own tree names every blob it needs: each came with it or
        // is here already, or the entry is not taken.
        if let Some(tree) = crate::blobs::Tree::read(staging.path())? {
            if let Some(d) = tree.named.iter().find(|d| !blobs.contains(d)) {
                return Err(Error::Marker {
                    path: staging.path().to_owned(),
                    why: format!(
                        "the shared cache's entry for {key} names the blob {d}, which it does not carry"
                    ),
                });
            }
            named.extend(tree.named);
            named.sort();
            named.dedup();
        }
        blobs.ingest(t.store.root(), staging.path(), named)?;
        t.store.publish(staging.path(), &marker, lock)?;
        staging.disarm();
        Ok(Some(marker))
    }

    /// A fresh entry that a writable shared cache may lack (its build was killed
    /// between publishing and uploading, or the upload failed): check once, upload
    /// if missing, and remember, so later runs make no request.
    async fn owe_upload(&self, t: &Planned, key: &Key) {
        let Some(shared) = self.shared_for(t).filter(|s| s.writable()) else {
            return;
        };
        if t.store.uploaded(&shared.identity(), key) {
            return;
        }
        match shared.contains(&t.name, key).await {
            Ok(true) => {
                let _ = t.store.set_uploaded(&shared.identity(), key);
            }
            Ok(false) => self.upload(t, key).await,
            Err(e) => tracing::warn!("shared cache {}: {e}", shared.describe()),
        }
    }

    /// Upload the published entry of `key` and its candidates; failures are
    /// warnings. A success is remembered beside the entry.
    async fn upload(&self, t: &Planned, key: &Key) {
        let Some(shared) = self.shared_for(t).filter(|s| s.writable()) else {
            return;
        };
        let result = async {
            let Some(marker) = t.store.marker(key)? else {
                return Ok(());
            };
            let dir = t.store.entry_dir(key);
            let blobs = Blobs::of_cache_dir(&self.cache_dir);
            let Some(tree) = crate::blobs::Tree::read(&dir)? else {
                // Published by a tiers from before the store: what it is made
                // of is not recorded, so it is not shared until it is rebuilt.
                tracing::debug!("`{}` {} has no tree: not uploaded", t.name, key.short());
                return Ok(());
            };
            shared.store(&t.name, &marker, &dir, &tree, &blobs).await?;
            if marker.used_inputs.is_some() {
                let skey = marker.doc.structure_key();
                let list = Candidates::new(t.store.root()).load(&skey);
                shared.store_candidates(&t.name, &skey, &list).await?;
            }
            t.store.set_uploaded(&shared.identity(), key)
        };
        if let Err(e) = result.await {
            tracing::warn!(
                "shared cache {}: cannot upload `{}`: {e}",
                shared.describe(),
                t.name
            );
        }
    }

    /// Build under the lock and publish; on failure, or when the build is dropped
    /// (SIGINT, SIGTERM), nothing is published and the build's directory goes.
    async fn run_build(
        &self,
        t: &Planned,
        cx: &Context,
        look: &Lookup,
        lock: &KeyLock,
    ) -> Result<(PathBuf, Option<String>)> {
        let in_place = t.tier.builds_in_place();
        let build_dir = Debris::new(if in_place {
            t.store.prepare_in_place(&look.key, lock)?
        } else {
            t.store.stage(&look.key, lock)?
        });
        let mut entry = Entry {
            key: look.key.clone(),
            dir: t.store.entry_dir(&look.key),
            build_dir: build_dir.path().to_owned(),
            doc: look.doc.clone(),
            data: Value::Null,
        };
        let started = Instant::now();
        let outcome = process::owned_by(entry.dir.clone(), t.tier.build(cx, &entry)).await?;
        if build_dir.path().join(store::MARKER).exists() && !in_place {
            return Err(Error::build(format!(
                "the build wrote `{}`, a name tiers reserves for its entry marker",
                store::MARKER
            )));
        }
        for reserved in [crate::blobs::TREE, crate::blobs::CARRIED] {
            if build_dir.path().join(reserved).symlink_metadata().is_ok() && !in_place {
                return Err(Error::build(format!(
                    "the build wrote `{reserved}`, a name tiers reserves for its entries"
                )));
            }
        }
        check_used_inputs(&look.doc, &outcome.used_inputs)?;
        let named = outcome.blobs;
        let marker = marker_for(t, look, outcome.used_inputs, outcome.data, started);
        if in_place {
            if !named.is_empty() {
                return Err(Error::build(
                    "a kind that builds in place cannot name blobs".to_owned(),
                ));
            }
            t.store.publish_in_place(&marker, lock)?;
        } else {
            let ingesting = Instant::now();
            let tree = cx.blobs.ingest(t.store.root(), build_dir.path(), named)?;
            tracing::debug!(
                tier = %t.name,
                "stored {} files as blobs, {} named, in {:.3} s",
                tree.files.len(),
                tree.named.len(),
                ingesting.elapsed().as_secs_f64()
            );
            t.store.publish(build_dir.path(), &marker, lock)?;
        }
        build_dir.disarm();
        record_candidate(t, look, &marker);
        entry.build_dir = entry.dir.clone();
        entry.data = marker.data;
        Ok((t.tier.path(&entry), outcome.summary))
    }

    /// The key's own entry, built in place, that its probe found stale: let the kind
    /// bring it up to date where it stands ([`Tier::update_in_place`]). Its marker
    /// goes first, so an update that fails or is killed leaves debris that the
    /// next build replaces. `None` when the kind cannot: the build goes on as usual.
    async fn update_in_place(
        &self,
        t: &Planned,
        cx: &Context,
        look: &Lookup,
        entry: &Entry,
        lock: &KeyLock,
        reasons: &[Reason],
    ) -> Option<TierReport> {
        let attempt = async {
            t.store.unpublish_in_place(&look.key, lock)?;
            let started = Instant::now();
            let updated =
                process::owned_by(entry.dir.clone(), t.tier.update_in_place(cx, entry)).await?;
            let Some(outcome) = updated else {
                return Ok(None);
            };
            check_used_inputs(&look.doc, &outcome.used_inputs)?;
            let marker = marker_for(t, look, outcome.used_inputs, outcome.data, started);
            t.store.publish_in_place(&marker, lock)?;
            record_candidate(t, look, &marker);
            Ok::<_, Error>(Some((marker, outcome.summary)))
        };
        let (marker, summary) = match attempt.await {
            Ok(Some(done)) => done,
            Ok(None) => return None,
            Err(e) => return Some(failed_or_skipped(t, Some(look.key.clone()), e)),
        };
        tracing::info!(tier = %t.name, key = look.key.short(), "updated in place");
        if let Err(e) = t.store.set_current(&self.checkout, &look.key) {
            return Some(failed_or_skipped(t, Some(look.key.clone()), e));
        }
        let path = t.tier.path(&entry_of(&t.store, marker));
        let mut report = tier_report(
            t,
            Some(look.key.clone()),
            Some(path),
            Status::Rebuilt,
            reasons.to_vec(),
        );
        report.summary = summary;
        Some(report)
    }

    /// Serve `look.key` with `marker`'s entry, built for other inputs this build does
    /// not use; the next exact lookup of `look.key` hits it directly.
    fn restore(&self, t: &Planned, look: &Lookup, marker: &Marker, why: Vec<Reason>) -> TierReport {
        let recorded = t
            .store
            .set_alias(&look.key, &marker.key, &look.doc)
            .and_then(|()| {
                Candidates::new(t.store.root()).touch(&look.doc.structure_key(), &marker.key, None)
            });
        if let Err(e) = recorded {
            return failed_or_skipped(t, Some(look.key.clone()), e);
        }
        self.reuse(
            t,
            look,
            &entry_of(&t.store, marker.clone()),
            Status::Restored,
            why,
        )
    }

    /// Use the entry serving `look.key` as it is.
    fn reuse(
        &self,
        t: &Planned,
        look: &Lookup,
        entry: &Entry,
        status: Status,
        reasons: Vec<Reason>,
    ) -> TierReport {
        t.store.touch(&entry.key);
        // The key, not the entry serving it: the next build's reasons compare
        // with this key's document.
        if let Err(e) = t.store.set_current(&self.checkout, &look.key) {
            return failed_or_skipped(t, Some(look.key.clone()), e);
        }
        let path = t.tier.path(entry);
        tier_report(t, Some(look.key.clone()), Some(path), status, reasons)
    }

    fn retain_quietly(&self, t: &Planned) {
        if let Err(e) = self.retain(t, Retain::Quiet) {
            tracing::warn!(tier = %t.name, "retention failed: {e}");
        }
    }

    /// Entries of `t` beyond its retention, least recently used first; removed
    /// unless a dry run. Never an entry a checkout's pointer names (used within
    /// `pointer_days`), nor this checkout's.
    fn retain(&self, t: &Planned, how: Retain) -> Result<Vec<Removed>> {
        if t.keep.is_none() && t.common.max_bytes.is_none() {
            return Ok(Vec::new());
        }
        let mut pointed: BTreeSet<Key> = t.store.pointed(self.pointer_ttl).into_iter().collect();
        pointed.extend(t.store.current(&self.checkout));
        // A pointer may name a key an entry built for other inputs serves (while
        // the key has no entry of its own).
        let served: Vec<Key> = pointed
            .iter()
            .filter(|k| !t.store.entry_dir(k).join(store::MARKER).exists())
            .filter_map(|k| t.store.alias(k))
            .collect();
        pointed.extend(served);
        let removed = retain(t, how, &pointed, self.pointer_ttl)?;
        if how != (Retain::Report { dry_run: true }) {
            Blobs::of_cache_dir(&self.cache_dir).note_removed(removed.len());
        }
        Ok(removed)
    }
}

/// The shared cache's candidates for `look` whose used inputs all have their
/// digests now (at most [`CANDIDATE_LIMIT`], whatever the level returns); none
/// for a key without inputs.
async fn shared_candidates(
    shared: &dyn SharedCache,
    t: &Planned,
    look: &Lookup,
) -> Result<Vec<crate::Candidate>> {
    if look.doc.inputs.is_empty() {
        return Ok(Vec::new());
    }
    let list = shared
        .candidates(&t.name, &look.doc.structure_key())
        .await?;
    Ok(list
        .into_iter()
        .take(CANDIDATE_LIMIT)
        .filter(|c| c.entry != look.key && c.mismatches(&look.doc.inputs).is_empty())
        .collect())
}

/// `rebuild = "never"` with no entry to keep, here or in the shared cache.
fn never_without_entry(t: &Planned, look: &Lookup) -> TierReport {
    failed_or_skipped(
        t,
        Some(look.key.clone()),
        Error::NeverWithoutEntry {
            tier: t.name.clone(),
        },
    )
}

/// The marker of a build of `look.key` that started at `started`.
fn marker_for(
    t: &Planned,
    look: &Lookup,
    used_inputs: Option<Vec<String>>,
    data: Value,
    started: Instant,
) -> Marker {
    Marker {
        format: store::MARKER_FORMAT,
        tier: t.name.clone(),
        key: look.key.clone(),
        doc: (*look.doc).clone(),
        created_unix: fsutil::now_unix(),
        build_seconds: started.elapsed().as_secs_f64(),
        used_inputs,
        data,
    }
}

/// Record the inputs a published build of `look.key` used, as a candidate of its
/// structure key. Best effort: a lost candidate costs a rebuild later.
fn record_candidate(t: &Planned, look: &Lookup, marker: &Marker) {
    let Some(used) = &marker.used_inputs else {
        return;
    };
    let used = used
        .iter()
        .filter_map(|p| look.doc.inputs.get(p).map(|d| (p.clone(), d.clone())))
        .collect();
    let recorded =
        Candidates::new(t.store.root()).touch(&look.doc.structure_key(), &look.key, Some(used));
    if let Err(e) = recorded {
        tracing::warn!(tier = %t.name, "cannot record the inputs this build used: {e}");
    }
}

/// Whether a `build` acts on its decision or `status` only reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Build,
    Status,
}

/// Why a build of a tier is forced, most explicit first.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Forced {
    /// `--rebuild NAME` or `--rebuild all`: overrides every policy.
    Flag(String),
    /// `rebuild = "always"`.
    Always,
    /// `--eager`, for a tier whose `eager` is true.
    Eager,
}

impl Forced {
    fn by(&self) -> String {
        match self {
            Forced::Flag(flag) => flag.clone(),
            Forced::Always => "`rebuild = \"always\"`".into(),
            Forced::Eager => "--eager".into(),
        }
    }
}

/// What a build does with one tier: the one decision `build` acts on and
/// `status` reports.
#[derive(Debug)]
enum Plan {
    /// The entry serving the key is there and healthy.
    Fresh(Entry),
    /// An entry built for other inputs serves the key (discovered inputs).
    Restore {
        marker: Marker,
        reasons: Vec<Reason>,
    },
    /// `rebuild = "never"`, not fresh: the last entry is kept.
    Keep {
        marker: Marker,
        reasons: Vec<Reason>,
    },
    /// `rebuild = "never"` and no entry to keep: restored from the shared cache
    /// when it has one, else the tier fails.
    NeverWithoutEntry,
    /// Build: a forced build goes straight to the tool; another first takes what
    /// a concurrent build published, then tries the shared cache.
    Build { reasons: Vec<Reason>, forced: bool },
}

/// The decision for `t` given what its lookup found and what forces it.
fn decide(t: &Planned, look: &Lookup, checkout: &Checkout, forced: Option<Forced>) -> Plan {
    if let Some(f) = forced {
        return Plan::Build {
            reasons: vec![Reason::Forced { by: f.by() }],
            forced: true,
        };
    }
    let reasons = match (&look.freshness, &look.serving) {
        (Freshness::Fresh, Some(entry)) => return Plan::Fresh(entry.clone()),
        (Freshness::Fresh | Freshness::Missing, _) => vec![],
        (Freshness::Stale(r), _) => r.clone(),
    };
    if let Some((marker, reasons)) = &look.restored {
        return Plan::Restore {
            marker: marker.clone(),
            reasons: reasons.clone(),
        };
    }
    if t.common.rebuild == Rebuild::Never {
        let last = [Some(&look.key), t.store.current(checkout).as_ref()]
            .into_iter()
            .flatten()
            .find_map(|k| t.store.resolve(k).ok().flatten());
        return match last {
            Some(marker) => Plan::Keep { marker, reasons },
            None => Plan::NeverWithoutEntry,
        };
    }
    Plan::Build {
        reasons,
        forced: false,
    }
}

/// Whether candidate `c` may lead to the entry whose marker is `marker`, for a key
/// document `doc` of the same structure. A candidate list, local or shared, is
/// never trusted on its own: the entry must be of `doc`'s structure (kind, options,
/// tools, input paths), and its marker must report as used exactly the inputs the
/// candidate lists, with the digests the candidate lists. Whether those digests are
/// the current ones is [`Candidate::mismatches`](crate::Candidate::mismatches).
fn consistent(c: &crate::Candidate, marker: &Marker, doc: &KeyDoc) -> bool {
    let Some(used) = &marker.used_inputs else {
        return false;
    };
    used.len() == c.used.len()
        && used.iter().all(|p| {
            c.used
                .get(p)
                .is_some_and(|d| marker.doc.inputs.get(p) == Some(d))
        })
        && marker.doc.structure_key() == doc.structure_key()
}

/// A directory a build or download is filling: removed when dropped, unless the
/// entry was published from it.
struct Debris(Option<PathBuf>);

impl Debris {
    fn new(dir: PathBuf) -> Debris {
        Debris(Some(dir))
    }

    fn path(&self) -> &Path {
        self.0
            .as_deref()
            .expect("a debris guard is used before it is disarmed")
    }

    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Debris {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            if let Err(e) = fsutil::remove_dir(&dir) {
                tracing::warn!("cannot remove an unfinished build's directory: {e}");
            }
        }
    }
}

/// How `retain` reports what it removes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retain {
    /// `tiers gc`: each removed entry with its size (a walk of it).
    Report { dry_run: bool },
    /// After a build: the report is not shown, so sizes are not measured
    /// (an entry of thousands of files would cost a walk on every build).
    Quiet,
}

/// Entries of `t` beyond its retention, least recently used first; removed unless
/// a dry run. The current entry is never among them.
fn retain(
    t: &Planned,
    how: Retain,
    pointed: &BTreeSet<Key>,
    ttl: std::time::Duration,
) -> Result<Vec<Removed>> {
    let dry_run = how == Retain::Report { dry_run: true };
    let mut entries = t.store.entries()?;
    // Pointed entries count first, whatever their age.
    entries.sort_by_key(|e| !pointed.contains(&e.key));
    let mut kept = 0usize;
    let mut bytes = 0u64;
    let mut removed = Vec::new();
    for e in entries {
        // Sizes cost a walk of the entry: only a byte budget needs them.
        let size = match t.common.max_bytes {
            Some(_) => fsutil::dir_bytes(&e.dir),
            None => 0,
        };
        let is_current = pointed.contains(&e.key);
        let over_count = t.keep.is_some_and(|k| kept >= k);
        let over_bytes = t.common.max_bytes.is_some_and(|m| bytes + size > m);
        if is_current || !(over_count || over_bytes) {
            kept += 1;
            bytes += size;
            continue;
        }
        let size = match (t.common.max_bytes, how) {
            (Some(_), _) => size,
            (None, Retain::Report { .. }) => fsutil::dir_bytes(&e.dir),
            (None, Retain::Quiet) => 0,
        };
        if !dry_run {
            // A build may have pointed at it since `pointed` was read.
            if !t.store.remove_unless_pointed(&e.key, ttl)? {
                continue;
            }
            tracing::info!(tier = %t.name, key = e.key.short(), "retention removed an entry");
        }
        removed.push(Removed {
            tier: t.name.clone(),
            key: e.key,
            dir: e.dir,
            bytes: size,
        });
    }
    Ok(removed)
}

/// Refuse tier roots tiers cannot own: the project or a directory above it (its
/// entries would become inputs, its files retention's), the cache dir or one above
/// it, two tiers in one root or one inside another's, and an existing directory
/// tiers did not make.
fn check_roots(tiers: &[Planned], project: &Path, cache_dir: &Path) -> Result<()> {
    let refuse = |t: &Planned, why: String| {
        Error::config(format!(
            "tier `{}`: its root `{}` {why}\nhint: set `root` to a directory of its own (the default is `<cache dir>/{}`)",
            t.name,
            t.store.root().display(),
            t.name
        ))
    };
    for (i, t) in tiers.iter().enumerate() {
        let root = t.store.root();
        if project.starts_with(root) {
            return Err(refuse(
                t,
                format!("holds the project `{}`", project.display()),
            ));
        }
        if cache_dir.starts_with(root) {
            return Err(refuse(
                t,
                format!("holds the cache dir `{}`", cache_dir.display()),
            ));
        }
        for other in &tiers[i + 1..] {
            let theirs = other.store.root();
            if root.starts_with(theirs) || theirs.starts_with(root) {
                return Err(refuse(
                    t,
                    format!(
                        "overlaps tier `{}`'s root `{}`",
                        other.name,
                        theirs.display()
                    ),
                ));
            }
        }
        t.store.check_owned(root.starts_with(cache_dir))?;
    }
    Ok(())
}

/// `path` with `.` and `..` resolved and links followed as far as it exists. The input
/// walk compares directories by the path it reached them through, so a cache dir
/// spelled `sub/../cache` would otherwise be walked, and its entries become inputs.
fn resolve(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
        if let Ok(real) = out.canonicalize() {
            out = real;
        }
    }
    out
}

/// Why an entry built from `built` serves `doc` through discovered inputs: every
/// changed input is one its build did not use.
fn reuse_reasons(doc: &KeyDoc, built: &KeyDoc) -> Vec<Reason> {
    doc.diff(built)
        .into_iter()
        .map(|r| match r {
            Reason::InputChanged { path } => Reason::UnusedInputChanged { path },
            other => other,
        })
        .collect()
}

/// Why `req` forces `t`, if it does. Only `--rebuild` forces a `rebuild =
/// "never"` tier.
fn forced_by(t: &Planned, req: &BuildRequest) -> Option<Forced> {
    match &req.rebuild {
        Force::All => return Some(Forced::Flag("--rebuild all".into())),
        Force::Tiers(names) if names.contains(&t.name) => {
            return Some(Forced::Flag(format!("--rebuild {}", t.name)))
        }
        _ => {}
    }
    match t.common.rebuild {
        Rebuild::Always => Some(Forced::Always),
        Rebuild::Never => None,
        Rebuild::Auto => (req.eager && t.eager).then_some(Forced::Eager),
    }
}

async fn lock(store: &Store, key: &Key) -> Result<KeyLock> {
    let store = Store::new(store.root(), store.tier());
    let key = key.clone();
    tokio::task::spawn_blocking(move || store.lock(&key))
        .await
        .map_err(|e| Error::build(format!("the lock task failed: {e}")))?
}

fn check_used_inputs(doc: &KeyDoc, used: &Option<Vec<String>>) -> Result<()> {
    for path in used.iter().flatten() {
        if !doc.inputs.contains_key(path) {
            return Err(Error::build(format!(
                "the build reported using `{path}`, which is not a declared input of this tier"
            )));
        }
    }
    Ok(())
}

/// The entry serving `key`: its own (read without its key document, which is `doc`
/// since the key names it), else the one it was restored to through an alias.
fn serving_entry(store: &Store, key: &Key, doc: &Arc<KeyDoc>) -> Result<Option<Entry>> {
    if let Some(head) = store.head(key)? {
        let dir = store.entry_dir(key);
        return Ok(Some(Entry {
            key: head.key,
            build_dir: dir.clone(),
            dir,
            doc: doc.clone(),
            data: head.data,
        }));
    }
    Ok(store.resolve(key)?.map(|m| entry_of(store, m)))
}

pub(crate) fn entry_of(store: &Store, marker: Marker) -> Entry {
    let dir = store.entry_dir(&marker.key);
    Entry {
        key: marker.key,
        build_dir: dir.clone(),
        dir,
        doc: Arc::new(marker.doc),
        data: marker.data,
    }
}

/// The entry `look.key` will have once built, for reporting where it will be.
fn planned_entry(t: &Planned, look: &Lookup) -> Entry {
    let dir = t.store.entry_dir(&look.key);
    Entry {
        key: look.key.clone(),
        build_dir: dir.clone(),
        dir,
        doc: look.doc.clone(),
        data: Value::Null,
    }
}

fn tier_report(
    t: &Planned,
    key: Option<Key>,
    path: Option<PathBuf>,
    status: Status,
    reasons: Vec<Reason>,
) -> TierReport {
    TierReport {
        name: t.name.clone(),
        kind: t.kind.clone(),
        key,
        path,
        status,
        reasons: reasons.into_iter().map(Into::into).collect(),
        seconds: 0.0,
        error: None,
        summary: None,
        available_remotely: None,
    }
}

fn skipped(t: &Planned, why: String) -> TierReport {
    tier_report(
        t,
        None,
        None,
        Status::Skipped,
        vec![Reason::Skipped { why }],
    )
}

fn failed_or_skipped(t: &Planned, key: Option<Key>, e: Error) -> TierReport {
    if let Error::Unavailable { message } = &e {
        return tier_report(
            t,
            key,
            None,
            Status::Skipped,
            vec![Reason::Skipped {
                why: message.clone(),
            }],
        );
    }
    let mut r = tier_report(t, key, None, Status::Failed, vec![]);
    r.error = Some(e.to_string());
    r
}

/// Order tiers so every tier comes after those in its `after`; alphabetical otherwise.
fn order(tiers: Vec<Planned>) -> Result<Vec<Planned>> {
    let names: BTreeSet<String> = tiers.iter().map(|t| t.name.clone()).collect();
    for t in &tiers {
        for u in &t.common.after {
            if !names.contains(u) {
                return Err(Error::UnknownUpstream {
                    tier: t.name.clone(),
                    upstream: u.clone(),
                });
            }
        }
    }
    let mut pending: BTreeMap<String, Planned> =
        tiers.into_iter().map(|t| (t.name.clone(), t)).collect();
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    while !pending.is_empty() {
        let ready = pending
            .values()
            .find(|t| t.common.after.iter().all(|u| placed.contains(u)))
            .map(|t| t.name.clone());
        match ready {
            Some(name) => {
                let t = pending.remove(&name).expect("just found");
                placed.insert(name);
                out.push(t);
            }
            None => {
                return Err(Error::Cycle {
                    cycle: find_cycle(&pending),
                })
            }
        }
    }
    Ok(out)
}

/// A cycle among tiers none of which can be placed: follow `after` until a repeat.
fn find_cycle(pending: &BTreeMap<String, Planned>) -> Vec<String> {
    let mut path: Vec<String> = Vec::new();
    let mut at = pending.keys().next().cloned().unwrap_or_default();
    loop {
        if let Some(i) = path.iter().position(|p| *p == at) {
            let mut cycle = path[i..].to_vec();
            cycle.push(at);
            return cycle;
        }
        path.push(at.clone());
        let Some(next) = pending[&at]
            .common
            .after
            .iter()
            .find(|u| pending.contains_key(*u))
        else {
            return path;
        };
        at = next.clone();
    }
}
