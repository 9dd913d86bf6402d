//! The `symtab` kind: the Python symbols library ([`py_symbols`]) wired into
//! the engine as a tier.
//!
//! ```toml
//! [tiers.symbols]
//! kind = "symtab"
//! inputs = ["**/*.py"]     # the default
//! exclude = ["tests/**"]
//! ```
//!
//! # The one decision: per-file entries live in blobs, entries name them
//!
//! The engine keys an entry on the whole project state, but the unit of work is
//! one file's content. So each content's [`FileSymbols`](py_symbols::FileSymbols)
//! is stored once in the cache's store ([`Context::blobs`]), in a pack: a blob
//! holding the per-file entries one build wrote, each found by offset and length
//! and checked against its own digest when read. Packs are shared by every
//! project state and tier; a file is parsed
//! only when no entry of the tier has a per-file entry for its content still in
//! the store (the entry the build starts from, [`Context::previous`], first).
//! An entry (one project state) holds an index and a per-file list, whose parts
//! are blobs too; the build names every blob it uses to the engine
//! ([`BuildOutcome::blobs`]), which keeps them while the entry lives and carries
//! them to a shared cache with it. So a one-file edit writes a pack of one
//! per-file entry, a graph bucket, one chunk of the index and one part of the
//! per-file list; a full build of 9,350 contents writes 71 packs, not 9,350
//! files.
//!
//! ```text
//! <cache dir>/blobs/<2 hex>/<digest>   packs of per-file entries, graph buckets, index
//!                                      chunks and names, per-file list parts (the engine's store)
//! <tier root>/<key>/index.bin          names the index's chunks (path → content digest,
//!                                      module, interface, consulted modules) and buckets
//! <tier root>/<key>/per-file.bin       names 16 parts: content digest → per-file entry
//!                                      (pack, offset, length, digest), sorted, looked up
//!                                      by builds starting elsewhere
//! ```
//!
//! The resolved graph is split into 256 buckets by a hash of the path, so that
//! a one-file edit rewrites one bucket (about 1/256 of the graph), not all of it.
//! See `config/symtab-schema.md` for every file's schema and the export document.
//!
//! # Incremental resolution
//!
//! The build reads the previous entry ([`Context::previous`]) and redoes the
//! cross-file pass only for files whose content or module name changed, and for
//! files whose resolution consulted a module whose answer changed (its
//! interface digest, or whether it exists — and, for namespace packages, the
//! modules under it). Those files are resolved on every core against the
//! whole project state, through [`Modules`](py_symbols::Modules): every module
//! name is known from the paths, and a module's interface is computed from its
//! per-file entry the first time a resolution asks for it. Only those files and
//! the modules they consult are read back, so an edit costs the edited files
//! and their dependents, not the project.

use std::path::PathBuf;

use serde::Deserialize;
use tiers_core::{
    async_trait, BuildOutcome, Context, Entry, Error, Freshness, InputSpec, KeyDoc, Reason,
    Registry, Result, Tier, TierSpec,
};

use py_symbols::{EXTRACTOR_VERSION, SCHEMA_VERSION};

mod build;
mod cross;
mod per_file;
mod table;

pub use build::Counts;
pub use table::{export, load_table, SymbolTable, TableFile, EXPORT_SCHEMA_VERSION};

/// The kind's name in `tiers.toml`.
pub const KIND: &str = "symtab";

/// Bumped whenever the way this kind builds or lays out an entry changes: old
/// entries then miss. (A new extractor is [`EXTRACTOR_VERSION`], in the key too.)
pub const KIND_VERSION: u32 = 6;

/// Errors of the `symtab` tier and of [`load_table`]; each names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` changed while the symbol table was being built\nhint: run the build again")]
    Changed { path: String },
    #[error("`{}` is not a usable symbol table file: {why}\nhint: `tiers build --rebuild <tier>` parses every file again", path.display())]
    Corrupt { path: PathBuf, why: String },
    #[error("the {what} `{}` is missing from the cache's blob store or does not match its digest\nhint: `tiers build --rebuild <tier>` parses every file again", path.display())]
    Blob { what: &'static str, path: PathBuf },
    #[error("cannot write the export")]
    Output(#[source] std::io::Error),
}

impl TierError {
    /// Whether this error is about a file under `dir`.
    pub(crate) fn is_about(&self, dir: &std::path::Path) -> bool {
        match self {
            TierError::Read { path, .. } | TierError::Corrupt { path, .. } => path.starts_with(dir),
            TierError::Write { .. }
            | TierError::Changed { .. }
            | TierError::Blob { .. }
            | TierError::Output(_) => false,
        }
    }
}

impl From<TierError> for Error {
    fn from(e: TierError) -> Self {
        Error::Kind(Box::new(e))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default = "default_inputs")]
    inputs: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

fn default_inputs() -> Vec<String> {
    vec!["**/*.py".to_owned()]
}

/// A `symtab` tier.
pub struct SymtabTier {
    spec: InputSpec,
    inputs: Vec<String>,
    exclude: Vec<String>,
    /// The entry a build starts from, being read since the key was computed.
    preload: std::sync::Mutex<Option<build::Preload>>,
}

impl SymtabTier {
    pub fn from_spec(spec: &TierSpec<'_>) -> Result<Self> {
        let o: Options = spec.options()?;
        if o.inputs.is_empty() {
            return Err(spec.error(
                "`inputs` is empty: give the Python files as globs, e.g. `inputs = [\"**/*.py\"]`",
            ));
        }
        Ok(SymtabTier {
            spec: InputSpec::new(spec.name, &o.inputs, &o.exclude)?,
            inputs: o.inputs,
            exclude: o.exclude,
            preload: Default::default(),
        })
    }
}

/// Register the `symtab` kind.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, |spec| Ok(Box::new(SymtabTier::from_spec(spec)?)));
}

impl SymtabTier {
    /// The inputs, hashed by the engine. A file that cannot be read at all (a
    /// symbolic link to itself, no permission) is skipped with a warning
    /// rather than failing the tier: it has no content to extract. Costs
    /// nothing unless such a file is there.
    fn inputs(&self, cx: &Context) -> Result<tiers_core::InputSet> {
        let mut skipped: Vec<String> = Vec::new();
        let mut spec = self.spec.clone();
        loop {
            let (path, source) = match cx.inputs(&spec) {
                Ok(inputs) => return Ok(inputs),
                Err(Error::Io { path, source }) => (path, source),
                Err(e) => return Err(e),
            };
            let rel = path
                .strip_prefix(cx.project())
                .ok()
                .and_then(|r| r.to_str())
                .map(|r| r.replace(std::path::MAIN_SEPARATOR, "/"));
            let Some(rel) = rel.filter(|r| self.spec.matches(r) && !skipped.contains(r)) else {
                return Err(Error::Io { path, source });
            };
            if skipped.len() >= MAX_SKIPPED {
                return Err(Error::Io { path, source });
            }
            tracing::warn!("symtab: skipping `{rel}`, which cannot be read: {source}");
            skipped.push(rel);
            let mut exclude = self.exclude.clone();
            exclude.extend(skipped.iter().map(|r| escape_glob(r)));
            spec = InputSpec::new(cx.tier(), &self.inputs, &exclude)?;
        }
    }
}

/// Unreadable inputs skipped before the tier gives up.
const MAX_SKIPPED: usize = 1000;

/// A path as a glob matching only itself.
fn escape_glob(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The toolchain identity in the key: what the per-file entries depend on.
fn extractor_identity() -> String {
    format!("extractor v{EXTRACTOR_VERSION}, schema v{SCHEMA_VERSION}")
}

#[async_trait]
impl Tier for SymtabTier {
    async fn key(&self, cx: &Context) -> Result<KeyDoc> {
        // A build, if there is one, starts from the last entry: it is read
        // while the inputs are hashed, in a run that builds only.
        if cx.building() {
            let at = cx.clone();
            *self.preload.lock().unwrap_or_else(|p| p.into_inner()) =
                build::Preload::start(move || Some(at.previous()?.dir), cx.blobs().clone());
        }
        let inputs = self.inputs(cx)?;
        Ok(KeyDoc::new(KIND, KIND_VERSION)
            .option("inputs", &self.inputs)
            .option("exclude", &self.exclude)
            .toolchain("extractor", extractor_identity())
            .inputs(&inputs))
    }

    async fn probe(&self, _cx: &Context, entry: &Entry) -> Result<Freshness> {
        if entry.dir.join(table::INDEX).is_file() {
            Ok(Freshness::Fresh)
        } else {
            Ok(Freshness::Stale(vec![Reason::Corrupt {
                why: format!("`{}` is missing", table::INDEX),
            }]))
        }
    }

    async fn build(&self, cx: &Context, entry: &Entry) -> Result<BuildOutcome> {
        // A previous entry of the same key means a forced rebuild (or a corrupt
        // entry): start from scratch, parsing every file again.
        let last = cx.previous();
        let scratch = last.as_ref().is_some_and(|p| p.key == entry.key);
        let previous = last.filter(|p| p.key != entry.key).map(|p| p.dir);
        let others = cx
            .entry_dirs()
            .into_iter()
            .filter(|d| Some(d) != previous.as_ref())
            .collect();
        let job = build::Job {
            project: cx.project().to_owned(),
            blobs: cx.blobs().clone(),
            build_dir: entry.build_dir.clone(),
            doc: entry.doc.clone(),
            previous,
            preloaded: self
                .preload
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(),
            others,
            scratch,
            progress: cx.progress().clone(),
        };
        let (counts, blobs) = tokio::task::spawn_blocking(move || job.run())
            .await
            .map_err(|e| Error::build(format!("the symtab build thread failed: {e}")))??;
        Ok(BuildOutcome {
            used_inputs: None,
            summary: Some(counts.summary()),
            data: serde_json::to_value(&counts).unwrap_or_default(),
            blobs,
        })
    }

    fn path(&self, entry: &Entry) -> PathBuf {
        entry.dir.clone()
    }

    fn keep_default(&self) -> Option<usize> {
        Some(10)
    }
}
