//! What every venv kind of tiers shares: manifests, interpreter identity, health, keys.
//!
//! The one big decision: **a venv is keyed on what it is built from, never on whether
//! a directory exists, and never on source files.** The key holds
//!
//! | part | why |
//! | --- | --- |
//! | what installers read of the manifests that exist (`requirements*.txt`, `pyproject.toml`, the lock files…; `manifests`, `extra_manifests`): see [`deps`] | they name what gets installed |
//! | the interpreter's identity: real path, full version, implementation, platform | a venv is bound to its interpreter |
//! | the backend and its installer's version (`uv 0.5.1`, `poetry 2.0.1`, the bundled pip) | another installer may resolve differently |
//! | `extras`, `groups`, the index options and the index variables (`PIP_INDEX_URL`, `UV_FIND_LINKS`…) | they change what resolves |
//!
//! The project itself is installed editable, so editing a `.py` file never touches the
//! venv. Its own installed metadata (version, scripts, entry points) is not in the
//! key either: the entry records it, [`Tier::probe`] compares, and a change re-installs
//! the project alone into the venv ([`Tier::update_in_place`], `--no-deps`).
//! `key = "bytes"` keys on every byte of every manifest instead.
//!
//! The interpreter and installer are probed once per binary and the answers kept
//! on the binaries' stat data ([`probe`], through the engine's
//! [`ToolCache`]), so a warm check runs no process. Venvs are
//! not relocatable: a venv is built in its entry directory under the key's lock, and a
//! hit re-checks its health cheaply ([`health`]).
//!
//! Each backend crate (`tiers-venv-uv`, `-pip`, `-poetry`) implements [`Backend`]:
//! only the commands of its tool. [`VenvTier`] is the one [`Tier`] over them, either
//! bound to one backend (`kind = "venv-uv"`) or choosing (`kind = "venv"`,
//! `backend = "auto"`): poetry for a project with `poetry.lock` when poetry is
//! installed, else uv when uv is installed, else pip.

pub mod deps;
mod error;
pub mod health;
mod job;
pub mod manifests;
pub mod probe;
mod readings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use tiers_core::{
    async_trait, BuildOutcome, Context, Entry, Freshness, InputSet, InputSpec, KeyDoc, Reason,
    Registry, Result, Tier, TierSpec, ToolCache,
};

pub use deps::{KeyMode, Reading};
pub use error::VenvError;
pub use health::venv_python;
pub use job::Job;
pub use manifests::{Manifests, DEFAULT_MANIFESTS};
pub use probe::{Interpreter, Tool};
pub use readings::ReadingCache;

/// Bumped whenever the way any venv backend builds changes: old entries then miss.
pub const KIND_VERSION: u32 = 2;

/// The kind that picks its backend (`backend = "auto"` by default).
pub const AUTO_KIND: &str = "venv";

/// The order `backend = "auto"` tries backends in; each must also
/// [suit](Backend::suits) the project and have its tool installed.
pub const AUTO_ORDER: &[&str] = &["poetry", "uv", "pip"];

fn default_python() -> String {
    "python3".to_owned()
}

fn yes() -> bool {
    true
}

fn default_key() -> KeyMode {
    KeyMode::Dependencies
}

/// The keys of a venv tier's table, shared by every venv kind.
///
/// ```toml
/// [tiers.venv]
/// kind = "venv-uv"              # or venv-pip, venv-poetry, venv (backend = "auto")
/// python = "python3.12"         # a name on PATH or a path; default python3
/// extra_manifests = ["constraints.txt"]
/// extras = ["test"]             # the project's extras
/// groups = ["dev"]              # dependency groups
/// find_links = ["wheels"]       # index options, passed to pip and uv
/// no_index = true
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The interpreter: a name looked up on PATH, or a path (relative to the project).
    #[serde(default = "default_python")]
    pub python: String,
    /// The manifest globs, replacing [`DEFAULT_MANIFESTS`].
    #[serde(default)]
    pub manifests: Option<Vec<String>>,
    /// Manifest globs added to `manifests` (or to the defaults).
    #[serde(default)]
    pub extra_manifests: Vec<String>,
    /// Extras of the project itself.
    #[serde(default)]
    pub extras: Vec<String>,
    /// Dependency groups to install.
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub index_url: Option<String>,
    #[serde(default)]
    pub extra_index_urls: Vec<String>,
    /// Directories (relative to the project) or URLs of wheels.
    #[serde(default)]
    pub find_links: Vec<String>,
    #[serde(default)]
    pub no_index: bool,
    /// Install the project itself (editable) when it has a `pyproject.toml`,
    /// `setup.py` or `setup.cfg`.
    #[serde(default = "yes")]
    pub install_project: bool,
    /// The uv binary, instead of `uv` on PATH.
    #[serde(default)]
    pub uv: Option<PathBuf>,
    /// The poetry binary, instead of `poetry` on PATH.
    #[serde(default)]
    pub poetry: Option<PathBuf>,
    /// `kind = "venv"` only: `auto`, or a backend's name.
    #[serde(default)]
    pub backend: Option<String>,
    /// `dependencies`: the key covers what installers read of each manifest
    /// ([`deps`]); `bytes`: every byte of every manifest.
    #[serde(default = "default_key")]
    pub key: KeyMode,
}

impl Default for Options {
    /// What an empty tier table means.
    fn default() -> Self {
        Options {
            python: default_python(),
            manifests: None,
            extra_manifests: Vec::new(),
            extras: Vec::new(),
            groups: Vec::new(),
            index_url: None,
            extra_index_urls: Vec::new(),
            find_links: Vec::new(),
            no_index: false,
            install_project: true,
            uv: None,
            poetry: None,
            backend: None,
            key: default_key(),
        }
    }
}

impl Options {
    /// The configured path of a backend's tool (`uv = "…"`), by binary name.
    pub fn tool_path(&self, binary: &str) -> Option<&Path> {
        match binary {
            "uv" => self.uv.as_deref(),
            "poetry" => self.poetry.as_deref(),
            _ => None,
        }
    }

    /// The index options that are set, by their configuration names.
    pub fn index_options(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        if self.index_url.is_some() {
            set.push("index_url");
        }
        if !self.extra_index_urls.is_empty() {
            set.push("extra_index_urls");
        }
        if !self.find_links.is_empty() {
            set.push("find_links");
        }
        if self.no_index {
            set.push("no_index");
        }
        set
    }
}

/// The installer binary a backend runs.
#[derive(Clone, Copy, Debug)]
pub struct ToolSpec {
    /// Its name on PATH, and the option that gives its path instead: `uv`.
    pub binary: &'static str,
    /// How to install it, for the message when it is missing.
    pub install_hint: &'static str,
}

/// One way of building a venv: the commands of one tool. Everything else — keys,
/// manifests, the interpreter, health, retention — is [`VenvTier`]'s.
///
/// Who implements it: the backend crates, and embedders with an installer of their
/// own (register it with [`register_backend`]).
#[async_trait]
pub trait Backend: Send + Sync {
    /// `uv`, `pip`, `poetry`: recorded in the key and in the entry.
    fn name(&self) -> &'static str;

    /// The installer binary this backend runs, if any.
    fn tool(&self) -> Option<ToolSpec> {
        None
    }

    /// Whether `backend = "auto"` may pick this backend for these manifests.
    fn suits(&self, manifests: &Manifests) -> bool {
        let _ = manifests;
        true
    }

    /// An option this backend cannot honour, with a hint: `(option, hint)`.
    fn unsupported(&self, options: &Options) -> Option<(&'static str, &'static str)> {
        let _ = options;
        None
    }

    /// Whether the environment variable `name` changes what this backend resolves
    /// (index settings): such variables that are set go into the key.
    fn index_env(&self, name: &str) -> bool;

    /// The toolchain entries of the key: by default the tool's version as `name`.
    fn toolchain(&self, python: &Interpreter, tool: Option<&Tool>) -> Vec<(String, String)> {
        let _ = python;
        tool.map(|t| vec![(self.name().to_owned(), t.version.clone())])
            .unwrap_or_default()
    }

    /// The manifests (among those present) this backend reads.
    fn reads(&self, manifests: &Manifests, options: &Options) -> Vec<String>;

    /// Create the venv at `job.venv` (an empty directory) and install into it.
    async fn install(&self, job: &Job<'_>) -> Result<(), VenvError>;

    /// Re-install the project alone (its dependencies untouched) into the healthy
    /// venv at `job.venv`, built by [`Backend::install`] from the same key: its own
    /// metadata (version, scripts, entry points) changed. `Ok(false)`: this backend
    /// cannot, and the venv is rebuilt.
    async fn reinstall_project(&self, job: &Job<'_>) -> Result<bool, VenvError> {
        let _ = job;
        Ok(false)
    }
}

enum Choice {
    Fixed(Arc<dyn Backend>),
    /// In [`AUTO_ORDER`].
    Auto(Vec<Arc<dyn Backend>>),
}

/// A venv tier: one [`Tier`] over any [`Backend`].
pub struct VenvTier {
    kind: String,
    options: Options,
    patterns: Vec<String>,
    spec: InputSpec,
    choice: Choice,
}

/// Everything a key and a build are computed from, found afresh by each.
struct Resolved {
    backend: Arc<dyn Backend>,
    manifests: Manifests,
    /// How the key read each manifest (and each file they include); empty with
    /// `key = "bytes"`.
    readings: BTreeMap<String, Reading>,
    /// The manifests the backend reads, with the files they include.
    read: Vec<String>,
    python: Interpreter,
    tool: Option<Tool>,
    doc: KeyDoc,
}

impl Resolved {
    /// The backend's view of a build into `venv`.
    fn job<'a>(&'a self, cx: &'a Context, options: &'a Options, venv: &'a Path) -> Job<'a> {
        Job {
            tier: cx.tier(),
            project: cx.project(),
            venv,
            python: &self.python,
            tool: self.tool.as_ref(),
            manifests: &self.manifests,
            options,
            verbose: cx.verbose(),
            progress: cx.progress().clone(),
        }
    }

    /// The venv the backend left at `venv` passes the health check.
    fn healthy(&self, cx: &Context, venv: &Path) -> Result<(), VenvError> {
        match health::check(venv, &self.python) {
            None => Ok(()),
            Some(why) => Err(VenvError::Unhealthy {
                tier: cx.tier().to_owned(),
                backend: self.backend.name().to_owned(),
                venv: venv.to_owned(),
                why,
            }),
        }
    }
}

impl VenvTier {
    /// A tier of `kind` bound to `backend`.
    pub fn fixed(spec: &TierSpec<'_>, kind: &str, backend: Arc<dyn Backend>) -> Result<Self> {
        let options: Options = spec.options()?;
        if options.backend.is_some() {
            return Err(spec.error(format!(
                "`backend` is an option of `kind = \"{AUTO_KIND}\"`; `kind = \"{kind}\"` always uses {}",
                backend.name()
            )));
        }
        if let Some((option, hint)) = backend.unsupported(&options) {
            return Err(spec.error(format!(
                "the {} backend does not support `{option}`\nhint: {hint}",
                backend.name()
            )));
        }
        check_tool_options(spec, &options, std::slice::from_ref(&backend))?;
        Self::new(spec, kind, options, Choice::Fixed(backend))
    }

    /// A tier of the choosing kind over `backends`.
    pub fn auto(
        spec: &TierSpec<'_>,
        kind: &str,
        mut backends: Vec<Arc<dyn Backend>>,
    ) -> Result<Self> {
        let options: Options = spec.options()?;
        backends.sort_by_key(|b| {
            AUTO_ORDER
                .iter()
                .position(|n| *n == b.name())
                .unwrap_or(AUTO_ORDER.len())
        });
        let choice = match options.backend.as_deref().unwrap_or("auto") {
            "auto" => Choice::Auto(backends.clone()),
            name => match backends.iter().find(|b| b.name() == name) {
                Some(b) => {
                    if let Some((option, hint)) = b.unsupported(&options) {
                        return Err(spec.error(format!(
                            "the {name} backend does not support `{option}`\nhint: {hint}"
                        )));
                    }
                    Choice::Fixed(b.clone())
                }
                None => {
                    let known: Vec<&str> = backends.iter().map(|b| b.name()).collect();
                    return Err(spec.error(format!(
                        "unknown `backend = \"{name}\"` (known: auto, {})",
                        known.join(", ")
                    )));
                }
            },
        };
        let candidates = match &choice {
            Choice::Fixed(b) => vec![b.clone()],
            Choice::Auto(all) => all.clone(),
        };
        check_tool_options(spec, &options, &candidates)?;
        Self::new(spec, kind, options, choice)
    }

    /// A tier named `tier` of `kind` bound to `backend`, from options already read:
    /// for embedders and tests that make a tier without a configuration file.
    pub fn with_options(
        tier: &str,
        kind: &str,
        options: Options,
        backend: Arc<dyn Backend>,
    ) -> Result<Self> {
        let patterns = manifests::patterns(options.manifests.as_deref(), &options.extra_manifests);
        if patterns.is_empty() {
            return Err(tiers_core::Error::config(format!(
                "tier `{tier}`: {NO_MANIFESTS}"
            )));
        }
        Self::assemble(tier, kind, options, Choice::Fixed(backend), patterns)
    }

    fn new(spec: &TierSpec<'_>, kind: &str, options: Options, choice: Choice) -> Result<Self> {
        let patterns = manifests::patterns(options.manifests.as_deref(), &options.extra_manifests);
        if patterns.is_empty() {
            return Err(spec.error(NO_MANIFESTS));
        }
        Self::assemble(spec.name, kind, options, choice, patterns)
    }

    fn assemble(
        tier: &str,
        kind: &str,
        options: Options,
        choice: Choice,
        patterns: Vec<String>,
    ) -> Result<Self> {
        Ok(VenvTier {
            kind: kind.to_owned(),
            spec: InputSpec::new(tier, &patterns, &[])?,
            patterns,
            options,
            choice,
        })
    }

    async fn resolve(&self, cx: &Context) -> Result<Resolved> {
        let cache = ToolCache::new(cx.cache_dir()).writing(cx.building());
        let inputs: InputSet = cx.inputs(&self.spec)?;
        let manifests = Manifests::from_inputs(&inputs);
        let python =
            probe::identify_interpreter(cx.tier(), &self.options.python, cx.project(), &cache)
                .await?;
        let (backend, tool) = match &self.choice {
            Choice::Fixed(b) => (b.clone(), self.find_tool(cx, b.as_ref(), &cache).await?),
            Choice::Auto(all) => self.choose(cx, all, &manifests, &cache).await?,
        };
        if let Some((option, hint)) = backend.unsupported(&self.options) {
            return Err(VenvError::Unsupported {
                tier: cx.tier().to_owned(),
                backend: backend.name().to_owned(),
                option: option.to_owned(),
                hint: hint.to_owned(),
            }
            .into());
        }
        let readings = match self.options.key {
            KeyMode::Dependencies => read_manifests(
                cx.tier(),
                cx.project(),
                &inputs,
                &ReadingCache::new(cx.cache_dir()),
            )?,
            KeyMode::Bytes => BTreeMap::new(),
        };
        let read = with_includes(backend.reads(&manifests, &self.options), &readings);
        let doc = self.doc(
            backend.as_ref(),
            &python,
            tool.as_ref(),
            &inputs,
            &readings,
            &read,
        );
        Ok(Resolved {
            backend,
            manifests,
            readings,
            read,
            python,
            tool,
            doc,
        })
    }

    /// The first backend in [`AUTO_ORDER`] that suits the project and is installed.
    async fn choose(
        &self,
        cx: &Context,
        all: &[Arc<dyn Backend>],
        manifests: &Manifests,
        cache: &ToolCache,
    ) -> Result<(Arc<dyn Backend>, Option<Tool>)> {
        let mut passed_over = Vec::new();
        for b in all.iter().filter(|b| b.suits(manifests)) {
            match self.find_tool(cx, b.as_ref(), cache).await {
                Ok(tool) => return Ok((b.clone(), tool)),
                Err(VenvError::MissingTool { binary, .. }) => {
                    tracing::debug!(
                        tier = cx.tier(),
                        "`{binary}` is not installed: not using {}",
                        b.name()
                    );
                    passed_over.push(binary);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(tiers_core::Error::build(format!(
            "tier `{}`: no venv backend can build this project (not installed: {})",
            cx.tier(),
            passed_over.join(", ")
        )))
    }

    /// Find `backend`'s tool (the configured path, else PATH) and its version.
    async fn find_tool(
        &self,
        cx: &Context,
        backend: &dyn Backend,
        cache: &ToolCache,
    ) -> Result<Option<Tool>, VenvError> {
        let Some(spec) = backend.tool() else {
            return Ok(None);
        };
        let tier = cx.tier().to_owned();
        let program = match self.options.tool_path(spec.binary) {
            Some(path) => probe::locate(path, cx.project()).map_err(|_| VenvError::ToolNotAt {
                tier: tier.clone(),
                option: spec.binary.to_owned(),
                path: cx.project().join(path),
                hint: spec.install_hint.to_owned(),
            })?,
            None => probe::locate(Path::new(spec.binary), cx.project()).map_err(|looked| {
                VenvError::MissingTool {
                    tier: tier.clone(),
                    binary: spec.binary.to_owned(),
                    option: spec.binary.to_owned(),
                    looked: looked.describe(),
                    hint: spec.install_hint.to_owned(),
                }
            })?,
        };
        probe::tool_version(&tier, spec.binary, &program, cx.project(), cache)
            .await
            .map(Some)
    }

    fn doc(
        &self,
        backend: &dyn Backend,
        python: &Interpreter,
        tool: Option<&Tool>,
        inputs: &InputSet,
        readings: &BTreeMap<String, Reading>,
        read: &[String],
    ) -> KeyDoc {
        let o = &self.options;
        let mut doc = KeyDoc::new(&self.kind, KIND_VERSION)
            .option("key", o.key)
            .option("backend", backend.name())
            .option("manifests", &self.patterns)
            .option("extras", &o.extras)
            .option("groups", &o.groups)
            .option("index_url", o.index_url.as_deref().map(redact))
            .option(
                "extra_index_urls",
                o.extra_index_urls
                    .iter()
                    .map(|u| redact(u))
                    .collect::<Vec<_>>(),
            )
            .option("find_links", &o.find_links)
            .option("no_index", o.no_index)
            .option("install_project", o.install_project)
            .toolchain("python", python.identity());
        for (what, identity) in backend.toolchain(python, tool) {
            doc = doc.toolchain(what, identity);
        }
        for (name, value) in index_env(backend) {
            doc = doc.option(format!("${name}"), value);
        }
        if o.key == KeyMode::Bytes {
            return doc.inputs(inputs);
        }
        for (rel, r) in readings {
            // What the backend does not read is in the key by digest only: the
            // structure key (options included) stays the same when it changes, so
            // the entry is still found through discovered inputs.
            if read.contains(rel) {
                doc = doc.option(format!("{rel}: keyed on"), &r.keyed_on);
                for (table, value) in &r.covered {
                    doc = doc.option(format!("{rel}: {table}"), value);
                }
            } else {
                doc = doc.option(
                    format!("{rel}: keyed on"),
                    format!(
                        "its digest only: the {} backend does not read it",
                        backend.name()
                    ),
                );
            }
            if !r.digest.is_empty() {
                doc.inputs.insert(rel.clone(), r.digest.clone());
            }
        }
        doc
    }

    /// What the entry records besides its key: the backend, the manifests read, the
    /// interpreter, and — keyed on dependencies — the project's own installed
    /// metadata and digests of what the key does not cover.
    fn data(&self, r: &Resolved, job: &Job<'_>, read: &[String]) -> serde_json::Value {
        let uncovered: BTreeMap<&str, serde_json::Value> = r
            .readings
            .iter()
            .filter(|(_, m)| !m.file_digest.is_empty() && !m.by_bytes)
            .map(|(rel, m)| {
                (
                    rel.as_str(),
                    json!({"bytes": m.file_digest, "tables": m.uncovered}),
                )
            })
            .collect();
        let own = r
            .readings
            .get(PROJECT_MANIFEST)
            .filter(|_| job.installs_project())
            .filter(|m| !m.by_bytes)
            .map(|m| &m.own);
        json!({
            "backend": r.backend.name(),
            "tool": r.tool.as_ref().map(|t| &t.version),
            "manifests": read,
            "python": r.python,
            "key": self.options.key,
            "uncovered": uncovered,
            "project": own,
        })
    }

    /// How the project's own installed metadata differs from what `data` recorded
    /// when the entry was built: one reason per changed table.
    fn project_changes(&self, cx: &Context, data: &serde_json::Value) -> Result<Vec<Reason>> {
        let Some(old) = data.get("project").and_then(|p| p.as_object()) else {
            return Ok(Vec::new());
        };
        // Gone: the key changed, and the lookup says so.
        let Some(now) = reading_now(cx, PROJECT_MANIFEST)? else {
            return Ok(Vec::new());
        };
        if now.by_bytes {
            // Keyed on its bytes now: any change is a new key.
            return Ok(Vec::new());
        }
        let labels: std::collections::BTreeSet<&String> =
            old.keys().chain(now.own.keys()).collect();
        Ok(labels
            .into_iter()
            .filter(|l| old.get(*l) != now.own.get(*l))
            .map(|l| Reason::OptionChanged {
                name: format!("{PROJECT_MANIFEST}: {l}"),
                old: old.get(l).cloned(),
                new: now.own.get(l).cloned(),
            })
            .collect())
    }

    /// What changed since the entry was built that its key does not cover.
    fn uncovered_notes(&self, cx: &Context, data: &serde_json::Value) -> Result<Vec<String>> {
        let Some(recorded) = data.get("uncovered").and_then(|u| u.as_object()) else {
            return Ok(Vec::new());
        };
        let mut notes = Vec::new();
        for (rel, rec) in recorded {
            let Some(digest) = cx.digest_of(rel)? else {
                continue;
            };
            if rec.get("bytes").and_then(|b| b.as_str()) == Some(digest.as_str()) {
                continue;
            }
            let Some(now) = reading_now(cx, rel)? else {
                continue;
            };
            let old: BTreeMap<String, String> = rec
                .get("tables")
                .and_then(|t| serde_json::from_value(t.clone()).ok())
                .unwrap_or_default();
            let changed = deps::changed_tables(&old, &now.uncovered);
            notes.push(match changed.len() {
                0 => format!(
                    "`{rel}` changed only in comments, blank lines or formatting, which the key does not cover"
                ),
                1 => format!("`{rel}`: {}; the key does not cover it", changed[0]),
                _ => format!(
                    "`{rel}`: {}; the key does not cover them",
                    changed.join(", ")
                ),
            });
        }
        Ok(notes)
    }
}

/// `read`, and the files each of them includes (`-r`/`-c`), sorted.
fn with_includes(mut read: Vec<String>, readings: &BTreeMap<String, Reading>) -> Vec<String> {
    let mut todo = read.clone();
    while let Some(rel) = todo.pop() {
        for inc in readings
            .get(&rel)
            .map(|r| r.includes.as_slice())
            .unwrap_or_default()
        {
            if readings.get(inc).is_some_and(|r| !r.digest.is_empty()) && !read.contains(inc) {
                read.push(inc.clone());
                todo.push(inc.clone());
            }
        }
    }
    read.sort();
    read
}

const NO_MANIFESTS: &str = "`manifests` is empty: a venv needs at least one manifest to key on";

/// The manifest that holds the project's own metadata.
const PROJECT_MANIFEST: &str = "pyproject.toml";

/// How the key reads the project file `rel` now, `None` when it is gone: the kept
/// reading while the stat cache's digest matches, else a parse.
fn reading_now(cx: &Context, rel: &str) -> Result<Option<Reading>> {
    let Some(digest) = cx.digest_of(rel)? else {
        return Ok(None);
    };
    let cache = ReadingCache::new(cx.cache_dir());
    if let Some(kept) = cache.reading(rel, &digest) {
        return Ok(Some(kept));
    }
    let path = cx.project().join(rel);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(deps::read(rel, &bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(VenvError::Manifest {
            tier: cx.tier().to_owned(),
            path,
            source,
        }
        .into()),
    }
}

/// How the key reads each manifest in `inputs`, and each file their `-r`/`-c`
/// lines include (a manifest too, whatever its name).
fn read_manifests(
    tier: &str,
    project: &Path,
    inputs: &InputSet,
    cache: &ReadingCache,
) -> Result<BTreeMap<String, Reading>, VenvError> {
    let mut out = BTreeMap::new();
    let mut todo: Vec<String> = Vec::new();
    for (rel, digest) in inputs.iter() {
        if !deps::is_parsed(rel.rsplit('/').next().unwrap_or(rel)) {
            out.insert(rel.to_owned(), Reading::bytes(digest, None));
        } else if let Some(kept) = cache.reading(rel, digest) {
            todo.extend(kept.includes.iter().cloned());
            out.insert(rel.to_owned(), kept);
        } else {
            todo.push(rel.to_owned());
        }
    }
    while let Some(rel) = todo.pop() {
        if out.contains_key(&rel) {
            continue;
        }
        let path = project.join(&rel);
        let reading = match std::fs::read(&path) {
            Ok(bytes) => {
                let reading = deps::read(&rel, &bytes);
                // Kept only when these are the bytes the input walk hashed.
                if inputs.get(&rel) == Some(reading.file_digest.as_str()) {
                    cache.keep_reading(&rel, &reading);
                }
                reading
            }
            // An included file that is not there: the installer will say so.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Reading {
                keyed_on: "missing".to_owned(),
                ..Reading::default()
            },
            Err(source) => {
                return Err(VenvError::Manifest {
                    tier: tier.to_owned(),
                    path,
                    source,
                })
            }
        };
        todo.extend(
            reading
                .includes
                .iter()
                .filter(|i| !out.contains_key(*i))
                .cloned(),
        );
        out.insert(rel, reading);
    }
    Ok(out)
}

/// The set index variables `backend` reads, values redacted.
fn index_env(backend: &dyn Backend) -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned())))
        .filter(|(k, _)| backend.index_env(k))
        .map(|(k, v)| (k, redact(&v)))
        .collect()
}

/// URLs without their credentials: `https://user:token@host/x` → `https://***@host/x`.
/// Keys are stored in entries and printed in reasons; a token never is.
pub fn redact(value: &str) -> String {
    value
        .split(' ')
        .map(|word| match word.split_once("://") {
            Some((scheme, rest)) => {
                let host_end = rest.find('/').unwrap_or(rest.len());
                match rest[..host_end].rfind('@') {
                    Some(at) => format!("{scheme}://***{}", &rest[at..]),
                    None => word.to_owned(),
                }
            }
            None => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `uv = "…"` and `poetry = "…"` only where such a backend can run.
fn check_tool_options(
    spec: &TierSpec<'_>,
    options: &Options,
    backends: &[Arc<dyn Backend>],
) -> Result<()> {
    for binary in ["uv", "poetry"] {
        if options.tool_path(binary).is_none() {
            continue;
        }
        if !backends
            .iter()
            .any(|b| b.tool().is_some_and(|t| t.binary == binary))
        {
            return Err(spec.error(format!(
                "`{binary}` names the {binary} binary, but this tier does not use {binary}"
            )));
        }
    }
    Ok(())
}

#[async_trait]
impl Tier for VenvTier {
    async fn key(&self, cx: &Context) -> Result<KeyDoc> {
        Ok(self.resolve(cx).await?.doc)
    }

    async fn probe(&self, cx: &Context, entry: &Entry) -> Result<Freshness> {
        let recorded = entry
            .data
            .get("python")
            .cloned()
            .and_then(|p| serde_json::from_value::<Interpreter>(p).ok());
        let why = match recorded {
            Some(python) => health::check(&entry.dir, &python),
            None => Some("the entry records no interpreter".to_owned()),
        };
        if let Some(why) = why {
            return Ok(Freshness::Stale(vec![Reason::Corrupt { why }]));
        }
        let changed = self.project_changes(cx, &entry.data)?;
        if !changed.is_empty() {
            return Ok(Freshness::Stale(changed));
        }
        // Only said with `-v`: a note that cannot be made fails nothing.
        if tracing::enabled!(tracing::Level::DEBUG) {
            match self.uncovered_notes(cx, &entry.data) {
                Ok(notes) => notes
                    .iter()
                    .for_each(|note| tracing::debug!(tier = cx.tier(), "{note}")),
                Err(e) => tracing::debug!(tier = cx.tier(), "cannot tell what changed: {e}"),
            }
        }
        Ok(Freshness::Fresh)
    }

    async fn build(&self, cx: &Context, entry: &Entry) -> Result<BuildOutcome> {
        let r = self.resolve(cx).await?;
        let mut doc = r.doc.clone();
        doc.upstream = entry.doc.upstream.clone();
        if doc != *entry.doc {
            return Err(VenvError::Moved {
                tier: cx.tier().to_owned(),
            }
            .into());
        }
        let job = r.job(cx, &self.options, &entry.build_dir);
        r.backend.install(&job).await?;
        r.healthy(cx, &entry.build_dir)?;
        let read = r.read.clone();
        let summary = match read.is_empty() {
            true => format!("installed with {}", r.backend.name()),
            false => format!(
                "installed with {} from {}",
                r.backend.name(),
                read.join(", ")
            ),
        };
        Ok(BuildOutcome {
            summary: Some(summary),
            data: self.data(&r, &job, &read),
            used_inputs: Some(read),
            blobs: Vec::new(),
        })
    }

    /// A venv whose dependencies are unchanged but whose project's own metadata
    /// changed re-installs the project alone (`--no-deps`).
    async fn update_in_place(&self, cx: &Context, entry: &Entry) -> Result<Option<BuildOutcome>> {
        let r = self.resolve(cx).await?;
        let mut doc = r.doc.clone();
        doc.upstream = entry.doc.upstream.clone();
        if doc != *entry.doc || health::check(&entry.dir, &r.python).is_some() {
            return Ok(None);
        }
        let recorded = entry.data.get("python").cloned();
        if recorded.and_then(|p| serde_json::from_value::<Interpreter>(p).ok())
            != Some(r.python.clone())
        {
            return Ok(None);
        }
        let changed = self.project_changes(cx, &entry.data)?;
        let job = r.job(cx, &self.options, &entry.dir);
        if changed.is_empty() || !job.installs_project() {
            return Ok(None);
        }
        if !r.backend.reinstall_project(&job).await? {
            return Ok(None);
        }
        r.healthy(cx, &entry.dir)?;
        let read = r.read.clone();
        Ok(Some(BuildOutcome {
            summary: Some(format!(
                "re-installed the project alone with {} (its dependencies are unchanged)",
                r.backend.name()
            )),
            data: self.data(&r, &job, &read),
            used_inputs: Some(read),
            blobs: Vec::new(),
        }))
    }

    async fn uncovered_changes(&self, cx: &Context, entry: &Entry) -> Result<Vec<String>> {
        self.uncovered_notes(cx, &entry.data)
    }

    /// The venv is the entry directory itself: `bin/python` is beside `entry.json`.
    fn path(&self, entry: &Entry) -> PathBuf {
        entry.dir.clone()
    }

    fn builds_in_place(&self) -> bool {
        true
    }

    fn eager_default(&self) -> bool {
        false
    }

    fn keep_default(&self) -> Option<usize> {
        Some(2)
    }

    /// A venv is bound to its path and its interpreter's: never shared.
    fn shareable(&self) -> bool {
        false
    }
}

/// Register `kind` as a venv kind bound to `backend`.
pub fn register_backend(registry: &mut Registry, kind: &'static str, backend: Arc<dyn Backend>) {
    registry.register(kind, move |spec| {
        Ok(Box::new(VenvTier::fixed(spec, kind, backend.clone())?))
    });
}

/// Register [`AUTO_KIND`], choosing among `backends` (in [`AUTO_ORDER`]).
pub fn register_auto(registry: &mut Registry, backends: Vec<Arc<dyn Backend>>) {
    registry.register(AUTO_KIND, move |spec| {
        Ok(Box::new(VenvTier::auto(spec, AUTO_KIND, backends.clone())?))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_a_key() {
        assert_eq!(
            redact("https://user:s3cret@example.test/simple"),
            "https://***@example.test/simple"
        );
        assert_eq!(
            redact("https://a.test/simple https://t@b.test/x"),
            "https://a.test/simple https://***@b.test/x"
        );
        assert_eq!(redact("wheels"), "wheels");
        assert_eq!(redact("https://a.test/p@th"), "https://a.test/p@th");
    }
}
