//! Finding the CodeQL CLI and asking its version, at most once per binary.
//!
//! The version is part of every key, so every run needs it — but `codeql version`
//! starts a JVM (about a second). It is remembered by the engine's [`ToolCache`],
//! keyed on the binary's stat data (of the path, what it links to, and its canonical
//! path: inode, size, modification and change times): in memory for the rest of the
//! process, shared by every `codeql` tier, and in `<cache dir>/.tool-probes/`,
//! written by builds only (a `tiers status` writes nothing), so a warm
//! `tiers status` or `tiers build` spawns no CLI at all. The older
//! `<cache dir>/.codeql-cli.json` is no longer read.
//!
//! An upgrade replaces the binary (a new install dir, a new file, or new bytes
//! written in place, which moves its change time even when size and mtime are kept),
//! which changes the fingerprint. A wrapper whose target changes while the
//! wrapper stays the same (a version-manager stub) does not: for those, set
//! `cache_cli_version = false` (then only this process remembers the version), or
//! point `CODEQL_PATH` at the real binary.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tiers_core::{Fingerprint, Probe, ToolCache};

use crate::CodeqlError;

/// The environment variable naming the CLI (the binary, or the directory holding it).
pub const ENV_PATH: &str = "CODEQL_PATH";
/// The version of the binary at a path; bump when the way it is asked changes.
const VERSION: Probe = Probe::new("codeql-version", 1);
/// `codeql version` that takes longer than this is treated as broken.
const VERSION_TIMEOUT: Duration = Duration::from_secs(120);

/// The CLI a tier runs.
#[derive(Clone, Debug)]
pub struct Cli {
    pub path: PathBuf,
    pub version: String,
}

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

/// The CLI at `path` with its version: kept by `cache` (see the module's doc), or
/// asked with `codeql version --format=json`.
pub async fn version_of(tier: &str, path: &Path, cache: &ToolCache) -> Result<Cli, CodeqlError> {
    let fingerprint = Fingerprint::of_binary(path);
    let version = match cache.get(VERSION, path, &fingerprint) {
        Some(version) => version,
        None => {
            let version = ask_version(tier, path).await?;
            cache.put(VERSION, path, fingerprint, &[], &version);
            version
        }
    };
    Ok(Cli {
        path: path.to_owned(),
        version,
    })
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
}
