//! Findings of a review of the engine's blob store, one test per promise: retention
//! racing a build's pointer, a damaged blob under a rebuild's output, a project file
//! hard-linked into an output, an upload of a damaged blob, names that are not UTF-8.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;
use support::{entry_dir, project, sha256_hex};

const SYM: &str = "[tiers.sym]\nkind = \"symtab\"\n";

fn blob_path(cache: &Path, digest: &str) -> PathBuf {
    cache.join("blobs").join(&digest[..2]).join(digest)
}

/// Overwrite a blob in place (what a disk error or a stray writer does).
fn damage(path: &Path) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, b"damaged").unwrap();
}

#[test]
fn retention_never_removes_the_entry_a_build_just_pointed_at() {
    let p = project()
        .file("tiers.toml", format!("{SYM}keep = 1\n"))
        .file("m.py", "X = 0\n")
        .build();
    p.build(&[]);
    // Other checkouts' pointers, to keys with no entry: each costs retention a
    // look for an alias between reading the pointers and listing the entries,
    // which widens the window a build publishing meanwhile falls into.
    let pointers = p.cache_dir().join("sym/.pointers");
    for i in 0..20_000 {
        let key = sha256_hex(format!("gone {i}").as_bytes());
        let pointer = format!("{{\"key\":\"{key}\",\"project\":\"/elsewhere/{i}\"}}");
        std::fs::write(pointers.join(format!("{:032x}", i)), pointer).unwrap();
    }
    let done = AtomicBool::new(false);
    let mut gone = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                p.tiers(&["gc"]);
            }
        });
        for round in 1..=60 {
            p.write("m.py", format!("X = {round}\n"));
            let run = p.build(&[]);
            let entry = entry_dir(&run, "sym");
            if !entry.join("entry.json").exists() {
                gone.push(format!("round {round}: `{}`", entry.display()));
            }
        }
        done.store(true, Ordering::Relaxed);
    });
    assert!(
        gone.is_empty(),
        "the entry a build reported (and this checkout's pointer names) was removed by a concurrent `tiers gc`:\n{}",
        gone.join("\n")
    );
}

const COMMAND: &str = r#"[tiers.out]
kind = "command"
inputs = ["src/*.txt"]
run = ["sh", "-c", "echo right bytes > \"$TIERS_OUT/report.txt\""]
"#;

#[test]
fn a_rebuild_holds_the_bytes_its_command_wrote_not_a_damaged_blob() {
    let p = project()
        .file("tiers.toml", COMMAND)
        .file("src/a.txt", "a\n")
        .build();
    p.build(&[]);
    let blob = blob_path(&p.cache_dir(), &sha256_hex(b"right bytes\n"));
    damage(&blob);
    let run = p.build(&["--rebuild", "out"]);
    let report = entry_dir(&run, "out").join("report.txt");
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(&report).unwrap()),
        "right bytes\n",
        "the command wrote the right bytes; the published entry must hold them"
    );
}

/// A project with `src/a.txt` and one command tier `out` that runs `run` (a TOML
/// array).
fn command_project(run: &str) -> support::Project {
    project()
        .file(
            "tiers.toml",
            format!("[tiers.out]\nkind = \"command\"\ninputs = [\"src/*.txt\"]\nrun = {run}\n"),
        )
        .file("src/a.txt", "a\n")
        .build()
}

#[test]
fn storing_an_output_never_changes_a_project_file() {
    // A command that hard-links an input into its output (`cp -l`, `os.link`: a
    // cheap copy).
    let p = command_project(r#"["sh", "-c", "ln src/a.txt \"$TIERS_OUT/a.txt\""]"#);
    let source = p.path("src/a.txt");
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = std::fs::metadata(&source).unwrap();
    p.build(&[]);
    let after = std::fs::metadata(&source).unwrap();
    let blob = blob_path(&p.cache_dir(), &sha256_hex(b"a\n"));
    let blob_ino = std::fs::metadata(&blob).unwrap().ino();
    assert_eq!(
        (after.mode() & 0o777, after.ino() == blob_ino),
        (before.mode() & 0o777, false),
        "the user's source file was made read-only and became the blob: editing it \
         in place changes every entry that holds those bytes"
    );
}

const LIB: &str = "def helper_of_lib():\n    return 1\n\n\ndef only_in_lib():\n    pass\n";
const MAIN: &str = "from lib import helper_of_lib\n\nhelper_of_lib()\n";

/// The named blob of `entry` holding `needle` (a symtab per-file entry).
fn named_blob_with(cache: &Path, entry: &Path, needle: &[u8]) -> PathBuf {
    let tree: Value = support::entry_tree(entry).unwrap();
    tree["named"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| blob_path(cache, d.as_str().unwrap()))
        .find(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes.starts_with(b"TSYM") && bytes.windows(needle.len()).any(|w| w == needle)
        })
        .expect("a per-file entry holds the name")
}

#[test]
fn an_upload_never_sends_a_blob_that_does_not_match_its_digest() {
    let shared = tempfile::tempdir().unwrap();
    let remote = format!("[remote]\nurl = \"file://{}\"\n\n", shared.path().display());
    let first = project()
        .file("tiers.toml", SYM)
        .file("lib.py", LIB)
        .file("main.py", MAIN)
        .build();
    let built = first.build(&[]);
    let damaged = named_blob_with(
        &first.cache_dir(),
        &entry_dir(&built, "sym"),
        b"only_in_lib",
    );
    damage(&damaged);
    // The entry is fresh: this build owes the shared cache its upload.
    first.write("tiers.toml", format!("{remote}{SYM}"));
    first.build(&[]);

    let second = project()
        .file("tiers.toml", format!("{remote}{SYM}"))
        .file("lib.py", LIB)
        .file("main.py", MAIN)
        .build();
    let run = second.build(&[]);
    let rejected: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("shared cache"))
        .collect();
    assert!(
        rejected.is_empty(),
        "the first checkout uploaded an entry whose blob does not match its digest; \
         every checkout downloads it and rejects it:\n{}",
        rejected.join("\n")
    );
}

#[test]
fn a_command_output_with_a_name_that_is_not_utf8_is_published() {
    // An artifact is a directory of ordinary files; before the store, a command
    // could write any name the file system takes.
    let p = command_project(
        r#"["python3", "-c", 'import os; open(os.fsencode(os.environ["TIERS_OUT"]) + b"/caf\xe9.txt", "w").write("x")']"#,
    );
    let run = p.tiers(&["build", "--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
}
