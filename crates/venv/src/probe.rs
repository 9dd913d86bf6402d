//! Identities of the interpreter and of the installer, probed once per binary.
//!
//! Asking Python or poetry who they are costs tens to hundreds of milliseconds; a warm
//! check must cost a few. So each answer is kept in the engine's [`ToolCache`]
//! (`<cache dir>/.tool-probes/`, written by builds only) and reused while the
//! binary's stat data and the interpreter it resolved to are unchanged. What is
//! venv's own is the asking, and the shims: a version manager's shim (a script such
//! as pyenv's) picks its interpreter from the environment and from `.python-version`
//! files rather than from its own bytes, so for a script those are part of the
//! fingerprint too.

use std::ffi::OsString;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};
use tiers_core::{Fingerprint, Probe, ToolCache};

use crate::error::VenvError;

/// The interpreter's identity; bump the version when [`Interpreter`] or
/// [`PYTHON_PROBE`] changes.
const PYTHON: Probe = Probe::new("venv-python", 1);
/// An installer's `--version`; bump the version when [`Tool`] changes.
const INSTALLER: Probe = Probe::new("venv-installer", 1);

/// What the interpreter says about itself. The key holds it; health checks compare
/// a venv's `pyvenv.cfg` and `bin/python` against it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interpreter {
    /// The interpreter binary, every link and shim resolved.
    pub executable: PathBuf,
    /// The full version, `3.11.7`.
    pub version: String,
    /// `CPython`, `PyPy`…
    pub implementation: String,
    /// `linux-x86_64`, `macosx-14.0-arm64`…
    pub platform: String,
    /// `t` for a free-threaded build, usually empty.
    #[serde(default)]
    pub abiflags: String,
    /// The pip that `python -m venv` installs (`ensurepip`), empty when none.
    #[serde(default)]
    pub bundled_pip: String,
}

impl Interpreter {
    /// One line for the key document: `CPython 3.11.7 linux-x86_64 (/usr/bin/python3.11)`.
    pub fn identity(&self) -> String {
        format!(
            "{} {}{} {} ({})",
            self.implementation,
            self.version,
            self.abiflags,
            self.platform,
            self.executable.display()
        )
    }
}

/// An installer binary and its version, as `uv 0.5.1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    pub path: PathBuf,
    pub version: String,
}

/// Prints the interpreter's identity as JSON. Runs in isolated mode (`-I`) so that
/// `PYTHONPATH` and the user's site-packages cannot change the answer.
const PYTHON_PROBE: &str = r#"
import json, os, platform, sys, sysconfig
try:
    import ensurepip
    pip = ensurepip.version()
except Exception:
    pip = ""
print(json.dumps({
    "executable": os.path.realpath(sys.executable),
    "version": platform.python_version(),
    "implementation": platform.python_implementation(),
    "platform": sysconfig.get_platform(),
    "abiflags": getattr(sys, "abiflags", ""),
    "bundled_pip": pip,
}))
"#;

/// Where a program was looked for, for messages.
#[derive(Clone, Debug)]
pub enum Looked {
    /// These PATH directories (none of which has it).
    Path(Vec<PathBuf>),
    /// This configured path (which is not an executable file).
    At(PathBuf),
}

impl Looked {
    pub fn describe(&self) -> String {
        match self {
            Looked::Path(dirs) if dirs.is_empty() => "PATH is empty".to_owned(),
            Looked::Path(dirs) => dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            Looked::At(p) => p.display().to_string(),
        }
    }
}

/// Find `program`: a name is looked up on PATH like a shell does; anything with a
/// `/` is a path, relative to `project`.
pub fn locate(program: &Path, project: &Path) -> Result<PathBuf, Looked> {
    if program.components().count() > 1 || program.is_absolute() {
        let path = project.join(program);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(Looked::At(path))
        };
    }
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for dir in &dirs {
        // An empty PATH entry means the current directory; tiers never runs from there.
        if dir.as_os_str().is_empty() {
            continue;
        }
        let candidate = dir.join(program);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(Looked::Path(
        dirs.into_iter()
            .filter(|d| !d.as_os_str().is_empty())
            .collect(),
    ))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `path` is a script (`#!`) rather than a binary: a version manager's shim.
fn is_script(path: &Path) -> bool {
    let mut head = [0u8; 2];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == b"#!")
}

/// What a shim's choice of interpreter depends on besides its own bytes.
fn with_shim_context(mut fp: Fingerprint, project: &Path) -> Fingerprint {
    for var in ["PYENV_VERSION", "PYENV_ROOT", "ASDF_PYTHON_VERSION", "PATH"] {
        let value = std::env::var_os(var).unwrap_or_default();
        fp = fp.line(format!("{var}={}", value.to_string_lossy()));
    }
    for dir in project.ancestors() {
        for name in [".python-version", ".tool-versions"] {
            fp = fp.file(&dir.join(name));
        }
    }
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")));
    match pyenv_root {
        Some(root) => fp.file(&root.join("version")),
        None => fp,
    }
}

/// The fingerprint of a program as found: the binary's, and for a script the
/// environment that steers it.
fn fingerprint(program: &Path, project: &Path) -> Fingerprint {
    let fp = Fingerprint::of_binary(program);
    if is_script(program) {
        with_shim_context(fp, project)
    } else {
        fp
    }
}

/// Find the interpreter `python` (a name on PATH or a path) and tell who it is.
pub async fn identify_interpreter(
    tier: &str,
    python: &str,
    project: &Path,
    cache: &ToolCache,
) -> Result<Interpreter, VenvError> {
    let err = |why: String| VenvError::Interpreter {
        tier: tier.to_owned(),
        python: python.to_owned(),
        why,
    };
    let program = locate(Path::new(python), project).map_err(|looked| match looked {
        Looked::Path(_) => err(format!(
            "was not found on PATH (looked in: {})\nhint: install it, or set `python = \"/path/to/python3\"` in `[tiers.{tier}]`",
            looked.describe()
        )),
        Looked::At(p) => err(format!(
            "does not exist or is not executable at `{}`\nhint: fix `python` in `[tiers.{tier}]`",
            p.display()
        )),
    })?;
    let fp = fingerprint(&program, project);
    if let Some(hit) = cache.get(PYTHON, &program, &fp) {
        return Ok(hit);
    }
    let out = tokio::process::Command::new(&program)
        .args(["-I", "-c", PYTHON_PROBE])
        .current_dir(project)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| err(format!("at `{}` cannot be run: {e}", program.display())))?;
    if !out.status.success() {
        return Err(err(format!(
            "at `{}` failed to describe itself ({}): {}",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let found: Interpreter = serde_json::from_slice(&out.stdout).map_err(|e| {
        err(format!(
            "at `{}` is not a Python 3 interpreter tiers understands ({e}): {}",
            program.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    })?;
    // A shim's answer holds only while the interpreter it resolved to is unchanged.
    cache.put(
        PYTHON,
        &program,
        fp,
        std::slice::from_ref(&found.executable),
        &found,
    );
    Ok(found)
}

/// `name 1.2.3` from a `--version` line such as `uv 0.5.1 (abc 2024-01-01)` or
/// `Poetry (version 2.0.1)`: the first token that starts with a digit.
pub fn parse_version(name: &str, output: &str) -> Option<String> {
    output
        .split_whitespace()
        .map(|t| t.trim_matches(|c: char| c == '(' || c == ')' || c == ','))
        .find(|t| t.starts_with(|c: char| c.is_ascii_digit()) && t.contains('.'))
        .map(|v| format!("{name} {v}"))
}

/// Run `program --version` (once per binary version) and return `name X.Y.Z`.
pub async fn tool_version(
    tier: &str,
    name: &str,
    program: &Path,
    project: &Path,
    cache: &ToolCache,
) -> Result<Tool, VenvError> {
    let fp = fingerprint(program, project);
    if let Some(hit) = cache.get(INSTALLER, program, &fp) {
        return Ok(hit);
    }
    let err = |why: String| VenvError::ToolVersion {
        tier: tier.to_owned(),
        path: program.to_owned(),
        why,
    };
    let out = tokio::process::Command::new(program)
        .arg("--version")
        .current_dir(project)
        .stdin(Stdio::null())
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| err(format!("cannot be run: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = out
        .status
        .success()
        .then(|| parse_version(name, &text))
        .flatten()
        .ok_or_else(|| {
            err(format!(
                "did not print a version ({}): {}{}",
                out.status,
                text.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })?;
    let tool = Tool {
        path: program.to_owned(),
        version,
    };
    cache.put(INSTALLER, program, fp, &[], &tool);
    Ok(tool)
}

/// `PATH` with `dir` first, for tools that find `python` on PATH.
pub fn path_with(dir: &Path) -> OsString {
    let mut dirs = vec![dir.to_owned()];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_exe(path: &Path, text: &str) {
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn versions_parse_from_each_tools_banner() {
        assert_eq!(
            parse_version("uv", "uv 0.13.9 (x86_64-unknown-linux-gnu)\n").as_deref(),
            Some("uv 0.13.9")
        );
        assert_eq!(
            parse_version("poetry", "Poetry (version 2.5.1)\n").as_deref(),
            Some("poetry 2.5.1")
        );
        assert_eq!(parse_version("uv", "no version here"), None);
    }

    #[test]
    fn locate_names_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let missing = locate(Path::new("bin/nope"), dir.path()).unwrap_err();
        assert!(
            missing.describe().ends_with("bin/nope"),
            "{}",
            missing.describe()
        );
        write_exe(&dir.path().join("tool"), "#!/bin/sh\n");
        assert_eq!(
            locate(Path::new("./tool"), dir.path()).unwrap(),
            dir.path().join("./tool")
        );
        fs::write(dir.path().join("plain"), "").unwrap();
        assert!(
            locate(Path::new("./plain"), dir.path()).is_err(),
            "not executable"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_tool_version_is_probed_once_until_the_binary_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        fs::create_dir(&cache_dir).unwrap();
        let cache = ToolCache::new(&cache_dir).writing(true);
        let tool = dir.path().join("fake-uv");
        let log = dir.path().join("calls");
        write_exe(
            &tool,
            &format!(
                "#!/bin/sh\necho x >> {}\necho 'fake 1.2.3'\n",
                log.display()
            ),
        );
        let calls = || fs::read_to_string(&log).unwrap_or_default().lines().count();
        let t = tool_version("t", "fake", &tool, dir.path(), &cache)
            .await
            .unwrap();
        assert_eq!(t.version, "fake 1.2.3");
        let again = tool_version("t", "fake", &tool, dir.path(), &cache)
            .await
            .unwrap();
        assert_eq!(again, t);
        assert_eq!(calls(), 1, "the second check must come from the cache");
        write_exe(
            &tool,
            &format!(
                "#!/bin/sh\necho x >> {}\necho 'fake 1.2.40'\n",
                log.display()
            ),
        );
        let changed = tool_version("t", "fake", &tool, dir.path(), &cache)
            .await
            .unwrap();
        assert_eq!(changed.version, "fake 1.2.40");
        assert_eq!(calls(), 2);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_interpreter_describes_itself() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ToolCache::new(dir.path()).writing(true);
        let Ok(found) = identify_interpreter("t", "python3", dir.path(), &cache).await else {
            panic!("the tests need python3 on PATH");
        };
        assert!(found.executable.is_absolute());
        assert!(found.version.starts_with('3'), "{found:?}");
        assert!(!found.platform.is_empty());
        let cached = identify_interpreter("t", "python3", dir.path(), &cache)
            .await
            .unwrap();
        assert_eq!(cached, found);
        let err = identify_interpreter("t", "python-nope-3.99", dir.path(), &cache)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`python-nope-3.99` was not found on PATH"),
            "{err}"
        );
    }
}
