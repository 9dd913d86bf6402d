//! What the shared cache moves (issue 19), counted on the server side of real
//! redis-server, nginx WebDAV and an S3-compatible server (moto): an edit sends
//! only new blobs; a pack missing or damaged on the server is a miss, built
//! locally and sent again; two tiers with the same content share it there.

#[path = "support/servers.rs"]
mod servers;
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use servers::{Nginx, Redis, S3};
use support::{project, runs, Project, Run};

/// The objects a server holds: name (from `packs/` or `records/` on) → bytes.
type Objects = BTreeMap<String, Vec<u8>>;

/// A server under test, seen from outside tiers.
trait Server {
    fn url(&self) -> String;
    fn env(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// Every object, named from its `packs/` or `records/` segment on.
    fn objects(&self) -> Objects;
    fn put(&self, name: &str, bytes: &[u8]);
    fn delete(&self, name: &str);
}

/// `name` from its `packs/` or `records/` segment on, or `None` for other objects.
fn ours(name: &str) -> Option<String> {
    ["packs/", "records/"]
        .iter()
        .find_map(|seg| name.find(seg).map(|at| name[at..].to_owned()))
}

struct RedisServer(Redis);

impl Server for RedisServer {
    fn url(&self) -> String {
        self.0.url()
    }
    fn objects(&self) -> Objects {
        self.0
            .keys()
            .into_iter()
            .filter_map(|k| Some((ours(&k)?, self.0.get(&k)?)))
            .collect()
    }
    fn put(&self, name: &str, bytes: &[u8]) {
        let key = self.key(name);
        self.0.set(&key, bytes);
    }
    fn delete(&self, name: &str) {
        let key = self.key(name);
        self.0.command(&[b"DEL", key.as_bytes()]);
    }
}

impl RedisServer {
    /// The Redis key of object `name`.
    fn key(&self, name: &str) -> String {
        self.0
            .keys()
            .into_iter()
            .find(|k| k.ends_with(name))
            .unwrap_or_else(|| panic!("no key for `{name}`"))
    }
}

struct Webdav(Nginx);

impl Webdav {
    fn dir(&self) -> PathBuf {
        self.0.root().join("team")
    }
}

impl Server for Webdav {
    fn url(&self) -> String {
        self.0.webdav_url("team")
    }
    fn objects(&self) -> Objects {
        let dir = self.dir();
        support::snapshot(&dir)
            .into_iter()
            .filter_map(|(rel, _)| {
                let bytes = std::fs::read(dir.join(&rel)).ok()?;
                Some((ours(&rel)?, bytes))
            })
            .collect()
    }
    fn put(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.dir().join(name), bytes).unwrap();
    }
    fn delete(&self, name: &str) {
        std::fs::remove_file(self.dir().join(name)).unwrap();
    }
}

struct S3Server(S3);

impl Server for S3Server {
    fn url(&self) -> String {
        self.0.url("ci")
    }
    fn env(&self) -> Vec<(&'static str, String)> {
        self.0.env()
    }
    fn objects(&self) -> Objects {
        self.0
            .objects("ci/")
            .into_iter()
            .filter_map(|(k, _)| Some((ours(&k)?, self.0.get(&k)?)))
            .collect()
    }
    fn put(&self, name: &str, bytes: &[u8]) {
        self.0.put(&format!("ci/{name}"), bytes);
    }
    fn delete(&self, name: &str) {
        self.0.delete(&format!("ci/{name}"));
    }
}

/// How many inputs (and output files) the `out` tier has.
const FILES: usize = 120;

/// A command tier that writes one output file of 4 KiB per input file, each
/// from its input alone (an edit of one input changes one output), and a second
/// tier `twin` that writes the same files as `out`.
fn checkout(server: &dyn Server) -> Project {
    let tool = r#"import hashlib, os, pathlib
project = pathlib.Path(os.environ["TIERS_PROJECT"])
with open(project / "runs.log", "a") as log:
    log.write(os.environ["TIERS_TIER"] + "\n")
out = pathlib.Path(os.environ["TIERS_OUT"]) / "out"
out.mkdir()
for src in sorted((project / "src").glob("*.txt")):
    seed = src.read_bytes()
    lines = []
    for i in range(64):
        seed = hashlib.sha256(seed).digest()
        lines.append(seed.hex())
    (out / src.name).write_text("\n".join(lines) + "\n")
"#;
    let toml = format!(
        r#"[remote]
url = "{}"
mode = "read-write"
timeout = 20

[tiers.out]
kind = "command"
inputs = ["src/*.txt"]
run = ["python3", "tool.py"]

[tiers.twin]
kind = "command"
inputs = ["src/*.txt"]
run = ["python3", "tool.py"]
"#,
        server.url()
    );
    let mut b = project().file("tiers.toml", toml).file("tool.py", tool);
    for i in 0..FILES {
        b = b.file(&format!("src/f{i:03}.txt"), format!("input {i}\n"));
    }
    b.build()
}

fn build(p: &Project, server: &dyn Server) -> Run {
    let env = server.env();
    let mut c = p.cmd(&["build", "--json"]);
    for var in ["TIERS_REMOTE_URL", "TIERS_REMOTE_MODE"] {
        c.env_remove(var);
    }
    c.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let out = c.output().expect("run tiers");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
    .expect_code(0)
}

fn packs(objects: &Objects) -> BTreeMap<&str, usize> {
    objects
        .iter()
        .filter(|(k, _)| k.starts_with("packs/"))
        .map(|(k, v)| (k.as_str(), v.len()))
        .collect()
}

fn warnings(run: &Run) -> Vec<&str> {
    run.stderr
        .lines()
        .filter(|l| l.contains("shared cache"))
        .collect()
}

/// A full build, then an edit of one input: the edit adds one pack, a small
/// fraction of the first, and one record per tier.
fn an_edit_sends_only_new_blobs(server: &dyn Server) {
    let p = checkout(server);
    build(&p, server);
    let full = server.objects();
    let full_packs = packs(&full);
    let full_bytes: usize = full_packs.values().sum();
    // `out` and `twin` build the same files: sent once, by whichever uploaded
    // first; the other's pack holds its own marker and little else.
    let sizes: Vec<usize> = full_packs.values().copied().collect();
    assert_eq!(sizes.len(), 2, "{full_packs:?}");
    let (small, large) = (sizes[0].min(sizes[1]), sizes[0].max(sizes[1]));
    assert!(small * 10 < large, "{full_packs:?}");

    p.write("src/f007.txt", "input 7, edited\n");
    let run = build(&p, server);
    assert_eq!(run.status("out"), "rebuilt", "{}", run.stderr);
    let edited = server.objects();
    let new: Vec<(&String, usize)> = edited
        .iter()
        .filter(|(k, _)| !full.contains_key(*k))
        .map(|(k, v)| (k, v.len()))
        .collect();
    let new_packs: Vec<usize> = new
        .iter()
        .filter(|(k, _)| k.starts_with("packs/"))
        .map(|(_, n)| *n)
        .collect();
    let new_records = new
        .iter()
        .filter(|(k, _)| k.starts_with("records/"))
        .count();
    assert_eq!(new_packs.len(), 2, "{new:?}");
    assert_eq!(new_records, 2, "{new:?}");
    let sent: usize = new_packs.iter().sum();
    assert!(
        sent * 10 < full_bytes,
        "the edit sent {sent} bytes of packs, the full build {full_bytes}"
    );
    // Nothing the full build wrote was written again.
    for (k, v) in &full {
        if k.starts_with("packs/") {
            assert_eq!(edited.get(k), Some(v), "{k}");
        }
    }

    // Another checkout restores the edited state from both uploads.
    let second = checkout(server);
    second.write("src/f007.txt", "input 7, edited\n");
    let run = build(&second, server);
    assert_eq!(run.status("out"), "restored", "{}", run.stderr);
    assert_eq!(runs(&second, "out"), 0);
    assert_eq!(
        second.read(&format!("{}/out/f007.txt", path_of(&run, "out"))),
        p.read(&format!(
            "{}/out/f007.txt",
            path_of(&build(&p, server), "out")
        ))
    );
}

fn path_of(run: &Run, tier: &str) -> String {
    run.tier(tier)["path"].as_str().unwrap().to_owned()
}

#[test]
fn an_edit_sends_only_new_blobs_to_redis() {
    an_edit_sends_only_new_blobs(&RedisServer(Redis::start()));
}

#[test]
fn an_edit_sends_only_new_blobs_to_webdav() {
    an_edit_sends_only_new_blobs(&Webdav(Nginx::start()));
}

#[test]
fn an_edit_sends_only_new_blobs_to_s3() {
    an_edit_sends_only_new_blobs(&S3Server(S3::start()));
}

/// A pack the first checkout sent is removed (`damage` = None) or damaged on the
/// server. Another checkout misses with one warning, builds, and sends the blobs
/// again; the first checkout's next upload does not name the lost pack; a third
/// checkout restores both states.
fn a_lost_pack_is_a_miss_and_sent_again(server: &dyn Server, damage: Option<fn(&mut Vec<u8>)>) {
    let first = checkout(server);
    build(&first, server);
    let lost: Vec<String> = packs(&server.objects())
        .keys()
        .map(|k| k.to_string())
        .collect();
    for name in &lost {
        match damage {
            None => server.delete(name),
            Some(f) => {
                let mut bytes = server.objects()[name].clone();
                f(&mut bytes);
                server.put(name, &bytes);
            }
        }
    }

    let second = checkout(server);
    let run = build(&second, server);
    assert_eq!(run.status("out"), "built", "{}", run.stderr);
    let w = warnings(&run);
    assert!(!w.is_empty(), "{}", run.stderr);
    // The first reader of a damaged pack removes it: later ones find it missing.
    let why = if damage.is_some() {
        "is corrupt"
    } else {
        "is missing"
    };
    assert!(w[0].contains(why), "{w:?}");
    assert!(
        w.iter()
            .all(|l| l.contains("is corrupt") || l.contains("is missing")),
        "{w:?}"
    );

    // The first checkout's own edit: its knowledge names the lost packs, which
    // the upload checks before naming them again.
    first.write("src/f001.txt", "input 1, edited\n");
    build(&first, server);

    for edited in [false, true] {
        let third = checkout(server);
        if edited {
            third.write("src/f001.txt", "input 1, edited\n");
        }
        let run = build(&third, server);
        for tier in ["out", "twin"] {
            assert_eq!(run.status(tier), "restored", "{tier}: {}", run.stderr);
        }
        assert!(warnings(&run).is_empty(), "{}", run.stderr);
        assert_eq!(runs(&third, "out"), 0);
    }
}

#[test]
fn a_pack_missing_from_redis_is_a_miss_and_sent_again() {
    a_lost_pack_is_a_miss_and_sent_again(&RedisServer(Redis::start()), None);
}

#[test]
fn a_pack_damaged_in_redis_is_a_miss_and_sent_again() {
    a_lost_pack_is_a_miss_and_sent_again(
        &RedisServer(Redis::start()),
        Some(|b: &mut Vec<u8>| {
            let at = b.len() / 3;
            b[at] ^= 0x40;
        }),
    );
}

#[test]
fn a_pack_missing_from_webdav_is_a_miss_and_sent_again() {
    a_lost_pack_is_a_miss_and_sent_again(&Webdav(Nginx::start()), None);
}

#[test]
fn a_pack_cut_short_in_s3_is_a_miss_and_sent_again() {
    a_lost_pack_is_a_miss_and_sent_again(
        &S3Server(S3::start()),
        Some(|b: &mut Vec<u8>| b.truncate(b.len() / 2)),
    );
}
