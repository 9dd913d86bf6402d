//! The engine's use of a shared cache level (issue 8), through a `SharedCache` kept in
//! a plain directory: lookup order, upload after a build, failures as misses,
//! read-only mode, and records that do not match their key.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tiers_core::{
    async_trait, Blobs, BuildOutcome, BuildRequest, Candidate, ConfigSource, Context, Engine,
    EngineOptions, Entry, Error, InputSpec, Key, KeyDoc, Marker, Registry, Result, SharedCache,
    Status, Tier, Tree,
};

/// A shared level in a directory: `<root>/<key>/` holds the files and `marker.json`.
struct DirShared {
    root: PathBuf,
    writable: bool,
    broken: AtomicBool,
    fetches: AtomicUsize,
}

impl DirShared {
    fn new(root: &Path, writable: bool) -> Arc<Self> {
        Arc::new(DirShared {
            root: root.to_owned(),
            writable,
            broken: AtomicBool::new(false),
            fetches: AtomicUsize::new(0),
        })
    }
    fn check(&self) -> Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(Error::build("connection refused"));
        }
        Ok(())
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else if e.file_name() != "entry.json" && e.file_name() != "marker.json" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[async_trait]
impl SharedCache for DirShared {
    fn describe(&self) -> String {
        "dir://test".into()
    }
    fn writable(&self) -> bool {
        self.writable
    }
    async fn fetch(
        &self,
        _tier: &str,
        key: &Key,
        dest: &Path,
        _local: &Blobs,
    ) -> Result<Option<Marker>> {
        self.check()?;
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let dir = self.root.join(key.as_str());
        let Ok(bytes) = std::fs::read(dir.join("marker.json")) else {
            return Ok(None);
        };
        copy_dir(&dir, dest);
        Ok(Some(serde_json::from_slice(&bytes).unwrap()))
    }
    async fn contains(&self, _tier: &str, key: &Key) -> Result<bool> {
        self.check()?;
        Ok(self.root.join(key.as_str()).join("marker.json").exists())
    }
    async fn store(
        &self,
        _tier: &str,
        marker: &Marker,
        dir: &Path,
        tree: &Tree,
        local: &Blobs,
    ) -> Result<()> {
        self.check()?;
        assert!(self.writable, "a read-only level was written");
        let to = self.root.join(marker.key.as_str());
        copy_dir(dir, &to);
        let carry = to.join(tiers_core::CARRIED);
        for d in &tree.named {
            std::fs::create_dir_all(&carry).unwrap();
            std::fs::copy(local.path(d, false), carry.join(d.to_string())).unwrap();
        }
        std::fs::write(to.join("marker.json"), serde_json::to_vec(marker).unwrap()).unwrap();
        Ok(())
    }
    async fn candidates(&self, _tier: &str, skey: &Key) -> Result<Vec<Candidate>> {
        self.check()?;
        let Ok(bytes) = std::fs::read(self.root.join(format!("{skey}.candidates"))) else {
            return Ok(vec![]);
        };
        Ok(serde_json::from_slice(&bytes).unwrap())
    }
    async fn store_candidates(&self, _tier: &str, skey: &Key, list: &[Candidate]) -> Result<()> {
        self.check()?;
        assert!(self.writable, "a read-only level was written");
        std::fs::create_dir_all(&self.root).unwrap();
        std::fs::write(
            self.root.join(format!("{skey}.candidates")),
            serde_json::to_vec(list).unwrap(),
        )
        .unwrap();
        Ok(())
    }
}

/// Copies `b.txt` to `out.txt`, reports that it used only `b.txt`, counts its builds.
struct CopyB {
    spec: InputSpec,
    builds: Arc<AtomicUsize>,
}

#[async_trait]
impl Tier for CopyB {
    async fn key(&self, cx: &Context) -> Result<KeyDoc> {
        Ok(KeyDoc::new("copy-b", 1).inputs(&cx.inputs(&self.spec)?))
    }
    async fn build(&self, cx: &Context, entry: &Entry) -> Result<BuildOutcome> {
        self.builds.fetch_add(1, Ordering::SeqCst);
        std::fs::copy(cx.project().join("b.txt"), entry.build_dir.join("out.txt")).unwrap();
        Ok(BuildOutcome {
            used_inputs: Some(vec!["b.txt".into()]),
            ..Default::default()
        })
    }
    fn path(&self, entry: &Entry) -> PathBuf {
        entry.dir.join("out.txt")
    }
}

struct Checkout {
    dir: tempfile::TempDir,
    builds: Arc<AtomicUsize>,
}

impl Checkout {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "a1").unwrap();
        std::fs::write(dir.path().join("b.txt"), "b1").unwrap();
        Checkout {
            dir,
            builds: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn engine(&self, shared: Option<Arc<DirShared>>) -> Engine {
        let builds = self.builds.clone();
        let mut registry = Registry::new();
        registry.register("copy-b", move |spec| {
            Ok(Box::new(CopyB {
                spec: InputSpec::new(spec.name, &["*.txt".into()], &[])?,
                builds: builds.clone(),
            }))
        });
        let options = EngineOptions {
            config: ConfigSource {
                project: self.dir.path().to_owned(),
                toml: Some("[tiers.t]\nkind = \"copy-b\"\n".into()),
                ..Default::default()
            },
            verbose: false,
        };
        let shared = shared.map(|s| s as Arc<dyn SharedCache>);
        Engine::open(options, &registry)
            .unwrap()
            .with_shared(shared)
    }

    fn build(&self, shared: Option<Arc<DirShared>>) -> tiers_core::TierReport {
        let engine = self.engine(shared);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let report = rt.block_on(engine.build(&BuildRequest::default())).unwrap();
        report.tier("t").unwrap().clone()
    }

    fn write(&self, rel: &str, text: &str) {
        std::fs::write(self.dir.path().join(rel), text).unwrap();
    }

    fn builds(&self) -> usize {
        self.builds.load(Ordering::SeqCst)
    }
}

fn messages(t: &tiers_core::TierReport) -> Vec<String> {
    t.reasons.iter().map(|r| r.message.clone()).collect()
}

#[test]
fn a_second_checkout_restores_from_the_shared_level_without_building() {
    let store = tempfile::tempdir().unwrap();
    let shared = DirShared::new(store.path(), true);
    let first = Checkout::new();
    assert_eq!(first.build(Some(shared.clone())).status, Status::Built);

    let second = Checkout::new();
    let t = second.build(Some(shared.clone()));
    assert_eq!(t.status, Status::Restored);
    assert_eq!(messages(&t), ["restored from the shared cache dir://test"]);
    assert_eq!(second.builds(), 0);
    let path = t.path.unwrap();
    assert!(
        path.starts_with(second.dir.path()),
        "{path:?} is not in the second checkout"
    );
    assert_eq!(std::fs::read_to_string(path).unwrap(), "b1");
    // Now local: the next build is an exact local hit.
    assert_eq!(second.build(Some(shared)).status, Status::Fresh);
}

#[test]
fn a_shared_candidate_restores_when_only_unused_inputs_differ() {
    let store = tempfile::tempdir().unwrap();
    let shared = DirShared::new(store.path(), true);
    Checkout::new().build(Some(shared.clone()));

    let second = Checkout::new();
    second.write("a.txt", "a-different");
    let t = second.build(Some(shared));
    assert_eq!(t.status, Status::Restored);
    assert_eq!(
        messages(&t),
        [
            "`a.txt` changed but the last build did not use it",
            "restored from the shared cache dir://test"
        ]
    );
    assert_eq!(second.builds(), 0);
}

#[test]
fn a_failing_shared_level_is_a_miss_and_the_build_succeeds() {
    let store = tempfile::tempdir().unwrap();
    let shared = DirShared::new(store.path(), true);
    shared.broken.store(true, Ordering::SeqCst);
    let c = Checkout::new();
    let t = c.build(Some(shared.clone()));
    assert_eq!(t.status, Status::Built);
    assert_eq!(c.builds(), 1);
    // Not switched off for later runs: once it answers again, it is used.
    shared.broken.store(false, Ordering::SeqCst);
    c.write("b.txt", "b2");
    assert_eq!(c.build(Some(shared.clone())).status, Status::Rebuilt);
    assert!(shared.fetches.load(Ordering::SeqCst) >= 1);
    assert!(
        store.path().read_dir().unwrap().count() > 0,
        "the rebuilt entry was uploaded"
    );
}

#[test]
fn a_read_only_level_is_read_and_never_written() {
    let store = tempfile::tempdir().unwrap();
    let c = Checkout::new();
    // `DirShared::store` asserts if called on a read-only level.
    assert_eq!(
        c.build(Some(DirShared::new(store.path(), false))).status,
        Status::Built
    );
    assert_eq!(store.path().read_dir().unwrap().count(), 0);
}

#[test]
fn a_record_describing_another_key_is_rejected() {
    let store = tempfile::tempdir().unwrap();
    let shared = DirShared::new(store.path(), true);
    let first = Checkout::new();
    let built = first.build(Some(shared.clone()));
    let key = built.key.unwrap();
    // Tamper: the record for `key` now carries a document of other inputs.
    let marker_path = store.path().join(key.as_str()).join("marker.json");
    let mut marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&marker_path).unwrap()).unwrap();
    marker["doc"]["inputs"]["b.txt"] = "0".repeat(64).into();
    std::fs::write(&marker_path, serde_json::to_vec(&marker).unwrap()).unwrap();

    let second = Checkout::new();
    let t = second.build(Some(shared));
    assert_eq!(t.status, Status::Built);
    assert_eq!(second.builds(), 1);
}

#[test]
fn status_says_whether_a_missing_entry_is_available_remotely() {
    let store = tempfile::tempdir().unwrap();
    let shared = DirShared::new(store.path(), true);
    Checkout::new().build(Some(shared.clone()));
    let second = Checkout::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt
        .block_on(second.engine(Some(shared)).status(&[]))
        .unwrap();
    let t = report.tier("t").unwrap();
    assert_eq!(t.status, Status::Missing);
    assert_eq!(t.available_remotely, Some(true));
    second.write("b.txt", "never built anywhere");
    let report = rt
        .block_on(
            second
                .engine(Some(DirShared::new(store.path(), true)))
                .status(&[]),
        )
        .unwrap();
    assert_eq!(report.tier("t").unwrap().available_remotely, Some(false));
}
