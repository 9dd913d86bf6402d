//! Configuration: embedded defaults < `tiers.toml` < `TIERS_*` variables < flags.
//!
//! Each tier's table holds the engine's own keys (`kind`, `rebuild`, `eager`, `after`,
//! `root`) and the kind's keys. The engine takes its keys out and hands the rest to
//! the kind's factory, which reads them into its own strict (`deny_unknown_fields`)
//! struct through [`TierSpec::options`]; a typo is an error, not a silent default.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The embedded defaults, lowest layer.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// Keys of a tier's table that the engine reads; the rest belong to the kind.
const ENGINE_KEYS: &[&str] = &[
    "kind",
    "rebuild",
    "eager",
    "after",
    "root",
    "keep",
    "max_bytes",
];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub cache: CacheConfig,
    pub inputs: InputsConfig,
    #[serde(default)]
    pub remote: RemoteConfig,
    #[serde(default)]
    pub tiers: BTreeMap<String, Dict>,
}

/// `[remote]`: the shared cache level, off unless `url` is set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// `redis://…`, `webdav+http://…`, `http://…`, `s3://bucket/prefix`, `file:///dir`.
    pub url: Option<String>,
    #[serde(default)]
    pub mode: RemoteMode,
    /// Seconds one request may take.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// The environment variable holding the secret (at least 32 bytes) that signs
    /// records and candidate lists; with it, unsigned ones are misses.
    #[serde(default)]
    pub signing_key_env: Option<String>,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            url: None,
            mode: RemoteMode::default(),
            timeout: default_timeout(),
            signing_key_env: None,
        }
    }
}

fn default_timeout() -> u64 {
    30
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemoteMode {
    #[default]
    ReadWrite,
    ReadOnly,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Relative to the project.
    pub dir: PathBuf,
    /// A checkout's pointer keeps its entry from retention until it has not been
    /// used for this many days (checkouts sharing a cache dir, CI runners).
    #[serde(default = "default_pointer_days")]
    pub pointer_days: u64,
}

fn default_pointer_days() -> u64 {
    30
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputsConfig {
    /// Directories (relative to the project) that are never inputs: outputs of other tools.
    #[serde(default)]
    pub ignore: Vec<PathBuf>,
    /// Trust the stat cache for unchanged files; `false` (or `--no-stat-cache`)
    /// hashes every input on every run, for filesystems whose timestamps lie.
    #[serde(default = "yes")]
    pub stat_cache: bool,
}

fn yes() -> bool {
    true
}

/// `rebuild` policy of a tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rebuild {
    /// Rebuild when the key has no entry.
    #[default]
    Auto,
    /// Rebuild on every `tiers build`.
    Always,
    /// Never build, except when named by `--rebuild`; use the last entry.
    Never,
}

/// The engine's keys of a tier table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierCommon {
    pub kind: String,
    #[serde(default)]
    pub rebuild: Rebuild,
    pub eager: Option<bool>,
    #[serde(default)]
    pub after: Vec<String>,
    pub root: Option<PathBuf>,
    /// Retention: how many entries to keep (default: the kind's, else all).
    pub keep: Option<usize>,
    /// Retention: total bytes the tier's entries may take (default: no limit).
    pub max_bytes: Option<u64>,
}

/// Where configuration comes from; everything optional but the project.
#[derive(Clone, Debug, Default)]
pub struct ConfigSource {
    pub project: PathBuf,
    /// `--config FILE`; default `<project>/tiers.toml` when it exists.
    pub file: Option<PathBuf>,
    /// Inline TOML layered above the file (embedders, tests).
    pub toml: Option<String>,
    /// `--cache-dir`, above everything.
    pub cache_dir: Option<PathBuf>,
    /// Read `TIERS_CACHE_DIR` from the environment.
    pub env: bool,
    /// `--no-stat-cache`: sets `inputs.stat_cache = false`, above everything.
    pub no_stat_cache: bool,
}

/// A loaded configuration and the figment it came from (for error locations).
pub struct Loaded {
    pub config: Config,
    pub file: Option<PathBuf>,
    figment: Figment,
}

impl Loaded {
    /// Where `key` was set, for messages: the file, or "the defaults".
    pub fn origin(&self, key: &str) -> String {
        self.figment
            .find_metadata(key)
            .map(|m| match &m.source {
                Some(src) => format!("`{src}`"),
                None => m.name.to_string(),
            })
            .unwrap_or_else(|| "the configuration".to_owned())
    }
}

pub fn load(src: &ConfigSource) -> Result<Loaded> {
    let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
    let default_file = src.project.join("tiers.toml");
    let file = match &src.file {
        Some(f) => {
            if !f.is_file() {
                return Err(Error::config(format!(
                    "the configuration file `{}` does not exist",
                    f.display()
                )));
            }
            Some(f.clone())
        }
        None => default_file.is_file().then_some(default_file),
    };
    if let Some(f) = &file {
        figment = figment.merge(Toml::file_exact(f));
    }
    if let Some(t) = &src.toml {
        figment = figment.merge(Toml::string(t));
    }
    if src.env {
        for (var, key) in [
            ("TIERS_REMOTE_URL", "remote.url"),
            ("TIERS_REMOTE_MODE", "remote.mode"),
            ("TIERS_REMOTE_SIGNING_KEY_ENV", "remote.signing_key_env"),
        ] {
            if let Some(v) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
                figment = figment.merge(Serialized::default(key, v));
            }
        }
        if let Some(dir) = std::env::var_os("TIERS_CACHE_DIR").filter(|d| !d.is_empty()) {
            figment = figment.merge(Serialized::default("cache.dir", absolute(dir.as_ref())));
        }
    }
    if let Some(dir) = &src.cache_dir {
        figment = figment.merge(Serialized::default("cache.dir", absolute(dir)));
    }
    if src.no_stat_cache {
        figment = figment.merge(Serialized::default("inputs.stat_cache", false));
    }
    let config: Config = figment.extract().map_err(|e| config_error(e, &file))?;
    for name in config.tiers.keys() {
        check_tier_name(name)?;
    }
    Ok(Loaded {
        config,
        file,
        figment,
    })
}

/// Relative to the current directory, as a user typing the flag means it.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

fn check_tier_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!(
            "invalid tier name `[tiers.{name}]`: use letters, digits, `-`, `_` and `.`, not starting with `.`"
        )))
    }
}

fn config_error(e: figment::Error, file: &Option<PathBuf>) -> Error {
    let mut lines = Vec::new();
    for e in e {
        // figment names keys with their profile (`default.cache.dir`), a word
        // the user never wrote.
        let mut msg = e.to_string().replace("key \"default.", "key \"");
        if e.metadata.is_none() {
            if let Some(f) = file {
                msg = format!("{msg} in `{}`", f.display());
            }
        }
        lines.push(msg);
    }
    Error::config(format!("invalid configuration: {}", lines.join("; ")))
}

/// One tier's table, split into the engine's part and the kind's part.
pub struct TierSpec<'a> {
    pub name: &'a str,
    pub project: &'a Path,
    pub common: TierCommon,
    options: Dict,
    origin: String,
}

impl<'a> TierSpec<'a> {
    pub(crate) fn new(loaded: &Loaded, name: &'a str, project: &'a Path) -> Result<Self> {
        let table = &loaded.config.tiers[name];
        let origin = loaded.origin(&format!("tiers.{name}"));
        let (engine, kind): (Dict, Dict) = table
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(k, _)| ENGINE_KEYS.contains(&k.as_str()));
        if !engine.contains_key("kind") {
            return Err(Error::config(format!(
                "tier `[tiers.{name}]` in {origin} has no `kind` (for example `kind = \"command\"`)"
            )));
        }
        let common = deserialize_table(engine, name, &origin)?;
        Ok(TierSpec {
            name,
            project,
            common,
            options: kind,
            origin,
        })
    }

    /// The kind's own keys, read strictly into `T` (use `#[serde(deny_unknown_fields)]`).
    pub fn options<T: DeserializeOwned>(&self) -> Result<T> {
        deserialize_table(self.options.clone(), self.name, &self.origin)
    }

    /// A configuration error about this tier, located.
    pub fn error(&self, message: impl std::fmt::Display) -> Error {
        Error::config(format!(
            "tier `[tiers.{}]` in {}: {message}",
            self.name, self.origin
        ))
    }
}

fn deserialize_table<T: DeserializeOwned>(table: Dict, name: &str, origin: &str) -> Result<T> {
    Value::from(table)
        .deserialize()
        .map_err(|e: figment::Error| {
            let at = if e.path.is_empty() {
                String::new()
            } else {
                format!(" at key `{}`", e.path.join("."))
            };
            Error::config(format!("tier `[tiers.{name}]` in {origin}{at}: {}", e.kind))
        })
}
