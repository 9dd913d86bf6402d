//! Findings of a second review of the blob store (issue 15), one test per promise:
//! a project moved with its cache dir, and an entry restored from a shared cache
//! whose record lacks a blob the entry names.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{entry_dir, project, tiers_bin, Run};

fn run(project: &Path, args: &[&str]) -> Run {
    let out = Command::new(tiers_bin())
        .arg("-C")
        .arg(project)
        .args(args)
        .env_remove("TIERS_CACHE_DIR")
        .env_remove("TIERS_REMOTE_URL")
        .env_remove("TIERS_REMOTE_MODE")
        .output()
        .expect("run tiers");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn build(project: &Path) -> Run {
    run(project, &["build", "--json"]).expect_code(0)
}

fn run_ok(project: &Path, args: &[&str]) -> Run {
    run(project, args).expect_code(0)
}

fn export(project: &Path) -> Run {
    run(project, &["export", "sym", "-o", "/dev/null"])
}

#[test]
fn moving_a_project_with_its_cache_dir_keeps_the_blobs_its_entries_name() {
    let p = project().build();
    let (before, after) = (p.path("one"), p.path("two"));
    std::fs::create_dir_all(&before).unwrap();
    std::fs::write(
        before.join("tiers.toml"),
        "[tiers.sym]\nkind = \"symtab\"\n",
    )
    .unwrap();
    for i in 0..3 {
        std::fs::write(
            before.join(format!("m{i}.py")),
            format!("def f{i}(): pass\n"),
        )
        .unwrap();
    }
    build(&before);
    // `mv project elsewhere`, or a CI cache restored into another workspace path.
    std::fs::rename(&before, &after).unwrap();
    let run = build(&after);
    assert_eq!(run.status("sym"), "fresh", "{}", run.stderr);
    run_ok(&after, &["gc"]);
    let out = export(&after);
    assert_eq!(
        out.code, 0,
        "the moved entry is fresh, yet `tiers gc` swept the blobs it names:\n{}",
        out.stderr
    );
}

// A shared cache in a directory (see tests/remote.rs for its layout).

const FILES: usize = 12;

fn source(i: usize) -> String {
    format!("def f{i}():\n    return {i}\n")
}

fn write_checkout(dir: &Path, remote: &Path, keep: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let toml = format!(
        "[remote]\nurl = \"file://{}\"\n[tiers.sym]\nkind = \"symtab\"\nkeep = {keep}\n",
        remote.display()
    );
    std::fs::write(dir.join("tiers.toml"), toml).unwrap();
    for i in 0..FILES {
        std::fs::write(dir.join(format!("m{i}.py")), source(i)).unwrap();
    }
}

/// The pack of per-file entries that holds `content`'s, as `entry`'s
/// `per-file.bin` names it (records: content, entry and pack digests, offset,
/// length).
fn per_file_blob(cache: &Path, entry: &Path, content: &[u8]) -> String {
    let want = <sha2::Sha256 as sha2::Digest>::digest(content);
    let header = std::fs::read(entry.join("per-file.bin")).unwrap();
    let part = hex(&header[8 + usize::from(want[0] >> 4) * 32..][..32]);
    let bytes = std::fs::read(cache.join("blobs").join(&part[..2]).join(&part)).unwrap();
    bytes[8..]
        .chunks_exact(104)
        .find(|r| r[..32] == want[..])
        .map(|r| hex(&r[64..96]))
        .expect("the content is in its part")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Rewrite the record's packs as one pack without the blob `missing` (what a
/// partial upload by another tool, or a hand-pruned store, leaves).
fn drop_carried(remote: &Path, missing: &str) {
    let (path, mut rec) = support::remote_record(remote, "sym");
    let mut w = tiers_remote::packs::PackWriter::new(1 << 30);
    let mut dropped = false;
    for p in rec["packs"].as_array().unwrap() {
        let pack: tiers_remote::PackRef = serde_json::from_value(p.clone()).unwrap();
        let bytes = std::fs::read(remote.join(pack.path())).unwrap();
        for (d, blob) in tiers_remote::packs::unpack_all(&bytes, &pack).unwrap() {
            if d.to_string() == missing {
                dropped = true;
            } else {
                w.add(d, &blob).unwrap();
            }
        }
    }
    assert!(dropped, "the record's packs hold `{missing}`");
    let packed = w.finish().unwrap();
    std::fs::write(remote.join(packed.pack.path()), &packed.bytes).unwrap();
    rec["packs"] = serde_json::json!([packed.pack]);
    std::fs::write(path, serde_json::to_vec(&rec).unwrap()).unwrap();
}

/// A first checkout builds and uploads; its record is then made to lack the
/// per-file entry of `m{which}.py`. Returns the remote and that blob's digest.
fn shared_without(root: &Path, which: usize) -> (PathBuf, String) {
    let remote = root.join("remote");
    std::fs::create_dir_all(&remote).unwrap();
    let first = root.join("first");
    write_checkout(&first, &remote, 10);
    let run = build(&first);
    let entry = entry_dir(&run, "sym");
    let missing = per_file_blob(&first.join(".tiers"), &entry, source(which).as_bytes());
    drop_carried(&remote, &missing);
    (remote, missing)
}

#[test]
fn an_entry_restored_from_a_record_that_lacks_a_named_blob_can_be_exported() {
    let p = project().build();
    let (remote, missing) = shared_without(p.root(), 3);
    let second = p.path("second");
    write_checkout(&second, &remote, 10);
    let run = build(&second);
    let out = export(&second);
    assert_eq!(
        out.code, 0,
        "`tiers build` reported `{}` with exit 0, but the entry lacks the per-file entry `{missing}`:\n{}",
        run.status("sym"),
        out.stderr
    );
}

/// The change time of `path`.
fn ctime(path: &Path) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.ctime(), m.ctime_nsec())
}

/// The modification time of `path`.
fn mtime(path: &Path) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.mtime(), m.mtime_nsec())
}

#[test]
fn a_build_from_a_restored_entry_never_names_a_blob_the_store_lacks() {
    // The checkout once held the missing blob and swept it, so its shard exists and
    // is older than the restored index: the build trusts the shard. A candidate
    // whose shard the restore itself writes into would not show it: try the next.
    for which in 0..FILES {
        let p = project().build();
        let (remote, missing) = shared_without(p.root(), which);
        let b = p.path("second");
        write_checkout(&b, &remote, 1);
        let cache = b.join(".tiers");
        // A state with every file and one more, then one without `m{which}.py`:
        // retention removes the first and the sweep its per-file entry.
        std::fs::write(b.join("extra.py"), "EXTRA = 1\n").unwrap();
        build(&b);
        std::fs::remove_file(b.join("extra.py")).unwrap();
        std::fs::remove_file(b.join(format!("m{which}.py"))).unwrap();
        build(&b);
        run_ok(&b, &["gc"]);
        let blob = cache.join("blobs").join(&missing[..2]).join(&missing);
        assert!(!blob.exists(), "the sweep removed `{missing}`");
        std::thread::sleep(std::time::Duration::from_millis(20));
        // Back to the first checkout's state: restored, without that blob.
        std::fs::write(b.join(format!("m{which}.py")), source(which)).unwrap();
        let run = build(&b);
        if run.status("sym") != "restored" {
            // A restore that refuses the incomplete record leaves nothing to trust.
            assert_eq!(export(&b).code, 0, "{}", run.stderr);
            return;
        }
        let index = entry_dir(&run, "sym").join("index.bin");
        if ctime(blob.parent().unwrap()) >= mtime(&index) {
            continue;
        }
        // An edit elsewhere: the build starts from the restored entry.
        let edited = (which + 1) % FILES;
        std::fs::write(b.join(format!("m{edited}.py")), "def edited(): pass\n").unwrap();
        let run = build(&b);
        assert_eq!(run.status("sym"), "rebuilt", "{}", run.stderr);
        let out = export(&b);
        assert_eq!(
            out.code, 0,
            "the edit's build reported `rebuilt` and named `{missing}`, which the store lacks:\n{}",
            out.stderr
        );
        return;
    }
    panic!("every candidate's shard was written by the restore");
}
