//! The shared cache level (issue 8), end to end through the `tiers` binary, against
//! real servers started on 127.0.0.1 by the test: a directory (`file://`), nginx with
//! WebDAV, redis-server and moto's S3 server.
//!
//! Two checkouts of one project at different paths, each with its own cache dir,
//! share one remote: the first builds and uploads, the second restores without
//! running a builder. Failures of the remote — down, stopped mid-run, a corrupt blob,
//! a hostile archive — are one warning and a local build.

#[path = "support/servers.rs"]
mod servers;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use servers::{Nginx, Redis, S3};
use support::{project, runs, Project, Run, COUNTING_SCRIPT};

/// The project: a command tier, a codeql tier (the stand-in CLI) and a symtab tier.
fn checkout(remote: &str, extra: &str) -> Project {
    let toml = format!(
        r#"[remote]
{remote}
timeout = 10
{extra}
[tiers.cmd]
kind = "command"
inputs = ["src/*.txt"]
run = ["python3", "tool.py", "src/a.txt"]

[tiers.db]
kind = "codeql"
inputs = ["src/**/*.py"]

[tiers.symbols]
kind = "symtab"
inputs = ["src/**/*.py"]
"#
    );
    project()
        .file("tiers.toml", toml)
        .file("tool.py", COUNTING_SCRIPT)
        .file("src/a.txt", "alpha\n")
        .file("src/b.txt", "beta\n")
        .file("src/app.py", "def main():\n    return 1\n")
        .file("src/pkg/__init__.py", "from .util import helper\n")
        .file("src/pkg/util.py", "def helper():\n    pass\n")
        .build()
}

fn url_line(url: &str) -> String {
    format!("url = \"{url}\"")
}

fn fake_codeql() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/fake-codeql")
}

/// `tiers ARGS…` on `p`, with the stand-in CodeQL logging into the project and no
/// remote settings inherited from the environment.
fn tiers(p: &Project, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c: Command = p.cmd(args);
    c.env("CODEQL_PATH", fake_codeql())
        .env("FAKE_CODEQL_LOG", p.path("codeql-calls.log"))
        .env_remove("FAKE_CODEQL_FAIL")
        .env_remove("FAKE_CODEQL_VERSION");
    for var in [
        "TIERS_REMOTE_URL",
        "TIERS_REMOTE_MODE",
        "TIERS_REMOTE_USERNAME",
        "TIERS_REMOTE_PASSWORD",
        "TIERS_REMOTE_TOKEN",
        "TIERS_REMOTE_SIGNING_KEY_ENV",
        SIGNING_VAR,
    ] {
        c.env_remove(var);
    }
    c.envs(env.iter().copied());
    let out = c.output().expect("run tiers");
    support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn build(p: &Project, env: &[(&str, &str)]) -> Run {
    tiers(p, &["build", "--json"], env).expect_code(0)
}

/// How many times the stand-in CodeQL created a database for `p`.
fn creates(p: &Project) -> usize {
    p.read("codeql-calls.log")
        .lines()
        .filter(|l| l.starts_with("[\"database\", \"create\""))
        .count()
}

/// Lines of stderr about the shared cache.
fn remote_warnings(run: &Run) -> Vec<String> {
    run.stderr
        .lines()
        .filter(|l| l.contains("shared cache"))
        .map(str::to_owned)
        .collect()
}

/// Whether the symtab builder ran in this run: its report says what it parsed;
/// a restored entry says nothing of the kind.
fn symtab_parsed(run: &Run) -> bool {
    run.tier("symbols")["summary"]
        .as_str()
        .is_some_and(|s| s.starts_with("parsed "))
}

const TIERS: [&str; 3] = ["cmd", "db", "symbols"];

/// The first checkout builds the three tiers and uploads them; the second, elsewhere
/// with its own cache dir, restores them and runs no builder; its paths are its own.
/// Every run gets `env` (the server's credentials).
fn second_checkout_restores(url: &str, env: &[(&str, &str)]) {
    let first = checkout(&url_line(url), "");
    let run = build(&first, env);
    for tier in TIERS {
        assert_eq!(run.status(tier), "built", "{tier}: {}", run.stderr);
    }
    assert_eq!((runs(&first, "cmd"), creates(&first)), (1, 1));
    assert!(symtab_parsed(&run), "{}", run.stdout);
    assert!(remote_warnings(&run).is_empty(), "{}", run.stderr);

    let second = checkout(&url_line(url), "");
    assert_ne!(first.root(), second.root());
    let status = tiers(&second, &["status", "--json"], env).expect_code(0);
    for tier in TIERS {
        assert_eq!(status.status(tier), "missing");
        assert_eq!(
            status.tier(tier)["available_remotely"],
            Value::Bool(true),
            "{tier}"
        );
    }

    let run = build(&second, env);
    for tier in TIERS {
        assert_eq!(run.status(tier), "restored", "{tier}: {}", run.stderr);
        assert!(
            run.reasons(tier)
                .iter()
                .any(|r| r.contains("restored from the shared cache")),
            "{:?}",
            run.reasons(tier)
        );
    }
    assert_eq!(
        runs(&second, "cmd"),
        0,
        "the command ran in the second checkout"
    );
    assert_eq!(creates(&second), 0, "CodeQL ran in the second checkout");
    assert!(
        !symtab_parsed(&run),
        "the symbol table was parsed in the second checkout"
    );
    assert!(remote_warnings(&run).is_empty(), "{}", run.stderr);

    let paths_of = |p: &Project| tiers(p, &["paths", "--json"], env).expect_code(0).json();
    let paths = paths_of(&second);
    let cache = second.cache_dir().canonicalize().unwrap();
    for tier in TIERS {
        let path = PathBuf::from(paths["tiers"][tier]["path"].as_str().unwrap());
        assert!(path.starts_with(&cache), "{tier}: {}", path.display());
        assert_eq!(paths["tiers"][tier]["exists"], Value::Bool(true));
    }
    let cmd = PathBuf::from(paths["tiers"]["cmd"]["path"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(cmd.join("result.txt")).unwrap(),
        "src/a.txt\n"
    );
    let db = PathBuf::from(paths["tiers"]["db"]["path"].as_str().unwrap());
    assert!(db.join("codeql-database.yml").is_file());
    assert!(db.join("src.zip").is_file());
    // The restored symbol table is readable where the first checkout's was.
    let symbols = |p: &Project| {
        let paths = paths_of(p);
        let dir = PathBuf::from(paths["tiers"]["symbols"]["path"].as_str().unwrap());
        std::fs::read(dir.join("index.bin")).expect("index.bin")
    };
    assert_eq!(symbols(&second), symbols(&first));

    // Restored entries are fresh entries like any other.
    let again = build(&second, env);
    for tier in TIERS {
        assert_eq!(again.status(tier), "fresh", "{tier}");
    }
}

#[test]
fn second_checkout_restores_through_a_directory() {
    let store = tempfile::tempdir().unwrap();
    second_checkout_restores(&format!("file://{}", store.path().display()), &[]);
    assert!(store.path().join("records/cmd").is_dir());
    assert!(store.path().join("records/db").is_dir());
}

#[test]
fn second_checkout_restores_through_webdav() {
    let nginx = Nginx::start();
    second_checkout_restores(&nginx.webdav_url("tiers"), &[]);
    assert!(nginx.root().join("tiers/records/db").is_dir());
}

#[test]
fn second_checkout_restores_through_redis() {
    let redis = Redis::start();
    second_checkout_restores(&redis.url(), &[]);
    assert!(redis.keys().iter().any(|k| k.contains("records/db/")));
}

#[test]
fn second_checkout_restores_through_plain_http_put() {
    let nginx = Nginx::start();
    second_checkout_restores(&nginx.http_url("plain"), &[]);
    assert!(nginx
        .requests()
        .iter()
        .all(|l| l.starts_with("GET ") || l.starts_with("PUT ")));
}

#[test]
fn second_checkout_restores_through_s3() {
    let s3 = S3::start();
    let env = s3.env();
    second_checkout_restores(&s3.url("ci/tiers"), &pairs(&env));
    let objects = s3.objects("ci/tiers/");
    assert!(
        objects
            .iter()
            .any(|(k, _)| k.starts_with("ci/tiers/records/db/")),
        "{objects:?}"
    );
    assert!(objects.iter().all(|(_, size)| *size > 0), "{objects:?}");
}

/// `[(name, value)]` borrowed, for [`tiers`].
fn pairs<'a>(env: &'a [(&'a str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[test]
fn no_remote_flag_skips_the_shared_cache_for_one_run() {
    let nginx = Nginx::start();
    let url = url_line(&nginx.webdav_url("t"));
    build(&checkout(&url, ""), &[]);
    let requests = nginx.requests().len();
    let second = checkout(&url, "");
    let run = tiers(&second, &["build", "--json", "--no-remote"], &[]).expect_code(0);
    assert_eq!(run.status("cmd"), "built");
    assert_eq!(runs(&second, "cmd"), 1);
    assert_eq!(nginx.requests().len(), requests, "the remote was contacted");
}

#[test]
fn a_server_that_is_down_is_one_warning_and_a_local_build() {
    let mut redis = Redis::start();
    let url = url_line(&redis.url());
    redis.stop();
    let p = checkout(&url, "");
    let run = build(&p, &[]);
    assert_eq!(
        (run.status("cmd"), run.status("db")),
        ("built".into(), "built".into())
    );
    let warnings = remote_warnings(&run);
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains("Connection refused"),
        "{}",
        warnings[0]
    );
    assert!(warnings[0].contains(&redis.url()), "{}", warnings[0]);
}

/// The command tier stops the server while it builds: its upload fails, the codeql
/// tier after it finds the remote off for the rest of the run. One warning, both built.
fn server_stopped_mid_run(url: &str, pid: u32, env: &[(&str, &str)]) {
    let extra = format!(
        "\n[tiers.stop]\nkind = \"command\"\ninputs = []\nrun = [\"kill\", \"-9\", \"{pid}\"]\n"
    );
    let p = checkout(&url_line(url), "");
    // `stop` runs first (alphabetical order is not build order: make it upstream).
    let mut toml = p.read("tiers.toml");
    toml.push_str(&extra);
    toml = toml.replace("[tiers.cmd]\n", "[tiers.cmd]\nafter = [\"stop\"]\n");
    toml = toml.replace("[tiers.db]\n", "[tiers.db]\nafter = [\"cmd\"]\n");
    p.write("tiers.toml", toml);
    let run = build(&p, env);
    for tier in ["stop", "cmd", "db"] {
        assert_eq!(run.status(tier), "built", "{tier}: {}", run.stderr);
    }
    assert_eq!((runs(&p, "cmd"), creates(&p)), (1, 1));
    let warnings = remote_warnings(&run);
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains("cannot upload `stop`"),
        "{}",
        warnings[0]
    );
}

#[test]
fn webdav_stopped_mid_run_is_one_warning_and_local_builds() {
    let nginx = Nginx::start();
    server_stopped_mid_run(&nginx.webdav_url("t"), nginx.pid(), &[]);
}

#[test]
fn redis_stopped_mid_run_is_one_warning_and_local_builds() {
    let redis = Redis::start();
    server_stopped_mid_run(&redis.url(), redis.pid(), &[]);
}

#[test]
fn s3_stopped_mid_run_is_one_warning_and_local_builds() {
    let s3 = S3::start();
    let env = s3.env();
    server_stopped_mid_run(&s3.url("t"), s3.pid(), &pairs(&env));
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_corrupt_pack_is_detected_rebuilt_locally_and_sent_again() {
    let store = tempfile::tempdir().unwrap();
    let url = url_line(&format!("file://{}", store.path().display()));
    build(&checkout(&url, ""), &[]);
    let (_, rec) = support::remote_record(store.path(), "cmd");
    let name = rec["packs"][0]["sha256"].as_str().unwrap().to_owned();
    let pack = store.path().join("packs").join(&name);
    let good = std::fs::read(&pack).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    std::fs::write(&pack, &bad).unwrap();

    let second = checkout(&url, "");
    let run = build(&second, &[]);
    assert_eq!(run.status("cmd"), "built", "{}", run.stderr);
    assert_eq!(run.status("db"), "restored", "{}", run.stderr);
    assert_eq!(runs(&second, "cmd"), 1);
    let warnings = remote_warnings(&run);
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains("is corrupt") && warnings[0].contains(&name),
        "{}",
        warnings[0]
    );
    // The local build's upload sent the entry's blobs again, in packs that are
    // whole; the record names those.
    let (_, rec) = support::remote_record(store.path(), "cmd");
    for p in rec["packs"].as_array().unwrap() {
        let p = p["sha256"].as_str().unwrap();
        assert_ne!(p, name);
        let bytes = std::fs::read(store.path().join("packs").join(p)).unwrap();
        assert_eq!(sha256(&bytes), p);
    }

    let third = checkout(&url, "");
    let run = build(&third, &[]);
    assert_eq!(run.status("cmd"), "restored", "{}", run.stderr);
    assert_eq!(runs(&third, "cmd"), 0);
}

/// A tree as a hostile writer would make it: `files` (path → content) and
/// `links` (path → target), encoded without the checks a reader applies.
fn hostile_tree(files: &[(&str, &str)], links: &[(&str, &str)]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let tree = tiers::Tree {
        format: 1,
        files: files
            .iter()
            .map(|(p, content)| tiers::TreeFile {
                path: p.into(),
                digest: tiers::Digest::of(content.as_bytes()),
                exec: false,
            })
            .collect(),
        links: links
            .iter()
            .map(|(p, t)| tiers::TreeLink {
                path: p.into(),
                target: t.into(),
            })
            .collect(),
        ..tiers::Tree::default()
    };
    let contents = files.iter().map(|(_, c)| c.as_bytes().to_vec()).collect();
    (tree.encode(), contents)
}

/// Replace `tier`'s tree in the directory store by `tree` (its file contents in
/// a new pack, all digests valid), so that only the restore's checks stand
/// between it and the restoring checkout.
fn plant(store: &Path, tier: &str, (tree, contents): (Vec<u8>, Vec<Vec<u8>>)) {
    let mut w = tiers_remote::packs::PackWriter::new(1 << 30);
    let mut chunks = Vec::new();
    for r in tiers_remote::cdc::chunks(&tree) {
        let d = tiers::Digest::of(&tree[r.clone()]);
        w.add(d, &tree[r]).unwrap();
        chunks.push(d.to_string());
    }
    for c in &contents {
        w.add(tiers::Digest::of(c), c).unwrap();
    }
    let packed = w.finish().unwrap();
    let name = packed.pack.sha256.to_string();
    std::fs::write(store.join("packs").join(&name), &packed.bytes).unwrap();
    let (path, mut rec) = support::remote_record(store, tier);
    rec["tree"] = serde_json::json!({
        "sha256": sha256(&tree),
        "bytes": tree.len(),
        "chunks": chunks,
    });
    rec["packs"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::to_value(packed.pack).unwrap());
    std::fs::write(path, serde_json::to_vec(&rec).unwrap()).unwrap();
}

fn hostile_entry_is_rejected(tree: (Vec<u8>, Vec<Vec<u8>>), outside: &Path) {
    let store = tempfile::tempdir().unwrap();
    let url = url_line(&format!("file://{}", store.path().display()));
    build(&checkout(&url, ""), &[]);
    plant(store.path(), "cmd", tree);

    let second = checkout(&url, "");
    let before = support::snapshot(outside);
    let run = build(&second, &[]);
    assert_eq!(run.status("cmd"), "built", "{}", run.stderr);
    assert_eq!(runs(&second, "cmd"), 1);
    let warnings = remote_warnings(&run);
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(
        warnings[0].contains("was rejected") || warnings[0].contains("its tree"),
        "{}",
        warnings[0]
    );
    assert_eq!(
        support::snapshot(outside),
        before,
        "something was written outside"
    );
    // Nothing left over beside the entries either.
    let tier_root = second.cache_dir().join("cmd");
    for name in ["escape", ".staging/escape", "pwned"] {
        assert!(!tier_root.join(name).exists(), "{name}");
    }
    let published = PathBuf::from(run.tier("cmd")["path"].as_str().unwrap());
    assert!(
        !published.join("ok.txt").exists(),
        "the rejected entry was published"
    );
}

#[test]
fn a_tree_path_with_dot_dot_is_rejected() {
    let outside = tempfile::tempdir().unwrap();
    hostile_entry_is_rejected(
        hostile_tree(
            &[
                ("ok.txt", "fine\n"),
                ("../escape", "pwned\n"),
                ("../../escape", "x"),
            ],
            &[],
        ),
        outside.path(),
    );
}

#[test]
fn a_tree_path_that_is_absolute_is_rejected() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("pwned");
    hostile_entry_is_rejected(
        hostile_tree(
            &[("ok.txt", "fine\n"), (target.to_str().unwrap(), "pwned\n")],
            &[],
        ),
        outside.path(),
    );
    assert!(!target.exists());
}

#[test]
fn a_tree_with_an_escaping_symlink_is_rejected() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().display().to_string();
    hostile_entry_is_rejected(
        hostile_tree(
            &[("ok.txt", "fine\n"), ("link/pwned", "pwned\n")],
            &[("link", &target)],
        ),
        outside.path(),
    );
    let outside = tempfile::tempdir().unwrap();
    hostile_entry_is_rejected(
        hostile_tree(
            &[("up/pwned", "pwned\n")],
            &[("up", "../../../../../../..")],
        ),
        outside.path(),
    );
}

#[test]
fn read_only_restores_but_never_writes() {
    let redis = Redis::start();
    let url = url_line(&redis.url());
    build(&checkout(&url, ""), &[]);
    let before = redis.snapshot();
    assert!(!before.is_empty());

    // Read-only from the configuration: restores what is there…
    let ro = checkout(&url, "mode = \"read-only\"");
    let run = build(&ro, &[]);
    assert_eq!(run.status("cmd"), "restored", "{}", run.stderr);
    // …and builds what is not, uploading nothing.
    ro.write("src/a.txt", "changed\n");
    let run = build(&ro, &[]);
    assert_eq!(run.status("cmd"), "rebuilt", "{}", run.stderr);
    assert_eq!(redis.snapshot(), before);

    // Read-only from the environment over a read-write configuration.
    let env_ro = checkout(&url, "");
    env_ro.write("src/a.txt", "changed again\n");
    let run = build(&env_ro, &[("TIERS_REMOTE_MODE", "read-only")]);
    assert_eq!(run.status("cmd"), "built", "{}", run.stderr);
    assert_eq!(redis.snapshot(), before);
    assert!(remote_warnings(&run).is_empty(), "{}", run.stderr);
}

#[test]
fn the_url_can_come_from_the_environment() {
    let store = tempfile::tempdir().unwrap();
    let url = format!("file://{}", store.path().display());
    let env = [("TIERS_REMOTE_URL", url.as_str())];
    build(&checkout("", ""), &env);
    let second = checkout("", "");
    let run = build(&second, &env);
    assert_eq!(run.status("cmd"), "restored", "{}", run.stderr);
}

#[test]
fn a_bad_url_is_a_configuration_error() {
    let p = checkout(&url_line("ftp://example.invalid/cache"), "");
    let run = tiers(&p, &["build"], &[]).expect_code(2);
    assert!(
        run.stderr.contains("`ftp` is not supported")
            && run.stderr.contains("ftp://example.invalid/cache"),
        "{}",
        run.stderr
    );
}

// Issue 14: a shared cache is trusted for nothing. Signed entries, parsed and capped
// candidate lists, no partial blobs after a killed upload.

/// The variable the signing tests name in `signing_key_env`.
const SIGNING_VAR: &str = "TIERS_TEST_SIGNING_KEY";
const TEAM_KEY: &str = "team-secret-0123456789abcdef-0123456789";
const OTHER_KEY: &str = "other-secret-0123456789abcdef-012345678";

/// A project of one tier (`toml`) with `src/a.txt` and `extra` files, against `remote`.
fn one_tier(remote: &str, toml: &str, extra: (&str, &str)) -> Project {
    project()
        .file(
            "tiers.toml",
            format!("[remote]\n{remote}\ntimeout = 10\n\n{toml}"),
        )
        .file("src/a.txt", "alpha\n")
        .file(extra.0, extra.1)
        .build()
}

/// One command tier that reads only `src/a.txt` of its inputs and says so in its dep
/// file (so its build records a candidate), counting its runs in `runs.log`.
fn dep_checkout(remote: &str) -> Project {
    let toml = r#"[tiers.dep]
kind = "command"
inputs = ["src/*.txt"]
run = ["sh", "-c", "echo dep >> runs.log; echo src/a.txt > \"$TIERS_DEPFILE\"; cat src/a.txt > \"$TIERS_OUT/result.txt\""]
"#;
    one_tier(remote, toml, ("src/b.txt", "beta\n"))
}

/// One command tier without a dep file: a build looks up one record and no candidates.
fn plain_checkout(remote: &str) -> Project {
    let toml = r#"[tiers.cmd]
kind = "command"
inputs = ["src/*.txt"]
run = ["python3", "tool.py", "src/a.txt"]
"#;
    one_tier(remote, toml, ("tool.py", COUNTING_SCRIPT))
}

/// The run's only warning about the shared cache, which says each of `needles`.
fn one_warning(run: &Run, needles: &[&str]) -> String {
    let warnings = remote_warnings(run);
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    for n in needles {
        assert!(warnings[0].contains(n), "no `{n}` in: {}", warnings[0]);
    }
    warnings[0].clone()
}

fn signed(url: &str) -> String {
    format!("url = \"{url}\"\nsigning_key_env = \"{SIGNING_VAR}\"")
}

/// The only file in `dir`.
fn only_file(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// A signed entry written by one checkout is restored by another holding the key,
/// and by one without a key (which ignores signatures); through nginx's WebDAV.
#[test]
fn a_signed_entry_is_restored_by_checkouts_with_and_without_the_key() {
    let nginx = Nginx::start();
    let url = nginx.webdav_url("signed");
    let key = [(SIGNING_VAR, TEAM_KEY)];
    let writer = plain_checkout(&signed(&url));
    let run = build(&writer, &key);
    assert_eq!(run.status("cmd"), "built", "{}", run.stderr);
    assert!(remote_warnings(&run).is_empty(), "{}", run.stderr);
    let record = std::fs::read(only_file(&nginx.root().join("signed/records/cmd"))).unwrap();
    assert!(
        record.starts_with(b"{\"hmac\":\""),
        "the record is not signed"
    );
    assert!(!String::from_utf8_lossy(&record).contains(TEAM_KEY));

    let reader = plain_checkout(&signed(&url));
    let run = build(&reader, &key);
    assert_eq!(run.status("cmd"), "restored", "{}", run.stderr);
    assert_eq!(runs(&reader, "cmd"), 0);
    assert!(remote_warnings(&run).is_empty(), "{}", run.stderr);

    let keyless = plain_checkout(&url_line(&url));
    let run = build(&keyless, &[]);
    assert_eq!(run.status("cmd"), "restored", "{}", run.stderr);
    assert_eq!(runs(&keyless, "cmd"), 0);
}

/// With signing on, a record written without the key, with another key, or altered
/// after signing is a miss: one warning naming the tier and the key, a local build.
fn untrusted_record_is_a_miss(writer_key: Option<&str>, tamper: bool, expect: &str) {
    let store = tempfile::tempdir().unwrap();
    let url = format!("file://{}", store.path().display());
    let (writer, env) = match writer_key {
        Some(k) => (plain_checkout(&signed(&url)), vec![(SIGNING_VAR, k)]),
        None => (plain_checkout(&url_line(&url)), vec![]),
    };
    let key = build(&writer, &env).tier("cmd")["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = only_file(&store.path().join("records/cmd"));
    if tamper {
        let text = std::fs::read_to_string(&path).unwrap();
        let altered = text.replacen("\"files\": ", "\"files\": 1", 1);
        assert_ne!(text, altered);
        std::fs::write(&path, altered).unwrap();
    }

    let reader = plain_checkout(&signed(&url));
    let status = tiers(&reader, &["status", "--json"], &[(SIGNING_VAR, TEAM_KEY)]).expect_code(0);
    assert_eq!(status.tier("cmd")["available_remotely"], Value::Bool(false));
    let run = build(&reader, &[(SIGNING_VAR, TEAM_KEY)]);
    assert_eq!(run.status("cmd"), "built", "{}", run.stderr);
    assert_eq!(runs(&reader, "cmd"), 1, "restored from an untrusted record");
    let w = one_warning(&run, &["tier `cmd`", &key, expect]);
    assert!(!w.contains(TEAM_KEY), "{w}");
}

#[test]
fn with_signing_on_an_unsigned_record_is_a_miss_with_one_warning() {
    untrusted_record_is_a_miss(None, false, "is not signed");
}

#[test]
fn with_signing_on_a_record_signed_with_another_key_is_a_miss() {
    untrusted_record_is_a_miss(Some(OTHER_KEY), false, "does not match the signing key");
}

#[test]
fn with_signing_on_a_record_altered_after_signing_is_a_miss() {
    untrusted_record_is_a_miss(Some(TEAM_KEY), true, "does not match the signing key");
}

#[test]
fn a_missing_or_short_signing_key_is_a_configuration_error() {
    let store = tempfile::tempdir().unwrap();
    let p = plain_checkout(&signed(&format!("file://{}", store.path().display())));
    let run = tiers(&p, &["build"], &[]).expect_code(2);
    assert!(
        run.stderr.contains(SIGNING_VAR) && run.stderr.contains("not set"),
        "{}",
        run.stderr
    );
    let short = "sixteen-byte-key";
    for cmd in ["build", "status"] {
        let run = tiers(&p, &[cmd], &[(SIGNING_VAR, short)]).expect_code(2);
        assert!(
            run.stderr.contains(SIGNING_VAR) && run.stderr.contains("16 bytes"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains(short), "the secret was printed");
    }
    assert_eq!(runs(&p, "cmd"), 0);
    // The variable's name may also come from the environment.
    let env_named = plain_checkout(&url_line(&format!("file://{}", store.path().display())));
    let run = tiers(
        &env_named,
        &["build"],
        &[("TIERS_REMOTE_SIGNING_KEY_ENV", SIGNING_VAR)],
    )
    .expect_code(2);
    assert!(run.stderr.contains(SIGNING_VAR), "{}", run.stderr);
}

/// A writer builds `dep` into a directory store, uploading its record and candidate
/// list; returns the store, the list's path and the entry's key.
fn hostile_setup() -> (tempfile::TempDir, PathBuf, String) {
    let store = tempfile::tempdir().unwrap();
    let url = url_line(&format!("file://{}", store.path().display()));
    let writer = dep_checkout(&url);
    let run = build(&writer, &[]);
    assert_eq!(run.status("dep"), "built", "{}", run.stderr);
    let list = only_file(&store.path().join("candidates/dep"));
    let entry = run.tier("dep")["key"].as_str().unwrap().to_owned();
    (store, list, entry)
}

/// A checkout whose used input `src/a.txt` differs from the writer's, building against
/// the hostile store: it must run its own command once and restore nothing.
fn victim_builds(store: &Path) -> (Project, Run) {
    let p = dep_checkout(&url_line(&format!("file://{}", store.display())));
    p.write("src/a.txt", "changed\n");
    let run = build(&p, &[]);
    assert_eq!(run.status("dep"), "built", "{}", run.stderr);
    assert_eq!(runs(&p, "dep"), 1);
    let out = PathBuf::from(run.tier("dep")["path"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(out.join("result.txt")).unwrap(),
        "changed\n"
    );
    (p, run)
}

fn candidate(entry: &str, used: Value) -> Value {
    serde_json::json!({"entry": entry, "used": used, "recorded_unix": 1_700_000_000u64})
}

fn write_list(path: &Path, candidates: Vec<Value>) {
    let list = serde_json::json!({"format": 1, "candidates": candidates});
    std::fs::write(path, serde_json::to_vec(&list).unwrap()).unwrap();
}

#[test]
fn hostile_candidate_keys_write_nothing_outside_the_cache_dir() {
    let (store, list, _) = hostile_setup();
    let outside = tempfile::tempdir().unwrap();
    let name = format!("tiers-hostile-{}", std::process::id());
    let traversal = format!("../../../../{name}");
    let absolute = outside.path().join("x").display().to_string();
    let digest = sha256(b"changed\n");
    write_list(
        &list,
        vec![
            candidate(&traversal, serde_json::json!({"src/a.txt": digest})),
            candidate(&absolute, serde_json::json!({"src/a.txt": digest})),
        ],
    );
    let (p, run) = victim_builds(store.path());
    one_warning(&run, &["is not a key", "candidates/dep/"]);
    assert_eq!(support::snapshot(outside.path()), vec![]);
    // `../../../../x` from the tier's lock or staging dir: the project's parents.
    let mut dir = p.cache_dir().join("dep/.locks");
    for _ in 0..4 {
        for suffix in ["", ".lock", ".json"] {
            let at = dir.join(format!("{name}{suffix}"));
            assert!(!at.exists(), "{}", at.display());
        }
        dir = dir.join("..");
    }
}

#[test]
fn five_thousand_candidates_cost_what_the_limit_does() {
    let (store, list, _) = hostile_setup();
    let digest = sha256(b"changed\n");
    // Each matches the victim's used input and names an entry no one has.
    let many: Vec<Value> = (0..5000)
        .map(|i| {
            candidate(
                &sha256(format!("entry {i}").as_bytes()),
                serde_json::json!({"src/a.txt": digest}),
            )
        })
        .collect();
    write_list(&list, many);
    let started = std::time::Instant::now();
    let (p, _) = victim_builds(store.path());
    let secs = started.elapsed().as_secs_f64();
    let locks = std::fs::read_dir(p.cache_dir().join("dep/.locks"))
        .map(|d| d.count())
        .unwrap_or(0);
    // The victim's own key, and at most CANDIDATE_LIMIT candidates tried.
    assert!(locks <= 1 + 32, "{locks} lock files");
    assert!(secs < 5.0, "{secs} s");
}

#[test]
fn a_shared_candidate_that_names_no_used_input_restores_nothing() {
    let (store, list, entry) = hostile_setup();
    // The writer's own entry, which exists in the store, offered for any state.
    write_list(&list, vec![candidate(&entry, serde_json::json!({}))]);
    let (_, run) = victim_builds(store.path());
    one_warning(&run, &["name no used input"]);
}

#[test]
fn with_signing_on_an_unsigned_candidate_list_restores_nothing() {
    let store = tempfile::tempdir().unwrap();
    let url = format!("file://{}", store.path().display());
    let key = [(SIGNING_VAR, TEAM_KEY)];
    let writer = dep_checkout(&signed(&url));
    let entry = build(&writer, &key).tier("dep")["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = only_file(&store.path().join("candidates/dep"));
    // A candidate claiming the writer's entry used only `src/b.txt`, unsigned.
    write_list(
        &list,
        vec![candidate(
            &entry,
            serde_json::json!({"src/b.txt": sha256(b"beta\n")}),
        )],
    );
    let p = dep_checkout(&signed(&url));
    p.write("src/a.txt", "changed\n");
    let run = build(&p, &key);
    assert_eq!(run.status("dep"), "built", "{}", run.stderr);
    assert_eq!(runs(&p, "dep"), 1);
    let warnings = remote_warnings(&run);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("candidates/dep/") && w.contains("is not signed")),
        "{}",
        run.stderr
    );
}

/// Temporaries of uploads left in a directory store's `.tmp`.
fn temporaries(store: &Path) -> Vec<String> {
    std::fs::read_dir(store.join(".tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILL `tiers build` while it uploads a 96 MiB entry (three blobs) to a
/// directory store, three times; the next upload leaves no temporaries behind.
#[test]
fn killed_uploads_leave_no_partial_blobs_once_the_next_upload_ran() {
    let store = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"[remote]
url = "file://{}"

[tiers.big]
kind = "command"
inputs = ["src/*.txt"]
run = ["sh", "-c", "head -c 100663296 /dev/urandom > \"$TIERS_OUT/noise.bin\""]
"#,
        store.path().display()
    );
    let p = project()
        .file("tiers.toml", toml)
        .file("src/a.txt", "0\n")
        .build();
    let mut killed = 0;
    for round in 1..=3 {
        p.write("src/a.txt", format!("{round}\n"));
        let mut child = p
            .cmd(&["build", "--json"])
            .env_remove("TIERS_REMOTE_URL")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            if !temporaries(store.path()).is_empty() {
                child.kill().unwrap();
                killed += 1;
                break;
            }
            if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        child.wait().unwrap();
    }
    assert!(
        killed >= 2,
        "only {killed} of 3 builds were caught uploading"
    );
    let left = temporaries(store.path());
    assert!(!left.is_empty(), "the kills left nothing to clean up");

    p.write("src/a.txt", "last\n");
    let run = build(&p, &[]);
    // The killed builds published and pointed at their entries before uploading.
    assert_eq!(run.status("big"), "rebuilt", "{}", run.stderr);
    assert_eq!(temporaries(store.path()), Vec::<String>::new());
    assert!(remote_warnings(&run).is_empty(), "{}", run.stderr);
}

/// A record or candidate list larger than anything tiers writes is refused before it
/// is parsed: one warning each, a local build.
#[test]
fn oversized_records_and_candidate_lists_are_refused() {
    let (store, list, entry) = hostile_setup();
    // Valid JSON up to the end, padded past the caps with whitespace.
    let pad = |path: &Path, cap: usize| {
        let mut bytes = std::fs::read(path).unwrap();
        bytes.resize(cap + 1, b' ');
        std::fs::write(path, bytes).unwrap();
    };
    pad(&list, tiers_remote::MAX_CANDIDATES_BYTES);
    let record = store
        .path()
        .join("records/dep")
        .join(format!("{entry}.json"));
    pad(&record, tiers_remote::MAX_RECORD_BYTES);

    // The writer's own state: its exact record is the oversized one.
    let p = dep_checkout(&url_line(&format!("file://{}", store.path().display())));
    let run = build(&p, &[]);
    assert_eq!(run.status("dep"), "built", "{}", run.stderr);
    assert_eq!(runs(&p, "dep"), 1);
    let warnings = remote_warnings(&run);
    assert_eq!(warnings.len(), 2, "{}", run.stderr);
    for object in [
        format!("records/dep/{entry}.json"),
        "candidates/dep/".to_owned(),
    ] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(&object) && w.contains("larger than")),
            "{object}: {}",
            run.stderr
        );
    }
}
