//! The engine's blob store, end to end through the `tiers` binary: `tiers gc` and
//! retention racing builds in other processes, identical files of two tiers stored
//! once, a store emptied with its entries, damaged blobs found by their digest.
//!
//! Every check of a blob reads it from disk and hashes it here: a test that trusted
//! the store's own bookkeeping would pass with the store broken.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::Value;
use support::{entry_dir, project, sha256_hex, Project};

const SYM: &str = "[tiers.sym]\nkind = \"symtab\"\n";

/// `<entry>/entry.tree`, parsed.
fn tree(entry: &Path) -> Value {
    support::entry_tree(entry).unwrap_or_else(|e| panic!("{e}"))
}

/// Where the store keeps the blob `digest` (`.x`: executable).
fn blob_path(cache: &Path, digest: &str, exec: bool) -> PathBuf {
    let name = match exec {
        true => format!("{digest}.x"),
        false => digest.to_owned(),
    };
    cache.join("blobs").join(&digest[..2]).join(name)
}

/// Every blob file in the store's shards.
fn blob_files(cache: &Path) -> Vec<PathBuf> {
    let Ok(shards) = std::fs::read_dir(cache.join("blobs")) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = shards
        .flatten()
        .filter(|s| {
            let name = s.file_name();
            let name = name.to_string_lossy();
            name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .flat_map(|s| std::fs::read_dir(s.path()).expect("a shard").flatten())
        .map(|b| b.path())
        .collect();
    out.sort();
    out
}

/// The digests of `tree`'s files (with their executable bit) and of its named blobs.
fn tree_blobs(tree: &Value) -> Vec<(String, bool)> {
    let files = tree["files"].as_array().into_iter().flatten().map(|f| {
        (
            f["digest"].as_str().expect("a digest").to_owned(),
            f["exec"].as_bool().unwrap_or(false),
        )
    });
    let named = tree["named"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| (d.as_str().expect("a digest").to_owned(), false));
    files.chain(named).collect()
}

/// Every blob the entry's tree names, and every file it lists, is there and holds
/// the bytes of its digest; `Err` says which is not.
fn check_entry(cache: &Path, entry: &Path) -> Result<(), String> {
    let tree = support::entry_tree(entry)?;
    for (digest, exec) in tree_blobs(&tree) {
        let path = blob_path(cache, &digest, exec);
        match std::fs::read(&path) {
            Ok(bytes) if sha256_hex(&bytes) == digest => {}
            Ok(_) => return Err(format!("`{}` does not match its name", path.display())),
            Err(e) => return Err(format!("`{}`: {e}", path.display())),
        }
    }
    for f in tree["files"].as_array().into_iter().flatten() {
        let path = entry.join(f["path"].as_str().expect("a path"));
        let bytes = std::fs::read(&path).map_err(|e| format!("`{}`: {e}", path.display()))?;
        if sha256_hex(&bytes) != f["digest"] {
            return Err(format!("`{}` does not match its tree", path.display()));
        }
    }
    Ok(())
}

fn assert_entry_intact(cache: &Path, entry: &Path) {
    if let Err(e) = check_entry(cache, entry) {
        panic!("entry `{}`: {e}", entry.display());
    }
}

/// The resolved targets (`module.qualname`) of the calls in `path`, from an export.
fn call_targets(table: &Value, path: &str) -> Vec<String> {
    table["graph"]["files"][path]["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no calls of `{path}` in the export"))
        .iter()
        .map(|c| {
            format!(
                "{}.{}",
                c["target"]["module"].as_str().unwrap_or_default(),
                c["target"]["qualname"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

const MODULES: usize = 36;

/// Module `i` of the racing project at `version`: it imports and calls the next one,
/// so a build reads other modules' per-file entries to resolve it.
fn module(i: usize, version: usize) -> String {
    let j = (i + 1) % MODULES;
    format!(
        "from pkg.m{j} import f{j}\n\n\ndef f{i}(x):\n    return f{j}(x) + {version}\n\n\nclass C{i}:\n    v{version} = {version}\n"
    )
}

#[test]
fn gc_and_retention_racing_builds_never_break_a_build_or_its_entry() {
    let mut builder = project()
        .file("tiers.toml", format!("{SYM}keep = 1\n"))
        .file("pkg/__init__.py", "");
    for i in 0..MODULES {
        builder = builder.file(&format!("pkg/m{i}.py"), module(i, 0));
    }
    let p = builder.build();
    let cache = p.cache_dir();
    p.build(&[]);

    // The looping gc reads a config without `keep`: it sweeps and applies no
    // retention of its own. Retention (`keep = 1`) runs in the builds, which
    // remove an entry each round and so sweep after every fourth. (gc's own
    // retention racing a build can remove the entry the build just made:
    // `tests/store_review.rs`.)
    let gc_config = p.path("gc.toml");
    std::fs::write(&gc_config, SYM).unwrap();
    let gc_config = gc_config.to_str().unwrap();
    let done = AtomicBool::new(false);
    let (swept, collided, gc_runs) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let gc_failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        // `tiers gc` in a loop, in its own processes, for as long as the builds run:
        // each one applies retention and sweeps unless a build holds the store.
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                let gc = p.tiers(&["--config", gc_config, "gc"]);
                gc_runs.fetch_add(1, Ordering::Relaxed);
                if gc.code != 0 {
                    gc_failures.lock().unwrap().push(gc.stderr);
                    continue;
                }
                if gc.stdout.contains("blobs not swept: a build is running") {
                    collided.fetch_add(1, Ordering::Relaxed);
                } else if !gc.stdout.contains("swept 0 blobs") {
                    swept.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let result = std::panic::catch_unwind(|| {
            for round in 1..=30 {
                let i = (round * 7) % MODULES;
                p.write(&format!("pkg/m{i}.py"), module(i, round));
                let run = p.tiers(&["build", "--json"]);
                assert_eq!(
                    run.code, 0,
                    "round {round}: the build failed\nstdout:\n{}\nstderr:\n{}",
                    run.stdout, run.stderr
                );
                assert_eq!(run.status("sym"), "rebuilt", "round {round}");
                let entry = entry_dir(&run, "sym");
                if let Err(e) = check_entry(&cache, &entry) {
                    panic!("round {round}: entry `{}`: {e}", entry.display());
                }
                let export = p.tiers(&["export", "sym"]);
                assert_eq!(export.code, 0, "round {round}: {}", export.stderr);
                let table = export.json();
                assert_eq!(
                    table["files"].as_array().map(Vec::len),
                    Some(MODULES + 1),
                    "round {round}"
                );
                let path = format!("pkg/m{i}.py");
                let j = (i + 1) % MODULES;
                assert_eq!(
                    call_targets(&table, &path),
                    [format!("pkg.m{j}.f{j}")],
                    "round {round}"
                );
            }
        });
        done.store(true, Ordering::Relaxed);
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    });
    let failures = gc_failures.into_inner().unwrap();
    assert!(failures.is_empty(), "`tiers gc` failed:\n{failures:#?}");
    // The race was real: gc met running builds, and swept between them.
    let (runs, collided, swept) = (
        gc_runs.into_inner(),
        collided.into_inner(),
        swept.into_inner(),
    );
    assert!(collided > 0, "no gc ran during a build ({runs} runs)");
    assert!(swept > 0, "no gc swept anything ({runs} runs)");
    // Retention (`keep = 1`) and the sweeps left one entry and only its blobs.
    let last = p.build(&[]);
    let entry = entry_dir(&last, "sym");
    p.tiers(&["gc"]).expect_code(0);
    assert_entry_intact(&cache, &entry);
    let mut named: Vec<PathBuf> = tree_blobs(&tree(&entry))
        .into_iter()
        .map(|(d, x)| blob_path(&cache, &d, x))
        .collect();
    named.sort();
    named.dedup();
    assert_eq!(
        blob_files(&cache),
        named,
        "the store holds what the entry names"
    );
}

/// Two command tiers that both write `report.txt` with the same bytes, and a file
/// of their own.
const TWO_COMMANDS: &str = r#"
[tiers.one]
kind = "command"
inputs = ["src/*.txt"]
run = ["sh", "-c", "echo same bytes > \"$TIERS_OUT/report.txt\"; echo $TIERS_TIER > \"$TIERS_OUT/own.txt\""]

[tiers.two]
kind = "command"
inputs = ["src/*.txt"]
run = ["sh", "-c", "mkdir \"$TIERS_OUT/sub\"; echo same bytes > \"$TIERS_OUT/sub/report.txt\"; echo $TIERS_TIER > \"$TIERS_OUT/own.txt\""]
"#;

#[test]
fn identical_files_of_two_tiers_are_one_blob_and_one_inode() {
    use std::os::unix::fs::MetadataExt;

    let p = project()
        .file("tiers.toml", TWO_COMMANDS)
        .file("src/a.txt", "a\n")
        .build();
    let run = p.build(&[]);
    let cache = p.cache_dir();
    let (one, two) = (entry_dir(&run, "one"), entry_dir(&run, "two"));
    assert_entry_intact(&cache, &one);
    assert_entry_intact(&cache, &two);
    let same = sha256_hex(b"same bytes\n");
    let blob = blob_path(&cache, &same, false);
    assert_eq!(
        blob_files(&cache),
        {
            let mut all = vec![
                blob,
                blob_path(&cache, &sha256_hex(b"one\n"), false),
                blob_path(&cache, &sha256_hex(b"two\n"), false),
            ];
            all.sort();
            all
        },
        "three contents, three blobs"
    );
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    let (a, b) = (one.join("report.txt"), two.join("sub/report.txt"));
    assert_eq!(ino(&a), ino(&b), "both entries' files are one inode");
    assert_eq!(ino(&a), ino(&blob_path(&cache, &same, false)));
    assert_eq!(std::fs::metadata(&a).unwrap().nlink(), 3);
    assert_eq!(std::fs::read(&b).unwrap(), b"same bytes\n");
}

#[test]
fn an_emptied_cache_leaves_an_empty_blob_store_after_gc() {
    let config = format!("{TWO_COMMANDS}\n{SYM}");
    let p = project()
        .file("tiers.toml", &config)
        .file("src/a.txt", "a\n")
        .file("m.py", "def f():\n    pass\n")
        .build();
    p.build(&[]);
    assert!(blob_files(&p.cache_dir()).len() >= 4);
    // This checkout's pointers keep its entries from retention; a second checkout
    // sharing the cache dir, with no entry to keep and pointers that keep nothing,
    // is how retention removes every entry.
    let zero = config.replace("kind = ", "keep = 0\nkind = ");
    let other = project()
        .file("tiers.toml", format!("[cache]\npointer_days = 0\n{zero}"))
        .build();
    let cache = p.cache_dir();
    let gc = other
        .tiers(&["--cache-dir", cache.to_str().unwrap(), "gc"])
        .expect_code(0);
    assert!(gc.stdout.contains("removed 3 entries"), "{}", gc.stdout);
    assert!(gc.stdout.contains("swept "), "{}", gc.stdout);
    assert_eq!(blob_files(&cache), Vec::<PathBuf>::new(), "{}", gc.stdout);

    // The same from this checkout, with its entries removed by hand.
    p.build(&[]);
    assert!(!blob_files(&cache).is_empty());
    for tier in ["one", "two", "sym"] {
        std::fs::remove_dir_all(cache.join(tier)).unwrap();
    }
    p.tiers(&["gc"]).expect_code(0);
    assert_eq!(blob_files(&cache), Vec::<PathBuf>::new());
}

/// Overwrite a blob in place (what a disk error or a stray writer does).
fn damage(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, b"damaged").unwrap();
}

/// The named blob of `entry` that holds `needle`: the pack of per-file entries of
/// the symtab kind that holds its file's names.
fn named_blob_with(cache: &Path, entry: &Path, needle: &[u8]) -> PathBuf {
    let found: Vec<PathBuf> = tree(entry)["named"]
        .as_array()
        .expect("named blobs")
        .iter()
        .map(|d| blob_path(cache, d.as_str().unwrap(), false))
        .filter(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes.starts_with(b"TSYM") && bytes.windows(needle.len()).any(|w| w == needle)
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one pack of per-file entries holds the name: {found:?}"
    );
    found.into_iter().next().unwrap()
}

const LIB: &str = "def helper_of_lib():\n    return 1\n\n\ndef only_in_lib():\n    pass\n";
const MAIN: &str = "from lib import helper_of_lib\n\nhelper_of_lib()\n";

#[test]
fn a_damaged_per_file_blob_is_found_by_its_digest_and_made_again() {
    let p = project()
        .file("tiers.toml", SYM)
        .file("lib.py", LIB)
        .file("main.py", "")
        .file("other.py", "def unrelated():\n    pass\n")
        .build();
    let cache = p.cache_dir();
    let first = p.build(&[]);
    let damaged = named_blob_with(&cache, &entry_dir(&first, "sym"), b"only_in_lib");
    assert!(
        std::fs::read(&damaged)
            .unwrap()
            .windows(9)
            .any(|w| w == b"unrelated"),
        "one pack holds the three files' entries"
    );
    damage(&damaged);
    // Resolving the edited file's import reads `lib.py`'s per-file entry.
    p.write("main.py", MAIN);
    let run = p.tiers(&["build", "--json"]).expect_code(0);
    assert!(
        run.stderr.contains("does not match its digest"),
        "{}",
        run.stderr
    );
    assert_eq!(run.status("sym"), "rebuilt");
    // `other.py`'s entry, which the edit did not read, is made again too: the
    // new entry names no blob of the damaged pack.
    assert_entry_intact(&cache, &entry_dir(&run, "sym"));
    assert!(
        run.stderr
            .contains("1 file whose per-file entries were in a missing or damaged pack"),
        "{}",
        run.stderr
    );
    // The damaged pack is removed; its per-file entries are made again.
    assert!(
        std::fs::read(&damaged).map_or(true, |b| b != b"damaged"),
        "the damaged pack is still in the store"
    );
    let table = p.tiers(&["export", "sym"]).expect_code(0).json();
    assert_eq!(call_targets(&table, "main.py"), ["lib.helper_of_lib"]);
}

#[test]
fn a_damaged_blob_never_reaches_another_checkout_through_the_shared_cache() {
    let shared = tempfile::tempdir().unwrap();
    let remote = format!("[remote]\nurl = \"file://{}\"\n\n", shared.path().display());
    let sample = |config: &str| -> Project {
        project()
            .file("tiers.toml", config)
            .file("lib.py", LIB)
            .file("main.py", MAIN)
            .build()
    };
    // Built before the shared cache was configured: uploaded by the next build.
    let first = sample(SYM);
    let cache = first.cache_dir();
    let built = first.build(&[]);
    let damaged = named_blob_with(&cache, &entry_dir(&built, "sym"), b"only_in_lib");
    damage(&damaged);
    first.write("tiers.toml", format!("{remote}{SYM}"));
    first.build(&[]);

    // Whatever the first checkout sent, the second one's entry is whole and right.
    let second = sample(&format!("{remote}{SYM}"));
    let run = second.build(&[]);
    let entry = entry_dir(&run, "sym");
    assert_entry_intact(&second.cache_dir(), &entry);
    let table = second.tiers(&["export", "sym"]).expect_code(0).json();
    assert_eq!(call_targets(&table, "main.py"), ["lib.helper_of_lib"]);
    assert!(
        !blob_files(&second.cache_dir())
            .iter()
            .any(|b| std::fs::read(b).unwrap() == b"damaged"),
        "no damaged blob entered the second store"
    );
}
