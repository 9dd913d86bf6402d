//! tiers-remote against real servers on 127.0.0.1 (issue 8): nginx WebDAV, plain
//! HTTP GET/PUT, redis-server, a directory; and against a scripted HTTP server for
//! the failure paths (429, 5xx, timeouts, refused connections, 409 → MKCOL).

#[path = "../../../tests/support/servers.rs"]
mod servers;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use servers::{Nginx, Redis};
use tiers_core::{Blobs, Candidate, Key, KeyDoc, Marker, SharedCache, Tree};
use tiers_remote::backend::Backend;
use tiers_remote::{Location, Remote, Retry};

fn fast_retry(attempts: u32) -> Retry {
    Retry {
        attempts,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
    }
}

fn remote(url: &str, writable: bool) -> Remote {
    let loc = Location::parse(url, &|_| None).unwrap();
    Remote::at(&loc, writable, Duration::from_secs(5), fast_retry(3)).unwrap()
}

fn marker(tier: &str, seed: &str) -> Marker {
    let doc = KeyDoc::new("command", 1).option("seed", seed);
    Marker {
        format: 1,
        tier: tier.to_owned(),
        key: doc.key(),
        doc,
        created_unix: 1_700_000_000,
        build_seconds: 1.5,
        used_inputs: None,
        data: serde_json::Value::Null,
    }
}

/// A cache dir's blob store, for one side of a test.
struct Local {
    _dir: tempfile::TempDir,
    blobs: Blobs,
}

impl std::ops::Deref for Local {
    type Target = Blobs;
    fn deref(&self) -> &Blobs {
        &self.blobs
    }
}

fn local() -> Local {
    let dir = tempfile::tempdir().unwrap();
    let blobs = Blobs::of_cache_dir(dir.path());
    Local { _dir: dir, blobs }
}

/// A published entry: its dir (a few files, a nested dir, a symlink, the marker,
/// which is not uploaded as a file), its tree, and the store of its cache dir.
struct Entry {
    dir: tempfile::TempDir,
    tree: Tree,
    local: Local,
}

impl Entry {
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn entry_dir(big: usize) -> Entry {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("out/nested")).unwrap();
    std::fs::write(d.path().join("out/result.txt"), "result\n").unwrap();
    // Incompressible enough to need several packs when packs are small.
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let noise: Vec<u8> = (0..big)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    // In files of 100 kB: small packs then hold one file each.
    for (n, part) in noise.chunks(100_000).enumerate() {
        std::fs::write(d.path().join(format!("out/nested/data-{n}.bin")), part).unwrap();
    }
    std::os::unix::fs::symlink("out/result.txt", d.path().join("latest")).unwrap();
    std::fs::write(d.path().join("entry.json"), "{\"not\": \"uploaded\"}").unwrap();
    let local = local();
    let tree = local
        .ingest(&local._dir.path().join("t"), d.path(), vec![])
        .unwrap();
    Entry {
        dir: d,
        tree,
        local,
    }
}

async fn upload(r: &Remote, m: &Marker, e: &Entry) -> tiers_core::Result<()> {
    r.store("t", m, e.path(), &e.tree, &e.local).await
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in walk(dir) {
        let rel = e.strip_prefix(dir).unwrap().display().to_string();
        let meta = std::fs::symlink_metadata(&e).unwrap();
        if meta.file_type().is_symlink() {
            let t = std::fs::read_link(&e).unwrap();
            out.insert(rel, format!("-> {}", t.display()).into_bytes());
        } else if meta.is_file() {
            out.insert(rel, std::fs::read(&e).unwrap());
        }
    }
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                todo.push(e.path());
            }
            out.push(e.path());
        }
    }
    out
}

/// Store an entry, fetch it into a fresh dir, compare; the marker comes back and
/// `entry.json` is not among the files.
async fn round_trip(r: &Remote, big: usize) -> Marker {
    let m = marker("t", &format!("round-trip-{big}"));
    let src = entry_dir(big);
    assert!(!r.contains("t", &m.key).await.unwrap());
    upload(r, &m, &src).await.unwrap();
    assert!(r.contains("t", &m.key).await.unwrap());
    let dest = tempfile::tempdir().unwrap();
    let got = r
        .fetch("t", &m.key, dest.path(), &local())
        .await
        .unwrap()
        .expect("a hit");
    assert_eq!(got.key, m.key);
    assert_eq!(got.doc, m.doc);
    let mut expected = files(src.path());
    expected.remove("entry.json");
    assert_eq!(files(dest.path()), expected);
    m
}

async fn candidates_round_trip(r: &Remote) {
    let skey = Key::of_bytes(b"structure");
    assert!(r.candidates("t", &skey).await.unwrap().is_empty());
    let list = vec![Candidate {
        entry: Key::of_bytes(b"entry"),
        used: BTreeMap::from([("b.txt".to_owned(), Key::of_bytes(b"b").to_string())]),
        recorded_unix: 7,
    }];
    r.store_candidates("t", &skey, &list).await.unwrap();
    assert_eq!(r.candidates("t", &skey).await.unwrap(), list);
}

#[tokio::test]
async fn directory_round_trip_in_several_blobs() {
    let store = tempfile::tempdir().unwrap();
    let url = format!("file://{}", store.path().display());
    let r = remote(&url, true).with_pack_bytes(64 * 1024);
    let m = round_trip(&r, 300_000).await;
    let record: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.path().join(format!("records/t/{}.json", m.key))).unwrap(),
    )
    .unwrap();
    let packs = record["packs"].as_array().unwrap();
    assert!(packs.len() >= 3, "{record}");
    for p in packs {
        let name = p["sha256"].as_str().unwrap();
        let bytes = std::fs::read(store.path().join("packs").join(name)).unwrap();
        assert_eq!(Key::of_bytes(&bytes).as_str(), name);
    }
    candidates_round_trip(&r).await;
}

/// A progress step: its name, its total, the sum of its advances.
type Step = (String, Option<u64>, u64);

/// Every progress step reported.
#[derive(Default)]
struct Steps(Arc<Mutex<Vec<Step>>>);

impl tiers_core::ProgressDisplay for Steps {
    fn start(&self, _tier: &str, _kind: &str) -> Box<dyn tiers_core::ProgressLine> {
        Box::new(Steps(self.0.clone()))
    }
}

impl tiers_core::ProgressLine for Steps {
    fn phase(&self, what: &str, total: Option<(u64, tiers_core::Unit)>) {
        let total = total.map(|(n, unit)| {
            assert_eq!(unit, tiers_core::Unit::Bytes);
            n
        });
        self.0.lock().unwrap().push((what.to_owned(), total, 0));
    }
    fn set_total(&self, total: u64, unit: tiers_core::Unit) {
        assert_eq!(unit, tiers_core::Unit::Bytes);
        self.0.lock().unwrap().last_mut().unwrap().1 = Some(total);
    }
    fn advance(&self, n: u64) {
        self.0.lock().unwrap().last_mut().unwrap().2 += n;
    }
    fn message(&self, _text: &str) {}
    fn print(&self, _text: &str) {}
}

/// Issue 16: the bytes moved for a tier are reported on that tier's line, each
/// step's total reached exactly.
#[tokio::test]
async fn uploads_and_downloads_report_their_bytes_on_the_tier_line() {
    let store = tempfile::tempdir().unwrap();
    let url = format!("file://{}", store.path().display());
    let steps = Steps::default();
    let seen = steps.0.clone();
    let reporter = tiers_core::Reporter::new(Arc::new(steps));
    let r = remote(&url, true)
        .with_pack_bytes(64 * 1024)
        .with_progress(reporter.clone());
    let m = marker("t", "progress");
    let src = entry_dir(300_000);
    let line = reporter.start("t", "command");
    upload(&r, &m, &src).await.unwrap();
    let dest = tempfile::tempdir().unwrap();
    r.fetch("t", &m.key, dest.path(), &local())
        .await
        .unwrap()
        .expect("a hit");
    drop(line);
    let pack_bytes: u64 = std::fs::read_dir(store.path().join("packs"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(pack_bytes > 300_000);
    let steps = seen.lock().unwrap().clone();
    let names: Vec<&str> = steps.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "packing for the shared cache",
            "uploading",
            "asking the shared cache",
            "downloading",
            "downloading"
        ]
    );
    // Uploading counts the bytes packed: the files and the marker's and tree's.
    assert!(steps[1].1.unwrap() > 300_000, "{steps:?}");
    for (what, total, done) in &steps {
        assert_eq!(total.unwrap_or(0), *done, "{what}");
    }
    // The restore read the frames, not the indexes or more: less than was sent.
    let read = steps[3].2 + steps[4].2;
    assert!(
        read > 300_000 && read < pack_bytes,
        "{read} of {pack_bytes}"
    );
    // Another tier's transfers do not land on a line that has ended.
    let before = seen.lock().unwrap().len();
    upload(&r, &marker("t", "later"), &src).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), before);
}

#[tokio::test]
async fn nginx_webdav_round_trip() {
    let nginx = Nginx::start();
    let r = remote(&nginx.webdav_url("team/cache"), true).with_pack_bytes(100_000);
    let m = round_trip(&r, 250_000).await;
    assert!(nginx
        .root()
        .join(format!("team/cache/records/t/{}.json", m.key))
        .is_file());
    candidates_round_trip(&r).await;
    // Never PROPFIND: nginx's dav module does not have it.
    let methods: Vec<String> = nginx.requests();
    assert!(
        methods.iter().all(|l| !l.starts_with("PROPFIND")),
        "{methods:?}"
    );
    assert!(methods
        .iter()
        .any(|l| l.starts_with("PUT /team/cache/packs/")));
}

#[tokio::test]
async fn plain_http_get_put_round_trip() {
    let nginx = Nginx::start();
    let r = remote(&nginx.http_url(""), true);
    round_trip(&r, 10_000).await;
    let methods = nginx.requests();
    assert!(
        methods
            .iter()
            .all(|l| l.starts_with("GET ") || l.starts_with("PUT ")),
        "{methods:?}"
    );
}

#[tokio::test]
async fn redis_round_trip_in_several_blobs() {
    let redis = Redis::start();
    let r = remote(&redis.url(), true).with_pack_bytes(64 * 1024);
    let m = round_trip(&r, 200_000).await;
    let keys = redis.keys();
    assert!(
        keys.iter()
            .any(|k| k.ends_with(&format!("records/t/{}.json", m.key))),
        "{keys:?}"
    );
    assert!(keys.iter().filter(|k| k.contains("packs/")).count() >= 2);
    candidates_round_trip(&r).await;
}

#[tokio::test]
async fn a_corrupt_pack_is_a_digest_error_and_the_next_upload_replaces_it() {
    let store = tempfile::tempdir().unwrap();
    let r = remote(&format!("file://{}", store.path().display()), true);
    let m = marker("t", "corrupt");
    upload(&r, &m, &entry_dir(1000)).await.unwrap();
    let pack = std::fs::read_dir(store.path().join("packs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let good = std::fs::read(&pack).unwrap();
    let mut bad = good.clone();
    bad[good.len() / 4] ^= 0xff;
    std::fs::write(&pack, &bad).unwrap();

    let dest = tempfile::tempdir().unwrap();
    let e = r
        .fetch("t", &m.key, dest.path(), &local())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is corrupt") && e.contains("packs/"), "{e}");

    // An upload from a cache dir that does not know the pack sends it again:
    // packing is deterministic, so it lands on the damaged one.
    upload(&r, &m, &entry_dir(1000)).await.unwrap();
    assert_eq!(std::fs::read(&pack).unwrap(), good);
    let dest = tempfile::tempdir().unwrap();
    let got = r.fetch("t", &m.key, dest.path(), &local()).await.unwrap();
    assert!(got.is_some());
}

#[tokio::test]
async fn a_missing_blob_and_a_record_for_another_key_are_errors() {
    let store = tempfile::tempdir().unwrap();
    let r = remote(&format!("file://{}", store.path().display()), true);
    let m = marker("t", "missing");
    upload(&r, &m, &entry_dir(10)).await.unwrap();
    std::fs::remove_dir_all(store.path().join("packs")).unwrap();
    let dest = tempfile::tempdir().unwrap();
    let e = r
        .fetch("t", &m.key, dest.path(), &local())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("is missing"), "{e}");

    // A record copied under another key's name is refused.
    let other = marker("t", "other");
    let recs = store.path().join("records/t");
    std::fs::copy(
        recs.join(format!("{}.json", m.key)),
        recs.join(format!("{}.json", other.key)),
    )
    .unwrap();
    let e = r
        .fetch("t", &other.key, dest.path(), &local())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("not usable") && e.contains(other.key.as_str()),
        "{e}"
    );
}

#[tokio::test]
async fn read_only_never_writes() {
    let nginx = Nginx::start();
    let r = remote(&nginx.webdav_url("ro"), false);
    assert!(!r.writable());
    let m = marker("t", "ro");
    upload(&r, &m, &entry_dir(10)).await.unwrap();
    r.store_candidates("t", &Key::of_bytes(b"s"), &[])
        .await
        .unwrap();
    assert!(!nginx.root().join("ro").exists());
    assert!(nginx.requests().iter().all(|l| l.starts_with("GET ")));
}

/// A scripted HTTP/1.1 server: `answer(method, path, n)` gives the status of the n-th
/// request (from 1), or `None` to hold the connection without answering.
struct Scripted {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    fn start(answer: impl Fn(&str, &str, usize) -> Option<u16> + Send + 'static) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_owned();
                let path = parts.next().unwrap_or("").to_owned();
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    let lower = h.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let n = {
                    let mut l = log2.lock().unwrap();
                    l.push(format!("{method} {path}"));
                    l.len()
                };
                match answer(&method, &path, n) {
                    Some(status) => {
                        let body = if status == 200 { "hello" } else { "" };
                        let resp = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(resp.as_bytes());
                    }
                    None => held.push(stream),
                }
            }
        });
        Scripted { port, log }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn backend(url: &str, timeout: Duration, attempts: u32) -> Backend {
    let loc = Location::parse(url, &|_| None).unwrap();
    Backend::open(&loc, timeout, fast_retry(attempts)).unwrap()
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried() {
    let server = Scripted::start(|_, _, n| Some([429, 503, 200][(n - 1).min(2)]));
    let b = backend(&server.url(), Duration::from_secs(5), 4);
    assert_eq!(b.get("x").await.unwrap().as_deref(), Some(&b"hello"[..]));
    assert_eq!(server.requests().len(), 3);
    assert!(b.failed().is_none());
}

#[tokio::test]
async fn retries_are_bounded_and_the_failure_switches_the_remote_off() {
    let server = Scripted::start(|_, _, _| Some(502));
    let b = backend(&server.url(), Duration::from_secs(5), 3);
    let e = b.get("x").await.unwrap_err().to_string();
    assert!(
        e.contains("HTTP 502") && e.contains("after 3 attempts"),
        "{e}"
    );
    assert_eq!(server.requests().len(), 3);
    assert!(b.failed().is_some());
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let server = Scripted::start(|_, _, _| Some(403));
    let b = backend(&server.url(), Duration::from_secs(5), 4);
    let e = b.get("x").await.unwrap_err().to_string();
    assert!(e.contains("HTTP 403"), "{e}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_silent_server_times_out_every_attempt() {
    let server = Scripted::start(|_, _, _| None);
    let b = backend(&server.url(), Duration::from_millis(300), 2);
    let started = Instant::now();
    let e = b.get("x").await.unwrap_err().to_string();
    assert!(e.contains("no answer within 0.3 s (tried 2 times)"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn after_a_refused_connection_the_rest_of_the_run_skips_the_remote() {
    let port = servers::free_port();
    let r = remote(&format!("http://127.0.0.1:{port}/"), true);
    let m = marker("t", "refused");
    let dest = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let e = r
        .fetch("t", &m.key, dest.path(), &local())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot read `records/t/") && e.contains("Connection refused"),
        "{e}"
    );
    // Later calls of this run are quiet misses, without a request.
    assert!(r
        .fetch("t", &m.key, dest.path(), &local())
        .await
        .unwrap()
        .is_none());
    assert!(!r.contains("t", &m.key).await.unwrap());
    upload(&r, &m, &entry_dir(10)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused is not retried"
    );
}

#[tokio::test]
async fn webdav_makes_missing_collections_when_a_put_says_409() {
    let made = Arc::new(Mutex::new(false));
    let made2 = made.clone();
    let server = Scripted::start(move |method, _, _| match method {
        "PUT" if *made2.lock().unwrap() => Some(201),
        "PUT" => Some(409),
        "PROPFIND" => Some(404),
        "MKCOL" => {
            *made2.lock().unwrap() = true;
            Some(201)
        }
        _ => Some(400),
    });
    let url = format!("webdav+http://127.0.0.1:{}/dav", server.port);
    let b = backend(&url, Duration::from_secs(5), 2);
    b.put("records/t/k.json", b"{}".to_vec()).await.unwrap();
    let log = server.requests();
    assert_eq!(
        log.first().map(String::as_str),
        Some("PUT /dav/records/t/k.json")
    );
    assert_eq!(
        log.last().map(String::as_str),
        Some("PUT /dav/records/t/k.json")
    );
    assert!(log.iter().any(|l| l == "MKCOL /dav/records/t/"), "{log:?}");
}

#[tokio::test]
async fn a_redis_that_is_not_there_is_one_error_then_quiet_misses() {
    let port = servers::free_port();
    let r = remote(&format!("redis://127.0.0.1:{port}/0"), true);
    let m = marker("t", "no-redis");
    let started = Instant::now();
    let e = r.contains("t", &m.key).await.unwrap_err().to_string();
    assert!(e.contains("Connection refused"), "{e}");
    assert!(!r.contains("t", &m.key).await.unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "not one timeout per attempt"
    );
}

/// Issue 14: with a signing key, records and candidate lists are signed; a reader with
/// another key (or a writer without one) gets misses, a reader without a key hits.
#[tokio::test]
async fn redis_signed_objects_verify_only_under_their_key() {
    let redis = Redis::start();
    let key = |b: u8| Some(tiers_remote::SigningKey::new(&[b; 32]).unwrap());
    let signer = remote(&redis.url(), true).with_signing(key(1));
    let m = round_trip(&signer, 1000).await;
    candidates_round_trip(&signer).await;
    let raw = redis
        .keys()
        .into_iter()
        .find(|k| k.ends_with(&format!("records/t/{}.json", m.key)))
        .and_then(|k| redis.get(&k))
        .unwrap();
    assert!(raw.starts_with(b"{\"hmac\":\""));

    let skey = Key::of_bytes(b"structure");
    let dest = tempfile::tempdir().unwrap();
    let other = remote(&redis.url(), true).with_signing(key(2));
    assert!(!other.contains("t", &m.key).await.unwrap());
    assert!(other
        .fetch("t", &m.key, dest.path(), &local())
        .await
        .unwrap()
        .is_none());
    assert!(other.candidates("t", &skey).await.unwrap().is_empty());
    assert!(std::fs::read_dir(dest.path()).unwrap().next().is_none());

    let keyless = remote(&redis.url(), true);
    assert!(keyless
        .fetch("t", &m.key, dest.path(), &local())
        .await
        .unwrap()
        .is_some());
    assert_eq!(keyless.candidates("t", &skey).await.unwrap().len(), 1);

    // An unsigned upload over the signed one: the signer no longer accepts it.
    upload(&keyless, &m, &entry_dir(10)).await.unwrap();
    assert!(!signer.contains("t", &m.key).await.unwrap());
}
