//! Issue 14: a shared or misconfigured cache never touches a user's files, never
//! hands one checkout another's artifact, and a killed tiers leaves nothing running.
//! Each test reproduces one finding of the issue through the real `tiers` binary.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::procs::{
    alive, counting, gone_within, kill, wait_for_pids, writer_project, DEPFILE_SCRIPT, ONE_TIER,
};
use support::{project, runs, sha256_hex, snapshot, Project};

/// Every file under `dir` with its bytes, for "tiers left it as it was".
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    snapshot(dir)
        .into_iter()
        .map(|(rel, _)| {
            let bytes = std::fs::read(dir.join(&rel)).unwrap_or_default();
            (rel, bytes)
        })
        .collect()
}

/// A directory of a user's own, laid out like a tier root tiers did not make.
fn users_dir(at: &Path) {
    std::fs::create_dir_all(at.join(".staging/work")).unwrap();
    std::fs::create_dir_all(at.join(".trash")).unwrap();
    std::fs::write(at.join(".staging/work/notes.txt"), "my notes").unwrap();
    std::fs::write(at.join(".trash/keepme.txt"), "keep me").unwrap();
    std::fs::write(at.join("target.txt"), "a file").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("target.txt", at.join("current")).unwrap();
}

// Finding 1: a root or cache dir tiers did not create.

#[test]
fn a_root_that_is_a_users_directory_is_refused_and_left_as_it_was() {
    let p = counting(&format!("{ONE_TIER}root = \"mine\"\nkeep = 1\n"));
    users_dir(&p.path("mine"));
    let before = contents(&p.path("mine"));
    for args in [
        &["build"][..],
        &["status"],
        &["gc"],
        &["paths"],
        &["build", "--rebuild", "all"],
    ] {
        let run = p.tiers(args).expect_code(2);
        assert!(
            run.stderr.contains("tier `t`")
                && run.stderr.contains(&p.path("mine").display().to_string())
                && run.stderr.contains("not made by tiers"),
            "{args:?}: {}",
            run.stderr
        );
    }
    assert_eq!(contents(&p.path("mine")), before);
    assert_eq!(runs(&p, "t"), 0);
}

#[test]
fn a_root_holding_the_project_is_refused() {
    for root in [".", "..", "../.."] {
        let p = counting(&format!("{ONE_TIER}root = \"{root}\"\n"));
        let run = p.tiers(&["build"]).expect_code(2);
        assert!(
            run.stderr.contains("tier `t`") && run.stderr.contains("holds the project"),
            "root = {root}: {}",
            run.stderr
        );
        assert!(!p.path(".tiers-root").exists() && !p.path("current").exists());
        assert_eq!(runs(&p, "t"), 0);
    }
}

#[test]
fn two_tiers_with_one_root_are_refused() {
    let toml = r#"
[tiers.a]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "count.py"]
root = "out"

[tiers.b]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "count.py"]
root = "out/../out"
"#;
    let p = counting(toml);
    let run = p.tiers(&["build"]).expect_code(2);
    assert!(run.stderr.contains("overlaps tier"), "{}", run.stderr);
    assert!(!p.path("out").exists());
}

#[test]
fn a_root_another_tier_made_is_refused() {
    let p = counting(&format!("{ONE_TIER}root = \"out\"\n"));
    p.build(&[]);
    p.write(
        "tiers.toml",
        ONE_TIER.replace("[tiers.t]", "[tiers.other]") + "root = \"out\"\n",
    );
    let run = p.tiers(&["build"]).expect_code(2);
    assert!(run.stderr.contains("belongs to tier `t`"), "{}", run.stderr);
}

#[test]
fn an_empty_existing_root_is_adopted_and_marked() {
    let p = counting(&format!("{ONE_TIER}root = \"out\"\n"));
    std::fs::create_dir(p.path("out")).unwrap();
    assert_eq!(p.build(&[]).status("t"), "built");
    let marker: Value =
        serde_json::from_slice(&std::fs::read(p.path("out/.tiers-root")).unwrap()).unwrap();
    assert_eq!(marker["tier"], "t");
    assert_eq!(p.build(&[]).status("t"), "fresh");
}

#[test]
fn a_cache_dir_tiers_did_not_make_is_refused() {
    let p = counting(ONE_TIER);
    let foreign = p.path("elsewhere");
    users_dir(&foreign);
    let before = contents(&foreign);
    let dir = foreign.display().to_string();
    for cmd in ["build", "status", "gc", "paths"] {
        let run = p.tiers(&[cmd, "--cache-dir", &dir]).expect_code(2);
        assert!(
            run.stderr.contains(&format!("the cache dir `{dir}`"))
                && run.stderr.contains("not made by tiers"),
            "{cmd}: {}",
            run.stderr
        );
    }
    assert_eq!(contents(&foreign), before);
    // Another tool's cache dir tag is not tiers'.
    let cargo_like = p.path("target");
    std::fs::create_dir(&cargo_like).unwrap();
    std::fs::write(
        cargo_like.join("CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n# created by cargo\n",
    )
    .unwrap();
    let cargo_dir = cargo_like.display().to_string();
    p.tiers(&["build", "--cache-dir", &cargo_dir])
        .expect_code(2);
}

#[test]
fn a_cache_dir_that_is_a_file_is_a_usage_error_for_every_command() {
    let p = counting(ONE_TIER);
    p.write("cachefile", "not a directory");
    let file = p.path("cachefile").display().to_string();
    for cmd in ["build", "status", "gc", "paths"] {
        let run = p.tiers(&[cmd, "--cache-dir", &file]).expect_code(2);
        assert!(
            run.stderr.contains("is not a directory"),
            "{cmd}: {}",
            run.stderr
        );
    }
    assert_eq!(p.read("cachefile"), "not a directory");
}

#[test]
fn gc_removes_only_names_tiers_makes() {
    let p = counting(&format!("{ONE_TIER}keep = 1\n"));
    p.build(&[]);
    let root = p.cache_dir().join("t");
    std::fs::write(root.join(".trash/keepme.txt"), "keep").unwrap();
    std::fs::create_dir_all(root.join(".staging/work")).unwrap();
    std::fs::write(root.join(".staging/work/notes.txt"), "notes").unwrap();
    // Debris tiers made: a killed build's staging dir, an entry half removed.
    let debris = root.join(format!(".staging/{}-999999-0", "a".repeat(64)));
    std::fs::create_dir_all(&debris).unwrap();
    std::fs::create_dir_all(root.join(".trash/999999-1/x")).unwrap();
    let run = p.tiers(&["gc"]).expect_code(0);
    assert!(run.stdout.contains("removed 0 entries"), "{}", run.stdout);
    assert_eq!(
        std::fs::read_to_string(root.join(".trash/keepme.txt")).unwrap(),
        "keep"
    );
    assert!(root.join(".staging/work/notes.txt").is_file());
    assert!(!debris.exists());
    assert!(!root.join(".trash/999999-1").exists());
}

// Finding 2: checkouts sharing a cache dir.

fn checkout(content: &str, toml: &str) -> Project {
    let p = counting(toml);
    p.write("a.txt", content);
    p
}

/// `tiers paths --json` of `p` against the cache dir `cache`.
fn paths_in(p: &Project, cache: &Path) -> Value {
    let run = p
        .tiers(&[
            "paths",
            "--json",
            "--cache-dir",
            &cache.display().to_string(),
        ])
        .expect_code(0);
    run.json()
}

#[test]
fn checkouts_sharing_a_cache_dir_each_see_their_own_entry() {
    let shared = tempfile::tempdir().unwrap();
    let cache = shared.path().join("cache");
    let cache_arg = cache.display().to_string();
    let x = checkout("x content\n", ONE_TIER);
    let y = checkout("y content\n", ONE_TIER);
    for round in 0..3 {
        for (p, content) in [(&x, "x"), (&y, "y")] {
            let run = p.build(&["--cache-dir", &cache_arg]);
            let want = if round == 0 { "built" } else { "fresh" };
            assert_eq!(run.status("t"), want, "round {round}, checkout {content}");
        }
        for (p, content) in [(&x, "x"), (&y, "y")] {
            let paths = paths_in(p, &cache);
            let path = PathBuf::from(paths["tiers"]["t"]["path"].as_str().unwrap());
            let status = p.status(&["--cache-dir", &cache_arg]).expect_code(0);
            assert_eq!(status.status("t"), "fresh");
            assert_eq!(
                status.tier("t")["key"],
                paths["tiers"]["t"]["key"],
                "status and paths of checkout {content} name one entry"
            );
            assert!(
                std::fs::read_to_string(path.join("result.txt")).is_ok(),
                "checkout {content}"
            );
            let doc: Value =
                serde_json::from_slice(&std::fs::read(path.join("entry.json")).unwrap()).unwrap();
            let digest = doc["doc"]["inputs"]["a.txt"].as_str().unwrap().to_owned();
            let own = sha256_hex(format!("{content} content\n").as_bytes());
            assert_eq!(digest, own, "checkout {content} sees its own entry");
        }
    }
}

#[test]
fn retention_keeps_the_entry_another_checkout_points_at() {
    let shared = tempfile::tempdir().unwrap();
    let cache = shared.path().join("cache").display().to_string();
    let toml = format!("{ONE_TIER}keep = 1\n");
    let x = checkout("x\n", &toml);
    let y = checkout("y\n", &toml);
    x.build(&["--cache-dir", &cache]);
    y.build(&["--cache-dir", &cache]);
    // keep = 1, but x's entry is pointed at by x: both stay.
    assert_eq!(x.build(&["--cache-dir", &cache]).status("t"), "fresh");
    let gc = x.tiers(&["gc", "--cache-dir", &cache]).expect_code(0);
    assert!(gc.stdout.contains("removed 0 entries"), "{}", gc.stdout);
    assert_eq!(runs(&x, "t") + runs(&y, "t"), 2);

    // A pointer unused for longer than `pointer_days` no longer protects.
    let stale = format!("[cache]\npointer_days = 0\n{toml}");
    x.write("tiers.toml", &stale);
    let gc = x.tiers(&["gc", "--cache-dir", &cache]).expect_code(0);
    assert!(gc.stdout.contains("removed 1 entries"), "{}", gc.stdout);
    // x's own current entry is never removed by x.
    assert_eq!(x.build(&["--cache-dir", &cache]).status("t"), "fresh");
}

// Finding 3 (the engine's part): a candidate is checked against its entry.

fn depfile_project() -> Project {
    project()
        .file("tiers.toml", ONE_TIER.replace("count.py", "dep.py"))
        .file("dep.py", DEPFILE_SCRIPT)
        .file("a.txt", "alpha\n")
        .file("b.txt", "beta\n")
        .build()
}

fn candidate_files(p: &Project) -> Vec<PathBuf> {
    std::fs::read_dir(p.cache_dir().join("t/.candidates"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect()
}

#[test]
fn a_candidate_whose_used_inputs_disagree_with_its_entry_is_not_restored() {
    let p = depfile_project();
    p.build(&[]);
    // Tamper: the candidate now claims its build used nothing.
    for f in candidate_files(&p) {
        let mut list: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        list["candidates"][0]["used"] = serde_json::json!({});
        std::fs::write(&f, serde_json::to_vec(&list).unwrap()).unwrap();
    }
    // a.txt, which the build used, changes: nothing may restore the old entry.
    p.write("a.txt", "alpha, edited\n");
    let status = p.status(&[]).expect_code(0);
    assert_eq!(status.status("t"), "stale");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "rebuilt");
    assert_eq!(run.reasons("t"), ["the input `a.txt` changed"]);
    assert_eq!(runs(&p, "t"), 2);
    let explain = p.tiers(&["explain", "t"]).expect_code(0);
    assert!(!explain.stdout.contains("panicked"), "{}", explain.stdout);
}

#[test]
fn a_candidate_list_naming_paths_instead_of_keys_is_ignored_and_writes_nothing_outside() {
    let p = depfile_project();
    p.build(&[]);
    let outside = tempfile::tempdir().unwrap();
    let evil = outside.path().join("x");
    for f in candidate_files(&p) {
        let mut list: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
        let mut bad = list["candidates"][0].clone();
        bad["entry"] = Value::String(evil.display().to_string());
        let mut short = bad.clone();
        short["entry"] = Value::String("abc".into());
        let mut relative = bad.clone();
        relative["entry"] = Value::String("../../../../tmp/tiers-evil".into());
        list["candidates"] = serde_json::json!([bad, short, relative]);
        std::fs::write(&f, serde_json::to_vec(&list).unwrap()).unwrap();
    }
    p.write("b.txt", "beta, edited\n");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "rebuilt");
    let explain = p.tiers(&["explain", "t"]).expect_code(0);
    assert!(explain.stdout.contains("tier t"), "{}", explain.stdout);
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    assert!(!Path::new("/tmp/tiers-evil.lock").exists());
}

// Finding 4: a killed tiers leaves its command running.

#[test]
fn a_tiers_killed_by_sigkill_leaves_no_tool_running_and_the_next_build_runs_it_once() {
    let p = writer_project();
    let mut tiers = p
        .cmd(&["build"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (child, grandchild) = wait_for_pids(&p);
    std::thread::sleep(Duration::from_millis(200));
    tiers.kill().unwrap();
    tiers.wait().unwrap();
    // The tool and what it started die with tiers: its supervisor kills the group.
    assert!(
        gone_within(child, Duration::from_secs(5)),
        "the command outlived tiers"
    );
    assert!(
        gone_within(grandchild, Duration::from_secs(5)),
        "a process the command started outlived tiers"
    );
    p.write("mode", "finish");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "built");
    assert!(
        !alive(grandchild),
        "a process the command started is still running"
    );
    assert_eq!(runs(&p, "t"), 2);
    let path = PathBuf::from(run.tier("t")["path"].as_str().unwrap());
    let files: Vec<_> = std::fs::read_dir(&path)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut files = files;
    files.sort();
    assert_eq!(
        files,
        ["entry.json", "entry.tree", "result.txt"],
        "no debris of the killed build"
    );
    let staging = p.cache_dir().join("t/.staging");
    assert_eq!(std::fs::read_dir(staging).unwrap().count(), 0);
}

#[test]
fn sigterm_and_sigint_kill_the_tool_remove_staging_and_exit_143_and_130() {
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let p = writer_project();
        let tiers = p
            .cmd(&["build"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (child, grandchild) = wait_for_pids(&p);
        std::thread::sleep(Duration::from_millis(200));
        kill(tiers.id(), signal);
        let out = tiers.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "SIG{signal}: {stderr}");
        assert!(stderr.contains("interrupted"), "{stderr}");
        assert!(
            gone_within(child, Duration::from_secs(2)),
            "SIG{signal}: command left"
        );
        assert!(
            gone_within(grandchild, Duration::from_secs(2)),
            "SIG{signal}: grandchild left"
        );
        let staging = p.cache_dir().join("t/.staging");
        let left: Vec<_> = std::fs::read_dir(&staging).map_or(vec![], |d| d.flatten().collect());
        assert!(left.is_empty(), "SIG{signal}: staging left: {left:?}");
        p.write("mode", "finish");
        assert_eq!(p.build(&[]).status("t"), "built");
        assert_eq!(runs(&p, "t"), 2);
    }
}

// Finding 6: a build killed between publishing and uploading.

#[test]
fn an_entry_the_writable_shared_cache_lacks_is_uploaded_by_the_next_build_once() {
    let p = counting(ONE_TIER);
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().join("r").display());
    let with_remote = |args: &[&str]| {
        let mut all = vec!["build", "--json"];
        all.extend_from_slice(args);
        let out = p.cmd(&all).env("TIERS_REMOTE_URL", &url).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        json["tiers"][0]["status"].as_str().unwrap().to_owned()
    };
    // Built without the remote: what a build killed before its upload leaves.
    assert_eq!(with_remote(&["--no-remote"]), "built");
    assert!(!remote.path().join("r").exists());
    assert_eq!(with_remote(&[]), "fresh");
    let records = remote.path().join("r/records/t");
    assert_eq!(
        std::fs::read_dir(&records).unwrap().count(),
        1,
        "uploaded by the fresh build"
    );
    // Remembered: the next no-op asks the remote nothing (so does not upload again).
    std::fs::remove_dir_all(remote.path().join("r")).unwrap();
    assert_eq!(with_remote(&[]), "fresh");
    // (Opening a directory remote makes its root; an upload would write records.)
    assert!(
        !remote.path().join("r/records").exists(),
        "a no-op build uploaded again"
    );
}

// Finding 7: explain on a short candidate entry (covered above: it exits 0).

// Finding 8: the smaller items.

#[test]
fn an_input_glob_outside_the_project_is_a_usage_error_naming_it() {
    for glob in ["/etc/passwd", "../**"] {
        let p = counting(&ONE_TIER.replace("\"*.txt\"", &format!("\"{glob}\"")));
        let run = p.tiers(&["status"]).expect_code(2);
        assert!(
            run.stderr.contains(&format!("`{glob}`")) && run.stderr.contains("tier `t`"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn a_tiers_toml_without_tiers_is_a_usage_error() {
    let p = project().file("tiers.toml", "").build();
    for cmd in ["build", "status"] {
        let run = p.tiers(&[cmd]).expect_code(2);
        assert!(
            run.stderr.contains("no tiers are configured") && run.stderr.contains("tiers.toml"),
            "{}",
            run.stderr
        );
    }
    assert!(!p.cache_dir().exists());
}

#[cfg(unix)]
#[test]
fn a_symlink_loop_is_skipped_like_a_dangling_link() {
    let p = counting(ONE_TIER);
    std::os::unix::fs::symlink("loop.txt", p.path("loop.txt")).unwrap();
    std::os::unix::fs::symlink("missing.txt", p.path("dangling.txt")).unwrap();
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "built");
    let doc: Value = serde_json::from_slice(
        &std::fs::read(PathBuf::from(run.tier("t")["path"].as_str().unwrap()).join("entry.json"))
            .unwrap(),
    )
    .unwrap();
    let inputs: Vec<&String> = doc["doc"]["inputs"].as_object().unwrap().keys().collect();
    assert_eq!(inputs, ["a.txt"]);
}
