//! End-to-end tests of the foundation: the engine, the `command` kind and the driver,
//! run through the real `tiers` binary on real projects with python3 commands.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::{project, runs, Project, ProjectBuilder, COUNTING_SCRIPT};

/// One command tier `t` over `*.txt`, running the counting script.
const ONE_TIER: &str = r#"
[tiers.t]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "count.py"]
"#;

/// A command that logs its run, writes a partial file to `$TIERS_OUT`, and then does
/// what the (non-input) file `mode` says: `die` (SIGKILL itself), `hang` (write its
/// pid to `child.pid` and sleep), `fail` (print to stderr, exit 3), or finish.
const CRASH_SCRIPT: &str = r#"import os, pathlib, signal, sys, time
project = pathlib.Path(os.environ["TIERS_PROJECT"])
with open(project / "runs.log", "a") as log:
    log.write(os.environ["TIERS_TIER"] + "\n")
out = pathlib.Path(os.environ["TIERS_OUT"])
(out / "partial.txt").write_text("half")
mode_file = project / "mode"
mode = mode_file.read_text().strip() if mode_file.exists() else ""
if mode == "die":
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "hang":
    tmp = project / "child.pid.tmp"
    tmp.write_text(str(os.getpid()))
    tmp.rename(project / "child.pid")
    time.sleep(60)
if mode == "fail":
    sys.stdout.write("some progress on stdout\n")
    sys.stderr.write("boom: the tool broke\n")
    sys.exit(3)
(out / "result.txt").write_text("complete\n")
"#;

const CRASH_TIER: &str = r#"
[tiers.t]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "crash.py"]
"#;

/// A command that logs its run and takes about a second.
const SLOW_SCRIPT: &str = r#"import os, pathlib, time
project = pathlib.Path(os.environ["TIERS_PROJECT"])
with open(project / "runs.log", "a") as log:
    log.write(os.environ["TIERS_TIER"] + "\n")
time.sleep(1)
(pathlib.Path(os.environ["TIERS_OUT"]) / "result.txt").write_text("done\n")
"#;

/// A downstream command: logs its run and records what it saw of its upstream.
const DOWN_SCRIPT: &str = r#"import os, pathlib
project = pathlib.Path(os.environ["TIERS_PROJECT"])
with open(project / "runs.log", "a") as log:
    log.write(os.environ["TIERS_TIER"] + "\n")
out = pathlib.Path(os.environ["TIERS_OUT"])
up = pathlib.Path(os.environ["TIERS_PATH_UP"])
(out / "up_path.txt").write_text(str(up))
(out / "up_result.txt").write_text((up / "result.txt").read_text())
"#;

const UP_DOWN: &str = r#"
[tiers.up]
kind = "command"
inputs = ["up/*.txt"]
run = ["python3", "count.py", "up"]

[tiers.down]
kind = "command"
inputs = ["down/*.txt"]
run = ["python3", "down.py"]
after = ["up"]
"#;

/// A project with `tiers.toml`, the counting script as `count.py` and `a.txt`.
fn counting(toml: &str) -> ProjectBuilder {
    project()
        .file("tiers.toml", toml)
        .file("count.py", COUNTING_SCRIPT)
        .file("a.txt", "alpha\n")
}

fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn key_of(run: &support::Run, tier: &str) -> String {
    str_of(&run.tier(tier)["key"]).to_owned()
}

fn path_of(run: &support::Run, tier: &str) -> PathBuf {
    PathBuf::from(str_of(&run.tier(tier)["path"]))
}

fn object_keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .unwrap_or_else(|| panic!("expected an object, got {v}"))
        .keys()
        .cloned()
        .collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

fn is_key(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Move `rel`'s mtime forward without touching its content.
fn touch_forward(p: &Project, rel: &str) {
    let f = std::fs::File::options()
        .write(true)
        .open(p.path(rel))
        .expect("open for touch");
    f.set_modified(SystemTime::now() + Duration::from_secs(3600))
        .expect("set mtime");
}

/// Directories at the tier root named like a key (entries, published or not).
fn key_dirs(tier_root: &Path) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(tier_root) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = read
        .flatten()
        .filter(|e| e.path().is_dir() && is_key(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// `paths` reports for `tier` either nothing or a directory holding `entry.json`, and
/// no key-named directory at the tier root lacks its marker. Returns the reported path.
fn assert_only_published(p: &Project, tier: &str) -> Option<PathBuf> {
    let paths = p.paths();
    let info = &paths["tiers"][tier];
    let reported = info["path"].as_str().map(PathBuf::from);
    if let Some(path) = &reported {
        assert!(
            path.join("entry.json").is_file(),
            "paths reports {} which has no entry.json",
            path.display()
        );
        assert_eq!(info["exists"], true);
    } else {
        assert_eq!(info["exists"], false, "{paths}");
    }
    for dir in key_dirs(&p.cache_dir().join(tier)) {
        assert!(
            dir.join("entry.json").is_file(),
            "{} is at the tier root without entry.json",
            dir.display()
        );
    }
    reported
}

/// Poll until `path` holds a number, or panic after `limit`.
fn wait_for_pid(path: &Path, limit: Duration) -> u32 {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if let Ok(pid) = text.trim().parse() {
                return pid;
            }
        }
        assert!(
            started.elapsed() < limit,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigkill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

// 1. First build, then nothing.

#[test]
fn first_build_runs_the_command_once_and_second_build_is_fresh() {
    let p = counting(ONE_TIER).build();
    let first = p.build(&[]);
    assert_eq!(first.status("t"), "built");
    assert_eq!(first.reasons("t"), Vec::<String>::new());
    assert_eq!(runs(&p, "t"), 1);
    let path = path_of(&first, "t");
    assert!(path.join("result.txt").is_file(), "{}", path.display());
    assert!(path.join("entry.json").is_file());

    let second = p.build(&[]);
    assert_eq!(second.status("t"), "fresh");
    assert_eq!(second.reasons("t"), Vec::<String>::new());
    assert_eq!(key_of(&second, "t"), key_of(&first, "t"));
    assert_eq!(path_of(&second, "t"), path);
    assert_eq!(runs(&p, "t"), 1, "a fresh tier ran its command again");
}

// 2. mtime alone is not a change.

#[test]
fn touching_an_input_without_changing_it_runs_nothing() {
    let p = counting(ONE_TIER).build();
    p.build(&[]);
    touch_forward(&p, "a.txt");
    let again = p.build(&[]);
    assert_eq!(again.status("t"), "fresh", "{:?}", again.reasons("t"));
    assert_eq!(runs(&p, "t"), 1);
}

// 3. Content changes, additions and removals, each with its reason.

#[test]
fn changing_a_matched_input_rebuilds_naming_the_file() {
    let p = counting(ONE_TIER).file("b.txt", "beta\n").build();
    let first = p.build(&[]);
    p.write("a.txt", "alpha, edited\n");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "rebuilt");
    assert_eq!(run.reasons("t"), ["the input `a.txt` changed"]);
    assert_ne!(key_of(&run, "t"), key_of(&first, "t"));
    assert_eq!(runs(&p, "t"), 2);
    let reason = &run.tier("t")["reasons"][0];
    assert_eq!(reason["reason"], "input-changed");
    assert_eq!(reason["path"], "a.txt");
}

#[test]
fn adding_a_matched_file_rebuilds_naming_it() {
    let p = counting(ONE_TIER).build();
    p.build(&[]);
    p.write("new.txt", "new\n");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "rebuilt");
    assert_eq!(run.reasons("t"), ["the input `new.txt` was added"]);
    assert_eq!(runs(&p, "t"), 2);
}

#[test]
fn removing_a_matched_file_rebuilds_naming_it() {
    let p = counting(ONE_TIER).file("b.txt", "beta\n").build();
    p.build(&[]);
    p.remove("b.txt");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "rebuilt");
    assert_eq!(run.reasons("t"), ["the input `b.txt` was removed"]);
    assert_eq!(runs(&p, "t"), 2);
}

#[test]
fn returning_to_earlier_inputs_reuses_the_earlier_entry() {
    let p = counting(ONE_TIER).build();
    let first = p.build(&[]);
    p.write("a.txt", "changed\n");
    p.build(&[]);
    p.write("a.txt", "alpha\n");
    let back = p.build(&[]);
    assert_eq!(back.status("t"), "fresh");
    assert_eq!(key_of(&back, "t"), key_of(&first, "t"));
    assert_eq!(runs(&p, "t"), 2);
    assert_eq!(p.paths()["tiers"]["t"]["key"], key_of(&first, "t").as_str());
}

// 4. Files outside `inputs`.

#[test]
fn changing_a_file_outside_inputs_does_not_rebuild() {
    let p = counting(ONE_TIER)
        .file("notes.md", "one\n")
        .file("sub/deep.txt", "not matched by *.txt\n")
        .build();
    p.build(&[]);
    p.write("notes.md", "two\n");
    p.write("sub/deep.txt", "changed\n");
    p.write("sub/other.txt", "added\n");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "fresh", "{:?}", run.reasons("t"));
    assert_eq!(runs(&p, "t"), 1);
}

// 5. Policy: --rebuild, --eager, rebuild = "always" | "never".

const TWO_TIERS: &str = r#"
[tiers.t]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "count.py", "t"]

[tiers.u]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "count.py", "u"]
"#;

#[test]
fn rebuild_flag_forces_only_the_named_tier() {
    let p = counting(TWO_TIERS).build();
    let first = p.build(&[]);
    let run = p.build(&["--rebuild", "t"]);
    assert_eq!(run.status("t"), "rebuilt");
    assert_eq!(run.reasons("t"), ["a rebuild was forced by --rebuild t"]);
    assert_eq!(run.status("u"), "fresh");
    assert_eq!(key_of(&run, "t"), key_of(&first, "t"));
    assert_eq!((runs(&p, "t"), runs(&p, "u")), (2, 1));
    assert!(path_of(&run, "t").join("result.txt").is_file());
}

#[test]
fn rebuild_all_forces_every_tier() {
    let p = counting(TWO_TIERS).build();
    p.build(&[]);
    let run = p.build(&["--rebuild", "all"]);
    for t in ["t", "u"] {
        assert_eq!(run.status(t), "rebuilt");
        assert_eq!(run.reasons(t), ["a rebuild was forced by --rebuild all"]);
    }
    assert_eq!((runs(&p, "t"), runs(&p, "u")), (2, 2));
}

#[test]
fn rebuild_flag_naming_an_unknown_tier_is_a_usage_error() {
    let p = counting(ONE_TIER).build();
    p.build(&[]);
    let before = p.cache_snapshot();
    let run = p.tiers(&["build", "--rebuild", "nope"]).expect_code(2);
    assert!(run.stderr.contains("`nope`"), "{}", run.stderr);
    assert_eq!(p.cache_snapshot(), before);
    assert_eq!(runs(&p, "t"), 1);
}

#[test]
fn eager_forces_eager_tiers_only() {
    let p = counting(
        r#"
[tiers.e]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "count.py", "e"]

[tiers.lazy]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "count.py", "lazy"]
eager = false
"#,
    )
    .build();
    p.build(&[]);
    let run = p.build(&["--eager"]);
    assert_eq!(run.status("e"), "rebuilt");
    assert_eq!(run.reasons("e"), ["a rebuild was forced by --eager"]);
    assert_eq!(run.status("lazy"), "fresh");
    assert_eq!((runs(&p, "e"), runs(&p, "lazy")), (2, 1));
}

#[test]
fn rebuild_always_rebuilds_every_time_and_says_why() {
    let p = counting(
        r#"
[tiers.t]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "count.py"]
rebuild = "always"
"#,
    )
    .build();
    assert_eq!(p.build(&[]).status("t"), "built");
    for n in 2..=3 {
        let run = p.build(&[]);
        assert_eq!(run.status("t"), "rebuilt");
        assert_eq!(
            run.reasons("t"),
            ["a rebuild was forced by `rebuild = \"always\"`"]
        );
        assert_eq!(runs(&p, "t"), n);
    }
    let status = p.status(&[]).expect_code(0);
    assert_eq!(status.status("t"), "stale");
    assert_eq!(
        status.reasons("t"),
        ["a rebuild was forced by `rebuild = \"always\"`"]
    );
}

const NEVER: &str = r#"
[tiers.t]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "count.py"]
rebuild = "never"
"#;

#[test]
fn rebuild_never_without_an_entry_fails_saying_so() {
    let p = counting(NEVER).build();
    let run = p.tiers(&["build", "--json"]).expect_code(1);
    assert_eq!(run.status("t"), "failed");
    let error = str_of(&run.tier("t")["error"]).to_owned();
    assert!(
        error.contains("rebuild = \"never\"") && error.contains("no entry"),
        "{error}"
    );
    assert_eq!(runs(&p, "t"), 0);
    let text = p.tiers(&["build"]).expect_code(1);
    assert!(
        text.stderr.contains("rebuild = \"never\"") && text.stderr.contains("--rebuild t"),
        "{}",
        text.stderr
    );
    assert_eq!(p.paths()["tiers"]["t"]["path"], Value::Null);
}

#[test]
fn rebuild_never_keeps_the_old_entry_until_named_by_rebuild() {
    let p = counting(NEVER).build();
    let first = p.build(&["--rebuild", "t"]);
    assert_eq!(first.status("t"), "built");
    assert_eq!(runs(&p, "t"), 1);

    p.write("a.txt", "changed\n");
    let skipped = p.build(&[]);
    assert_eq!(skipped.status("t"), "skipped");
    assert_eq!(path_of(&skipped, "t"), path_of(&first, "t"));
    assert_eq!(key_of(&skipped, "t"), key_of(&first, "t"));
    assert!(
        skipped
            .reasons("t")
            .iter()
            .any(|r| r.contains("rebuild = \"never\"")),
        "{:?}",
        skipped.reasons("t")
    );
    assert_eq!(runs(&p, "t"), 1);
    assert_eq!(p.build(&["--eager"]).status("t"), "skipped");
    assert_eq!(runs(&p, "t"), 1, "--eager overrode rebuild = \"never\"");
    assert_eq!(p.paths()["tiers"]["t"]["key"], key_of(&first, "t").as_str());

    let forced = p.build(&["--rebuild", "t"]);
    assert_eq!(forced.status("t"), "rebuilt");
    assert_ne!(key_of(&forced, "t"), key_of(&first, "t"));
    assert_eq!(runs(&p, "t"), 2);
    assert_eq!(p.build(&[]).status("t"), "fresh");
}

#[test]
fn status_of_a_never_tier_says_build_keeps_its_last_entry() {
    let toml = format!(
        "{NEVER}\n[tiers.down]\nkind = \"command\"\ninputs = []\nrun = [\"python3\", \"count.py\"]\nafter = [\"t\"]\n"
    );
    let p = counting(&toml).build();
    let first = p.build(&["--rebuild", "t"]);
    assert_eq!(first.status("down"), "built");
    p.write("a.txt", "changed\n");
    let snap = p.cache_snapshot();

    let status = p.status(&[]).expect_code(0);
    assert_eq!(status.status("t"), "skipped", "{:?}", status.reasons("t"));
    assert_eq!(path_of(&status, "t"), path_of(&first, "t"));
    assert_eq!(
        status.status("down"),
        "fresh",
        "{:?}",
        status.reasons("down")
    );
    assert_eq!(p.cache_snapshot(), snap);

    let run = p.build(&[]);
    assert_eq!(run.status("t"), "skipped");
    assert_eq!(run.reasons("t"), status.reasons("t"));
    assert_eq!(run.status("down"), "fresh");
    assert_eq!(key_of(&run, "down"), key_of(&status, "down"));
    assert_eq!((runs(&p, "t"), runs(&p, "down")), (1, 1));
}

// 6. `after`.

fn up_down() -> Project {
    project()
        .file("tiers.toml", UP_DOWN)
        .file("count.py", COUNTING_SCRIPT)
        .file("down.py", DOWN_SCRIPT)
        .file("up/u.txt", "up\n")
        .file("down/d.txt", "down\n")
        .build()
}

#[test]
fn downstream_sees_the_upstream_entry_path() {
    let p = up_down();
    let run = p.build(&[]);
    assert_eq!(run.status("up"), "built");
    assert_eq!(run.status("down"), "built");
    let names: Vec<String> = run.json()["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["up", "down"], "upstream must come first");
    let up_path = path_of(&run, "up");
    let down_path = path_of(&run, "down");
    assert_eq!(
        std::fs::read_to_string(down_path.join("up_path.txt")).unwrap(),
        up_path.to_string_lossy()
    );
    assert_eq!(
        std::fs::read_to_string(down_path.join("up_result.txt")).unwrap(),
        "up\n"
    );
    assert!(up_path.join("entry.json").is_file());
}

#[test]
fn upstream_env_names_are_upper_case_with_underscores() {
    let p = counting(
        r#"
[tiers."my-up.v2"]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "count.py"]

[tiers.down]
kind = "command"
inputs = []
run = ["python3", "-c", "import os, pathlib; pathlib.Path(os.environ['TIERS_OUT'], 'seen').write_text(os.environ['TIERS_PATH_MY_UP_V2'])"]
after = ["my-up.v2"]
"#,
    )
    .build();
    let run = p.build(&[]);
    let seen = std::fs::read_to_string(path_of(&run, "down").join("seen")).unwrap();
    assert_eq!(seen, path_of(&run, "my-up.v2").to_string_lossy());
}

#[test]
fn upstream_input_change_rebuilds_upstream_then_downstream() {
    let p = up_down();
    let first = p.build(&[]);
    p.write("up/u.txt", "up, edited\n");
    let run = p.build(&[]);
    assert_eq!(run.status("up"), "rebuilt");
    assert_eq!(run.reasons("up"), ["the input `up/u.txt` changed"]);
    assert_eq!(run.status("down"), "rebuilt");
    assert_eq!(run.reasons("down"), ["the upstream tier `up` changed"]);
    assert_ne!(key_of(&run, "down"), key_of(&first, "down"));
    assert_eq!((runs(&p, "up"), runs(&p, "down")), (2, 2));
    let seen = std::fs::read_to_string(path_of(&run, "down").join("up_path.txt")).unwrap();
    assert_eq!(seen, path_of(&run, "up").to_string_lossy());

    // A downstream-only change leaves the upstream alone.
    p.write("down/d.txt", "down, edited\n");
    let run = p.build(&[]);
    assert_eq!(run.status("up"), "fresh");
    assert_eq!(run.status("down"), "rebuilt");
    assert_eq!(run.reasons("down"), ["the input `down/d.txt` changed"]);
    assert_eq!((runs(&p, "up"), runs(&p, "down")), (2, 3));
}

#[test]
fn building_the_downstream_builds_its_upstream() {
    let p = up_down();
    let run = p.build(&["down"]);
    assert_eq!(run.status("up"), "built");
    assert_eq!(run.status("down"), "built");
    assert_eq!((runs(&p, "up"), runs(&p, "down")), (1, 1));

    // Naming only the upstream does not build the downstream.
    let q = up_down();
    let run = q.build(&["up"]);
    assert_eq!(run.json()["tiers"].as_array().unwrap().len(), 1);
    assert_eq!((runs(&q, "up"), runs(&q, "down")), (1, 0));
}

#[test]
fn a_failed_upstream_skips_its_downstream() {
    let p = project()
        .file(
            "tiers.toml",
            UP_DOWN.replace("\"count.py\", \"up\"", "\"crash.py\""),
        )
        .file("crash.py", CRASH_SCRIPT)
        .file("down.py", DOWN_SCRIPT)
        .file("up/u.txt", "up\n")
        .file("down/d.txt", "down\n")
        .file("mode", "fail")
        .build();
    let run = p.tiers(&["build", "--json"]).expect_code(1);
    assert_eq!(run.status("up"), "failed");
    assert_eq!(run.status("down"), "skipped");
    assert_eq!(run.reasons("down"), ["upstream tier `up` has no entry"]);
    assert_eq!(runs(&p, "down"), 0);
}

// 7. Concurrency.

#[test]
fn concurrent_builds_run_the_command_once() {
    let p = project()
        .file("tiers.toml", ONE_TIER.replace("count.py", "slow.py"))
        .file("slow.py", SLOW_SCRIPT)
        .file("a.txt", "0\n")
        .build();
    for round in 1..=3 {
        p.write("a.txt", format!("{round}\n"));
        let children: Vec<_> = (0..2)
            .map(|_| {
                p.cmd(&["build", "--json"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn tiers")
            })
            .collect();
        let mut statuses = Vec::new();
        for child in children {
            let out = child.wait_with_output().expect("wait tiers");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(0),
                "round {round}\nstdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let json: Value = serde_json::from_str(&stdout).expect("json");
            statuses.push(json["tiers"][0]["status"].as_str().unwrap().to_owned());
        }
        statuses.sort();
        let built = if round == 1 { "built" } else { "rebuilt" };
        let mut expected = [built, "fresh"];
        expected.sort();
        assert_eq!(statuses, expected, "round {round}");
        assert_eq!(runs(&p, "t"), round, "round {round}");
        assert_only_published(&p, "t").expect("an entry");
    }
}

// 8. Killed builds.

#[test]
fn a_command_killed_mid_build_leaves_no_entry() {
    let p = project()
        .file("tiers.toml", CRASH_TIER)
        .file("crash.py", CRASH_SCRIPT)
        .file("a.txt", "alpha\n")
        .file("mode", "die")
        .build();
    let run = p.tiers(&["build", "--json"]).expect_code(1);
    assert_eq!(run.status("t"), "failed");
    let error = str_of(&run.tier("t")["error"]).to_owned();
    assert!(error.contains("signal 9"), "{error}");
    assert_eq!(assert_only_published(&p, "t"), None);
    assert_eq!(p.status(&[]).expect_code(0).status("t"), "missing");

    p.write("mode", "");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "built");
    assert_eq!(runs(&p, "t"), 2);
    let path = assert_only_published(&p, "t").expect("an entry");
    assert_eq!(path, path_of(&run, "t"));
    assert!(path.join("result.txt").is_file());
}

#[test]
fn a_tiers_process_killed_mid_build_leaves_no_entry() {
    let p = project()
        .file("tiers.toml", CRASH_TIER)
        .file("crash.py", CRASH_SCRIPT)
        .file("a.txt", "alpha\n")
        .build();
    let first = p.build(&[]);
    p.write("a.txt", "alpha, edited\n");
    p.write("mode", "hang");

    let mut tiers = p
        .cmd(&["build", "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tiers");
    let child = wait_for_pid(&p.path("child.pid"), Duration::from_secs(30));
    // While the build runs, readers see the last entry and nothing of the new one.
    assert_eq!(assert_only_published(&p, "t"), Some(path_of(&first, "t")));
    tiers.kill().expect("SIGKILL tiers");
    tiers.wait().expect("reap tiers");
    sigkill(child);

    // The last good entry is still the one reported; the killed build left none.
    let reported = assert_only_published(&p, "t").expect("the old entry");
    assert_eq!(reported, path_of(&first, "t"));
    assert_eq!(key_dirs(&p.cache_dir().join("t")).len(), 1);
    let status = p.status(&[]).expect_code(0);
    assert_eq!(status.status("t"), "stale");

    p.write("mode", "");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "rebuilt");
    assert_eq!(run.reasons("t"), ["the input `a.txt` changed"]);
    assert_eq!(runs(&p, "t"), 3);
    let reported = assert_only_published(&p, "t").expect("the new entry");
    assert_eq!(reported, path_of(&run, "t"));
    assert!(reported.join("result.txt").is_file());
    assert_eq!(p.build(&[]).status("t"), "fresh");
}

#[test]
fn a_tiers_process_killed_during_its_first_build_leaves_nothing_usable() {
    let p = project()
        .file("tiers.toml", CRASH_TIER)
        .file("crash.py", CRASH_SCRIPT)
        .file("a.txt", "alpha\n")
        .file("mode", "hang")
        .build();
    let mut tiers = p
        .cmd(&["build"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tiers");
    let child = wait_for_pid(&p.path("child.pid"), Duration::from_secs(30));
    assert_eq!(assert_only_published(&p, "t"), None);
    tiers.kill().expect("SIGKILL tiers");
    tiers.wait().expect("reap tiers");
    sigkill(child);

    assert_eq!(assert_only_published(&p, "t"), None);
    assert_eq!(p.status(&[]).expect_code(0).status("t"), "missing");
    p.write("mode", "");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "built");
    assert_eq!(runs(&p, "t"), 2);
    assert!(path_of(&run, "t").join("result.txt").is_file());
    assert!(!path_of(&run, "t").join("child.pid").exists());
}

// 9. A failing command.

#[test]
fn a_failing_command_publishes_nothing_and_keeps_the_previous_entry() {
    let p = project()
        .file("tiers.toml", CRASH_TIER)
        .file("crash.py", CRASH_SCRIPT)
        .file("a.txt", "alpha\n")
        .build();
    let first = p.build(&[]);
    let old = path_of(&first, "t");

    p.write("a.txt", "alpha, edited\n");
    p.write("mode", "fail");
    let run = p.tiers(&["build", "--json"]).expect_code(1);
    let t = run.tier("t");
    assert_eq!(t["status"], "failed");
    assert_eq!(t["path"], Value::Null);
    let error = str_of(&t["error"]);
    assert!(
        error.contains("exited with status 3") && error.contains("boom: the tool broke"),
        "{error}"
    );
    assert_eq!(runs(&p, "t"), 2);
    assert_eq!(assert_only_published(&p, "t"), Some(old.clone()));
    assert_eq!(
        key_dirs(&p.cache_dir().join("t")),
        std::slice::from_ref(&old)
    );

    // Without --json the stderr tail is on stderr.
    let text = p.tiers(&["build"]).expect_code(1);
    assert!(
        text.stderr.contains("boom: the tool broke"),
        "{}",
        text.stderr
    );
    assert!(text.stdout.contains("failed"), "{}", text.stdout);
    assert_eq!(runs(&p, "t"), 3);

    // A forced rebuild of the fresh key that fails keeps that key's entry.
    p.write("a.txt", "alpha\n");
    assert_eq!(p.build(&[]).status("t"), "fresh");
    let forced = p
        .tiers(&["build", "--json", "--rebuild", "t"])
        .expect_code(1);
    assert_eq!(forced.status("t"), "failed");
    assert_eq!(assert_only_published(&p, "t"), Some(old.clone()));
    assert!(old.join("result.txt").is_file());
    p.write("mode", "");
    assert_eq!(p.build(&[]).status("t"), "fresh");
}

#[test]
fn a_corrupt_marker_is_rebuilt_saying_why() {
    let p = counting(ONE_TIER).build();
    let first = p.build(&[]);
    let entry = path_of(&first, "t");
    std::fs::write(entry.join("entry.json"), "garbage").unwrap();
    assert_eq!(assert_only_published(&p, "t"), None);
    let status = p.status(&[]).expect_code(0);
    assert_eq!(status.status("t"), "stale");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "rebuilt");
    let reasons = run.reasons("t");
    assert!(
        reasons.len() == 1 && reasons[0].starts_with("the entry is corrupt"),
        "{reasons:?}"
    );
    assert_eq!(runs(&p, "t"), 2);
    assert_eq!(assert_only_published(&p, "t"), Some(entry));
    assert_eq!(p.build(&[]).status("t"), "fresh");
}

#[test]
fn a_missing_program_fails_its_tier_with_a_hint_and_others_still_build() {
    let toml = format!(
        "{ONE_TIER}\n[tiers.x]\nkind = \"command\"\ninputs = []\nrun = [\"no-such-tool-here\", \"arg\"]\n"
    );
    let p = counting(&toml).build();
    let run = p.tiers(&["build", "--json"]).expect_code(1);
    assert_eq!(run.status("t"), "built");
    assert_eq!(run.status("x"), "failed");
    let error = str_of(&run.tier("x")["error"]).to_owned();
    assert!(
        error.contains("`no-such-tool-here`") && error.contains("hint:"),
        "{error}"
    );
    assert_eq!(assert_only_published(&p, "x"), None);
}

#[test]
fn a_command_printing_a_lot_does_not_block() {
    let p = project()
        .file(
            "tiers.toml",
            r#"
[tiers.loud]
kind = "command"
inputs = []
run = ["python3", "-c", "import sys\nfor i in range(100000): print('x' * 100)\nsys.stderr.write('e' * 200000)"]
"#,
        )
        .build();
    let run = p.build(&[]);
    assert_eq!(run.status("loud"), "built");
}

// 10. Bad input: exit 2, a message naming what is wrong, the cache untouched.

/// Build once with a good configuration, then write `bad` as tiers.toml and run
/// `tiers ARGS`: exit 2, stderr holding every needle, the cache dir unchanged.
fn assert_usage_error(bad: &str, args: &[&str], needles: &[&str]) -> Project {
    let p = counting(ONE_TIER).build();
    p.build(&[]);
    let before = p.cache_snapshot();
    assert!(!before.is_empty());
    p.write("tiers.toml", bad);
    let run = p.tiers(args).expect_code(2);
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            run.stderr
        );
    }
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
    assert_eq!(p.cache_snapshot(), before, "the cache dir changed");
    assert_eq!(runs(&p, "t"), 1);
    p
}

#[test]
fn malformed_toml_is_a_usage_error_naming_the_file() {
    assert_usage_error(
        "[tiers.t\nkind = \"command\"\n",
        &["build", "--json"],
        &["tiers.toml", "line 1"],
    );
}

#[test]
fn unknown_kind_is_a_usage_error_naming_it() {
    assert_usage_error(
        "[tiers.t]\nkind = \"nope\"\ninputs = []\nrun = [\"x\"]\n",
        &["build"],
        &["`nope`", "`t`", "command"],
    );
}

#[test]
fn unknown_option_is_a_usage_error_naming_it() {
    assert_usage_error(
        "[tiers.t]\nkind = \"command\"\ninptus = [\"*.txt\"]\nrun = [\"python3\", \"count.py\"]\n",
        &["build"],
        &["`inptus`", "[tiers.t]", "tiers.toml"],
    );
}

#[test]
fn a_dependency_cycle_is_a_usage_error_naming_the_cycle() {
    assert_usage_error(
        r#"
[tiers.a]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "count.py"]
after = ["b"]

[tiers.b]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "count.py"]
after = ["a"]
"#,
        &["build"],
        &["cycle", "a -> b -> a"],
    );
}

#[test]
fn after_naming_a_missing_tier_is_a_usage_error() {
    assert_usage_error(
        "[tiers.t]\nkind = \"command\"\ninputs = []\nrun = [\"x\"]\nafter = [\"ghost\"]\n",
        &["build"],
        &["`ghost`", "`t`"],
    );
}

#[test]
fn an_unparsable_glob_is_a_usage_error_naming_it() {
    assert_usage_error(
        "[tiers.t]\nkind = \"command\"\ninputs = [\"src/[\"]\nrun = [\"x\"]\n",
        &["build"],
        &["`src/[`", "`t`"],
    );
}

#[test]
fn a_wrong_type_is_a_usage_error_naming_the_key() {
    assert_usage_error(
        "[tiers.t]\nkind = \"command\"\ninputs = [\"*.txt\"]\nrun = \"make\"\n",
        &["build"],
        &["`run`", "[tiers.t]", "sequence"],
    );
}

#[test]
fn an_unknown_policy_value_is_a_usage_error_naming_the_key() {
    assert_usage_error(
        "[tiers.t]\nkind = \"command\"\ninputs = [\"*.txt\"]\nrun = [\"x\"]\nrebuild = \"sometimes\"\n",
        &["build"],
        &["`rebuild`", "sometimes"],
    );
}

#[test]
fn an_unknown_tier_on_the_command_line_is_a_usage_error() {
    let p = assert_usage_error(ONE_TIER, &["build", "nope"], &["`nope`", "t"]);
    p.tiers(&["status", "nope"]).expect_code(2);
    p.tiers(&["explain", "nope"]).expect_code(2);
}

#[test]
fn a_cache_dir_that_cannot_be_created_is_a_usage_error() {
    let p = counting(ONE_TIER).file("plain-file", "x").build();
    let bad = p.path("plain-file/cache");
    let run = p
        .tiers(&["--cache-dir", bad.to_str().unwrap(), "build"])
        .expect_code(2);
    assert!(
        run.stderr.contains(&*bad.to_string_lossy()),
        "{}",
        run.stderr
    );
    assert_eq!(runs(&p, "t"), 0);
    assert!(p.cache_snapshot().is_empty());
    assert_eq!(p.read("plain-file"), "x");
}

#[test]
fn error_messages_do_not_repeat_their_cause() {
    let p = counting(ONE_TIER).file("plain-file", "x").build();
    let bad = p.path("plain-file/cache");
    let run = p
        .tiers(&["--cache-dir", bad.to_str().unwrap(), "build"])
        .expect_code(2);
    let cause = "Not a directory";
    assert_eq!(run.stderr.matches(cause).count(), 1, "{}", run.stderr);

    p.write(
        "tiers.toml",
        "[tiers.t]\nkind = \"command\"\ninputs = [\"src/[\"]\nrun = [\"x\"]\n",
    );
    let run = p.tiers(&["build"]).expect_code(2);
    assert_eq!(run.stderr.matches("unclosed").count(), 1, "{}", run.stderr);
}

// 11. The JSON shapes, and `status` building nothing.

#[test]
fn status_and_paths_json_have_the_documented_shape() {
    let p = counting(ONE_TIER).build();
    let root = p.root().canonicalize().unwrap();
    let cache = root.join(".tiers");

    let paths = p.paths();
    assert_eq!(object_keys(&paths), set(&["project", "cache_dir", "tiers"]));
    assert_eq!(paths["project"], root.to_str().unwrap());
    assert_eq!(paths["cache_dir"], cache.to_str().unwrap());
    assert_eq!(object_keys(&paths["tiers"]), set(&["t"]));
    let t = &paths["tiers"]["t"];
    assert_eq!(object_keys(t), set(&["kind", "key", "path", "exists"]));
    assert_eq!(t["kind"], "command");
    assert_eq!(t["key"], Value::Null);
    assert_eq!(t["path"], Value::Null);
    assert_eq!(t["exists"], false);

    let status = p.status(&[]).expect_code(0);
    let json = status.json();
    assert_eq!(object_keys(&json), set(&["project", "cache_dir", "tiers"]));
    assert_eq!(json["project"], root.to_str().unwrap());
    assert_eq!(json["cache_dir"], cache.to_str().unwrap());
    let tiers = json["tiers"].as_array().unwrap();
    assert_eq!(tiers.len(), 1);
    let t = &tiers[0];
    assert_eq!(
        object_keys(t),
        set(&["name", "kind", "key", "path", "status", "reasons", "seconds"])
    );
    assert_eq!(t["name"], "t");
    assert_eq!(t["kind"], "command");
    assert_eq!(t["status"], "missing");
    assert!(is_key(str_of(&t["key"])), "{t}");
    assert_eq!(t["reasons"], Value::Array(vec![]));
    assert!(t["seconds"].as_f64().is_some_and(|s| s >= 0.0), "{t}");
    let planned = str_of(&t["path"]).to_owned();
    assert!(!p.cache_dir().exists(), "status created the cache dir");

    let built = p.build(&[]);
    let b = built.tier("t");
    assert_eq!(
        object_keys(&b),
        set(&["name", "kind", "key", "path", "status", "reasons", "seconds"])
    );
    assert_eq!(b["key"], t["key"]);
    assert_eq!(b["path"], planned.as_str(), "status announced another path");

    let paths = p.paths();
    let pt = &paths["tiers"]["t"];
    assert_eq!(object_keys(pt), set(&["kind", "key", "path", "exists"]));
    assert_eq!(pt["key"], b["key"]);
    assert_eq!(pt["path"], b["path"]);
    assert_eq!(pt["exists"], true);
}

#[test]
fn status_reports_missing_fresh_and_stale_and_builds_nothing() {
    let p = counting(ONE_TIER).build();
    assert_eq!(p.status(&[]).expect_code(0).status("t"), "missing");
    assert_eq!(runs(&p, "t"), 0);
    assert!(p.cache_snapshot().is_empty());

    p.build(&[]);
    let snap = p.cache_snapshot();
    let fresh = p.status(&[]).expect_code(0);
    assert_eq!(fresh.status("t"), "fresh");
    assert_eq!(fresh.reasons("t"), Vec::<String>::new());

    p.write("a.txt", "edited\n");
    let stale = p.status(&["t"]).expect_code(0);
    assert_eq!(stale.status("t"), "stale");
    assert_eq!(stale.reasons("t"), ["the input `a.txt` changed"]);
    assert_eq!(stale.tier("t")["reasons"][0]["reason"], "input-changed");
    let text = p.tiers(&["status"]).expect_code(0);
    assert!(
        text.stdout.contains("stale") && text.stdout.contains("the input `a.txt` changed"),
        "{}",
        text.stdout
    );
    assert_eq!(p.cache_snapshot(), snap, "status wrote to the cache dir");
    assert_eq!(runs(&p, "t"), 1);
    // And the build that follows does what status said.
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "rebuilt");
    assert_eq!(run.reasons("t"), stale.reasons("t"));
    assert_eq!(key_of(&run, "t"), key_of(&stale, "t"));
}

#[test]
fn status_of_a_downstream_follows_a_stale_upstream() {
    let p = up_down();
    p.build(&[]);
    let snap = p.cache_snapshot();
    p.write("up/u.txt", "edited\n");
    let status = p.status(&[]).expect_code(0);
    assert_eq!(status.status("up"), "stale");
    assert_eq!(status.status("down"), "stale");
    assert_eq!(status.reasons("down"), ["the upstream tier `up` changed"]);
    assert_eq!(p.cache_snapshot(), snap);
    let run = p.build(&[]);
    assert_eq!(key_of(&run, "down"), key_of(&status, "down"));
}

// 12. The cache dir's own files, and what is never an input.

#[test]
fn the_cache_dir_is_tagged_and_git_ignored() {
    let p = counting(ONE_TIER).build();
    p.build(&[]);
    let tag = p.read(".tiers/CACHEDIR.TAG");
    assert!(
        tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"),
        "{tag}"
    );
    assert_eq!(p.read(".tiers/.gitignore"), "*\n");
}

const EVERYTHING: &str = r#"
[tiers.t]
kind = "command"
inputs = ["**/*"]
exclude = ["runs.log"]
run = ["python3", "count.py"]
"#;

/// The input paths recorded in the key document of `tier`'s current entry.
fn recorded_inputs(entry: &Path) -> Vec<String> {
    let marker: Value =
        serde_json::from_str(&std::fs::read_to_string(entry.join("entry.json")).unwrap()).unwrap();
    object_keys(&marker["doc"]["inputs"]).into_iter().collect()
}

#[test]
fn cache_git_pycache_and_venvs_are_never_inputs() {
    let p = counting(EVERYTHING)
        .file("pkg/m.py", "x = 1\n")
        .file(".git/HEAD", "ref: refs/heads/main\n")
        .file("pkg/__pycache__/m.cpython-311.pyc", "bytecode")
        .file("venv/pyvenv.cfg", "home = /usr/bin\n")
        .file("venv/lib/site.py", "import os\n")
        .file("deep/env/pyvenv.cfg", "home = /usr/bin\n")
        .file("deep/env/bin/python", "#!")
        .build();
    let first = p.build(&[]);
    assert_eq!(
        recorded_inputs(&path_of(&first, "t")),
        ["a.txt", "count.py", "pkg/m.py", "tiers.toml"]
    );
    // The cache dir now holds files; none of them, nor edits below, count.
    p.write(".git/HEAD", "ref: refs/heads/other\n");
    p.write(".git/objects/ab/cdef", "blob");
    p.write("pkg/__pycache__/m.cpython-311.pyc", "other bytecode");
    p.write("venv/lib/site.py", "import sys\n");
    p.write("deep/env/lib/new.py", "new\n");
    p.write(".tiers/stray.txt", "stray\n");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "fresh", "{:?}", run.reasons("t"));
    assert_eq!(runs(&p, "t"), 1);
    // A real input under the same glob still counts.
    p.write("pkg/m.py", "x = 2\n");
    let run = p.build(&[]);
    assert_eq!(run.reasons("t"), ["the input `pkg/m.py` changed"]);
}

#[test]
fn a_cache_dir_spelled_with_dot_dot_is_still_not_an_input() {
    let p = counting(EVERYTHING).file("sub/keep.txt", "k\n").build();
    let spelled = p.root().join("sub/../cache");
    let dir = spelled.to_str().unwrap();
    let first = p
        .tiers(&["--cache-dir", dir, "build", "--json"])
        .expect_code(0);
    assert_eq!(first.status("t"), "built");
    let again = p
        .tiers(&["--cache-dir", dir, "build", "--json"])
        .expect_code(0);
    assert_eq!(again.status("t"), "fresh", "{:?}", again.reasons("t"));
    assert_eq!(runs(&p, "t"), 1);
    assert!(p.path("cache/CACHEDIR.TAG").is_file());
}

#[test]
fn a_cache_dir_configured_inside_the_project_is_not_an_input() {
    let toml = format!("[cache]\ndir = \"build/./cache\"\n{EVERYTHING}");
    let p = counting(&toml).build();
    let first = p.build(&[]);
    assert!(path_of(&first, "t").starts_with(p.root().canonicalize().unwrap().join("build/cache")));
    assert_eq!(p.build(&[]).status("t"), "fresh");
    assert_eq!(runs(&p, "t"), 1);
}

// 13. Moving the cache dir.

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap()
}

#[test]
fn tiers_cache_dir_env_moves_the_cache() {
    let p = counting(ONE_TIER).build();
    let elsewhere = tempfile::tempdir().unwrap();
    let env_dir = canonical(elsewhere.path()).join("env-cache");
    let out = p
        .cmd(&["build", "--json"])
        .env("TIERS_CACHE_DIR", &env_dir)
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json["cache_dir"], env_dir.to_str().unwrap());
    let path = PathBuf::from(str_of(&json["tiers"][0]["path"]));
    assert!(path.starts_with(&env_dir), "{}", path.display());
    assert!(env_dir.join("CACHEDIR.TAG").is_file());
    assert!(
        !p.cache_dir().exists(),
        "the default cache dir was used too"
    );

    // The same environment finds the entry again; without it, the default is empty.
    let out = p
        .cmd(&["build", "--json"])
        .env("TIERS_CACHE_DIR", &env_dir)
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["tiers"][0]["status"], "fresh");
    assert_eq!(p.status(&[]).expect_code(0).status("t"), "missing");
}

#[test]
fn cache_dir_flag_wins_over_env_and_config() {
    let toml = format!("[cache]\ndir = \"from-config\"\n{ONE_TIER}");
    let p = counting(&toml).build();
    let elsewhere = tempfile::tempdir().unwrap();
    let env_dir = canonical(elsewhere.path()).join("env-cache");
    let flag_dir = canonical(elsewhere.path()).join("flag-cache");
    let out = p
        .cmd(&["--cache-dir", flag_dir.to_str().unwrap(), "build", "--json"])
        .env("TIERS_CACHE_DIR", &env_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["cache_dir"], flag_dir.to_str().unwrap());
    assert!(flag_dir.join("CACHEDIR.TAG").is_file());
    assert!(!env_dir.exists());
    assert!(!p.path("from-config").exists());

    // Env wins over the config file.
    let out = p
        .cmd(&["status", "--json"])
        .env("TIERS_CACHE_DIR", &env_dir)
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["cache_dir"], env_dir.to_str().unwrap());
}

#[test]
fn a_relative_cache_dir_flag_is_relative_to_the_working_directory() {
    let p = counting(ONE_TIER).build();
    let cwd = tempfile::tempdir().unwrap();
    let out = p
        .cmd(&["--cache-dir", "rel-cache", "build", "--json"])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(cwd.path().join("rel-cache/CACHEDIR.TAG").is_file());
    assert!(!p.cache_dir().exists());
}

#[test]
fn cache_dir_in_tiers_toml_moves_the_cache() {
    let toml = format!("[cache]\ndir = \"var/cache\"\n{ONE_TIER}");
    let p = counting(&toml).build();
    let run = p.build(&[]);
    let dir = canonical(p.root()).join("var/cache");
    assert_eq!(run.json()["cache_dir"], dir.to_str().unwrap());
    assert!(path_of(&run, "t").starts_with(&dir));
    assert!(dir.join("CACHEDIR.TAG").is_file());
    assert_eq!(p.read("var/cache/.gitignore"), "*\n");
    assert!(!p.cache_dir().exists());
    assert_eq!(p.paths()["tiers"]["t"]["path"], run.tier("t")["path"]);
}

// 14. Keys do not depend on where the project is.

#[test]
fn two_clones_of_one_project_share_keys() {
    let make = || {
        project()
            .file("tiers.toml", UP_DOWN)
            .file("count.py", COUNTING_SCRIPT)
            .file("down.py", DOWN_SCRIPT)
            .file("up/u.txt", "up\n")
            .file("up/v.txt", "vee\n")
            .file("down/d.txt", "down\n")
            .build()
    };
    let (a, b) = (make(), make());
    assert_ne!(a.root(), b.root());
    let (ra, rb) = (a.build(&[]), b.build(&[]));
    for t in ["up", "down"] {
        assert_eq!(key_of(&ra, t), key_of(&rb, t), "tier {t}");
    }
    let sa = a.status(&[]).expect_code(0);
    assert_eq!(key_of(&sa, "down"), key_of(&rb, "down"));
    assert_eq!(
        recorded_inputs(&path_of(&ra, "up")),
        ["up/u.txt", "up/v.txt"]
    );
}
