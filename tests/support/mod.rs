//! Test support shared by the end-to-end tests: a project in a temp dir, the `tiers`
//! binary run on it, and its JSON read back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub mod procs;

/// A project in a temp dir, with its cache dir inside (the default `.tiers`).
pub struct Project {
    dir: tempfile::TempDir,
}

/// `project().file("a.py", "...").build()`
pub fn project() -> ProjectBuilder {
    ProjectBuilder { files: Vec::new() }
}

pub struct ProjectBuilder {
    files: Vec<(String, Vec<u8>)>,
}

impl ProjectBuilder {
    pub fn file(mut self, path: &str, contents: impl AsRef<[u8]>) -> Self {
        self.files
            .push((path.to_owned(), contents.as_ref().to_vec()));
        self
    }

    pub fn build(self) -> Project {
        let dir = tempfile::Builder::new()
            .prefix("tiers-test-")
            .tempdir()
            .expect("temp dir");
        let p = Project { dir };
        for (path, contents) in self.files {
            p.write(&path, contents);
        }
        p
    }
}

/// What one run of `tiers` did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// stdout as JSON; panics with both streams when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Panics with both streams unless the exit code is `code`.
    pub fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// The report entry of `tier` from `build --json`/`status --json`.
    pub fn tier(&self, tier: &str) -> Value {
        let json = self.json();
        json["tiers"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["name"] == tier).cloned())
            .unwrap_or_else(|| panic!("no tier `{tier}` in:\n{}", self.stdout))
    }

    /// `status` of `tier` in the report.
    pub fn status(&self, tier: &str) -> String {
        self.tier(tier)["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The reason sentences of `tier` in the report.
    pub fn reasons(&self, tier: &str) -> Vec<String> {
        self.tier(tier)["reasons"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| r["message"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Project {
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.path(".tiers")
    }

    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, contents).expect("write");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_default()
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.path(rel)).expect("remove");
    }

    /// A `tiers` command on this project (`-C <project>`), not yet run.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(tiers_bin());
        c.arg("-C").arg(self.root()).args(args);
        c.env_remove("TIERS_CACHE_DIR");
        c
    }

    /// Run `tiers -C <project> ARGS…`.
    pub fn tiers(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("run tiers"))
    }

    /// `tiers build --json ARGS…`, expecting exit 0.
    pub fn build(&self, args: &[&str]) -> Run {
        let mut all = vec!["build", "--json"];
        all.extend_from_slice(args);
        self.tiers(&all).expect_code(0)
    }

    /// `tiers status --json ARGS…`.
    pub fn status(&self, args: &[&str]) -> Run {
        let mut all = vec!["status", "--json"];
        all.extend_from_slice(args);
        self.tiers(&all)
    }

    /// `tiers paths --json`.
    pub fn paths(&self) -> Value {
        self.tiers(&["paths", "--json"]).expect_code(0).json()
    }

    /// Every file under the cache dir with its contents' length, for "nothing changed".
    pub fn cache_snapshot(&self) -> Vec<(String, u64)> {
        snapshot(&self.cache_dir())
    }
}

/// Every file under `dir` (relative path, length), sorted; empty when `dir` is absent.
/// `.state/` (the stat cache: what the project's files looked like, not an entry) is
/// left out, so "nothing changed" means no entry, lock, pointer or candidate did.
pub fn snapshot(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(read) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in read.flatten() {
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                if e.path() != dir.join(".state") {
                    todo.push(e.path());
                }
            } else {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .expect("under dir")
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, e.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
    }
    out.sort();
    out
}

pub fn tiers_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tiers"))
}

/// A command-tier script that appends one line to `runs.log` in the project each time
/// it runs (so tests count runs) and copies its inputs' names into `$TIERS_OUT`.
pub const COUNTING_SCRIPT: &str = r#"import os, pathlib, sys
project = pathlib.Path(os.environ["TIERS_PROJECT"])
with open(project / "runs.log", "a") as log:
    log.write(os.environ["TIERS_TIER"] + "\n")
out = pathlib.Path(os.environ["TIERS_OUT"])
(out / "result.txt").write_text(" ".join(sys.argv[1:]) + "\n")
"#;

/// How many times tier `tier` ran, from `runs.log` written by [`COUNTING_SCRIPT`].
pub fn runs(p: &Project, tier: &str) -> usize {
    p.read("runs.log").lines().filter(|l| *l == tier).count()
}

/// `<entry>/entry.tree` as JSON: `{"files": [{"path", "digest", "exec"}], "named":
/// [digest]}`, read with the engine's decoder (the layout is binary).
pub fn entry_tree(entry: &Path) -> Result<Value, String> {
    let tree = tiers::Tree::read(entry)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("`{}` has no tree", entry.display()))?;
    let files: Vec<Value> = tree
        .files
        .iter()
        .map(|f| {
            serde_json::json!({
                "path": f.path.to_string_lossy(),
                "digest": f.digest.to_string(),
                "exec": f.exec,
            })
        })
        .collect();
    let named: Vec<String> = tree.named.iter().map(ToString::to_string).collect();
    Ok(serde_json::json!({ "files": files, "named": named }))
}

/// The SHA-256 of `bytes` in lowercase hex, computed here: tests check the store
/// without trusting its own digests.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The directory of `tier`'s entry in a `build --json` report.
pub fn entry_dir(run: &Run, tier: &str) -> PathBuf {
    PathBuf::from(
        run.tier(tier)["path"]
            .as_str()
            .unwrap_or_else(|| panic!("no path for `{tier}`:\n{}", run.stdout)),
    )
}

/// The record of `tier`'s only entry in a directory shared cache, and its JSON.
pub fn remote_record(store: &Path, tier: &str) -> (PathBuf, Value) {
    let dir = store.join("records").join(tier);
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .expect("a record")
        .unwrap()
        .path();
    let json = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    (path, json)
}
