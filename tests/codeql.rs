//! End-to-end tests of the `codeql` kind (issue 4), through the `tiers` binary.
//!
//! The real CodeQL CLI cannot be installed from a package registry here, so these
//! tests run `tests/support/fake-codeql`: a stand-in that follows the documented
//! contract of `codeql version --format=json` and `codeql database create` (options,
//! exit codes 0/2/32, the `codeql-database.yml`/`db-python/`/`src.zip` layout) and
//! logs every call, so a test can count `database create` runs.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use support::{project, Project, Run};

const TIER: &str = "[tiers.db]\nkind = \"codeql\"\n";

/// A copy of the stand-in installed as `<dir>/bin/codeql`, with its call log.
struct Codeql {
    dir: tempfile::TempDir,
}

impl Codeql {
    fn install() -> Codeql {
        let dir = tempfile::Builder::new()
            .prefix("fake-codeql-")
            .tempdir()
            .expect("temp dir");
        let c = Codeql { dir };
        c.reinstall();
        c
    }

    /// Copy the stand-in over the installed binary, as an upgrade would.
    fn reinstall(&self) {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake-codeql");
        std::fs::create_dir_all(self.bin_dir()).expect("mkdir bin");
        std::fs::copy(&src, self.bin()).expect("install the stand-in");
        // A new release's binary has a new mtime even within one clock tick.
        let f = std::fs::File::options()
            .write(true)
            .open(self.bin())
            .expect("open the binary");
        let now = SystemTime::now() + Duration::from_secs(self.calls().len() as u64 + 1);
        f.set_modified(now).expect("set mtime");
    }

    fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn bin(&self) -> PathBuf {
        self.bin_dir().join("codeql")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    /// Every call's argv, in order.
    fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON argv"))
            .collect()
    }

    fn creates(&self) -> Vec<Vec<String>> {
        self.calls()
            .into_iter()
            .filter(|c| c.starts_with(&["database".into(), "create".into()]))
            .collect()
    }

    fn versions(&self) -> usize {
        self.calls().iter().filter(|c| c[0] == "version").count()
    }

    /// `tiers ARGS…` on `p` with this CLI in `CODEQL_PATH` and `env` set.
    fn cmd(&self, p: &Project, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut c = p.cmd(args);
        c.env("CODEQL_PATH", self.bin())
            .env("FAKE_CODEQL_LOG", self.log())
            .env_remove("FAKE_CODEQL_FAIL")
            .env_remove("FAKE_CODEQL_VERSION");
        c.envs(env.iter().copied());
        c
    }

    fn tiers(&self, p: &Project, args: &[&str], env: &[(&str, &str)]) -> Run {
        run(self.cmd(p, args, env))
    }

    /// `tiers build --json`, expecting exit 0.
    fn build(&self, p: &Project, env: &[(&str, &str)]) -> Run {
        self.tiers(p, &["build", "--json"], env).expect_code(0)
    }

    fn status(&self, p: &Project) -> Run {
        self.tiers(p, &["status", "--json"], &[]).expect_code(0)
    }

    fn paths(&self, p: &Project) -> Value {
        self.tiers(p, &["paths", "--json"], &[])
            .expect_code(0)
            .json()
    }
}

fn run(mut c: Command) -> Run {
    let out = c.output().expect("run tiers");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn db_path(paths: &Value) -> PathBuf {
    PathBuf::from(
        paths["tiers"]["db"]["path"]
            .as_str()
            .unwrap_or_else(|| panic!("no path for tier `db` in {paths}")),
    )
}

/// Published entries of tier `db` (directories holding a marker).
fn entries(p: &Project) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(p.cache_dir().join("db"))
        .map(|r| {
            r.flatten()
                .map(|e| e.path())
                .filter(|d| d.join("entry.json").is_file())
                .map(|d| d.canonicalize().expect("canonical entry dir"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn marker(db: &Path) -> Value {
    let text = std::fs::read_to_string(db.parent().unwrap().join("entry.json")).expect("marker");
    serde_json::from_str(&text).expect("marker JSON")
}

/// The names in a database's `src.zip`, listed by python3's zipfile.
fn src_zip(db: &Path) -> Vec<String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg("import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))")
        .arg(db.join("src.zip"))
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn python_project() -> Project {
    project()
        .file("tiers.toml", TIER)
        .file("app.py", "import pkg.util\nprint(pkg.util.answer())\n")
        .file("pkg/__init__.py", "")
        .file("pkg/util.py", "def answer():\n    return 42\n")
        .file("README.md", "# demo\n")
        .build()
}

#[test]
fn an_edit_builds_a_new_database_and_a_revert_reuses_the_old_one() {
    let cq = Codeql::install();
    let p = python_project();

    let first = cq.build(&p, &[]);
    assert_eq!(first.status("db"), "built");
    let db1 = db_path(&cq.paths(&p));
    assert!(db1.ends_with("db"), "{}", db1.display());
    let yml = std::fs::read_to_string(db1.join("codeql-database.yml")).expect("metadata");
    assert!(yml.contains("finalised: true"), "{yml}");
    assert!(db1.join("db-python").is_dir());
    assert_eq!(cq.creates().len(), 1);

    // The database was created in a new directory of its own, never over one.
    let create = &cq.creates()[0];
    assert!(
        !create.iter().any(|a| a.contains("overwrite")),
        "{create:?}"
    );
    assert!(
        create.contains(&"--language=python".to_owned()),
        "{create:?}"
    );
    assert!(
        create.contains(&"--build-mode=none".to_owned()),
        "{create:?}"
    );
    let root = p.root().canonicalize().unwrap();
    assert!(
        create.contains(&format!("--source-root={}", root.display())),
        "{create:?}"
    );
    assert!(create.last().unwrap().contains("/.staging/"), "{create:?}");

    p.write("pkg/util.py", "def answer():\n    return 43\n");
    let second = cq.build(&p, &[]);
    assert_eq!(second.status("db"), "rebuilt");
    assert_eq!(second.reasons("db"), ["the input `pkg/util.py` changed"]);
    let db2 = db_path(&cq.paths(&p));
    assert_ne!(db1, db2);
    assert!(
        db1.join("codeql-database.yml").is_file(),
        "the old database is kept"
    );
    assert_eq!(cq.creates().len(), 2);
    assert_eq!(entries(&p).len(), 2);

    p.write("pkg/util.py", "def answer():\n    return 42\n");
    assert_eq!(cq.status(&p).status("db"), "fresh");
    let third = cq.build(&p, &[]);
    assert_eq!(third.status("db"), "fresh");
    assert_eq!(cq.creates().len(), 2, "a revert runs no `database create`");
    assert_eq!(db_path(&cq.paths(&p)), db1);
    assert_eq!(
        PathBuf::from(third.tier("db")["path"].as_str().unwrap()),
        db1
    );
}

#[test]
fn the_used_inputs_are_the_declared_files_in_src_zip() {
    let cq = Codeql::install();
    let p = python_project();
    cq.build(&p, &[]);
    let db = db_path(&cq.paths(&p));
    let root = p.root().canonicalize().unwrap();
    let prefix = root.to_string_lossy().trim_start_matches('/').to_owned();
    let mut names = src_zip(&db);
    names.sort();
    assert_eq!(
        names,
        ["app.py", "pkg/__init__.py", "pkg/util.py"].map(|f| format!("{prefix}/{f}"))
    );
    assert_eq!(
        marker(&db)["used_inputs"],
        serde_json::json!(["app.py", "pkg/__init__.py", "pkg/util.py"])
    );
    assert_eq!(marker(&db)["data"]["cli_version"], "2.20.1");
    assert_eq!(marker(&db)["data"]["language"], "python");
}

#[test]
fn editing_a_non_python_or_an_excluded_file_builds_nothing() {
    let cq = Codeql::install();
    let p = python_project();
    p.write("tiers.toml", format!("{TIER}exclude = [\"tests/**\"]\n"));
    p.write("tests/test_util.py", "assert True\n");
    assert_eq!(cq.build(&p, &[]).status("db"), "built");
    let db = db_path(&cq.paths(&p));

    // The globs reach the CLI, so the database holds no file the key ignores.
    let create = &cq.creates()[0];
    let config = create
        .iter()
        .find_map(|a| a.strip_prefix("--codescanning-config="))
        .unwrap_or_else(|| panic!("no --codescanning-config in {create:?}"));
    assert!(config.contains("/.staging/"), "{config}");
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(db.with_file_name("codescanning-config.yml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        config["paths-ignore"],
        serde_json::json!(["tests/**", ".tiers"])
    );
    assert!(
        !src_zip(&db).iter().any(|n| n.contains("/tests/")),
        "{:?}",
        src_zip(&db)
    );

    p.write("README.md", "# edited\n");
    p.write("tests/test_util.py", "assert False\n");
    p.write("notes.txt", "a new non-Python file\n");
    assert_eq!(cq.status(&p).status("db"), "fresh");
    assert_eq!(cq.build(&p, &[]).status("db"), "fresh");
    assert_eq!(cq.creates().len(), 1);
    assert_eq!(db_path(&cq.paths(&p)), db);
}

#[test]
fn a_new_cli_version_rebuilds_with_a_toolchain_reason() {
    let cq = Codeql::install();
    let p = python_project();
    let old = [("FAKE_CODEQL_VERSION", "2.20.0")];
    assert_eq!(cq.build(&p, &old).status("db"), "built");
    let db1 = db_path(&cq.paths(&p));

    cq.reinstall();
    let new = [("FAKE_CODEQL_VERSION", "2.21.0")];
    let status = cq.tiers(&p, &["status", "--json"], &new).expect_code(0);
    assert_eq!(status.status("db"), "stale");
    assert_eq!(
        status.reasons("db"),
        ["the CodeQL CLI changed from 2.20.0 to 2.21.0"]
    );
    let run = cq.build(&p, &new);
    assert_eq!(run.status("db"), "rebuilt");
    assert_eq!(
        run.reasons("db"),
        ["the CodeQL CLI changed from 2.20.0 to 2.21.0"]
    );
    let db2 = db_path(&cq.paths(&p));
    assert_ne!(db1, db2);
    let yml = std::fs::read_to_string(db2.join("codeql-database.yml")).unwrap();
    assert!(yml.contains("cliVersion: 2.21.0"), "{yml}");
    assert!(db1.is_dir(), "the database of the old CLI is kept");
    assert_eq!(cq.creates().len(), 2);
}

#[test]
fn the_version_is_asked_once_and_a_warm_status_spawns_no_cli() {
    let cq = Codeql::install();
    let p = python_project();
    cq.build(&p, &[]);
    assert_eq!(cq.versions(), 1, "{:?}", cq.calls());
    assert_eq!(version_records(&p).len(), 1, "the build keeps the version");
    let before = cq.calls().len();
    assert_eq!(cq.status(&p).status("db"), "fresh");
    assert_eq!(cq.build(&p, &[]).status("db"), "fresh");
    assert_eq!(cq.calls().len(), before, "{:?}", cq.calls());
}

#[test]
fn without_the_version_cache_a_changed_version_is_seen_at_once() {
    // A version-manager stub stays the same file while its target changes.
    let cq = Codeql::install();
    let p = python_project();
    p.write("tiers.toml", format!("{TIER}cache_cli_version = false\n"));
    cq.build(&p, &[("FAKE_CODEQL_VERSION", "2.20.0")]);
    let run = cq.build(&p, &[("FAKE_CODEQL_VERSION", "2.20.2")]);
    assert_eq!(run.status("db"), "rebuilt");
    assert_eq!(
        run.reasons("db"),
        ["the CodeQL CLI changed from 2.20.0 to 2.20.2"]
    );
    assert!(version_records(&p).is_empty(), "{:?}", version_records(&p));
}

/// The kept answers of `codeql version`, in the cache dir's tool probes.
fn version_records(p: &Project) -> Vec<PathBuf> {
    std::fs::read_dir(p.cache_dir().join(tiers_core::probe::PROBE_DIR))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|f| {
                    f.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("codeql-version-"))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_failing_create_exits_1_shows_the_tail_and_publishes_nothing() {
    let cq = Codeql::install();
    let p = python_project();
    cq.build(&p, &[]);
    let db1 = db_path(&cq.paths(&p));

    p.write("app.py", "print('changed')\n");
    let run = cq.tiers(&p, &["build"], &[("FAKE_CODEQL_FAIL", "1")]);
    let run = run.expect_code(1);
    assert!(
        run.stderr
            .contains("`codeql database create` exited with status 1"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("| [build-stderr] RuntimeError: the fake extractor was told to fail"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains("failed"), "{}", run.stdout);
    assert_eq!(entries(&p).len(), 1, "nothing was published");
    assert_eq!(db_path(&cq.paths(&p)), db1);
    let staging = p.cache_dir().join("db/.staging");
    let left: Vec<_> = std::fs::read_dir(&staging)
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staging left behind: {left:?}");

    // The JSON report says the same.
    let json = cq.tiers(&p, &["build", "--json"], &[("FAKE_CODEQL_FAIL", "2")]);
    let json = json.expect_code(1);
    assert_eq!(json.status("db"), "failed");
    let err = json.tier("db")["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(err.contains("exited with status 2"), "{err}");

    // Once the CLI works again, the edit is built.
    assert_eq!(cq.build(&p, &[]).status("db"), "rebuilt");
    assert_ne!(db_path(&cq.paths(&p)), db1);
}

#[test]
fn no_source_is_reported_as_exit_code_32_not_a_crash() {
    let cq = Codeql::install();
    let p = project()
        .file("tiers.toml", TIER)
        .file("README.md", "no python here\n")
        .build();
    let run = cq.tiers(&p, &["build"], &[]).expect_code(1);
    assert!(
        run.stderr
            .contains("CodeQL found no python source code to extract under"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("exit code 32"), "{}", run.stderr);
    assert!(
        run.stderr.contains("No source code was seen"),
        "{}",
        run.stderr
    );
    assert!(entries(&p).is_empty());
}

#[test]
fn retention_keeps_the_newest_databases_and_never_the_one_in_use() {
    let cq = Codeql::install();
    let p = python_project();
    p.write("tiers.toml", format!("{TIER}keep = 2\n"));
    let mut dbs = Vec::new();
    for i in 0..4 {
        p.write("app.py", format!("print({i})\n"));
        cq.build(&p, &[]);
        dbs.push(db_path(&cq.paths(&p)));
    }
    assert_eq!(entries(&p), {
        let mut newest: Vec<PathBuf> = dbs[2..]
            .iter()
            .map(|d| d.parent().unwrap().to_owned())
            .collect();
        newest.sort();
        newest
    });
    assert!(!dbs[0].exists() && !dbs[1].exists());

    // Go back to the state of the second newest: it becomes the one in use.
    p.write("app.py", "print(2)\n");
    assert_eq!(cq.build(&p, &[]).status("db"), "fresh");

    // A byte budget no entry fits: everything goes but the entry in use.
    p.write("tiers.toml", format!("{TIER}keep = 2\nmax_bytes = 1\n"));
    let dry = cq.tiers(&p, &["gc", "--dry-run"], &[]).expect_code(0);
    assert!(
        dry.stdout.contains("would remove 1 entries"),
        "{}",
        dry.stdout
    );
    assert_eq!(entries(&p).len(), 2, "a dry run removes nothing");
    cq.tiers(&p, &["gc"], &[]).expect_code(0);
    assert_eq!(entries(&p), [dbs[2].parent().unwrap().to_owned()]);
    assert_eq!(db_path(&cq.paths(&p)), dbs[2]);
    assert!(dbs[2].join("codeql-database.yml").is_file());
    assert_eq!(cq.creates().len(), 4);
}

#[test]
fn retention_keeps_five_databases_by_default() {
    let cq = Codeql::install();
    let p = python_project();
    for i in 0..7 {
        p.write("app.py", format!("print({i})\n"));
        cq.build(&p, &[]);
    }
    assert_eq!(entries(&p).len(), 5);
}

#[test]
fn without_the_cli_the_tier_is_skipped_unless_required() {
    let p = python_project();
    let empty = tempfile::tempdir().unwrap();
    let no_cli = |args: &[&str]| {
        let mut c = p.cmd(args);
        c.env_remove("CODEQL_PATH").env("PATH", empty.path());
        run(c)
    };
    let skipped = no_cli(&["build", "--json"]).expect_code(0);
    assert_eq!(skipped.status("db"), "skipped");
    let why = skipped.reasons("db").join(" ");
    assert!(why.contains("the CodeQL CLI is not installed"), "{why}");
    assert!(why.contains("no `codeql` is on PATH"), "{why}");
    assert_eq!(
        no_cli(&["status", "--json"]).expect_code(0).status("db"),
        "skipped"
    );

    p.write("tiers.toml", format!("{TIER}required = true\n"));
    let failed = no_cli(&["build"]).expect_code(1);
    assert!(
        failed.stderr.contains("the CodeQL CLI is not installed"),
        "{}",
        failed.stderr
    );
    assert!(failed.stderr.contains("CODEQL_PATH"), "{}", failed.stderr);
    assert!(
        failed.stderr.contains("hint: install the CodeQL CLI"),
        "{}",
        failed.stderr
    );

    // A location that is set but wrong is named.
    let mut c = p.cmd(&["build"]);
    c.env("CODEQL_PATH", empty.path().join("nope"));
    let wrong = run(c).expect_code(1);
    assert!(
        wrong.stderr.contains("`CODEQL_PATH` is set to"),
        "{}",
        wrong.stderr
    );
}

#[test]
fn the_cli_is_found_on_path_and_through_the_codeql_option() {
    let cq = Codeql::install();
    let p = python_project();
    let path = format!(
        "{}:{}",
        cq.bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut c = p.cmd(&["build", "--json"]);
    c.env_remove("CODEQL_PATH")
        .env("PATH", &path)
        .env("FAKE_CODEQL_LOG", cq.log());
    assert_eq!(run(c).expect_code(0).status("db"), "built");
    assert_eq!(cq.creates().len(), 1);

    let q = python_project();
    q.write(
        "tiers.toml",
        format!("{TIER}codeql = \"{}\"\n", cq.bin().display()),
    );
    let mut c = q.cmd(&["build", "--json"]);
    c.env_remove("CODEQL_PATH").env("FAKE_CODEQL_LOG", cq.log());
    assert_eq!(run(c).expect_code(0).status("db"), "built");
    assert_eq!(cq.creates().len(), 2);
}

#[test]
fn threads_and_ram_reach_the_cli_but_not_the_key_and_extractor_options_do_both() {
    let cq = Codeql::install();
    let p = python_project();
    p.write("tiers.toml", format!("{TIER}threads = 2\nram = 2048\n"));
    cq.build(&p, &[]);
    let create = cq.creates().remove(0);
    assert!(create.contains(&"--threads=2".to_owned()), "{create:?}");
    assert!(create.contains(&"--ram=2048".to_owned()), "{create:?}");

    p.write("tiers.toml", format!("{TIER}threads = 1\n"));
    assert_eq!(cq.build(&p, &[]).status("db"), "fresh");

    p.write(
        "tiers.toml",
        format!("{TIER}threads = 1\nextractor_options = {{ \"python.opt\" = true }}\n"),
    );
    let run = cq.build(&p, &[]);
    assert_eq!(run.status("db"), "rebuilt");
    assert_eq!(
        run.reasons("db"),
        ["the option `extractor_options` changed from {} to {\"python.opt\":\"true\"}"]
    );
    let create = cq.creates().pop().unwrap();
    assert!(
        create.contains(&"--extractor-option=python.opt=true".to_owned()),
        "{create:?}"
    );
}

#[test]
fn the_cli_output_streams_with_verbose_and_stays_out_of_json() {
    let cq = Codeql::install();
    let p = python_project();
    let json = cq.build(&p, &[]);
    assert!(!json.stderr.contains("Extracted file"), "{}", json.stderr);

    p.write("app.py", "print('v')\n");
    let verbose = cq.tiers(&p, &["-v", "build"], &[]).expect_code(0);
    assert!(
        verbose.stderr.contains("Successfully created database at"),
        "{}",
        verbose.stderr
    );
}

#[test]
fn bad_options_are_configuration_errors() {
    let cq = Codeql::install();
    let p = python_project();
    for (extra, says) in [
        ("build_mode = \"manual\"\n", "needs a build command"),
        ("language = \"java\"\n", "give `inputs`"),
        ("language = \"Py thon\"\n", "is not a CodeQL language name"),
        ("treads = 2\n", "treads"),
    ] {
        p.write("tiers.toml", format!("{TIER}{extra}"));
        let run = cq.tiers(&p, &["build"], &[]).expect_code(2);
        assert!(run.stderr.contains(says), "{extra}: {}", run.stderr);
    }
    assert!(cq.calls().is_empty());
}

/// Issue 7: a declared input the extractor did not put in the database (a config file
/// beside the sources) changes: the database is reused, warm and on a cold cache.
#[test]
fn an_input_the_database_does_not_contain_reuses_it() {
    let cli = Codeql::install();
    let p = project()
        .file(
            "tiers.toml",
            "[tiers.db]\nkind = \"codeql\"\ninputs = [\"**/*.py\", \"setup.cfg\"]\n",
        )
        .file("pkg/a.py", "x = 1\n")
        .file("setup.cfg", "[metadata]\nname = a\n")
        .build();
    let first = cli.build(&p, &[]);
    assert_eq!(first.status("db"), "built");
    assert_eq!(cli.creates().len(), 1);

    p.write("setup.cfg", "[metadata]\nname = b\n");
    let warm = cli.build(&p, &[]);
    assert_eq!(warm.status("db"), "restored", "{}", warm.stdout);
    assert_eq!(
        warm.reasons("db"),
        ["`setup.cfg` changed but the last build did not use it"]
    );
    assert_eq!(cli.creates().len(), 1, "database create ran again");

    // Cold: only the entries and the candidate lists are left.
    for item in std::fs::read_dir(p.cache_dir().join("db"))
        .unwrap()
        .flatten()
    {
        let name = item.file_name().to_string_lossy().into_owned();
        if name.len() != 64 && name != ".candidates" {
            let path = item.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
    p.write("setup.cfg", "[metadata]\nname = c\n");
    let cold = cli.build(&p, &[]);
    assert_eq!(cold.status("db"), "restored", "{}", cold.stdout);
    assert_eq!(cli.creates().len(), 1, "database create ran again");
    assert_eq!(cold.tier("db")["path"], first.tier("db")["path"]);

    // A source the database does contain rebuilds it.
    p.write("pkg/a.py", "x = 2\n");
    assert_eq!(cli.build(&p, &[]).status("db"), "rebuilt");
    assert_eq!(cli.creates().len(), 2);
}
