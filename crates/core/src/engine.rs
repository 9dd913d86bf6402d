//! The engine: plans tiers in `after` order and decides, per tier, whether to reuse,
//! build or skip — and why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use crate::candidates::Candidates;
use crate::config::{self, ConfigSource, Rebuild, RemoteConfig, TierCommon, TierSpec};
use crate::error::{Error, Result};
use crate::inputs::Inputs;
use crate::key::{Freshness, Key, KeyDoc, Reason};
use crate::progress::Reporter;
use crate::registry::Registry;
use crate::report::{PathsReport, Report, Status, TierPath, TierReport};
use crate::shared::SharedCache;
use crate::store::{self, KeyLock, Marker, Store};
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

/// An entry retention removed (or, in a dry run, would remove).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Removed {
    pub tier: String,
    pub key: Key,
    pub dir: PathBuf,
    pub bytes: u64,
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
                store: Store::new(root),
            });
        }
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
        if let Force::Tiers(names) = &req.rebuild {
            for n in names {
                self.planned(n)?;
            }
        }
        store::init_cache_dir(&self.cache_dir)?;
        let reports = self.run(&selected, Some(req)).await;
        self.inputs.finish();
        Ok(self.report(reports))
    }

    /// What a build would do, and why. Builds, locks and writes nothing but the
    /// stat cache.
    pub async fn status(&self, names: &[String]) -> Result<Report> {
        let selected = self.select(names)?;
        let reports = self.run(&selected, None).await;
        self.inputs.finish();
        Ok(self.report(reports))
    }

    /// Each selected tier in `after` order: built (`req`) or only looked at (`None`).
    async fn run(&self, selected: &BTreeSet<&str>, req: Option<&BuildRequest>) -> Vec<TierReport> {
        let mut done: BTreeMap<&str, Option<Upstream>> = BTreeMap::new();
        let mut reports = Vec::new();
        for t in self
            .tiers
            .iter()
            .filter(|t| selected.contains(t.name.as_str()))
        {
            let started = Instant::now();
            let mut report = match (self.upstreams(t, &done), req) {
                (Ok(up), Some(req)) => self.build_one(t, up, forced_by(t, req)).await,
                (Ok(up), None) => self.status_one(t, up).await,
                (Err(upstream), _) => {
                    skipped(t, format!("upstream tier `{upstream}` has no entry"))
                }
            };
            report.seconds = started.elapsed().as_secs_f64();
            // A downstream key is made of upstream keys, known whether or not the
            // upstream is built yet; a build passes on only what it produced.
            let up = match req {
                Some(_) if report.status == Status::Failed => None,
                Some(_) => report.key.clone().zip(report.path.clone()),
                None => report
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

    /// The entry each tier's last successful build resolved to. Computes no key.
    pub fn paths(&self) -> PathsReport {
        let tiers = self
            .tiers
            .iter()
            .map(|t| {
                // An entry removed behind our back is reported as none, not as a key
                // without a path.
                let marker = t
                    .store
                    .current()
                    .and_then(|k| t.store.marker(&k).ok().flatten());
                let key = marker.as_ref().map(|m| m.key.clone());
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

    /// Apply every tier's retention: entries beyond `keep` or `max_bytes` go, least
    /// recently used first; the entry a tier last resolved to is never removed.
    pub fn gc(&self, dry_run: bool) -> Result<Vec<Removed>> {
        let mut removed = Vec::new();
        for t in &self.tiers {
            removed.extend(retain(t, Retain::Report { dry_run })?);
            if !dry_run {
                t.store.clean_debris()?;
            }
        }
        Ok(removed)
    }

    /// Write the artifact of `name`'s last entry as one document (`tiers export`).
    pub fn export(&self, name: &str, out: &mut dyn std::io::Write) -> Result<()> {
        let t = self.planned(name)?;
        let marker = t
            .store
            .current()
            .and_then(|k| t.store.marker(&k).ok().flatten())
            .ok_or_else(|| {
                Error::build(format!(
                    "tier `{name}` has no entry yet\nhint: run `tiers build {name}` first"
                ))
            })?;
        if t.tier.export(&entry_of(&t.store, marker), out)? {
            Ok(())
        } else {
            Err(Error::config(format!(
                "tier `{name}` is of kind `{}`, which has nothing to export",
                t.kind
            )))
        }
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
        let cx = self.context(t, upstream);
        let look = self.lookup(t, &cx).await?;
        let last_key = t.store.current();
        let last = last_key
            .as_ref()
            .and_then(|k| t.store.marker(k).ok().flatten());
        let serving = t.store.resolve(&look.key).ok().flatten();
        let used_inputs = serving
            .as_ref()
            .or(last.as_ref())
            .and_then(|m| m.used_inputs.clone());
        let last_doc = last.map(|m| m.doc);
        let candidates = Candidates::new(t.store.root())
            .load(&look.doc.structure_key())
            .into_iter()
            .map(|c| CandidateVerdict {
                changed: c
                    .mismatches(&look.doc.inputs)
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
                present: t.store.marker(&c.entry).ok().flatten().is_some(),
                used: c.used.keys().cloned().collect(),
                entry: c.entry,
            })
            .collect();
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

    fn context(&self, t: &Planned, upstream: BTreeMap<String, Upstream>) -> Context {
        Context {
            tier: t.name.clone(),
            project: self.project.clone(),
            cache_dir: self.cache_dir.clone(),
            tier_root: t.store.root().to_owned(),
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
        let current = t.store.current().filter(|c| *c != key);
        let mut restored = None;
        let (freshness, serving) = match serving_entry(&t.store, &key, &doc) {
            Ok(Some(entry)) => (t.tier.probe(cx, &entry).await?, Some(entry)),
            Ok(None) => {
                if !doc.inputs.is_empty() {
                    restored = self.candidate(t, cx, &doc).await?;
                }
                let last = current
                    .as_ref()
                    .and_then(|c| t.store.marker(c).ok().flatten());
                match last {
                    Some(last) => {
                        let stale = Freshness::Stale(doc.diff(&last.doc));
                        let _ = cx.previous.set(Some(entry_of(&t.store, last)));
                        (stale, None)
                    }
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

    /// The first candidate of `doc`'s structure key whose used inputs all still have
    /// the digests they had, with the reasons it is reusable.
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
            let entry = entry_of(&t.store, marker.clone());
            if t.tier.probe(cx, &entry).await? != Freshness::Fresh {
                continue;
            }
            let reasons = reuse_reasons(doc, &marker.doc);
            return Ok(Some((marker, reasons)));
        }
        Ok(None)
    }

    async fn status_one(&self, t: &Planned, upstream: BTreeMap<String, Upstream>) -> TierReport {
        let cx = self.context(t, upstream);
        let look = match self.lookup(t, &cx).await {
            Ok(l) => l,
            Err(e) => return failed_or_skipped(t, None, e),
        };
        let path = look.serving.as_ref().map(|e| t.tier.path(e));
        if let (Some((marker, reasons)), Freshness::Missing | Freshness::Stale(_)) =
            (&look.restored, &look.freshness)
        {
            let path = t.tier.path(&entry_of(&t.store, marker.clone()));
            return tier_report(
                t,
                Some(look.key),
                Some(path),
                Status::Restored,
                reasons.clone(),
            );
        }
        // `build` keeps the last entry of a `rebuild = "never"` tier: say so, and let
        // downstream tiers be keyed on that entry, as `build` will.
        if let (Rebuild::Never, Freshness::Stale(r)) = (t.common.rebuild, &look.freshness) {
            return self.never(t, &look, r.clone());
        }
        let (status, mut reasons) = match look.freshness.clone() {
            Freshness::Fresh => (Status::Fresh, vec![]),
            Freshness::Missing => (Status::Missing, vec![]),
            Freshness::Stale(r) => (Status::Stale, r),
        };
        if t.common.rebuild == Rebuild::Always {
            reasons.push(Reason::Forced {
                by: "`rebuild = \"always\"`".into(),
            });
            if status == Status::Fresh {
                return tier_report(t, Some(look.key), path, Status::Stale, reasons);
            }
        }
        let path = path.or_else(|| Some(t.tier.path(&planned_entry(t, &look))));
        let mut report = tier_report(t, Some(look.key.clone()), path, status, reasons);
        if status != Status::Fresh {
            if let Some(shared) = self.shared_for(t) {
                match shared.contains(&t.name, &look.key).await {
                    Ok(there) => report.available_remotely = Some(there),
                    Err(e) => tracing::warn!("shared cache {}: {e}", shared.describe()),
                }
            }
        }
        report
    }

    async fn build_one(
        &self,
        t: &Planned,
        upstream: BTreeMap<String, Upstream>,
        forced: Option<String>,
    ) -> TierReport {
        let cx = self.context(t, upstream);
        let look = match self.lookup(t, &cx).await {
            Ok(l) => l,
            Err(e) => return failed_or_skipped(t, None, e),
        };
        let forced_explicitly = forced
            .as_deref()
            .is_some_and(|f| f.starts_with("--rebuild"));
        let reasons = match (&look.freshness, &forced) {
            (_, Some(by)) => vec![Reason::Forced { by: by.clone() }],
            (Freshness::Fresh, None) => {
                if let Some(entry) = &look.serving {
                    return self.reuse(t, &look, entry, Status::Fresh, vec![]);
                }
                vec![]
            }
            (Freshness::Missing, None) => vec![],
            (Freshness::Stale(r), None) => r.clone(),
        };
        if let (Some((marker, why)), None) = (&look.restored, &forced) {
            return self.restore(t, &look, marker, why.clone());
        }
        if t.common.rebuild == Rebuild::Never && !forced_explicitly {
            return self.never(t, &look, reasons);
        }
        // A corrupt entry is stale without a marker or another current key: it existed.
        let existed = look.serving.is_some()
            || look.current.is_some()
            || matches!(look.freshness, Freshness::Stale(_));
        tracing::info!(tier = %t.name, key = look.key.short(), "building");
        let lock = match lock(&t.store, &look.key).await {
            Ok(l) => l,
            Err(e) => return failed_or_skipped(t, Some(look.key), e),
        };
        // Another process may have published this key while we waited for the lock.
        if forced.is_none() {
            if let Ok(Some(marker)) = t.store.marker(&look.key) {
                let entry = entry_of(&t.store, marker);
                if let Ok(Freshness::Fresh) = t.tier.probe(&cx, &entry).await {
                    drop(lock);
                    return self.reuse(t, &look, &entry, Status::Fresh, vec![]);
                }
            }
        }
        if forced.is_none() {
            if let Some(report) = self.restore_from_shared(t, &cx, &look, &lock).await {
                return report;
            }
        }
        match self.run_build(t, &cx, &look, &lock).await {
            Ok((path, summary)) => {
                drop(lock);
                self.upload(t, &look).await;
                if let Err(e) = t.store.set_current(&look.key) {
                    return failed_or_skipped(t, Some(look.key), e);
                }
                let status = if existed {
                    Status::Rebuilt
                } else {
                    Status::Built
                };
                if let Err(e) = retain(t, Retain::Quiet) {
                    tracing::warn!(tier = %t.name, "retention failed: {e}");
                }
                let mut report = tier_report(t, Some(look.key), Some(path), status, reasons);
                report.summary = summary;
                report
            }
            Err(e) => failed_or_skipped(t, Some(look.key), e),
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
            let skey = look.doc.structure_key();
            for c in shared.candidates(&t.name, &skey).await? {
                if !c.mismatches(&look.doc.inputs).is_empty() || c.entry == look.key {
                    continue;
                }
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
                let entry = entry_of(&t.store, marker.clone());
                if t.tier.probe(cx, &entry).await? != Freshness::Fresh {
                    continue;
                }
                t.store.set_alias(&look.key, &marker.key)?;
                Candidates::new(t.store.root()).touch(&skey, &marker.key, Some(c.used.clone()))?;
                let why = reuse_reasons(&look.doc, &marker.doc);
                return Ok(Some((marker, why)));
            }
            Ok::<_, Error>(None)
        };
        match attempt.await {
            Ok(Some((marker, mut why))) => {
                why.push(Reason::SharedCache { from });
                let _ = t.store.set_current(&marker.key);
                if let Err(e) = retain(t, Retain::Quiet) {
                    tracing::warn!(tier = %t.name, "retention failed: {e}");
                }
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
        let staging = t.store.stage(key, lock)?;
        let fetched = shared.fetch(&t.name, key, &staging).await;
        let mut marker = match fetched {
            Ok(Some(m)) => m,
            Ok(None) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Ok(None);
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        // The record must be for this key and its document must hash to it.
        if marker.key != *key || marker.doc.key() != *key {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(Error::Marker {
                path: staging,
                why: format!("the shared cache's record for {key} describes another key"),
            });
        }
        marker.tier = t.name.clone();
        t.store.publish(&staging, &marker, lock)?;
        Ok(Some(marker))
    }

    /// Upload a freshly built entry and its candidates; failures are warnings.
    async fn upload(&self, t: &Planned, look: &Lookup) {
        let Some(shared) = self.shared_for(t).filter(|s| s.writable()) else {
            return;
        };
        let result = async {
            let Some(marker) = t.store.marker(&look.key)? else {
                return Ok(());
            };
            t.tier.before_upload(&entry_of(&t.store, marker.clone()))?;
            shared
                .store(&t.name, &marker, &t.store.entry_dir(&look.key))
                .await?;
            if marker.used_inputs.is_some() {
                let skey = look.doc.structure_key();
                let list = Candidates::new(t.store.root()).load(&skey);
                shared.store_candidates(&t.name, &skey, &list).await?;
            }
            Ok::<_, Error>(())
        };
        if let Err(e) = result.await {
            tracing::warn!(
                "shared cache {}: cannot upload `{}`: {e}",
                shared.describe(),
                t.name
            );
        }
    }

    /// Build under the lock and publish; on failure nothing is published.
    async fn run_build(
        &self,
        t: &Planned,
        cx: &Context,
        look: &Lookup,
        lock: &KeyLock,
    ) -> Result<(PathBuf, Option<String>)> {
        let in_place = t.tier.builds_in_place();
        let build_dir = if in_place {
            t.store.prepare_in_place(&look.key, lock)?
        } else {
            t.store.stage(&look.key, lock)?
        };
        let mut entry = Entry {
            key: look.key.clone(),
            dir: t.store.entry_dir(&look.key),
            build_dir: build_dir.clone(),
            doc: look.doc.clone(),
            data: Value::Null,
        };
        let started = Instant::now();
        let outcome = t.tier.build(cx, &entry).await;
        let outcome = outcome.and_then(|o| {
            if build_dir.join(store::MARKER).exists() && !in_place {
                return Err(Error::build(format!(
                    "the build wrote `{}`, a name tiers reserves for its entry marker",
                    store::MARKER
                )));
            }
            check_used_inputs(&look.doc, &o.used_inputs)?;
            Ok(o)
        });
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&build_dir);
                return Err(e);
            }
        };
        let marker = Marker {
            format: store::MARKER_FORMAT,
            tier: t.name.clone(),
            key: look.key.clone(),
            doc: (*look.doc).clone(),
            created_unix: store::now_unix(),
            build_seconds: started.elapsed().as_secs_f64(),
            used_inputs: outcome.used_inputs,
            data: outcome.data,
        };
        if in_place {
            t.store.publish_in_place(&marker, lock)?;
        } else if let Err(e) = t.store.publish(&build_dir, &marker, lock) {
            let _ = std::fs::remove_dir_all(&build_dir);
            return Err(e);
        }
        if let Some(used) = &marker.used_inputs {
            let used = used
                .iter()
                .filter_map(|p| look.doc.inputs.get(p).map(|d| (p.clone(), d.clone())))
                .collect();
            let recorded = Candidates::new(t.store.root()).touch(
                &look.doc.structure_key(),
                &look.key,
                Some(used),
            );
            if let Err(e) = recorded {
                tracing::warn!(tier = %t.name, "cannot record the inputs this build used: {e}");
            }
        }
        entry.build_dir = entry.dir.clone();
        entry.data = marker.data;
        Ok((t.tier.path(&entry), outcome.summary))
    }

    /// Serve `look.key` with `marker`'s entry, built for other inputs this build does
    /// not use; the next exact lookup of `look.key` hits it directly.
    fn restore(&self, t: &Planned, look: &Lookup, marker: &Marker, why: Vec<Reason>) -> TierReport {
        let recorded = t.store.set_alias(&look.key, &marker.key).and_then(|()| {
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
        if let Err(e) = t.store.set_current(&entry.key) {
            return failed_or_skipped(t, Some(look.key.clone()), e);
        }
        let path = t.tier.path(entry);
        tier_report(t, Some(look.key.clone()), Some(path), status, reasons)
    }

    /// `rebuild = "never"` and the entry is not fresh: keep using the last entry.
    fn never(&self, t: &Planned, look: &Lookup, mut reasons: Vec<Reason>) -> TierReport {
        let last = [Some(&look.key), look.current.as_ref()]
            .into_iter()
            .flatten()
            .find_map(|k| t.store.marker(k).ok().flatten());
        match last {
            Some(marker) => {
                reasons.push(Reason::Skipped {
                    why: "`rebuild = \"never\"` keeps the last entry".into(),
                });
                let key = marker.key.clone();
                let path = t.tier.path(&entry_of(&t.store, marker));
                tier_report(t, Some(key), Some(path), Status::Skipped, reasons)
            }
            None => failed_or_skipped(
                t,
                Some(look.key.clone()),
                Error::NeverWithoutEntry {
                    tier: t.name.clone(),
                },
            ),
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
fn retain(t: &Planned, how: Retain) -> Result<Vec<Removed>> {
    let dry_run = how == Retain::Report { dry_run: true };
    if t.keep.is_none() && t.common.max_bytes.is_none() {
        return Ok(Vec::new());
    }
    let current = t.store.current();
    let mut entries = t.store.entries()?;
    // The current entry counts first, whatever its age.
    entries.sort_by_key(|e| Some(&e.key) != current.as_ref());
    let mut kept = 0usize;
    let mut bytes = 0u64;
    let mut removed = Vec::new();
    for e in entries {
        // Sizes cost a walk of the entry: only a byte budget needs them.
        let size = match t.common.max_bytes {
            Some(_) => store::dir_bytes(&e.dir),
            None => 0,
        };
        let is_current = Some(&e.key) == current.as_ref();
        let over_count = t.keep.is_some_and(|k| kept >= k);
        let over_bytes = t.common.max_bytes.is_some_and(|m| bytes + size > m);
        if is_current || !(over_count || over_bytes) {
            kept += 1;
            bytes += size;
            continue;
        }
        let size = match (t.common.max_bytes, how) {
            (Some(_), _) => size,
            (None, Retain::Report { .. }) => store::dir_bytes(&e.dir),
            (None, Retain::Quiet) => 0,
        };
        if !dry_run {
            t.store.remove(&e.key)?;
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

/// Why `req` forces `t`, if it does.
fn forced_by(t: &Planned, req: &BuildRequest) -> Option<String> {
    match &req.rebuild {
        Force::All => return Some("--rebuild all".into()),
        Force::Tiers(names) if names.contains(&t.name) => {
            return Some(format!("--rebuild {}", t.name))
        }
        _ => {}
    }
    if t.common.rebuild == Rebuild::Always {
        return Some("`rebuild = \"always\"`".into());
    }
    (req.eager && t.eager).then(|| "--eager".into())
}

async fn lock(store: &Store, key: &Key) -> Result<KeyLock> {
    let store = Store::new(store.root());
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
