//! The `codeql` kind: one CodeQL database per source state, kept.
//!
//! The one decision: **a database is never rebuilt in place.** Each key gets its own
//! database, created by `codeql database create` into a fresh directory (never with
//! `--overwrite`) and published only when the CLI exits 0 and the database's
//! `codeql-database.yml` says `finalised: true`. Returning to an earlier source
//! state — a bisect, a branch switch, a CI re-run — finds that state's database and
//! runs no CLI. Retention (`keep`, default 5; `max_bytes`) removes the least
//! recently used; the one in use stays.
//!
//! ```toml
//! [tiers.codeql]
//! kind = "codeql"
//! language = "python"          # default
//! build_mode = "none"          # default; or "autobuild"
//! inputs = ["**/*.py"]         # default for python
//! exclude = ["tests/**"]
//! extractor_options = { "python.some_option" = "value" }
//! threads = 0                  # passed on; not part of the key
//! ram = 4096                   # MB; passed on; not part of the key
//! codeql = "/opt/codeql/codeql"  # else $CODEQL_PATH, else `codeql` on PATH
//! required = false             # true: a missing CLI fails the build
//! keep = 5
//! ```
//!
//! | in the key | why |
//! | --- | --- |
//! | the CLI version (`codeql version --format=json`) | a new extractor writes a different database |
//! | `language`, `build_mode`, `extractor_options` | they change what is extracted |
//! | `inputs`, `exclude` and the digest of every matched file | the sources themselves |
//!
//! `threads` and `ram` change how fast, not what: they stay out of the key. The
//! CLI's path stays out too: the same version elsewhere builds the same database.
//!
//! `inputs` and `exclude` are also handed to the CLI, as the `paths` and
//! `paths-ignore` of a code scanning configuration file, together with the cache
//! dir and any virtual environment at the project's top level: the extractor walks
//! the whole source root, and a file it extracts but the key does not cover would
//! make the database stale without anyone noticing. Files it extracted anyway are
//! reported with a warning. The files in `src.zip` that are declared inputs are the
//! build's used inputs.
//!
//! [`Tier::path`] is the database directory, ready for `codeql database analyze`.

mod cli;
mod database;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;
use tiers_core::{
    async_trait, process, BuildOutcome, Context, Entry, Error, Freshness, InputSpec, KeyDoc,
    Reason, Registry, Result, Tier, TierSpec, ToolCache,
};

pub use cli::{parse_version, Cli, ENV_PATH};
pub use database::{zip_names, Metadata, METADATA, SOURCE_ARCHIVE};

/// Bumped whenever the way this kind builds changes: old entries then miss.
pub const KIND_VERSION: u32 = 1;
pub const KIND: &str = "codeql";
/// The database's directory inside an entry.
pub const DB_DIR: &str = "db";
/// The code scanning configuration handed to the CLI, beside the database.
pub const CODESCANNING_CONFIG: &str = "codescanning-config.yml";
/// The toolchain name in key documents: "the CodeQL CLI changed from … to …".
pub const TOOLCHAIN: &str = "CodeQL CLI";
/// `codeql database create`'s documented exit code for "no source code found".
pub const EXIT_NO_SOURCE: i32 = 32;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default = "default_language")]
    language: String,
    #[serde(default = "default_build_mode")]
    build_mode: String,
    inputs: Option<Vec<String>>,
    #[serde(default)]
    exclude: Vec<String>,
    #[serde(default)]
    extractor_options: BTreeMap<String, Scalar>,
    threads: Option<i32>,
    ram: Option<u64>,
    codeql: Option<PathBuf>,
    #[serde(default)]
    required: bool,
    #[serde(default = "yes")]
    cache_cli_version: bool,
}

fn default_language() -> String {
    "python".into()
}
fn default_build_mode() -> String {
    "none".into()
}
fn yes() -> bool {
    true
}

/// An extractor option's value: TOML strings, booleans and integers all become the
/// `name=value` text the CLI takes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Str(String),
    Bool(bool),
    Int(i64),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
        }
    }
}

/// The default `inputs` of the languages whose sources one glob describes.
fn default_inputs(language: &str) -> Option<Vec<String>> {
    match language {
        "python" => Some(vec!["**/*.py".into()]),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodeqlError {
    #[error("tier `{tier}`: the CodeQL CLI is not installed: {looked}\nhint: install the CodeQL CLI (https://github.com/github/codeql-cli-binaries/releases) and put `codeql` on PATH, or set `{}` or the tier's `codeql = \"/path/to/codeql\"`", cli::ENV_PATH)]
    NotFound { tier: String, looked: String },

    #[error("tier `{tier}`: cannot read the version of the CodeQL CLI `{}`: {why}", binary.display())]
    Version {
        tier: String,
        binary: PathBuf,
        why: String,
    },

    #[error("tier `{tier}`: cannot run the CodeQL CLI `{}`: {source}", binary.display())]
    Spawn {
        tier: String,
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("tier `{tier}`: CodeQL found no {language} source code to extract under `{}` (`codeql database create` exit code 32)\n{tail}\nhint: check the tier's `language`, and that `inputs` matches files in the project", root.display())]
    NoSource {
        tier: String,
        language: String,
        root: PathBuf,
        tail: String,
    },

    #[error("tier `{tier}`: `codeql database create` {how}\n{tail}")]
    Failed {
        tier: String,
        how: String,
        tail: String,
    },

    #[error("tier `{tier}`: `codeql database create` exited 0 but the database `{}` is not finalised ({why})\n{tail}", db.display())]
    NotFinalised {
        tier: String,
        db: PathBuf,
        why: String,
        tail: String,
    },

    #[error("tier `{tier}`: I/O error at `{}`: {source}", path.display())]
    Io {
        tier: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<CodeqlError> for Error {
    fn from(e: CodeqlError) -> Self {
        Error::Kind(Box::new(e))
    }
}

pub struct CodeqlTier {
    spec: InputSpec,
    inputs: Vec<String>,
    exclude: Vec<String>,
    language: String,
    build_mode: String,
    extractor_options: BTreeMap<String, String>,
    threads: Option<i32>,
    ram: Option<u64>,
    configured: Option<PathBuf>,
    required: bool,
    cache_cli_version: bool,
    /// Found and asked once per engine: every method of one run sees one CLI.
    cli: tokio::sync::OnceCell<Cli>,
}

impl CodeqlTier {
    pub fn from_spec(spec: &TierSpec<'_>) -> Result<Self> {
        let o: Options = spec.options()?;
        let lang_ok = !o.language.is_empty()
            && o.language
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !lang_ok {
            return Err(spec.error(format!(
                "`language = \"{}\"` is not a CodeQL language name (for example \"python\")",
                o.language
            )));
        }
        match o.build_mode.as_str() {
            "none" | "autobuild" => {}
            "manual" => {
                return Err(spec.error(
                    "`build_mode = \"manual\"` needs a build command, which this tier does not run; use \"none\" or \"autobuild\"",
                ))
            }
            other => {
                return Err(spec.error(format!(
                    "`build_mode = \"{other}\"` is not one of \"none\", \"autobuild\""
                )))
            }
        }
        let inputs = match o.inputs.or_else(|| default_inputs(&o.language)) {
            Some(i) if !i.is_empty() => i,
            _ => {
                return Err(spec.error(format!(
                "give `inputs`, the globs of the {} sources (e.g. `inputs = [\"src/**/*.ext\"]`)",
                o.language
            )))
            }
        };
        Ok(CodeqlTier {
            spec: InputSpec::new(spec.name, &inputs, &o.exclude)?,
            inputs,
            exclude: o.exclude,
            language: o.language,
            build_mode: o.build_mode,
            extractor_options: o
                .extractor_options
                .iter()
                .map(|(k, v)| (k.clone(), v.text()))
                .collect(),
            threads: o.threads,
            ram: o.ram,
            configured: o.codeql,
            required: o.required,
            cache_cli_version: o.cache_cli_version,
            cli: tokio::sync::OnceCell::new(),
        })
    }

    /// The CLI, located and versioned on first use. Not installed: `skipped` with
    /// the reason, or an error when the tier is `required`.
    async fn cli(&self, cx: &Context) -> Result<&Cli> {
        self.cli
            .get_or_try_init(|| async {
                let path = cli::locate(self.configured.as_deref(), cx.project()).map_err(
                    |nf| -> Error {
                        if self.required {
                            CodeqlError::NotFound {
                                tier: cx.tier().to_owned(),
                                looked: nf.looked,
                            }
                            .into()
                        } else {
                            Error::Unavailable {
                                message: format!(
                                    "the CodeQL CLI is not installed ({}); set `required = true` to fail instead",
                                    nf.looked
                                ),
                            }
                        }
                    },
                )?;
                let cache = if self.cache_cli_version {
                    ToolCache::new(cx.cache_dir()).writing(cx.building())
                } else {
                    ToolCache::in_memory()
                };
                Ok(cli::version_of(cx.tier(), &path, &cache).await?)
            })
            .await
    }

    /// What the extractor may and may not walk: the tier's globs, and the places
    /// under the project that hold outputs rather than sources.
    fn codescanning_config(&self, cx: &Context) -> CodescanningConfig {
        let project = cx.project();
        let mut ignore: Vec<String> = self.exclude.clone();
        let mut outputs = vec![cx.cache_dir()];
        if !cx.tier_root().starts_with(cx.cache_dir()) {
            outputs.push(cx.tier_root());
        }
        ignore.extend(outputs.into_iter().filter_map(|d| relative_dir(project, d)));
        if let Ok(read) = std::fs::read_dir(project) {
            let mut venvs: Vec<String> = read
                .flatten()
                .filter(|e| e.path().join("pyvenv.cfg").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            venvs.sort();
            ignore.extend(venvs);
        }
        let mut seen = BTreeSet::new();
        ignore.retain(|p| seen.insert(p.clone()));
        let default = default_inputs(&self.language);
        CodescanningConfig {
            paths: (Some(&self.inputs) != default.as_ref()).then(|| self.inputs.clone()),
            paths_ignore: ignore,
        }
    }

    fn create_command(
        &self,
        cli: &Cli,
        cx: &Context,
        db: &Path,
        config: Option<&Path>,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&cli.path);
        cmd.current_dir(cx.project())
            .args(["database", "create"])
            .arg(format!("--language={}", self.language))
            .arg(arg("--source-root=", cx.project()))
            .arg(format!("--build-mode={}", self.build_mode));
        if let Some(t) = self.threads {
            cmd.arg(format!("--threads={t}"));
        }
        if let Some(r) = self.ram {
            cmd.arg(format!("--ram={r}"));
        }
        for (k, v) in &self.extractor_options {
            cmd.arg(format!("--extractor-option={k}={v}"));
        }
        if let Some(c) = config {
            cmd.arg(arg("--codescanning-config=", c));
        }
        // Never `--overwrite`: `db` is new, in a staging dir of its own.
        cmd.arg("--").arg(db);
        cmd
    }

    /// The declared inputs found in `src.zip`; `None` (all of them) when the archive
    /// cannot be read or names none of them.
    fn used_inputs(
        &self,
        cx: &Context,
        entry: &Entry,
        db: &Path,
        meta: &Metadata,
    ) -> Option<Vec<String>> {
        let names = match database::zip_names(&db.join(SOURCE_ARCHIVE)) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(tier = cx.tier(), "cannot list `{SOURCE_ARCHIVE}` of the new database: {e}; every declared input counts as used");
                return None;
            }
        };
        let mut roots: Vec<String> = meta.source_location_prefix.iter().cloned().collect();
        roots.push(cx.project().to_string_lossy().into_owned());
        roots.dedup();
        let mut used = BTreeSet::new();
        let mut undeclared = Vec::new();
        for name in &names {
            match database::relative_to(name, &roots) {
                Some(rel) if entry.doc.inputs.contains_key(&rel) => {
                    used.insert(rel);
                }
                Some(rel) => undeclared.push(rel),
                None => {}
            }
        }
        if !undeclared.is_empty() {
            undeclared.sort();
            tracing::warn!(
                tier = cx.tier(),
                "the database holds {} file(s) that are not declared inputs (first: `{}`): editing them will not rebuild it; widen `inputs` or add them to `exclude`",
                undeclared.len(),
                undeclared[0]
            );
        }
        (!used.is_empty()).then(|| used.into_iter().collect())
    }
}

/// `prefix` + path, as one argument.
fn arg(prefix: &str, path: &Path) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from(prefix);
    s.push(path);
    s
}

/// `dir` relative to `project`, when it lies strictly inside it.
fn relative_dir(project: &Path, dir: &Path) -> Option<String> {
    let rel = dir.strip_prefix(project).ok()?;
    let parts: Vec<_> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The part of a code scanning configuration file the extractor reads. Written as
/// JSON, which is YAML.
#[derive(Debug, Serialize, PartialEq, Eq)]
struct CodescanningConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    paths: Option<Vec<String>>,
    #[serde(rename = "paths-ignore", skip_serializing_if = "Vec::is_empty")]
    paths_ignore: Vec<String>,
}

impl CodescanningConfig {
    fn is_empty(&self) -> bool {
        self.paths.is_none() && self.paths_ignore.is_empty()
    }
}

/// Register the `codeql` kind.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, |spec| Ok(Box::new(CodeqlTier::from_spec(spec)?)));
}

#[async_trait]
impl Tier for CodeqlTier {
    async fn key(&self, cx: &Context) -> Result<KeyDoc> {
        let cli = self.cli(cx).await?;
        let inputs = cx.inputs(&self.spec)?;
        Ok(KeyDoc::new(KIND, KIND_VERSION)
            .option("language", &self.language)
            .option("build_mode", &self.build_mode)
            .option("extractor_options", &self.extractor_options)
            .option("inputs", &self.inputs)
            .option("exclude", &self.exclude)
            .toolchain(TOOLCHAIN, &cli.version)
            .inputs(&inputs))
    }

    async fn probe(&self, cx: &Context, entry: &Entry) -> Result<Freshness> {
        let db = self.path(entry);
        let corrupt = |why: String| Ok(Freshness::Stale(vec![Reason::Corrupt { why }]));
        let meta = match Metadata::read(&db) {
            Ok(m) => m,
            Err(e) => {
                return corrupt(format!(
                    "`{}` cannot be read: {e}",
                    db.join(METADATA).display()
                ))
            }
        };
        if !meta.finalised {
            return corrupt(format!("the database `{}` is not finalised", db.display()));
        }
        let cli = self.cli(cx).await?;
        let recorded = entry.data.get("cli_version").and_then(|v| v.as_str());
        if recorded != Some(cli.version.as_str()) {
            return Ok(Freshness::Stale(vec![Reason::ToolchainChanged {
                what: TOOLCHAIN.into(),
                old: recorded.map(str::to_owned),
                new: Some(cli.version.clone()),
            }]));
        }
        Ok(Freshness::Fresh)
    }

    async fn build(&self, cx: &Context, entry: &Entry) -> Result<BuildOutcome> {
        let cli = self.cli(cx).await?;
        let db = entry.build_dir.join(DB_DIR);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CodeqlError::Io {
                tier: cx.tier().to_owned(),
                path,
                source,
            }
        };
        let config = self.codescanning_config(cx);
        let config_file = if config.is_empty() {
            None
        } else {
            let file = entry.build_dir.join(CODESCANNING_CONFIG);
            let text = serde_json::to_vec_pretty(&config).expect("the config serializes");
            std::fs::write(&file, text).map_err(io(&file))?;
            Some(file)
        };
        let cmd = self.create_command(cli, cx, &db, config_file.as_deref());
        tracing::info!(tier = cx.tier(), version = %cli.version, "codeql database create");
        cx.progress().phase("creating the database");
        let echo = process::Echo::choose(cx.verbose(), cx.progress());
        let done =
            process::run(cmd, echo, "codeql")
                .await
                .map_err(|source| CodeqlError::Spawn {
                    tier: cx.tier().to_owned(),
                    binary: cli.path.clone(),
                    source,
                })?;
        let tail = process::show_tail(&done.tail);
        match done.status.code() {
            Some(0) => {}
            Some(EXIT_NO_SOURCE) => {
                return Err(CodeqlError::NoSource {
                    tier: cx.tier().to_owned(),
                    language: self.language.clone(),
                    root: cx.project().to_owned(),
                    tail,
                }
                .into())
            }
            code => {
                let how = match code {
                    Some(c) => format!("exited with status {c}"),
                    None => {
                        use std::os::unix::process::ExitStatusExt;
                        format!("was killed by signal {}", done.status.signal().unwrap_or(0))
                    }
                };
                return Err(CodeqlError::Failed {
                    tier: cx.tier().to_owned(),
                    how,
                    tail,
                }
                .into());
            }
        }
        let not_finalised = |why: String| CodeqlError::NotFinalised {
            tier: cx.tier().to_owned(),
            db: db.clone(),
            why,
            tail: tail.clone(),
        };
        let meta = Metadata::read(&db)
            .map_err(|e| not_finalised(format!("`{METADATA}` cannot be read: {e}")))?;
        if !meta.finalised {
            return Err(
                not_finalised(format!("`{METADATA}` does not say `finalised: true`")).into(),
            );
        }
        let used_inputs = self.used_inputs(cx, entry, &db, &meta);
        let summary = used_inputs.as_ref().map(|u| {
            format!(
                "{} database of {} source files, CodeQL {}",
                self.language,
                u.len(),
                cli.version
            )
        });
        Ok(BuildOutcome {
            used_inputs,
            summary,
            data: json!({
                "cli_version": cli.version,
                "language": self.language,
                "build_mode": self.build_mode,
                "database": DB_DIR,
            }),
            blobs: Vec::new(),
        })
    }

    fn path(&self, entry: &Entry) -> PathBuf {
        entry.dir.join(DB_DIR)
    }

    fn keep_default(&self) -> Option<usize> {
        Some(5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_dir_only_inside_the_project() {
        let p = Path::new("/p");
        assert_eq!(
            relative_dir(p, Path::new("/p/.tiers")).as_deref(),
            Some(".tiers")
        );
        assert_eq!(relative_dir(p, Path::new("/p/a/b")).as_deref(), Some("a/b"));
        assert_eq!(relative_dir(p, Path::new("/p")), None);
        assert_eq!(relative_dir(p, Path::new("/elsewhere/cache")), None);
    }

    #[test]
    fn codescanning_config_is_yaml_the_cli_reads() {
        let c = CodescanningConfig {
            paths: None,
            paths_ignore: vec![".tiers".into(), "tests/**".into()],
        };
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"paths-ignore":[".tiers","tests/**"]}"#
        );
    }
}
