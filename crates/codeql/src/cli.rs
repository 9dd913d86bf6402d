//! Finding the CodeQL CLI and asking its version, at most once per binary.
//!
//! The version is part of every key, so every run needs it — but `codeql version`
//! starts a JVM (about a second). It is remembered two ways, both keyed on the
//! binary's **identity** (canonical path, inode, size, modification and change
//! times — the stat data the input cache trusts):
//!
//! - in memory, for the rest of the process, shared by every `codeql` tier;
//! - in `<cache dir>/.codeql-cli.json`, written by builds only (a `tiers status`
//!   writes nothing), so a warm `tiers status` or `tiers build` spawns no CLI at all.
//!
//! An upgrade replaces the binary (a new install dir, a new file, or new bytes
//! written in place, which moves its change time even when size and mtime are kept),
//! which changes the identity. A wrapper whose target changes while the
//! wrapper stays the same (a version-manager stub) does not: for those, set
//! `cache_cli_version = false`, or point `CODEQL_PATH` at the real binary.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::CodeqlError;

/// The environment variable naming the CLI (the binary, or the directory holding it).
pub const ENV_PATH: &str = "CODEQL_PATH";
/// The version cache's file name in the cache dir.
pub const VERSION_CACHE: &str = ".codeql-cli.json";
const VERSION_CACHE_FORMAT: u32 = 2;
/// Binaries remembered in the version cache; the oldest entries go first.
const VERSION_CACHE_LIMIT: usize = 8;
/// `codeql version` that takes longer than this is treated as broken.
const VERSION_TIMEOUT: Duration = Duration::from_secs(120);

/// The CLI a tier runs.
#[derive(Clone, Debug)]
pub struct Cli {
    pub path: PathBuf,
    pub version: String,
    identity: Identity,
}

/// What identifies one installed binary well enough to reuse its version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct Identity {
    path: PathBuf,
    #[serde(flatten)]
    stat: StatId,
}

/// The stat data of a binary that an upgrade changes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
struct StatId {
    inode: u64,
    size: u64,
    mtime_ns: u64,
    ctime_ns: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct VersionCache {
    format: u32,
    /// Canonical path → what was seen there.
    binaries: BTreeMap<PathBuf, Seen>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Seen {
    #[serde(flatten)]
    stat: StatId,
    version: String,
    seen_unix: u64,
}

static IN_PROCESS: Mutex<Option<HashMap<Identity, String>>> = Mutex::new(None);

/// Where the tier looked for the CLI, for the "not found" message.
#[derive(Debug)]
pub struct NotFound {
    pub looked: String,
}

/// Find the CLI: `$CODEQL_PATH`, else the tier's `codeql` option (relative to the
/// project), else `codeql` on `PATH`. A location that is set but holds no
/// executable is not skipped over: the user asked for that one.
pub fn locate(configured: Option<&Path>, project: &Path) -> Result<PathBuf, NotFound> {
    if let Some(env) = std::env::var_os(ENV_PATH).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(&env);
        let p = if p.is_dir() { p.join("codeql") } else { p };
        return executable(&p).then_some(p.clone()).ok_or_else(|| NotFound {
            looked: format!(
                "`{ENV_PATH}` is set to `{}`, which is not an executable",
                p.display()
            ),
        });
    }
    if let Some(c) = configured {
        let p = project.join(c);
        let p = if p.is_dir() { p.join("codeql") } else { p };
        return executable(&p).then_some(p.clone()).ok_or_else(|| NotFound {
            looked: format!(
                "the tier's `codeql = \"{}\"` is not an executable",
                c.display()
            ),
        });
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join("codeql");
        if executable(&p) {
            return Ok(p);
        }
    }
    Err(NotFound {
        looked: format!(
            "`{ENV_PATH}` is not set, the tier sets no `codeql`, and no `codeql` is on PATH"
        ),
    })
}

fn executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn identity(path: &Path) -> std::io::Result<Identity> {
    use std::os::unix::fs::MetadataExt;
    let canonical = path.canonicalize()?;
    let meta = std::fs::metadata(&canonical)?;
    let ns = |secs: i64, nsec: i64| {
        u64::try_from(secs)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(nsec).unwrap_or(0))
    };
    Ok(Identity {
        path: canonical,
        stat: StatId {
            inode: meta.ino(),
            size: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        },
    })
}

/// The CLI at `path` with its version: from memory, from the cache file in
/// `cache_dir` (when `use_disk`), or by running `codeql version --format=json`.
pub async fn version_of(
    tier: &str,
    path: &Path,
    cache_dir: &Path,
    use_disk: bool,
) -> Result<Cli, CodeqlError> {
    let id = identity(path).map_err(|source| CodeqlError::Io {
        tier: tier.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    let cli = |version: String| Cli {
        path: path.to_owned(),
        version,
        identity: id.clone(),
    };
    if let Some(v) = IN_PROCESS
        .lock()
        .expect("version memo poisoned")
        .get_or_insert_with(HashMap::new)
        .get(&id)
    {
        return Ok(cli(v.clone()));
    }
    if use_disk {
        if let Some(seen) = read_cache(cache_dir).binaries.get(&id.path) {
            if seen.stat == id.stat {
                memo(&id, &seen.version);
                return Ok(cli(seen.version.clone()));
            }
        }
    }
    let version = ask_version(tier, path).await?;
    memo(&id, &version);
    Ok(cli(version))
}

fn memo(id: &Identity, version: &str) {
    IN_PROCESS
        .lock()
        .expect("version memo poisoned")
        .get_or_insert_with(HashMap::new)
        .insert(id.clone(), version.to_owned());
}

async fn ask_version(tier: &str, path: &Path) -> Result<String, CodeqlError> {
    let bad = |why: String| CodeqlError::Version {
        tier: tier.to_owned(),
        binary: path.to_owned(),
        why,
    };
    tracing::debug!(binary = %path.display(), "running `codeql version --format=json`");
    let child = tokio::process::Command::new(path)
        .args(["version", "--format=json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(VERSION_TIMEOUT, child)
        .await
        .map_err(|_| {
            bad(format!(
                "it did not answer within {}s",
                VERSION_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| bad(format!("it cannot be run: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(bad(format!(
            "it exited with {}: {}",
            out.status,
            err.trim()
        )));
    }
    parse_version(&out.stdout).ok_or_else(|| {
        bad(format!(
            "its output has no `version`: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    })
}

/// The `version` field of `codeql version --format=json`.
pub fn parse_version(json: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Version {
        version: String,
    }
    let v: Version = serde_json::from_slice(json).ok()?;
    let v = v.version.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

fn read_cache(cache_dir: &Path) -> VersionCache {
    std::fs::read(cache_dir.join(VERSION_CACHE))
        .ok()
        .and_then(|b| serde_json::from_slice::<VersionCache>(&b).ok())
        .filter(|c| c.format == VERSION_CACHE_FORMAT)
        .unwrap_or_default()
}

/// Record `cli`'s version in the cache file, unless it is there already. Best
/// effort: a lost update only costs one `codeql version` later.
pub fn remember(cli: &Cli, cache_dir: &Path) {
    if !cache_dir.is_dir() {
        return;
    }
    let mut cache = read_cache(cache_dir);
    let id = &cli.identity;
    if cache
        .binaries
        .get(&id.path)
        .is_some_and(|s| s.stat == id.stat && s.version == cli.version)
    {
        return;
    }
    cache.format = VERSION_CACHE_FORMAT;
    cache.binaries.insert(
        cli.identity.path.clone(),
        Seen {
            stat: cli.identity.stat.clone(),
            version: cli.version.clone(),
            seen_unix: std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        },
    );
    while cache.binaries.len() > VERSION_CACHE_LIMIT {
        let oldest = cache
            .binaries
            .iter()
            .min_by_key(|(_, s)| s.seen_unix)
            .map(|(p, _)| p.clone());
        if let Some(p) = oldest {
            cache.binaries.remove(&p);
        }
    }
    let bytes = serde_json::to_vec_pretty(&cache).expect("the version cache serializes");
    if let Err(e) = tiers_core::write_atomic(&cache_dir.join(VERSION_CACHE), &bytes) {
        tracing::debug!("cannot write the CodeQL version cache: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_json() {
        let out = br#"{
  "productName" : "CodeQL",
  "vendor" : "GitHub",
  "version" : "2.23.3",
  "sha" : "280a80187d0ef522b286de41a57fe5d4b9bf9919",
  "branches" : [ "codeql-cli-2.23.3" ]
}"#;
        assert_eq!(parse_version(out).as_deref(), Some("2.23.3"));
        assert_eq!(
            parse_version(b"CodeQL command-line toolchain release 2.23.3."),
            None
        );
        assert_eq!(parse_version(br#"{"version": " "}"#), None);
    }

    #[test]
    fn identity_changes_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("codeql");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        let a = identity(&bin).unwrap();
        let f = std::fs::File::options().write(true).open(&bin).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(1_000_000))
            .unwrap();
        let b = identity(&bin).unwrap();
        assert_eq!(a.path, b.path);
        assert_ne!(a, b);
    }

    /// Issue 14: an upgrade in place that keeps the size and puts the mtime back
    /// still changes the identity (through the change time).
    #[test]
    fn identity_changes_with_bytes_rewritten_in_place_keeping_size_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("codeql");
        std::fs::write(&bin, "#!/bin/sh\necho 2.23.3\n").unwrap();
        let mtime = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let f = std::fs::File::options().write(true).open(&bin).unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        let a = identity(&bin).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&bin, "#!/bin/sh\necho 2.24.0\n").unwrap();
        let f = std::fs::File::options().write(true).open(&bin).unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        let b = identity(&bin).unwrap();
        assert_eq!(
            (a.stat.size, a.stat.mtime_ns),
            (b.stat.size, b.stat.mtime_ns)
        );
        assert_ne!(a, b);
    }
}
