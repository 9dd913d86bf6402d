//! The cheap health check of a venv: its interpreter link resolves, and `pyvenv.cfg`
//! matches the interpreter the entry was built with. A few syscalls, no process.

use std::fs;
use std::path::{Path, PathBuf};

use crate::probe::Interpreter;

/// `bin/python` of a venv: what embedders run.
pub fn venv_python(venv: &Path) -> PathBuf {
    venv.join("bin").join("python")
}

/// The `key = value` lines of a `pyvenv.cfg`.
pub fn parse_pyvenv_cfg(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Why the venv at `venv` cannot be used with `python`, or `None` when it can.
pub fn check(venv: &Path, python: &Interpreter) -> Option<String> {
    let bin = venv_python(venv);
    if let Err(e) = fs::metadata(&bin) {
        return Some(match fs::read_link(&bin) {
            Ok(target) => format!(
                "`bin/python` links to `{}`, which does not resolve ({e})",
                target.display()
            ),
            Err(_) => format!("`bin/python` is missing ({e})"),
        });
    }
    let cfg_path = venv.join("pyvenv.cfg");
    let text = match fs::read_to_string(&cfg_path) {
        Ok(t) => t,
        Err(e) => return Some(format!("`pyvenv.cfg` cannot be read ({e})")),
    };
    let cfg = parse_pyvenv_cfg(&text);
    let get = |k: &str| {
        cfg.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    // `python -m venv` writes `version`, uv and virtualenv `version_info` (virtualenv
    // as `3.11.7.final.0`).
    match get("version_info").or_else(|| get("version")) {
        Some(v) if same_version(v, &python.version) => {}
        Some(v) => {
            return Some(format!(
                "`pyvenv.cfg` records Python {v}, but the entry was built with {}",
                python.version
            ))
        }
        None => return Some("`pyvenv.cfg` records no version".to_owned()),
    }
    match get("home") {
        Some(home) if Path::new(home).is_dir() => {}
        Some(home) => {
            return Some(format!(
                "the interpreter home `{home}` named in `pyvenv.cfg` is gone"
            ))
        }
        None => return Some("`pyvenv.cfg` names no interpreter home".to_owned()),
    }
    // A venv made with copies (`--copies`) has its own binary: nothing to compare.
    let real = fs::canonicalize(&bin).ok()?;
    let inside = fs::canonicalize(venv).is_ok_and(|v| real.starts_with(v));
    if !inside && real != python.executable {
        return Some(format!(
            "`bin/python` resolves to `{}`, not to the interpreter `{}` it was built with",
            real.display(),
            python.executable.display()
        ));
    }
    None
}

/// `3.11.7` matches `3.11.7` and `3.11.7.final.0`, not `3.11.70`.
fn same_version(recorded: &str, version: &str) -> bool {
    recorded
        .strip_prefix(version)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn interpreter(exe: &Path) -> Interpreter {
        Interpreter {
            executable: exe.to_owned(),
            version: "3.11.7".into(),
            implementation: "CPython".into(),
            platform: "linux-x86_64".into(),
            abiflags: String::new(),
            bundled_pip: String::new(),
        }
    }

    /// A fake venv whose `bin/python` links to a fake interpreter.
    fn venv(dir: &Path, cfg_version: &str) -> (PathBuf, PathBuf) {
        let home = dir.join("home/bin");
        fs::create_dir_all(&home).unwrap();
        let exe = home.join("python3.11");
        fs::write(&exe, "").unwrap();
        let v = dir.join("venv");
        fs::create_dir_all(v.join("bin")).unwrap();
        symlink(&exe, v.join("bin/python")).unwrap();
        fs::write(
            v.join("pyvenv.cfg"),
            format!("home = {}\nversion_info = {cfg_version}\n", home.display()),
        )
        .unwrap();
        (v, fs::canonicalize(exe).unwrap())
    }

    #[test]
    fn a_whole_venv_is_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let (v, exe) = venv(dir.path(), "3.11.7.final.0");
        assert_eq!(check(&v, &interpreter(&exe)), None);
    }

    #[test]
    fn a_dangling_interpreter_link_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (v, exe) = venv(dir.path(), "3.11.7");
        fs::remove_file(v.join("bin/python")).unwrap();
        symlink("/nonexistent/python3", v.join("bin/python")).unwrap();
        let why = check(&v, &interpreter(&exe)).unwrap();
        assert!(why.contains("links to `/nonexistent/python3`"), "{why}");
    }

    #[test]
    fn another_version_or_interpreter_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (v, exe) = venv(dir.path(), "3.11.70");
        let why = check(&v, &interpreter(&exe)).unwrap();
        assert!(why.contains("records Python 3.11.70"), "{why}");
        let dir = tempfile::tempdir().unwrap();
        let (v, _) = venv(dir.path(), "3.11.7");
        let why = check(&v, &interpreter(Path::new("/usr/bin/python3.11"))).unwrap();
        assert!(
            why.contains("not to the interpreter `/usr/bin/python3.11`"),
            "{why}"
        );
    }

    #[test]
    fn a_missing_cfg_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (v, exe) = venv(dir.path(), "3.11.7");
        fs::remove_file(v.join("pyvenv.cfg")).unwrap();
        let why = check(&v, &interpreter(&exe)).unwrap();
        assert!(why.contains("`pyvenv.cfg` cannot be read"), "{why}");
    }
}
