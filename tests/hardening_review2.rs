//! Issue 14's follow-ups, second review: the tool supervisor reports tools as
//! they ended, finds them where they run, survives its own binary's removal;
//! aliases and pointers from older caches and rebuilt keys; staging debris.
//! Each through the real `tiers` binary.

mod support;

use support::project;

/// A tool killed by a signal is reported as killed by it, through the
/// supervisor: SIGSEGV and SIGBUS (which the Rust runtime handles) and SIGPIPE
/// (which it ignores) included, not as exit 139, 135 or 141.
#[cfg(target_os = "linux")]
#[test]
fn a_tool_killed_by_a_signal_is_reported_as_killed_by_it() {
    let mut toml = String::new();
    for sig in ["SEGV", "BUS", "PIPE"] {
        toml += &format!(
            "[tiers.{sig}]\nkind = \"command\"\ninputs = [\"a.txt\"]\nrun = [\"sh\", \"-c\", \"kill -{sig} $$\"]\n\n"
        );
    }
    let p = project()
        .file("tiers.toml", toml)
        .file("a.txt", "alpha\n")
        .build();
    let run = p.tiers(&["build"]).expect_code(1);
    for (tier, n) in [("SEGV", 11), ("BUS", 7), ("PIPE", 13)] {
        let line = run
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("error: tier `{tier}` failed")))
            .unwrap_or_else(|| panic!("no error for `{tier}`:\n{}", run.stderr));
        assert!(line.ends_with(&format!("killed by signal {n}")), "{line}");
    }
}

/// A tier's `env` may put a project-relative directory on PATH
/// (`node_modules/.bin`, `tools`): the tool runs in the project, so the
/// directory is the project's, as `execvp` after `chdir` resolves it, wherever
/// tiers runs from (`-C`).
#[cfg(unix)]
#[test]
fn a_tool_on_a_project_relative_path_from_the_tiers_env_is_found() {
    use std::os::unix::fs::PermissionsExt;
    let p = project()
        .file(
            "tiers.toml",
            r#"
[tiers.t]
kind = "command"
inputs = ["a.txt"]
run = ["mk-out"]
env = { PATH = "tools:/usr/bin:/bin" }
"#,
        )
        .file("a.txt", "alpha\n")
        .file(
            "tools/mk-out",
            "#!/bin/sh\necho made > \"$TIERS_OUT/out.txt\"\n",
        )
        .build();
    std::fs::set_permissions(
        p.path("tools/mk-out"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    // The test's working directory is not the project: only `-C` names it.
    assert_ne!(std::env::current_dir().unwrap(), p.root());
    let run = p.tiers(&["build", "--json"]);
    assert_eq!(
        run.code, 0,
        "a tool on a project-relative PATH entry was not run:\n{}",
        run.stderr
    );
    assert_eq!(run.status("t"), "built");
}

/// A command tier whose build uses `a.txt` alone of its `*.txt` inputs (dep file).
const USES_A_ONLY: &str = r#"
[tiers.t]
kind = "command"
inputs = ["*.txt"]
run = ["sh", "-c", "cat a.txt > \"$TIERS_OUT/out\"; echo a.txt > \"$TIERS_DEPFILE\""]
"#;

/// A cache dir written by the tiers before aliases kept key documents: an alias
/// file holds the serving entry's key alone. After the next edit, `status`,
/// `build` and `explain` still name what changed (against the serving entry's
/// document).
#[test]
fn an_alias_from_an_older_tiers_still_gives_reasons_after_an_edit() {
    let p = project()
        .file("tiers.toml", USES_A_ONLY)
        .file("a.txt", "a\n")
        .file("b.txt", "b\n")
        .build();
    let k1 = p.build(&[]).tier("t")["key"].as_str().unwrap().to_owned();
    p.write("b.txt", "b2\n");
    let restored = p.build(&[]);
    assert_eq!(restored.status("t"), "restored");
    let k2 = restored.tier("t")["key"].as_str().unwrap().to_owned();
    // What the older tiers wrote: the alias as the target's key, the pointer at it.
    let root = p.cache_dir().join("t");
    std::fs::write(root.join(".aliases").join(&k2), &k1).unwrap();
    for ptr in std::fs::read_dir(root.join(".pointers")).unwrap() {
        let path = ptr.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace(&k2, &k1)).unwrap();
    }
    // The new tiers: a warm build hits the alias.
    assert_eq!(p.build(&[]).status("t"), "fresh");
    p.write("a.txt", "a2\n");
    let status = p.status(&[]).expect_code(0);
    assert_eq!(status.status("t"), "stale");
    let reasons = status.reasons("t");
    assert!(
        reasons.iter().any(|r| r.contains("a.txt")),
        "a stale tier after an edit of a used input names it; reasons: {reasons:?}\n{}",
        status.stdout
    );
    let explain = p.tiers(&["explain", "t"]).expect_code(0);
    assert!(
        !explain.stdout.contains("no entry to compare with"),
        "explain finds no document for the last key:\n{}",
        explain.stdout
    );
    let built = p.build(&[]);
    assert!(
        built.reasons("t").iter().any(|r| r.contains("a.txt")),
        "the rebuild names no reason: {:?}",
        built.reasons("t")
    );
}

/// A command that writes its dep file and fails leaves no
/// `<key>-<pid>-<n>.deps` in the tier's `.staging`, and one left by a killed
/// build is removed as debris.
#[test]
fn a_failed_command_leaves_no_dep_file_in_staging() {
    let p = project()
        .file(
            "tiers.toml",
            r#"
[tiers.t]
kind = "command"
inputs = ["*.txt"]
run = ["sh", "-c", "echo a.txt > \"$TIERS_DEPFILE\"; test -e ok"]
"#,
        )
        .file("a.txt", "alpha\n")
        .build();
    p.tiers(&["build"]).expect_code(1);
    // The tool is fixed; the inputs changed meanwhile: another key builds.
    p.write("ok", "");
    p.write("a.txt", "beta\n");
    p.build(&[]);
    p.tiers(&["gc"]).expect_code(0);
    let staging = p.cache_dir().join("t/.staging");
    let left: Vec<String> = std::fs::read_dir(&staging)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "a failed build's dep file outlives a later build and gc: {left:?}"
    );
}

/// A program that cannot be executed — an executable file with no `#!` line, a
/// script whose interpreter is missing — is a spawn failure: "cannot run
/// `PROGRAM`" with the hint, not a tool's "exited with status 127".
#[cfg(unix)]
#[test]
fn a_program_that_cannot_be_executed_is_a_spawn_failure_not_exit_127() {
    use std::os::unix::fs::PermissionsExt;
    let p = project()
        .file(
            "tiers.toml",
            r#"
[tiers.noshebang]
kind = "command"
inputs = ["a.txt"]
run = ["./noshebang"]

[tiers.badshebang]
kind = "command"
inputs = ["a.txt"]
run = ["./bad.sh"]
"#,
        )
        .file("a.txt", "alpha\n")
        .file("noshebang", "echo hi\n")
        .file("bad.sh", "#!/nonexistent/interpreter\necho hi\n")
        .build();
    for f in ["noshebang", "bad.sh"] {
        std::fs::set_permissions(p.path(f), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let run = p.tiers(&["build"]).expect_code(1);
    for program in ["./noshebang", "./bad.sh"] {
        assert!(
            run.stderr.contains(&format!("cannot run `{program}`")),
            "`{program}` could not be run, which tiers should say as a spawn failure:\n{}",
            run.stderr
        );
    }
    assert!(
        !run.stderr.contains("exited with status 127"),
        "a spawn failure is reported as the tool's exit status:\n{}",
        run.stderr
    );
}

/// `keep = 1` keeps one entry. A key restored through a candidate and then
/// rebuilt (`--rebuild`) has its own entry: the entry that once served it is
/// no longer kept for it.
#[test]
fn a_rebuilt_alias_key_does_not_keep_its_old_serving_entry_from_retention() {
    let p = project()
        .file("tiers.toml", format!("{USES_A_ONLY}keep = 1\n"))
        .file("a.txt", "a\n")
        .file("b.txt", "b\n")
        .build();
    let k1 = p.build(&[]).tier("t")["key"].as_str().unwrap().to_owned();
    p.write("b.txt", "b2\n");
    assert_eq!(p.build(&[]).status("t"), "restored");
    let rebuilt = p.build(&["--rebuild", "t"]);
    assert_eq!(rebuilt.status("t"), "rebuilt");
    p.tiers(&["gc"]).expect_code(0);
    let entries: Vec<String> = std::fs::read_dir(p.cache_dir().join("t"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "keep = 1, yet the entry {k1} that once served the rebuilt key is kept: {entries:?}"
    );
}

/// Once the `tiers` binary's file is gone mid-build (uninstalled, or upgraded by
/// a remove and a write), later tools still start: the supervisor is this
/// process's own executable, not the path it was started from.
#[cfg(target_os = "linux")]
#[test]
fn tools_still_run_after_the_tiers_binary_is_removed_mid_build() {
    use std::time::{Duration, Instant};
    let bin_dir = tempfile::tempdir().unwrap();
    let bin = bin_dir.path().join("tiers");
    std::fs::copy(support::tiers_bin(), &bin).unwrap();
    let p = project()
        .file(
            "tiers.toml",
            r#"
[tiers.a]
kind = "command"
inputs = ["a.txt"]
run = ["sh", "-c", "touch started; sleep 1; echo x > \"$TIERS_OUT/x\""]

[tiers.b]
kind = "command"
inputs = ["a.txt"]
after = ["a"]
run = ["sh", "-c", "echo y > \"$TIERS_OUT/y\""]
"#,
        )
        .file("a.txt", "alpha\n")
        .build();
    let child = std::process::Command::new(&bin)
        .arg("-C")
        .arg(p.root())
        .args(["build", "--json"])
        .env_remove("TIERS_CACHE_DIR")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !p.path("started").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tier a never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_file(&bin).unwrap();
    let out = child.wait_with_output().unwrap();
    let run = support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !run.stderr.contains("cannot run `sh`") && !run.stdout.contains("cannot run `sh`"),
        "tiers blames `sh` for its own binary being gone:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    let run = run.expect_code(0);
    assert_eq!(run.status("b"), "built");
}
