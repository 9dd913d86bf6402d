//! Discovered inputs (issue 7): a command tier declares a.txt and b.txt, reads only
//! b.txt and says so in its dep file.

mod support;

use support::{project, runs, Project};

const TOML: &str = r#"
[tiers.t]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "tool.py"]
"#;

/// Reads b.txt only, records each run, and names b.txt in `$TIERS_DEPFILE`.
const TOOL: &str = r#"import os, pathlib
p = pathlib.Path(os.environ["TIERS_PROJECT"])
with open(p / "runs.log", "a") as log:
    log.write(os.environ["TIERS_TIER"] + "\n")
data = (p / "b.txt").read_text()
pathlib.Path(os.environ["TIERS_OUT"], "out.txt").write_text(data.upper())
pathlib.Path(os.environ["TIERS_DEPFILE"]).write_text("b.txt\n")
"#;

fn demo() -> Project {
    project()
        .file("tiers.toml", TOML)
        .file("tool.py", TOOL)
        .file("a.txt", "a1")
        .file("b.txt", "b1")
        .build()
}

/// Remove everything in the cache dir but the entries, the candidate lists and the
/// marks that say tiers made the directories (what a CI cache of `.tiers` keeps).
fn keep_only_entries_and_candidates(p: &Project) {
    let root = p.cache_dir().join("t");
    for item in std::fs::read_dir(&root).unwrap().flatten() {
        let name = item.file_name().to_string_lossy().into_owned();
        let keep = name.len() == 64 || name == ".candidates" || name == ".tiers-root";
        if !keep {
            let path = item.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
    for item in std::fs::read_dir(p.cache_dir()).unwrap().flatten() {
        if item.file_name() != "t" && item.file_name() != "CACHEDIR.TAG" {
            let path = item.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
}

#[test]
fn warm_unused_input_change_runs_nothing() {
    let p = demo();
    assert_eq!(p.build(&[]).status("t"), "built");
    p.write("a.txt", "a2");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "restored");
    assert_eq!(
        run.reasons("t"),
        ["`a.txt` changed but the last build did not use it"]
    );
    assert_eq!(runs(&p, "t"), 1);
}

#[test]
fn restored_hit_is_exact_next_time() {
    let p = demo();
    p.build(&[]);
    p.write("a.txt", "a2");
    let restored = p.build(&[]);
    assert_eq!(restored.status("t"), "restored");
    let again = p.build(&[]);
    assert_eq!(again.status("t"), "fresh");
    assert_eq!(again.tier("t")["key"], restored.tier("t")["key"]);
    assert_eq!(again.tier("t")["path"], restored.tier("t")["path"]);
    assert_eq!(runs(&p, "t"), 1);
}

#[test]
fn cold_cache_with_only_entries_and_candidates_restores() {
    let p = demo();
    let first = p.build(&[]);
    keep_only_entries_and_candidates(&p);
    p.write("a.txt", "a2");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "restored");
    assert_eq!(run.tier("t")["path"], first.tier("t")["path"]);
    assert_eq!(runs(&p, "t"), 1);
    // And `paths` now reports that entry.
    assert_eq!(p.paths()["tiers"]["t"]["path"], first.tier("t")["path"]);
}

#[test]
fn second_checkout_sharing_the_cache_restores() {
    let p = demo();
    p.build(&[]);
    let clone = project()
        .file("tiers.toml", TOML)
        .file("tool.py", TOOL)
        .file("a.txt", "a-changed-in-the-clone")
        .file("b.txt", "b1")
        .build();
    let cache = p.cache_dir();
    let run = clone
        .tiers(&["--cache-dir", cache.to_str().unwrap(), "build", "--json"])
        .expect_code(0);
    assert_eq!(run.status("t"), "restored");
    assert_eq!(runs(&clone, "t"), 0);
}

#[test]
fn used_input_change_rebuilds_warm_and_cold() {
    let p = demo();
    p.build(&[]);
    p.write("b.txt", "b2");
    let warm = p.build(&[]);
    assert_eq!(warm.status("t"), "rebuilt");
    assert!(
        warm.reasons("t")
            .contains(&"the input `b.txt` changed".to_owned()),
        "{:?}",
        warm.reasons("t")
    );
    assert_eq!(runs(&p, "t"), 2);

    keep_only_entries_and_candidates(&p);
    p.write("b.txt", "b3");
    let cold = p.build(&[]);
    assert_eq!(cold.status("t"), "built");
    assert_eq!(runs(&p, "t"), 3);
    let out = std::path::PathBuf::from(cold.tier("t")["path"].as_str().unwrap()).join("out.txt");
    assert_eq!(std::fs::read_to_string(out).unwrap(), "B3");
}

#[test]
fn a_new_declared_input_rebuilds() {
    let p = demo();
    p.build(&[]);
    p.write("c.txt", "c1");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "rebuilt");
    assert_eq!(run.reasons("t"), ["the input `c.txt` was added"]);
    assert_eq!(runs(&p, "t"), 2);
}

#[test]
fn a_changed_command_line_rebuilds_even_with_unused_changes() {
    let p = demo();
    p.build(&[]);
    p.write(
        "tiers.toml",
        TOML.replace(
            r#"["python3", "tool.py"]"#,
            r#"["python3", "tool.py", "--flag"]"#,
        ),
    );
    p.write("a.txt", "a2");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "rebuilt");
    assert!(
        run.reasons("t")[0].starts_with("the option `run` changed"),
        "{:?}",
        run.reasons("t")
    );
    assert_eq!(runs(&p, "t"), 2);
}

#[test]
fn a_dep_file_naming_an_undeclared_path_fails_and_publishes_nothing() {
    let p = demo();
    p.write(
        "tool.py",
        TOOL.replace("\"b.txt\\n\"", "\"b.txt\\ntool.py\\n\""),
    );
    let run = p.tiers(&["build", "--json"]).expect_code(1);
    assert_eq!(run.status("t"), "failed");
    let err = run.tier("t")["error"].as_str().unwrap().to_owned();
    assert!(
        err.contains("`tool.py`") && err.contains("not a declared input"),
        "{err}"
    );
    let root = p.cache_dir().join("t");
    let entries: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().len() == 64)
        .collect();
    assert!(entries.is_empty(), "an entry was published");
    assert_eq!(p.paths()["tiers"]["t"]["exists"], false);
}

#[test]
fn explain_shows_used_inputs_and_candidate_verdicts() {
    let p = demo();
    p.build(&[]);
    p.write("b.txt", "b2");
    p.build(&[]);
    p.write("a.txt", "a2");
    let out = p.tiers(&["explain", "t"]).expect_code(0).stdout;
    assert!(
        out.contains("used inputs (reported by the last build): b.txt"),
        "{out}"
    );
    assert!(
        out.contains("`a.txt` changed but the last build did not use it"),
        "{out}"
    );
    assert!(
        out.contains("matches: every input it used is unchanged"),
        "{out}"
    );
    assert!(out.contains("rejected: b.txt changed"), "{out}");

    // Once restored, the key is fresh, served by the entry built for other inputs.
    assert_eq!(p.build(&[]).status("t"), "restored");
    let out = p.tiers(&["explain", "t"]).expect_code(0).stdout;
    assert!(out.contains("fresh: served by entry "), "{out}");
}

#[test]
fn concurrent_builds_keep_a_consistent_candidate_list() {
    for round in 0..8 {
        let p = demo();
        p.write("b.txt", format!("b-{round}"));
        let children: Vec<_> = (0..3)
            .map(|i| {
                p.write(&format!("a{i}.txt"), "");
                p.cmd(&["build", "--json"])
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
        }
        let dir = p.cache_dir().join("t").join(".candidates");
        for f in std::fs::read_dir(&dir).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "json") {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(f.path()).unwrap())
                        .expect("candidate list is valid JSON");
                let list = v["candidates"].as_array().unwrap();
                let mut entries: Vec<_> =
                    list.iter().map(|c| c["entry"].as_str().unwrap()).collect();
                let n = entries.len();
                entries.sort();
                entries.dedup();
                assert_eq!(entries.len(), n, "duplicate candidates");
                for e in entries {
                    assert!(p.cache_dir().join("t").join(e).join("entry.json").exists());
                }
            }
        }
        // Whatever raced, an unused-input change now restores.
        p.write("a0.txt", "changed");
        assert_eq!(p.build(&[]).status("t"), "restored");
    }
}
