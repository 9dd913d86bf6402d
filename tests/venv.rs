//! The venv kinds end to end (issue 3): uv, pip and poetry environments keyed on their
//! manifests, the interpreter and the installer, never on source files. Real uv, pip
//! and poetry, installing offline from wheels the tests make.

mod support;
#[path = "support/wheels.rs"]
mod wheels;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{project, Project, Run};

/// The wheels every test project can install: `tinyb` needs `tinya`.
fn wheelhouse(p: &Project) {
    wheels::write_wheels(
        &p.path("wheels"),
        &[
            ("tinya", "1.0", &[]),
            ("tinya", "2.0", &[]),
            ("tinyb", "1.0", &["tinya>=1"]),
        ],
    );
}

/// `tiers ARGS…` on `p`, offline, with uv and poetry on PATH.
fn tiers_in(p: &Project, args: &[&str], path: Option<&str>) -> Run {
    let mut cmd = p.cmd(args);
    cmd.env("UV_OFFLINE", "1")
        .env("PIP_NO_INDEX", "1")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PATH", path.map_or_else(wheels::tools_path, Into::into))
        .env_remove("VIRTUAL_ENV");
    let out = cmd.output().expect("run tiers");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn tiers(p: &Project, args: &[&str]) -> Run {
    tiers_in(p, args, None)
}

/// `tiers build --json ARGS…`, expecting success.
fn build(p: &Project, args: &[&str]) -> Run {
    let mut all = vec!["build", "--json"];
    all.extend_from_slice(args);
    tiers(p, &all).expect_code(0)
}

fn status(p: &Project) -> Run {
    tiers(p, &["status", "--json"]).expect_code(0)
}

/// `spy/NAME`: logs its arguments to `spy/NAME.log`, then runs the real tool.
fn spy(p: &Project, name: &str) {
    let real = wheels::tool(name);
    let script = format!(
        "#!/bin/sh\necho \"$*\" >> \"$(dirname \"$0\")/{name}.log\"\nexec '{}' \"$@\"\n",
        real.display()
    );
    let path = p.path(&format!("spy/{name}"));
    p.write(&format!("spy/{name}"), script);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `tiers build`, expecting the venv rebuilt for exactly `reasons`.
fn expect_rebuilt(p: &Project, reasons: &[&str]) {
    let run = build(p, &[]);
    assert_eq!(run.status("venv"), "rebuilt", "{}", run.stdout);
    assert_eq!(run.reasons("venv"), reasons);
}

/// The commands the spy of `name` ran, version probes left out.
fn installer_runs(p: &Project, name: &str) -> Vec<String> {
    p.read(&format!("spy/{name}.log"))
        .lines()
        .filter(|l| *l != "--version")
        .map(str::to_owned)
        .collect()
}

/// The venv tier's path as `tiers paths --json` reports it.
fn venv_path(p: &Project) -> PathBuf {
    let paths = tiers(p, &["paths", "--json"]).expect_code(0).json();
    PathBuf::from(
        paths["tiers"]["venv"]["path"]
            .as_str()
            .unwrap_or_else(|| panic!("no venv path in {paths}")),
    )
}

/// Run `code` with the reported venv's `bin/python`; its stdout, trimmed.
fn py(p: &Project, code: &str) -> String {
    let python = venv_path(p).join("bin/python");
    let out = Command::new(&python)
        .args(["-c", code])
        .current_dir("/")
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", python.display()));
    assert!(
        out.status.success(),
        "`{}` -c {code:?} failed:\n{}",
        python.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Whether `module` imports in the reported venv.
fn imports(p: &Project, module: &str) -> bool {
    py(
        p,
        &format!("import importlib.util as u; print(u.find_spec({module:?}) is not None)"),
    ) == "True"
}

/// The marker of the venv entry `paths` reports.
fn marker(p: &Project) -> Value {
    let text = std::fs::read_to_string(venv_path(p).join("entry.json")).expect("entry.json");
    serde_json::from_str(&text).expect("entry.json is JSON")
}

/// Entries (directories with a marker) in the venv tier's root.
fn entries(p: &Project) -> usize {
    std::fs::read_dir(p.cache_dir().join("venv"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("entry.json").is_file())
                .count()
        })
        .unwrap_or(0)
}

/// A project with `requirements.txt`, a source file and a venv-uv tier whose uv is a
/// spy; `extra` is appended to the tier's table.
fn uv_project(requirements: &str, extra: &str) -> Project {
    let p = project()
        .file("requirements.txt", requirements)
        .file("app/main.py", "print('hello')\n")
        .file(
            "tiers.toml",
            format!(
                "[tiers.venv]\nkind = \"venv-uv\"\nuv = \"spy/uv\"\nfind_links = [\"wheels\"]\nno_index = true\n{extra}"
            ),
        )
        .build();
    wheelhouse(&p);
    spy(&p, "uv");
    p
}

/// The interpreter `python3` on PATH really is.
fn default_python() -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, sys; print(os.path.realpath(sys.executable))",
        ])
        .output()
        .expect("python3");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A Python 3 other than `python3`'s, for the interpreter-change test.
fn another_python() -> PathBuf {
    let default = default_python();
    let mut candidates: Vec<PathBuf> = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(home) = std::env::var_os("HOME") {
        if let Ok(rd) = std::fs::read_dir(Path::new(&home).join(".pyenv/versions")) {
            let mut versions: Vec<PathBuf> =
                rd.flatten().map(|e| e.path().join("bin/python3")).collect();
            versions.sort();
            candidates.extend(versions.into_iter().rev());
        }
    }
    candidates
        .into_iter()
        .filter(|c| c.is_file())
        .find(|c| std::fs::canonicalize(c).is_ok_and(|r| r != default))
        .unwrap_or_else(|| {
            panic!(
                "this test needs a second Python 3 besides `{}`",
                default.display()
            )
        })
}

#[test]
fn editing_source_rebuilds_nothing_and_eager_reuses_the_venv() {
    let p = uv_project("tinya==1.0\n", "");
    let run = build(&p, &[]);
    assert_eq!(run.status("venv"), "built");
    assert_eq!(py(&p, "import tinya; print(tinya.VERSION)"), "1.0");
    let installs = installer_runs(&p, "uv");
    assert_eq!(
        installs.len(),
        2,
        "uv venv, then uv pip install: {installs:?}"
    );
    assert!(installs[0].starts_with("venv "), "{installs:?}");
    assert!(installs[1].starts_with("pip install "), "{installs:?}");
    let m = marker(&p);
    assert_eq!(m["data"]["backend"], "uv");
    assert_eq!(
        m["data"]["manifests"],
        serde_json::json!(["requirements.txt"])
    );
    assert_eq!(m["used_inputs"], serde_json::json!(["requirements.txt"]));

    p.write("app/main.py", "print('changed')\n");
    p.write("app/new.py", "X = 1\n");
    let st = status(&p);
    assert_eq!(st.status("venv"), "fresh", "{}", st.stdout);
    assert_eq!(build(&p, &[]).status("venv"), "fresh");
    let eager = build(&p, &["--eager"]);
    assert_eq!(
        eager.status("venv"),
        "fresh",
        "--eager leaves a venv with an unchanged key"
    );
    assert_eq!(installer_runs(&p, "uv").len(), 2, "no installer ran");

    let forced = build(&p, &["--rebuild", "venv"]);
    assert_eq!(forced.status("venv"), "rebuilt");
    assert_eq!(
        forced.reasons("venv"),
        ["a rebuild was forced by --rebuild venv"]
    );
    let forced = build(&p, &["--rebuild", "all"]);
    assert_eq!(forced.status("venv"), "rebuilt");
    assert_eq!(installer_runs(&p, "uv").len(), 6);
    assert_eq!(py(&p, "import tinya; print(tinya.VERSION)"), "1.0");
}

#[test]
fn editing_a_manifest_rebuilds_and_going_back_reuses_the_earlier_venv() {
    let p = uv_project("tinya==1.0\n", "");
    build(&p, &[]);
    let first = venv_path(&p);
    assert!(!imports(&p, "tinyb"));

    p.write("requirements.txt", "tinya==1.0\ntinyb\n");
    let st = status(&p);
    assert_eq!(st.status("venv"), "stale");
    let changed = [
        "the option `requirements.txt: requirements` changed from [\"tinya==1.0\"] to [\"tinya==1.0\",\"tinyb\"]",
        "the input `requirements.txt` changed",
    ];
    assert_eq!(st.reasons("venv"), changed);
    let run = build(&p, &[]);
    assert_eq!(run.status("venv"), "rebuilt");
    assert_eq!(run.reasons("venv"), changed);
    let second = venv_path(&p);
    assert_ne!(first, second);
    assert!(
        imports(&p, "tinyb"),
        "the new dependency imports from bin/python"
    );
    let installs = installer_runs(&p, "uv").len();

    p.write("requirements.txt", "tinya==1.0\n");
    let back = build(&p, &[]);
    assert_eq!(back.status("venv"), "fresh", "{}", back.stdout);
    assert_eq!(venv_path(&p), first);
    assert!(!imports(&p, "tinyb"));
    p.write("requirements.txt", "tinya==1.0\ntinyb\n");
    assert_eq!(build(&p, &[]).status("venv"), "fresh");
    assert_eq!(venv_path(&p), second);
    assert_eq!(
        installer_runs(&p, "uv").len(),
        installs,
        "switching back installs nothing"
    );

    // A third state: retention keeps two venvs, the one in use among them.
    p.write("requirements-dev.txt", "tinyb\n");
    expect_rebuilt(
        &p,
        &[
            "the option `requirements-dev.txt: keyed on` changed from nothing to \"its requirement lines\"",
            "the option `requirements-dev.txt: requirements` changed from nothing to [\"tinyb\"]",
            "the input `requirements-dev.txt` was added",
        ],
    );
    assert_eq!(entries(&p), 2);
    assert!(!first.exists(), "the least recently used venv went");
    assert!(second.exists());
}

#[test]
fn a_failed_install_exits_1_with_the_installers_message_and_keeps_the_good_venv() {
    let p = uv_project("tinya==1.0\n", "");
    build(&p, &[]);
    let good = venv_path(&p);

    p.write("requirements.txt", "tinya==1.0\nnosuchpkg==3.1\n");
    let failed = tiers(&p, &["build"]).expect_code(1);
    assert!(
        failed.stderr.contains("nosuchpkg") && failed.stderr.contains("tier `venv`"),
        "{}",
        failed.stderr
    );
    assert!(
        failed.stderr.contains("uv pip install"),
        "{}",
        failed.stderr
    );
    assert_eq!(venv_path(&p), good, "paths still reports the good venv");
    assert_eq!(py(&p, "import tinya; print(tinya.VERSION)"), "1.0");
    assert_eq!(entries(&p), 1, "the failed build left no entry");
    assert_eq!(status(&p).status("venv"), "stale");

    p.write("requirements.txt", "tinya ==== not a requirement!!\n");
    let malformed = tiers(&p, &["build", "--json"]).expect_code(1);
    let error = malformed.tier("venv")["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("requirements.txt"),
        "uv's own message: {error}"
    );
    assert!(
        !malformed.stderr.contains("panicked"),
        "{}",
        malformed.stderr
    );
    assert_eq!(venv_path(&p), good);
}

#[test]
fn changing_the_interpreter_rebuilds_with_a_toolchain_reason() {
    let other = another_python();
    let p = uv_project("tinya==1.0\n", "");
    build(&p, &[]);
    let default = default_python();
    assert_eq!(
        PathBuf::from(py(
            &p,
            "import os, sys; print(os.path.realpath(sys.executable))"
        )),
        default
    );

    p.write(
        "tiers.toml",
        format!("{}python = \"{}\"\n", p.read("tiers.toml"), other.display()),
    );
    let run = build(&p, &[]);
    assert_eq!(run.status("venv"), "rebuilt");
    let reasons = run.reasons("venv");
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].starts_with("the python changed from CPython")
            && reasons[0].contains(&default.display().to_string()),
        "{reasons:?}"
    );
    let real_other = std::fs::canonicalize(&other).unwrap();
    assert_eq!(
        PathBuf::from(py(
            &p,
            "import os, sys; print(os.path.realpath(sys.executable))"
        )),
        real_other
    );

    // The default interpreter named by its real path is the same interpreter: its
    // venv is still there.
    let text = p.read("tiers.toml").replace(
        &format!("python = \"{}\"", other.display()),
        &format!("python = \"{}\"", default.display()),
    );
    p.write("tiers.toml", text);
    assert_eq!(build(&p, &[]).status("venv"), "fresh");
}

#[test]
fn a_broken_interpreter_link_is_detected_and_rebuilt() {
    let p = uv_project("tinya==1.0\n", "");
    build(&p, &[]);
    let venv = venv_path(&p);
    std::fs::remove_file(venv.join("bin/python")).unwrap();
    symlink("/nonexistent/python3", venv.join("bin/python")).unwrap();

    let st = status(&p);
    assert_eq!(st.status("venv"), "stale");
    let reasons = st.reasons("venv");
    assert!(
        reasons.len() == 1
            && reasons[0].starts_with("the entry is corrupt")
            && reasons[0].contains("/nonexistent/python3"),
        "{reasons:?}"
    );
    let run = build(&p, &[]);
    assert_eq!(run.status("venv"), "rebuilt");
    assert_eq!(venv_path(&p), venv, "the same key, rebuilt in place");
    assert_eq!(py(&p, "import tinya; print(tinya.VERSION)"), "1.0");
}

#[test]
fn a_uv_lock_is_installed_frozen_and_other_manifests_are_not_read() {
    let p = project()
        .file(
            "pyproject.toml",
            "[project]\nname = \"locked\"\nversion = \"0.1\"\nrequires-python = \">=3.8\"\ndependencies = [\"tinyb\"]\n",
        )
        // Would fail to install if it were read.
        .file("requirements-dev.txt", "nosuchpkg\n")
        .file(
            "tiers.toml",
            "[tiers.venv]\nkind = \"venv-uv\"\nfind_links = [\"wheels\"]\nno_index = true\n",
        )
        .build();
    wheelhouse(&p);
    let lock = Command::new(wheels::tool("uv"))
        .args(["lock", "--offline", "--no-index", "--find-links", "wheels"])
        .current_dir(p.root())
        .output()
        .unwrap();
    assert!(
        lock.status.success(),
        "{}",
        String::from_utf8_lossy(&lock.stderr)
    );

    assert_eq!(build(&p, &[]).status("venv"), "built");
    assert_eq!(py(&p, "import tinyb, tinya; print(tinya.VERSION)"), "2.0");
    let m = marker(&p);
    assert_eq!(
        m["data"]["manifests"],
        serde_json::json!(["pyproject.toml", "uv.lock"])
    );
    assert_eq!(
        m["used_inputs"],
        serde_json::json!(["pyproject.toml", "uv.lock"])
    );
    let inputs: Vec<&String> = m["doc"]["inputs"].as_object().unwrap().keys().collect();
    assert_eq!(
        inputs,
        ["pyproject.toml", "requirements-dev.txt", "uv.lock"]
    );

    // The key changes with any manifest, but the entry serves every key whose used
    // manifests are unchanged (discovered inputs).
    let built = venv_path(&p);
    p.write("requirements-dev.txt", "nosuchpkg\nnorthisone\n");
    let run = build(&p, &[]);
    assert_eq!(run.status("venv"), "restored", "{}", run.stdout);
    assert_eq!(
        run.reasons("venv"),
        ["`requirements-dev.txt` changed but the last build did not use it"]
    );
    assert_eq!(venv_path(&p), built);
    assert_eq!(py(&p, "import tinyb, tinya; print(tinya.VERSION)"), "2.0");
}

#[test]
fn pip_installs_the_requirements_and_the_project_editable() {
    let p = project()
        .file(
            "pyproject.toml",
            "[project]\nname = \"myproj\"\nversion = \"0.1\"\ndependencies = [\"tinya==1.0\"]\n\n[build-system]\nrequires = []\nbuild-backend = \"tiny_backend\"\nbackend-path = [\"_backend\"]\n",
        )
        .file("_backend/tiny_backend.py", wheels::TINY_BACKEND)
        .file("mypkg/__init__.py", "X = 1\n")
        .file("requirements.txt", "tinyb\n")
        .file(
            "tiers.toml",
            "[tiers.venv]\nkind = \"venv-pip\"\nfind_links = [\"wheels\"]\nno_index = true\n",
        )
        .build();
    wheelhouse(&p);
    assert_eq!(build(&p, &[]).status("venv"), "built");
    assert_eq!(
        py(
            &p,
            "import mypkg, tinya, tinyb; print(mypkg.X, tinya.VERSION)"
        ),
        "1 1.0"
    );
    let m = marker(&p);
    assert_eq!(m["data"]["backend"], "pip");
    assert_eq!(
        m["data"]["manifests"],
        serde_json::json!(["pyproject.toml", "requirements.txt"])
    );
    assert!(
        m["doc"]["toolchain"]["pip"]
            .as_str()
            .unwrap_or_default()
            .starts_with("pip "),
        "{}",
        m["doc"]["toolchain"]
    );

    // The project is installed editable: its source is read live, never keyed.
    p.write("mypkg/__init__.py", "X = 2\n");
    p.write(
        "_backend/tiny_backend.py",
        format!("{}\n# edited\n", wheels::TINY_BACKEND),
    );
    assert_eq!(build(&p, &["--eager"]).status("venv"), "fresh");
    assert_eq!(py(&p, "import mypkg; print(mypkg.X)"), "2");

    // Issue 18: a comment and a test-runner table are not what pip reads. A file
    // planted in the venv shows it was not rebuilt.
    let sentinel = venv_path(&p).join("sentinel");
    std::fs::write(&sentinel, "").unwrap();
    p.write(
        "pyproject.toml",
        format!(
            "# myproj\n{}\n[tool.pytest.ini_options]\naddopts = \"-q\"\n",
            p.read("pyproject.toml")
        ),
    );
    assert_eq!(build(&p, &[]).status("venv"), "fresh");
    assert!(sentinel.exists(), "the venv was not rebuilt");

    p.write("requirements.txt", "tinyb\ntinya==1.0\n");
    expect_rebuilt(
        &p,
        &[
            "the option `requirements.txt: requirements` changed from [\"tinyb\"] to [\"tinyb\",\"tinya==1.0\"]",
            "the input `requirements.txt` changed",
        ],
    );
    assert_eq!(py(&p, "import mypkg, tinyb; print(mypkg.X)"), "2");
}

fn poetry_pyproject(tinya: &str) -> String {
    format!(
        "[tool.poetry]\npackage-mode = false\n\n[tool.poetry.dependencies]\npython = \">=3.8\"\ntinyb = {{ path = \"wheels/tinyb-1.0-py3-none-any.whl\" }}\ntinya = {{ path = \"wheels/tinya-{tinya}-py3-none-any.whl\" }}\n"
    )
}

fn poetry_lock(p: &Project) {
    let out = Command::new(wheels::tool("poetry"))
        .args(["lock", "--no-interaction"])
        .current_dir(p.root())
        .env("POETRY_VIRTUALENVS_CREATE", "false")
        .env_remove("VIRTUAL_ENV")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "poetry lock failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A venv-poetry project of `pyproject` and `files`, locked, its poetry a spy.
fn poetry_project(pyproject: &str, files: &[(&str, &str)]) -> Project {
    let mut b = project().file("pyproject.toml", pyproject).file(
        "tiers.toml",
        "[tiers.venv]\nkind = \"venv-poetry\"\npoetry = \"spy/poetry\"\n",
    );
    for (path, text) in files {
        b = b.file(path, text);
    }
    let p = b.build();
    wheelhouse(&p);
    spy(&p, "poetry");
    poetry_lock(&p);
    p
}

#[test]
fn poetry_installs_the_locked_dependencies_into_the_tiers_venv() {
    let p = poetry_project(
        &poetry_pyproject("1.0"),
        &[
            ("requirements-dev.txt", "nosuchpkg\n"),
            ("app.py", "print('hello')\n"),
        ],
    );

    assert_eq!(build(&p, &[]).status("venv"), "built");
    assert_eq!(py(&p, "import tinyb, tinya; print(tinya.VERSION)"), "1.0");
    let m = marker(&p);
    assert_eq!(m["data"]["backend"], "poetry");
    assert_eq!(
        m["data"]["manifests"],
        serde_json::json!(["poetry.lock", "pyproject.toml"])
    );
    assert_eq!(
        m["used_inputs"],
        serde_json::json!(["poetry.lock", "pyproject.toml"])
    );
    assert!(m["doc"]["inputs"]["requirements-dev.txt"].is_string());
    assert_eq!(installer_runs(&p, "poetry").len(), 1, "one poetry install");

    p.write("app.py", "print('changed')\n");
    assert_eq!(build(&p, &["--eager"]).status("venv"), "fresh");
    assert_eq!(installer_runs(&p, "poetry").len(), 1);

    // Issue 18: tables poetry does not read, and comments, leave the venv.
    p.write(
        "pyproject.toml",
        format!(
            "# linters\n{}\n[tool.ruff]\nline-length = 99\n",
            poetry_pyproject("1.0")
        ),
    );
    assert_eq!(build(&p, &[]).status("venv"), "fresh");
    assert_eq!(installer_runs(&p, "poetry").len(), 1);

    p.write("pyproject.toml", poetry_pyproject("2.0"));
    poetry_lock(&p);
    let run = build(&p, &[]);
    assert_eq!(run.status("venv"), "rebuilt");
    let reasons = run.reasons("venv");
    assert_eq!(
        reasons[1..],
        [
            "the input `poetry.lock` changed",
            "the input `pyproject.toml` changed"
        ]
    );
    assert!(
        reasons.len() == 3
            && reasons[0]
                .starts_with("the option `pyproject.toml: [tool.poetry] dependencies` changed")
            && reasons[0].contains("tinya-2.0-py3-none-any.whl"),
        "{reasons:?}"
    );
    assert_eq!(py(&p, "import tinya; print(tinya.VERSION)"), "2.0");
}

/// The `option backend = …` line of `tiers explain venv`.
fn explained_backend(p: &Project, path: Option<&str>) -> String {
    let out = tiers_in(p, &["explain", "venv"], path).expect_code(0);
    out.stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("option backend = "))
        .unwrap_or_else(|| panic!("no backend in:\n{}", out.stdout))
        .to_owned()
}

#[test]
fn auto_picks_poetry_for_a_poetry_lock_else_uv_else_pip() {
    let python = default_python();
    let p = project()
        .file("pyproject.toml", "[tool.poetry]\npackage-mode = false\n")
        .file("poetry.lock", "# a lock\n")
        .file(
            "tiers.toml",
            format!(
                "[tiers.venv]\nkind = \"venv\"\npython = \"{}\"\n",
                python.display()
            ),
        )
        .build();
    assert_eq!(explained_backend(&p, None), "\"poetry\"");
    // Without uv and poetry on PATH, only pip is left.
    assert_eq!(explained_backend(&p, Some("/usr/bin:/bin")), "\"pip\"");
    p.remove("poetry.lock");
    assert_eq!(explained_backend(&p, None), "\"uv\"");

    p.write(
        "tiers.toml",
        format!("{}backend = \"pip\"\n", p.read("tiers.toml")),
    );
    assert_eq!(explained_backend(&p, None), "\"pip\"");
    p.write(
        "tiers.toml",
        p.read("tiers.toml")
            .replace("backend = \"pip\"", "backend = \"conda\""),
    );
    let bad = tiers(&p, &["status"]).expect_code(2);
    assert!(
        bad.stderr.contains("unknown `backend = \"conda\"`")
            && bad.stderr.contains("poetry, uv, pip"),
        "{}",
        bad.stderr
    );
}

#[test]
fn a_missing_tool_names_the_binary_where_it_looked_and_how_to_install_it() {
    let python = default_python();
    let bare_path = "/usr/bin:/bin";
    let p = project()
        .file("requirements.txt", "tinya\n")
        .file(
            "tiers.toml",
            format!(
                "[tiers.venv]\nkind = \"venv-uv\"\npython = \"{}\"\n",
                python.display()
            ),
        )
        .build();
    let run = tiers_in(&p, &["build"], Some(bare_path)).expect_code(1);
    assert!(
        run.stderr
            .contains("`uv` was not found on PATH (looked in: /usr/bin, /bin)")
            && run.stderr.contains("pip install uv"),
        "{}",
        run.stderr
    );

    p.write(
        "tiers.toml",
        format!("{}uv = \"tools/uv\"\n", p.read("tiers.toml")),
    );
    let run = tiers(&p, &["build"]).expect_code(1);
    assert!(
        run.stderr
            .contains("tools/uv` (set by `uv`) does not exist"),
        "{}",
        run.stderr
    );

    p.write(
        "tiers.toml",
        format!(
            "[tiers.venv]\nkind = \"venv-poetry\"\npython = \"{}\"\n",
            python.display()
        ),
    );
    let run = tiers_in(&p, &["build"], Some(bare_path)).expect_code(1);
    assert!(
        run.stderr.contains("`poetry` was not found on PATH")
            && run.stderr.contains("pipx install poetry"),
        "{}",
        run.stderr
    );

    p.write(
        "tiers.toml",
        "[tiers.venv]\nkind = \"venv-poetry\"\nfind_links = [\"wheels\"]\n",
    );
    let run = tiers(&p, &["status"]).expect_code(2);
    assert!(
        run.stderr.contains("does not support `find_links`")
            && run.stderr.contains("[[tool.poetry.source]]"),
        "{}",
        run.stderr
    );
    assert!(!p.cache_dir().join("venv").exists(), "nothing was built");
}

#[test]
fn a_version_manager_shim_is_followed_to_the_interpreter_it_picks() {
    // Like pyenv's shims: a script whose interpreter comes from `.python-version`.
    let default = default_python();
    let other = std::fs::canonicalize(another_python()).unwrap();
    let p = uv_project("tinya==1.0\n", "python = \"shim/python3\"\n");
    p.write(
        "shim/python3",
        "#!/bin/sh\nexec \"$(cat .python-version)\" \"$@\"\n",
    );
    std::fs::set_permissions(
        p.path("shim/python3"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    p.write(".python-version", format!("{}\n", default.display()));
    assert_eq!(build(&p, &[]).status("venv"), "built");
    assert_eq!(status(&p).status("venv"), "fresh");

    p.write(".python-version", format!("{}\n", other.display()));
    let st = status(&p);
    assert_eq!(st.status("venv"), "stale");
    let reasons = st.reasons("venv");
    assert!(
        reasons.len() == 1 && reasons[0].ends_with(&format!("({})", other.display())),
        "{reasons:?}"
    );
}

/// A warm `tiers status` and `tiers build` ask neither the interpreter nor the
/// installer who they are: the first build kept their answers (in the cache dir's
/// tool probes), and a status writes none.
#[test]
fn a_warm_status_and_build_probe_no_tool() {
    let p = uv_project("tinya==1.0\n", "python = \"spy/python3\"\n");
    p.write(
        "spy/python3",
        format!(
            "#!/bin/sh\n[ \"$1\" = -I ] && echo probe >> \"$(dirname \"$0\")/python3.log\"\nexec '{}' \"$@\"\n",
            default_python().display()
        ),
    );
    std::fs::set_permissions(
        p.path("spy/python3"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let probes = || {
        let count = |log: &str, line: &str| {
            std::fs::read_to_string(p.path(log))
                .unwrap_or_default()
                .lines()
                .filter(|l| *l == line)
                .count()
        };
        (
            count("spy/python3.log", "probe"),
            count("spy/uv.log", "--version"),
        )
    };
    assert_eq!(status(&p).status("venv"), "missing");
    assert!(
        !p.cache_dir().join(".tool-probes").exists(),
        "status writes nothing"
    );
    assert_eq!(build(&p, &[]).status("venv"), "built");
    let built = probes();
    assert!(built.0 >= 1 && built.1 >= 1, "{built:?}");
    assert_eq!(status(&p).status("venv"), "fresh");
    assert_eq!(build(&p, &[]).status("venv"), "fresh");
    assert_eq!(probes(), built, "(interpreter, installer) probes");
}

#[test]
fn a_venv_directory_without_its_marker_is_debris_and_is_rebuilt() {
    // What a build killed half way leaves: the entry directory, no `entry.json`.
    let p = uv_project("tinya==1.0\n", "");
    let st = status(&p);
    assert_eq!(st.status("venv"), "missing");
    let planned = PathBuf::from(st.tier("venv")["path"].as_str().expect("planned path"));
    // A killed build ran in a cache dir tiers made (and tagged) first.
    let cache = p.path(".tiers");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(
        cache.join("CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by tiers.\n",
    )
    .unwrap();
    std::fs::create_dir_all(planned.join("lib")).unwrap();
    std::fs::write(planned.join("pyvenv.cfg"), "home = /nowhere\n").unwrap();
    std::fs::write(planned.join("lib/half-installed.py"), "").unwrap();
    assert_eq!(status(&p).status("venv"), "missing", "debris is no entry");

    assert_eq!(build(&p, &[]).status("venv"), "built");
    assert_eq!(venv_path(&p), planned);
    assert!(!planned.join("lib/half-installed.py").exists());
    assert_eq!(py(&p, "import tinya; print(tinya.VERSION)"), "1.0");
}

/// `pyproject.toml` of `myproj`, installed editable by the tiny backend.
fn myproj(deps: &str, version: &str, tail: &str) -> String {
    format!(
        "[project]\nname = \"myproj\"\nversion = \"{version}\"\nrequires-python = \">=3.8\"\ndependencies = [{deps}]\n\n[build-system]\nrequires = []\nbuild-backend = \"tiny_backend\"\nbackend-path = [\"_backend\"]\n{tail}"
    )
}

/// A `myproj` project with a tier of `kind` installing from the test wheels; uv,
/// when it runs, is a spy.
fn myproj_project(kind: &str, deps: &str, tail: &str) -> Project {
    let uv = if kind == "venv-uv" {
        "uv = \"spy/uv\"\n"
    } else {
        ""
    };
    let p = project()
        .file("pyproject.toml", myproj(deps, "0.1", tail))
        .file("_backend/tiny_backend.py", wheels::TINY_BACKEND)
        .file("myproj/__init__.py", "X = 1\n")
        .file(
            "tiers.toml",
            format!(
                "[tiers.venv]\nkind = \"{kind}\"\nfind_links = [\"wheels\"]\nno_index = true\n{uv}"
            ),
        )
        .build();
    wheelhouse(&p);
    spy(&p, "uv");
    p
}

/// The installed version of `myproj`, from the venv's metadata.
fn myproj_version(p: &Project) -> String {
    py(
        p,
        "import importlib.metadata as m; print(m.version('myproj'))",
    )
}

/// Issue 18: the key covers what installers read; a comment or a linter's table
/// is not that, and `explain` says which tables changed outside the key.
#[test]
fn a_comment_or_a_tool_table_leaves_the_venv_and_explain_names_the_table() {
    let p = myproj_project(
        "venv-uv",
        "\"tinya==1.0\"",
        "\n[tool.ruff]\nline-length = 100\n",
    );
    assert_eq!(build(&p, &[]).status("venv"), "built");
    let runs = installer_runs(&p, "uv").len();
    let key = status(&p).tier("venv")["key"].clone();

    let edited = p
        .read("pyproject.toml")
        .replace("[project]\n", "# what we ship\n[project]\n")
        .replace("line-length = 100", "line-length = 120  # wider")
        + "\n[tool.pytest.ini_options]\naddopts = \"-q\"\n";
    p.write("pyproject.toml", edited);
    let st = status(&p);
    assert_eq!(st.status("venv"), "fresh", "{}", st.stdout);
    assert_eq!(st.tier("venv")["key"], key, "the key is unchanged");
    assert_eq!(build(&p, &[]).status("venv"), "fresh");
    assert_eq!(installer_runs(&p, "uv").len(), runs, "no installer ran");

    let ex = tiers(&p, &["-v", "explain", "venv"]).expect_code(0);
    assert!(
        ex.stdout.contains("fresh: nothing the key covers changed"),
        "{}",
        ex.stdout
    );
    for line in [
        "option pyproject.toml: keyed on = \"its dependency tables\"",
        "option pyproject.toml: [project] dependencies = [\"tinya==1.0\"]",
        "option pyproject.toml: [build-system] = {\"backend-path\":[\"_backend\"],\"build-backend\":\"tiny_backend\",\"requires\":[]}",
    ] {
        assert!(ex.stdout.contains(line), "no `{line}` in:\n{}", ex.stdout);
    }
    assert!(
        !ex.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("option") && l.contains("tool.ruff")),
        "uncovered tables are not in the key document:\n{}",
        ex.stdout
    );
    let note = "`pyproject.toml`: [tool.pytest.ini_options] was added, [tool.ruff] changed; the key does not cover them";
    assert!(ex.stdout.contains(&format!("  - {note}")), "{}", ex.stdout);
    // What `tiers explain` prints once the engine asks the kind.
    let by_hand = ByHand::new(&p, "venv-uv", tiers_venv_uv::backend());
    let cx = by_hand.cx(&p);
    let notes = by_hand
        .rt
        .block_on(tiers_core::Tier::uncovered_changes(
            &by_hand.tier,
            &cx,
            &by_hand.entry,
        ))
        .unwrap();
    assert_eq!(notes, [note]);
}

/// Issue 18: every edit of what the installer reads rebuilds, naming the table.
#[test]
fn each_dependency_edit_rebuilds_naming_its_table() {
    let p = myproj_project("venv-uv", "\"tinya==1.0\"", "");
    assert_eq!(build(&p, &[]).status("venv"), "built");
    assert!(!imports(&p, "tinyb"));
    let edits: &[(&str, &str, &str, &str)] = &[
        (
            "a dependency added",
            "\"tinya==1.0\"]",
            "\"tinya==1.0\", \"tinyb\"]",
            "[project] dependencies",
        ),
        (
            "a specifier changed",
            "\"tinya==1.0\",",
            "\"tinya==2.0\",",
            "[project] dependencies",
        ),
        (
            "requires-python",
            "\">=3.8\"",
            "\">=3.9\"",
            "[project] requires-python",
        ),
        (
            "an extra",
            "\n[build-system]",
            "\n[project.optional-dependencies]\ntest = [\"tinyb\"]\n\n[build-system]",
            "[project] optional-dependencies",
        ),
        (
            "a group",
            "[build-system]",
            "[dependency-groups]\ndev = [\"tinyb\"]\n\n[build-system]",
            "[dependency-groups]",
        ),
    ];
    let mut runs = installer_runs(&p, "uv").len();
    for (what, from, to, table) in edits {
        let text = p.read("pyproject.toml");
        assert!(text.contains(from), "{what}: no `{from}` in:\n{text}");
        p.write("pyproject.toml", text.replacen(from, to, 1));
        let run = build(&p, &[]);
        assert_eq!(run.status("venv"), "rebuilt", "{what}: {}", run.stdout);
        let reasons = run.reasons("venv");
        let named = format!("the option `pyproject.toml: {table}` changed from ");
        assert!(
            reasons.iter().any(|r| r.starts_with(&named))
                && reasons.contains(&"the input `pyproject.toml` changed".to_owned()),
            "{what}: {reasons:?}"
        );
        let now = installer_runs(&p, "uv").len();
        assert_eq!(
            now,
            runs + 2,
            "{what}: a full rebuild (uv venv, uv pip install)"
        );
        runs = now;
    }
    assert_eq!(py(&p, "import tinya, tinyb; print(tinya.VERSION)"), "2.0");

    // An index: what uv resolves from changes (not built: it is not reachable).
    p.write(
        "pyproject.toml",
        p.read("pyproject.toml")
            + "\n[[tool.uv.index]]\nname = \"mirror\"\nurl = \"https://mirror.invalid/simple\"\n",
    );
    let st = status(&p);
    assert_eq!(st.status("venv"), "stale");
    assert!(
        st.reasons("venv").iter().any(|r| r.starts_with(
            "the option `pyproject.toml: [tool.uv] index` changed from nothing to [{"
        )),
        "{:?}",
        st.reasons("venv")
    );
}

/// Issue 18: a version bump is the project's own metadata, not a dependency change.
#[test]
fn a_version_bump_is_named_and_installs_the_new_version() {
    let p = myproj_project("venv-uv", "\"tinya==1.0\"", "");
    assert_eq!(build(&p, &[]).status("venv"), "built");
    assert_eq!(myproj_version(&p), "0.1");
    let key = status(&p).tier("venv")["key"].clone();
    let venv = venv_path(&p);

    p.write("pyproject.toml", myproj("\"tinya==1.0\"", "0.2", ""));
    let st = status(&p);
    assert_eq!(st.status("venv"), "stale");
    assert_eq!(
        st.tier("venv")["key"],
        key,
        "the dependencies key is unchanged"
    );
    let bumped = ["the option `pyproject.toml: [project] version` changed from \"0.1\" to \"0.2\""];
    assert_eq!(st.reasons("venv"), bumped);
    let before = installer_runs(&p, "uv").len();
    let run = build(&p, &[]);
    assert_eq!(run.status("venv"), "rebuilt");
    assert_eq!(run.reasons("venv"), bumped);
    assert_eq!(venv_path(&p), venv, "the same entry");
    assert_eq!(myproj_version(&p), "0.2");
    // Updated in place: the project alone is installed again, no dependency.
    let ran = installer_runs(&p, "uv")[before..].to_vec();
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert!(ran[0].contains("--no-deps"), "{ran:?}");
    assert!(venv.join("bin/python").exists());
    assert_eq!(build(&p, &[]).status("venv"), "fresh");

    // Without the project installed, its version is not the venv's business.
    p.write(
        "tiers.toml",
        format!("{}install_project = false\n", p.read("tiers.toml")),
    );
    assert_eq!(build(&p, &[]).status("venv"), "rebuilt");
    p.write("pyproject.toml", myproj("\"tinya==1.0\"", "0.3", ""));
    assert_eq!(build(&p, &[]).status("venv"), "fresh");
}

/// A venv tier of `p` made by hand, with its current entry: what the engine hands a
/// kind, for the calls the engine does not make yet (issue 18).
struct ByHand {
    tier: tiers_venv::VenvTier,
    entry: tiers_core::Entry,
    root: PathBuf,
    rt: tokio::runtime::Runtime,
}

impl ByHand {
    /// `p`'s tier, configured as [`myproj_project`] configures it.
    fn new(p: &Project, kind: &str, backend: std::sync::Arc<dyn tiers_venv::Backend>) -> ByHand {
        let options = tiers_venv::Options {
            find_links: vec!["wheels".into()],
            no_index: true,
            uv: (kind == "venv-uv").then(|| "spy/uv".into()),
            ..tiers_venv::Options::default()
        };
        ByHand::with(p, kind, options, backend)
    }

    /// `p`'s tier of `kind` with `options` (those of its `tiers.toml`).
    fn with(
        p: &Project,
        kind: &str,
        options: tiers_venv::Options,
        backend: std::sync::Arc<dyn tiers_venv::Backend>,
    ) -> ByHand {
        let tier = tiers_venv::VenvTier::with_options("venv", kind, options, backend).unwrap();
        let root = p.cache_dir().join("venv");
        // The entry `paths` reports, read from its marker as the engine reads it.
        let dir = venv_path(p);
        let marker: tiers_core::Marker = serde_json::from_value(marker(p)).unwrap();
        let entry = tiers_core::Entry {
            key: marker.key,
            build_dir: dir.clone(),
            dir,
            doc: std::sync::Arc::new(marker.doc),
            data: marker.data,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        ByHand {
            tier,
            entry,
            root,
            rt,
        }
    }

    /// The engine's view of one run: inputs are hashed once per run.
    fn cx(&self, p: &Project) -> tiers_core::Context {
        let inputs = std::sync::Arc::new(tiers_core::Inputs::new(p.root(), vec![p.cache_dir()]));
        tiers_core::Context::new(
            "venv",
            p.root().to_owned(),
            p.cache_dir(),
            self.root.clone(),
            inputs,
        )
    }
}

/// The inode of `tinyb/__init__.py` in the venv: a re-install of the dependency
/// writes a new file.
fn tinyb_inode(p: &Project) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let file = py(p, "import tinyb; print(tinyb.__file__)");
    std::fs::metadata(file).unwrap().ino()
}

/// Issue 18, through `tiers build`: a version bump re-installs the project alone
/// into the same venv, with uv and with pip; the dependency's files are the ones
/// installed before.
#[test]
fn a_version_bump_reinstalls_the_project_alone_with_uv_and_pip() {
    for kind in ["venv-uv", "venv-pip"] {
        let p = myproj_project(kind, "\"tinyb\"", "");
        assert_eq!(build(&p, &[]).status("venv"), "built", "{kind}");
        let venv = venv_path(&p);
        std::fs::write(venv.join("sentinel"), "").unwrap();
        let dependency = tinyb_inode(&p);
        p.write("pyproject.toml", myproj("\"tinyb\"", "0.2", ""));
        let run = build(&p, &[]);
        assert_eq!(run.status("venv"), "rebuilt", "{kind}");
        let summary = run.tier("venv")["summary"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            summary.contains("re-installed the project alone"),
            "{kind}: {summary}"
        );
        assert_eq!(myproj_version(&p), "0.2", "{kind}");
        assert!(venv.join("sentinel").exists(), "{kind}: the same venv");
        assert_eq!(tinyb_inode(&p), dependency, "{kind}: the dependency stayed");
        assert_eq!(build(&p, &[]).status("venv"), "fresh", "{kind}");
    }
}

/// Issue 18: what the engine does through `Tier::update_in_place` when the probe
/// finds a venv of the same key stale: the tier re-installs the project alone
/// (`--no-deps`), its dependencies untouched, and records the new metadata.
fn update_in_place_reinstalls_the_project_alone(
    kind: &str,
    backend: std::sync::Arc<dyn tiers_venv::Backend>,
) {
    use tiers_core::{Freshness, Tier};

    let p = myproj_project(kind, "\"tinyb\"", "");
    // Built with the environment this process keys in: without `PIP_NO_INDEX`,
    // an index variable pip's key holds (`find_links` and `no_index` are set).
    let out = p
        .cmd(&["build", "--json"])
        .env("UV_OFFLINE", "1")
        .env("PATH", wheels::tools_path())
        .env_remove("VIRTUAL_ENV")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let venv = venv_path(&p);
    std::fs::write(venv.join("sentinel"), "").unwrap();
    let dependency = tinyb_inode(&p);
    let runs = installer_runs(&p, "uv").len();

    let by_hand = ByHand::new(&p, kind, backend);
    let (tier, rt) = (&by_hand.tier, &by_hand.rt);
    let mut entry = by_hand.entry.clone();

    p.write("pyproject.toml", myproj("\"tinyb\"", "0.2", ""));
    let cx = by_hand.cx(&p);
    assert_eq!(
        rt.block_on(tier.key(&cx)).unwrap().key(),
        entry.key,
        "the same key"
    );
    let Freshness::Stale(reasons) = rt.block_on(tier.probe(&cx, &entry)).unwrap() else {
        panic!("a version bump makes the venv stale");
    };
    let reasons: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    assert_eq!(
        reasons,
        ["the option `pyproject.toml: [project] version` changed from \"0.1\" to \"0.2\""]
    );
    let outcome = rt
        .block_on(tier.update_in_place(&cx, &entry))
        .unwrap()
        .expect("updated in place");
    let backend_name = kind.trim_start_matches("venv-");
    assert_eq!(
        outcome.summary.as_deref(),
        Some(format!("re-installed the project alone with {backend_name} (its dependencies are unchanged)").as_str())
    );
    assert_eq!(outcome.data["project"]["[project] version"], "0.2");
    assert_eq!(myproj_version(&p), "0.2", "the new version is the venv's");
    assert!(venv.join("sentinel").exists(), "the same venv");
    assert_eq!(
        tinyb_inode(&p),
        dependency,
        "the dependency was not re-installed"
    );
    if kind == "venv-uv" {
        let new = installer_runs(&p, "uv")[runs..].to_vec();
        assert!(
            new.len() == 1 && new[0].starts_with("pip install --no-deps --reinstall --python "),
            "one uv run, for the project alone: {new:?}"
        );
    }
    entry.data = outcome.data;
    assert_eq!(
        rt.block_on(tier.probe(&cx, &entry)).unwrap(),
        Freshness::Fresh
    );

    // A dependency change is no update: the key changes.
    p.write(
        "pyproject.toml",
        myproj("\"tinyb\", \"tinya==1.0\"", "0.3", ""),
    );
    let cx = by_hand.cx(&p);
    assert_ne!(rt.block_on(tier.key(&cx)).unwrap().key(), entry.key);
    assert!(rt
        .block_on(tier.update_in_place(&cx, &entry))
        .unwrap()
        .is_none());
    assert_eq!(myproj_version(&p), "0.2", "nothing was installed");
}

#[test]
fn uv_updates_a_version_bump_in_place() {
    update_in_place_reinstalls_the_project_alone("venv-uv", tiers_venv_uv::backend());
}

#[test]
fn pip_updates_a_version_bump_in_place() {
    update_in_place_reinstalls_the_project_alone("venv-pip", tiers_venv_pip::backend());
}

/// A poetry package (`[tool.poetry] version`) with locked path dependencies.
fn poetry_package(version: &str) -> String {
    format!(
        "[tool.poetry]\nname = \"myproj\"\nversion = \"{version}\"\ndescription = \"\"\nauthors = []\npackages = [{{ include = \"myproj\" }}]\n\n[tool.poetry.dependencies]\npython = \">=3.8\"\ntinyb = {{ path = \"wheels/tinyb-1.0-py3-none-any.whl\" }}\ntinya = {{ path = \"wheels/tinya-1.0-py3-none-any.whl\" }}\n\n[build-system]\nrequires = [\"poetry-core\"]\nbuild-backend = \"poetry.core.masonry.api\"\n"
    )
}

#[test]
fn poetry_updates_a_version_bump_in_place() {
    use tiers_core::{Freshness, Tier};

    let p = poetry_project(&poetry_package("0.1"), &[("myproj/__init__.py", "X = 1\n")]);
    assert_eq!(build(&p, &[]).status("venv"), "built");
    assert_eq!(myproj_version(&p), "0.1");
    let dependency = tinyb_inode(&p);
    let runs = installer_runs(&p, "poetry").len();

    let options = tiers_venv::Options {
        poetry: Some("spy/poetry".into()),
        ..tiers_venv::Options::default()
    };
    let by_hand = ByHand::with(&p, "venv-poetry", options, tiers_venv_poetry::backend());
    p.write("pyproject.toml", poetry_package("0.2"));
    let cx = by_hand.cx(&p);
    let (tier, entry) = (&by_hand.tier, &by_hand.entry);
    assert_eq!(by_hand.rt.block_on(tier.key(&cx)).unwrap().key(), entry.key);
    assert_eq!(
        by_hand.rt.block_on(tier.probe(&cx, entry)).unwrap(),
        Freshness::Stale(vec![tiers_core::Reason::OptionChanged {
            name: "pyproject.toml: [tool.poetry] version".into(),
            old: Some("0.1".into()),
            new: Some("0.2".into()),
        }])
    );
    let outcome = by_hand
        .rt
        .block_on(tier.update_in_place(&cx, entry))
        .unwrap()
        .expect("updated in place");
    assert_eq!(outcome.data["project"]["[tool.poetry] version"], "0.2");
    assert_eq!(myproj_version(&p), "0.2");
    assert_eq!(
        tinyb_inode(&p),
        dependency,
        "the dependency was not re-installed"
    );
    let new = installer_runs(&p, "poetry")[runs..].to_vec();
    assert!(
        new.len() == 1 && new[0].starts_with("install --no-interaction --no-ansi --only-root"),
        "one poetry run, for the project alone: {new:?}"
    );
}

/// Issue 18: a requirement file's comments are not requirements; a file it
/// includes with `-r` is a manifest.
#[test]
fn a_requirement_comment_leaves_the_venv_and_an_included_file_is_a_manifest() {
    let p = uv_project("-r base.txt\n", "");
    p.write("base.txt", "tinya==1.0\n");
    assert_eq!(build(&p, &[]).status("venv"), "built");
    assert_eq!(py(&p, "import tinya; print(tinya.VERSION)"), "1.0");
    let m = marker(&p);
    assert_eq!(
        m["used_inputs"],
        serde_json::json!(["base.txt", "requirements.txt"])
    );
    let runs = installer_runs(&p, "uv").len();

    p.write(
        "requirements.txt",
        "# pinned in base.txt\n-r base.txt   # the base\n\n",
    );
    assert_eq!(build(&p, &[]).status("venv"), "fresh");
    assert_eq!(installer_runs(&p, "uv").len(), runs);
    let ex = tiers(&p, &["-v", "explain", "venv"]).expect_code(0);
    assert!(
        ex.stderr.contains(
            "`requirements.txt` changed only in comments, blank lines or formatting, which the key does not cover"
        ),
        "{}",
        ex.stderr
    );

    p.write("base.txt", "tinya==2.0\n");
    expect_rebuilt(
        &p,
        &[
            "the option `base.txt: requirements` changed from [\"tinya==1.0\"] to [\"tinya==2.0\"]",
            "the input `base.txt` changed",
        ],
    );
    assert_eq!(py(&p, "import tinya; print(tinya.VERSION)"), "2.0");
}

/// Issue 18: a pyproject.toml that does not parse is keyed on its bytes, and the
/// key document says why.
#[test]
fn a_pyproject_that_does_not_parse_is_keyed_on_its_bytes_and_says_why() {
    let p = myproj_project("venv-uv", "\"tinya==1.0\"", "");
    assert_eq!(build(&p, &[]).status("venv"), "built");
    p.write(
        "pyproject.toml",
        p.read("pyproject.toml") + "\n[tool.ruff\n",
    );
    let st = status(&p);
    assert_eq!(st.status("venv"), "stale");
    let reasons = st.reasons("venv");
    assert!(
        reasons.iter().any(|r| r.starts_with(
            "the option `pyproject.toml: keyed on` changed from \"its dependency tables\" to \"its bytes: it does not parse as TOML ("
        )),
        "{reasons:?}"
    );
    let ex = tiers(&p, &["explain", "venv"]).expect_code(0);
    assert!(
        ex.stdout
            .contains("option pyproject.toml: keyed on = \"its bytes: it does not parse as TOML ("),
        "{}",
        ex.stdout
    );
    assert!(
        !ex.stdout
            .contains("option pyproject.toml: [project] dependencies ="),
        "{}",
        ex.stdout
    );
}

/// Issue 18: `key = "bytes"` keys on every byte, as tiers did before.
#[test]
fn key_bytes_rebuilds_for_any_byte() {
    let p = uv_project("tinya==1.0\n", "key = \"bytes\"\n");
    assert_eq!(build(&p, &[]).status("venv"), "built");
    p.write("requirements.txt", "# a comment\ntinya==1.0\n");
    let run = build(&p, &[]);
    assert_eq!(run.status("venv"), "rebuilt");
    assert_eq!(
        run.reasons("venv"),
        ["the input `requirements.txt` changed"]
    );

    p.write(
        "tiers.toml",
        p.read("tiers.toml").replace("\"bytes\"", "\"words\""),
    );
    let bad = tiers(&p, &["status"]).expect_code(2);
    assert!(
        bad.stderr.contains("words") && bad.stderr.contains("key"),
        "{}",
        bad.stderr
    );
}
