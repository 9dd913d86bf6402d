//! Review of the shared cache's format 2 (issue 19), end to end through the
//! `tiers` binary and a directory store: entries a second checkout must restore.

mod support;

use support::{project, runs, Project, Run};

/// Two command tiers: `stamp` writes one empty file, `tail` a file with bytes
/// and an empty one after it (the last blob of its pack).
fn checkout(store: &std::path::Path) -> Project {
    let tool = r#"import os, pathlib
project = pathlib.Path(os.environ["TIERS_PROJECT"])
with open(project / "runs.log", "a") as log:
    log.write(os.environ["TIERS_TIER"] + "\n")
out = pathlib.Path(os.environ["TIERS_OUT"])
if os.environ["TIERS_TIER"] == "stamp":
    (out / "done").write_bytes(b"")
else:
    (out / "a.txt").write_text("alpha\n" * 100)
    (out / "z.txt").write_bytes(b"")
"#;
    let toml = format!(
        r#"[remote]
url = "file://{}"
mode = "read-write"
timeout = 10

[tiers.stamp]
kind = "command"
inputs = ["src/*.txt"]
run = ["python3", "tool.py"]

[tiers.tail]
kind = "command"
inputs = ["src/*.txt"]
run = ["python3", "tool.py"]
"#,
        store.display()
    );
    project()
        .file("tiers.toml", toml)
        .file("tool.py", tool)
        .file("src/a.txt", "alpha\n")
        .build()
}

fn build(p: &Project) -> Run {
    let mut c = p.cmd(&["build", "--json"]);
    for var in [
        "TIERS_REMOTE_URL",
        "TIERS_REMOTE_MODE",
        "TIERS_REMOTE_SIGNING_KEY_ENV",
    ] {
        c.env_remove(var);
    }
    let out = c.output().expect("run tiers");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An empty file is a blob of no bytes, placed where a frame starts (after the
/// marker's and tree's frames, or at the pack's end): a second checkout, whose
/// store lacks it, restores both entries without a warning.
#[test]
fn entries_with_empty_files_restore_in_a_fresh_checkout() {
    let store = tempfile::tempdir().unwrap();
    let first = checkout(store.path());
    let run = build(&first);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for tier in ["stamp", "tail"] {
        assert_eq!(run.status(tier), "built", "{tier}: {}", run.stderr);
    }

    let second = checkout(store.path());
    let run = build(&second);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for tier in ["stamp", "tail"] {
        assert_eq!(run.status(tier), "restored", "{tier}: {}", run.stderr);
        assert_eq!(runs(&second, tier), 0, "{tier}");
    }
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("shared cache"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}
