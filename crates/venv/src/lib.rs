//! What every venv kind of tiers shares: manifests, interpreter identity, health, keys.
//!
//! The one big decision: **a venv is keyed on what it is built from, never on whether
//! a directory exists, and never on source files.** The key holds
//!
//! | part | why |
//! | --- | --- |
//! | the manifests that exist (`requirements*.txt`, `pyproject.toml`, the lock files…; `manifests`, `extra_manifests`) | they name what gets installed |
//! | the interpreter's identity: real path, full version, implementation, platform | a venv is bound to its interpreter |
//! | the backend and its installer's version (`uv 0.5.1`, `poetry 2.0.1`, the bundled pip) | another installer may resolve differently |
//! | `extras`, `groups`, the index options and the index variables (`PIP_INDEX_URL`, `UV_FIND_LINKS`…) | they change what resolves |
//!
//! The project itself is installed editable, so editing a `.py` file never touches the
//! venv. The interpreter and installer are probed once per binary and the answers kept
//! on the binaries' stat data ([`probe`]), so a warm check runs no process. Venvs are
//! not relocatable: a venv is built in its entry directory under the key's lock, and a
//! hit re-checks its health cheaply ([`health`]).
//!
//! Each backend crate (`tiers-venv-uv`, `-pip`, `-poetry`) implements [`Backend`]:
//! only the commands of its tool. [`VenvTier`] is the one [`Tier`] over them, either
//! bound to one backend (`kind = "venv-uv"`) or choosing (`kind = "venv"`,
//! `backend = "auto"`): poetry for a project with `poetry.lock` when poetry is
//! installed, else uv when uv is installed, else pip.

mod error;
pub mod health;
mod job;
pub mod manifests;
pub mod probe;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;
use tiers_core::{
    async_trait, BuildOutcome, Context, Entry, Freshness, InputSet, InputSpec, KeyDoc, Reason,
    Registry, Result, Tier, TierSpec,
};

pub use error::VenvError;
pub use health::venv_python;
pub use job::Job;
pub use manifests::{Manifests, DEFAULT_MANIFESTS};
pub use probe::{Interpreter, ProbeCache, Tool};

/// Bumped whenever the way any venv backend builds changes: old entries then miss.
pub const KIND_VERSION: u32 = 1;

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
    python: Interpreter,
    tool: Option<Tool>,
    doc: KeyDoc,
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

    fn new(spec: &TierSpec<'_>, kind: &str, options: Options, choice: Choice) -> Result<Self> {
        let patterns = manifests::patterns(options.manifests.as_deref(), &options.extra_manifests);
        if patterns.is_empty() {
            return Err(
                spec.error("`manifests` is empty: a venv needs at least one manifest to key on")
            );
        }
        Ok(VenvTier {
            kind: kind.to_owned(),
            spec: InputSpec::new(spec.name, &patterns, &[])?,
            patterns,
            options,
            choice,
        })
    }

    async fn resolve(&self, cx: &Context) -> Result<Resolved> {
        let cache = ProbeCache::new(cx.cache_dir());
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
        let doc = self.doc(backend.as_ref(), &python, tool.as_ref(), &inputs);
        Ok(Resolved {
            backend,
            manifests,
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
        cache: &ProbeCache,
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
        cache: &ProbeCache,
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
    ) -> KeyDoc {
        let o = &self.options;
        let mut doc = KeyDoc::new(&self.kind, KIND_VERSION)
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
        doc.inputs(inputs)
    }
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

    async fn probe(&self, _cx: &Context, entry: &Entry) -> Result<Freshness> {
        let recorded = entry
            .data
            .get("python")
            .cloned()
            .and_then(|p| serde_json::from_value::<Interpreter>(p).ok());
        let why = match recorded {
            Some(python) => health::check(&entry.dir, &python),
            None => Some("the entry records no interpreter".to_owned()),
        };
        Ok(match why {
            None => Freshness::Fresh,
            Some(why) => Freshness::Stale(vec![Reason::Corrupt { why }]),
        })
    }

    async fn build(&self, cx: &Context, entry: &Entry) -> Result<BuildOutcome> {
        let r = self.resolve(cx).await?;
        let mut doc = r.doc;
        doc.upstream = entry.doc.upstream.clone();
        if doc != *entry.doc {
            return Err(VenvError::Moved {
                tier: cx.tier().to_owned(),
            }
            .into());
        }
        let job = Job {
            tier: cx.tier(),
            project: cx.project(),
            venv: &entry.build_dir,
            python: &r.python,
            tool: r.tool.as_ref(),
            manifests: &r.manifests,
            options: &self.options,
            verbose: cx.verbose(),
            progress: cx.progress().clone(),
        };
        r.backend.install(&job).await?;
        if let Some(why) = health::check(&entry.build_dir, &r.python) {
            return Err(VenvError::Unhealthy {
                tier: cx.tier().to_owned(),
                backend: r.backend.name().to_owned(),
                venv: entry.build_dir.clone(),
                why,
            }
            .into());
        }
        let read = r.backend.reads(&r.manifests, &self.options);
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
            used_inputs: Some(read.clone()),
            data: json!({
                "backend": r.backend.name(),
                "tool": r.tool.as_ref().map(|t| &t.version),
                "manifests": read,
                "python": r.python,
            }),
        })
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
