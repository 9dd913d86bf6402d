//! The input layer: stat cache, racy guard, parallel hashing (issue 6, "fast inputs").
//!
//! Real files in temp dirs. The read counter is [`Inputs::stats`]: `hashed_files`
//! counts every file whose content was read.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tiers_core::{
    async_trait, hash_file, BuildOutcome, BuildRequest, ConfigSource, Context, Engine,
    EngineOptions, Entry, InputSpec, InputStats, Inputs, Key, KeyDoc, Registry, Result, Tier,
};

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        // Canonical, as the engine makes it: the stat cache's name derives from it.
        let root = dir.path().canonicalize().unwrap();
        let f = Fixture { _dir: dir, root };
        fs::create_dir_all(f.cache()).unwrap();
        for (rel, text) in files {
            f.write(rel, text);
        }
        f
    }

    /// Many small files in nested packages.
    fn many(n: usize) -> Fixture {
        let f = Fixture::new(&[]);
        for i in 0..n {
            f.write(
                &format!("pkg{}/sub{}/m{i}.py", i % 7, i % 3),
                &format!("x = {i}\n"),
            );
        }
        f
    }

    fn project(&self) -> &Path {
        &self.root
    }

    fn cache(&self) -> PathBuf {
        self.root.join(".tiers")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.project().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// One run of the input layer: walk, collect `**/*.py`, save the stat cache.
    fn run(&self) -> (Vec<(String, String)>, InputStats) {
        self.run_with(true)
    }

    fn run_with(&self, stat_cache: bool) -> (Vec<(String, String)>, InputStats) {
        let inputs = Inputs::new(self.project(), vec![self.cache()])
            .with_stat_cache(stat_cache.then_some(self.cache().as_path()));
        let set = inputs.collect(&py()).unwrap();
        let digests = set
            .iter()
            .map(|(p, d)| (p.to_owned(), d.to_owned()))
            .collect();
        inputs.save_stat_cache().unwrap();
        (digests, inputs.stats())
    }

    fn stat_cache_file(&self) -> PathBuf {
        Inputs::new(self.project(), vec![])
            .with_stat_cache(Some(&self.cache()))
            .stat_cache_path()
            .unwrap()
            .to_owned()
    }
}

fn py() -> InputSpec {
    InputSpec::new("t", &["**/*.py".into()], &[]).unwrap()
}

/// Wait until files written so far are old enough for the stat cache to vouch for
/// them (the racy guard's margin is 2 s).
fn settle() {
    std::thread::sleep(Duration::from_millis(2200));
}

fn mtime(p: &Path) -> SystemTime {
    fs::metadata(p).unwrap().modified().unwrap()
}

fn set_mtime(p: &Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn digest<'a>(set: &'a [(String, String)], rel: &str) -> &'a str {
    &set.iter().find(|(p, _)| p == rel).unwrap().1
}

#[test]
fn unchanged_tree_is_checked_without_reading_content() {
    let f = Fixture::many(300);
    // Cold: every file and directory read (the project, 7 packages, 21 subpackages).
    let (cold, s) = f.run();
    assert_eq!((s.files, s.hashed_files, s.stat_hits), (300, 300, 0));
    assert_eq!((s.dirs, s.dirs_read), (29, 29));
    // Right after being written, no file or directory is old enough to be vouched
    // for: the racy guard has every one read again.
    let (again, s) = f.run();
    assert_eq!((s.racy, s.hashed_files, s.stat_hits), (300, 300, 0));
    assert_eq!(s.dirs_read, 29);
    assert_eq!(again, cold);
    settle();
    let (_, s) = f.run();
    assert_eq!(s.racy, 300, "still racy against the previous write");
    // Warm: nothing read, same digests, and the cache is not rewritten.
    let before = fs::read(f.stat_cache_file()).unwrap();
    let (warm, s) = f.run();
    assert_eq!((s.hashed_files, s.hashed_bytes, s.stat_hits), (0, 0, 300));
    assert_eq!((s.dirs, s.dirs_read), (29, 0), "no directory read either");
    assert_eq!(warm, cold);
    assert_eq!(fs::read(f.stat_cache_file()).unwrap(), before);
    for (rel, d) in &warm {
        assert_eq!(*d, hash_file(&f.path(rel)).unwrap(), "{rel}");
    }
}

/// One run ended as the engine ends it: `finish` decides whether to save.
fn finished_run(f: &Fixture) -> InputStats {
    let inputs = Inputs::new(f.project(), vec![f.cache()]).with_stat_cache(Some(&f.cache()));
    inputs.collect(&py()).unwrap();
    inputs.finish();
    inputs.stats()
}

#[test]
fn a_run_that_hashed_a_few_files_leaves_the_stat_cache_as_it_was() {
    let f = Fixture::many(100);
    settle();
    // A cold run saves: nothing was loaded.
    assert_eq!(finished_run(&f).hashed_files, 100);
    assert_eq!(finished_run(&f).hashed_files, 0);
    let resaved = fs::read(f.stat_cache_file()).unwrap();

    // One edit: hashed, and not worth a rewrite of the cache...
    f.write("pkg0/sub0/m0.py", "x = 'edited'\n");
    let s = finished_run(&f);
    assert_eq!((s.hashed_files, s.stat_hits), (1, 99));
    assert_eq!(fs::read(f.stat_cache_file()).unwrap(), resaved);
    // ...so the next run hashes it again, and only it.
    let s = finished_run(&f);
    assert_eq!((s.hashed_files, s.stat_hits), (1, 99));

    // Edits to 64 files are worth it: the run after them hashes nothing.
    for i in 0..64 {
        f.write(
            &format!("pkg{}/sub{}/m{i}.py", i % 7, i % 3),
            &format!("x = 'again {i}'\n"),
        );
    }
    settle();
    assert_eq!(finished_run(&f).hashed_files, 64);
    assert_ne!(fs::read(f.stat_cache_file()).unwrap(), resaved);
    assert_eq!(finished_run(&f).hashed_files, 0);
}

#[test]
fn same_size_edit_in_the_same_mtime_is_detected() {
    let f = Fixture::new(&[("a.py", "x = 1\n"), ("b.py", "y = 1\n")]);
    settle();
    f.run();
    let (before, s) = f.run();
    assert_eq!(s.stat_hits, 2);
    // Same size, and the mtime put back to the very nanosecond it had.
    let old = mtime(&f.path("a.py"));
    f.write("a.py", "x = 2\n");
    set_mtime(&f.path("a.py"), old);
    assert_eq!(mtime(&f.path("a.py")), old);
    let (after, s) = f.run();
    assert_eq!((s.hashed_files, s.stat_hits), (1, 1));
    assert_ne!(digest(&after, "a.py"), digest(&before, "a.py"));
    assert_eq!(digest(&after, "a.py"), hash_file(&f.path("a.py")).unwrap());
    // The edit is racy against the cache just written: read again next time, too.
    let (again, s) = f.run();
    assert_eq!((s.racy, s.hashed_files), (1, 1));
    assert_eq!(again, after);
}

#[test]
fn edit_within_one_second_and_truncated_mtime_is_detected() {
    // A filesystem with one-second timestamps: the edit lands in the same second.
    let f = Fixture::new(&[("a.py", "x = 1\n")]);
    let whole = |t: SystemTime| {
        let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
        SystemTime::UNIX_EPOCH + Duration::from_secs(d.as_secs())
    };
    set_mtime(&f.path("a.py"), whole(mtime(&f.path("a.py"))));
    let (first, _) = f.run();
    f.write("a.py", "x = 9\n");
    set_mtime(&f.path("a.py"), whole(mtime(&f.path("a.py"))));
    let (second, _) = f.run();
    assert_ne!(first, second);
    assert_eq!(digest(&second, "a.py"), hash_file(&f.path("a.py")).unwrap());
}

#[test]
fn touch_without_content_change_keeps_the_digest() {
    let f = Fixture::new(&[("a.py", "x = 1\n"), ("b.py", "y = 1\n")]);
    settle();
    f.run();
    let (before, _) = f.run();
    set_mtime(&f.path("a.py"), SystemTime::now());
    let (after, s) = f.run();
    assert_eq!(after, before);
    assert_eq!(
        (s.hashed_files, s.stat_hits),
        (1, 1),
        "only the touched file is read"
    );
}

#[test]
fn file_replaced_by_an_older_file_of_the_same_size_is_detected() {
    let f = Fixture::new(&[("a.py", "AAAA\n"), ("b.py", "BBBB\n")]);
    // Both files with one old mtime: after the move, only the inode and ctime differ.
    let old = SystemTime::now() - Duration::from_secs(3600);
    set_mtime(&f.path("a.py"), old);
    set_mtime(&f.path("b.py"), old);
    settle();
    f.run();
    let (before, s) = f.run();
    assert_eq!(s.stat_hits, 2);
    fs::rename(f.path("b.py"), f.path("a.py")).unwrap();
    assert_eq!(mtime(&f.path("a.py")), old);
    let (after, s) = f.run();
    assert_eq!(s.hashed_files, 1);
    assert_eq!(after.len(), 1);
    assert_eq!(digest(&after, "a.py"), digest(&before, "b.py"));
}

#[test]
fn corrupt_or_foreign_stat_cache_is_ignored() {
    let f = Fixture::new(&[("a.py", "x = 1\n"), ("pkg/b.py", "y = 2\n")]);
    settle();
    let (truth, _) = f.run();
    f.run();
    let cache = f.stat_cache_file();
    let good = fs::read(&cache).unwrap();
    let len = good.len();
    let flip = |i: usize| {
        let mut b = good.clone();
        b[i] ^= 1;
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"not a stat cache at all".to_vec()),
        ("empty", Vec::new()),
        ("truncated", good[..len / 2].to_vec()),
        // A flipped bit in the last record's digest: trusting it would lie.
        ("digest bit", flip(len - 40)),
        ("version", flip(8)),
    ];
    for (what, bytes) in cases {
        fs::write(&cache, &bytes).unwrap();
        let (got, s) = f.run();
        assert_eq!(got, truth, "{what}");
        assert_eq!((s.stat_hits, s.hashed_files), (0, 2), "{what}");
        // Replaced by a good one, which the next run trusts.
        let (_, s) = f.run();
        assert_eq!(s.stat_hits, 2, "{what}");
    }
}

#[test]
fn directory_changes_are_seen_through_cached_listings() {
    let f = Fixture::new(&[
        ("a.py", "a"),
        ("pkg/b.py", "b"),
        ("pkg/sub/c.py", "c"),
        ("other/d.py", "d"),
        ("env/lib/e.py", "e"),
    ]);
    let uncached = || f.run_with(false).0;
    settle();
    f.run();
    let (_, s) = f.run();
    assert_eq!(s.dirs_read, 0);
    let paths =
        |set: &[(String, String)]| -> Vec<String> { set.iter().map(|(p, _)| p.clone()).collect() };
    // Each change below is seen, with only the directory it touched read again.
    type Step<'a> = (&'a str, Box<dyn Fn() + 'a>, u64);
    let steps: Vec<Step<'_>> = vec![
        ("new file", Box::new(|| f.write("pkg/sub/new.py", "n")), 1),
        (
            "removed file",
            Box::new(|| fs::remove_file(f.path("pkg/b.py")).unwrap()),
            1,
        ),
        (
            "renamed file",
            Box::new(|| fs::rename(f.path("other/d.py"), f.path("other/d2.py")).unwrap()),
            1,
        ),
        // The new directory and its parent.
        (
            "new directory",
            Box::new(|| f.write("pkg/new/x.py", "x")),
            2,
        ),
        (
            "becomes a venv",
            Box::new(|| f.write("env/pyvenv.cfg", "home = /usr\n")),
            1,
        ),
        (
            "no longer a venv",
            Box::new(|| fs::remove_file(f.path("env/pyvenv.cfg")).unwrap()),
            2,
        ),
        (
            "removed directory",
            Box::new(|| fs::remove_dir_all(f.path("pkg/sub")).unwrap()),
            1,
        ),
    ];
    for (what, change, read) in steps {
        change();
        // Right after a change its directory is racy: read on every run until it
        // settles, and what is seen is the same as without any cache.
        let (got, s) = f.run();
        assert_eq!(paths(&got), paths(&uncached()), "{what}");
        assert_eq!(got, uncached(), "{what}");
        assert_eq!(s.dirs_read, read, "{what}");
        settle();
        f.run();
        let (again, s) = f.run();
        assert_eq!(again, got, "{what}");
        assert_eq!(s.dirs_read, 0, "{what}");
    }
}

#[test]
fn deleted_and_new_files_are_followed() {
    let f = Fixture::new(&[("a.py", "x = 1\n"), ("b.py", "y = 1\n")]);
    settle();
    f.run();
    f.run();
    fs::remove_file(f.path("b.py")).unwrap();
    f.write("c.py", "z = 1\n");
    let (got, s) = f.run();
    let paths: Vec<_> = got.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["a.py", "c.py"]);
    assert_eq!((s.stat_hits, s.hashed_files), (1, 1));
}

#[test]
fn without_stat_cache_every_file_is_read_and_nothing_written() {
    let f = Fixture::new(&[("a.py", "x = 1\n"), ("b.py", "y = 1\n")]);
    settle();
    let (with, _) = f.run();
    let (_, s) = f.run();
    assert_eq!(s.stat_hits, 2);
    let (without, s) = f.run_with(false);
    assert_eq!(without, with);
    assert_eq!((s.stat_hits, s.hashed_files), (0, 2));
}

#[test]
fn racy_record_not_looked_at_is_not_carried_forward() {
    // A run that does not ask for a racy file must not rewrite its record with a
    // newer write time, which would make the next run trust it.
    let f = Fixture::new(&[("a.py", "x = 1\n"), ("b.txt", "one\n")]);
    let txt = InputSpec::new("t", &["*.txt".into()], &[]).unwrap();
    let run = |spec: &InputSpec| {
        let inputs = Inputs::new(f.project(), vec![f.cache()]).with_stat_cache(Some(&f.cache()));
        let set = inputs.collect(spec).unwrap();
        inputs.save_stat_cache().unwrap();
        (set, inputs.stats())
    };
    // b.txt recorded while racy: an edit in the same timestamp tick could follow.
    let (_, s) = run(&txt);
    assert_eq!(s.hashed_files, 1);
    settle();
    // A run that does not look at b.txt, but writes the cache (it hashes a.py).
    let (_, s) = run(&py());
    assert_eq!(s.hashed_files, 1);
    // b.txt's record was never verified, so it must not be trusted now.
    let (set, s) = run(&txt);
    assert_eq!((s.stat_hits, s.hashed_files), (0, 1));
    assert_eq!(
        set.get("b.txt").unwrap(),
        hash_file(&f.path("b.txt")).unwrap()
    );
}

#[test]
fn concurrent_writers_leave_a_whole_cache() {
    let f = Fixture::many(200);
    settle();
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                for _ in 0..5 {
                    let inputs =
                        Inputs::new(f.project(), vec![f.cache()]).with_stat_cache(Some(&f.cache()));
                    inputs.collect(&py()).unwrap();
                    inputs.save_stat_cache().unwrap();
                }
            });
        }
    });
    let (_, s) = f.run();
    assert_eq!((s.stat_hits, s.hashed_files), (200, 0));
}

#[test]
fn walk_skips_venvs_pycache_git_and_cache_dir() {
    let f = Fixture::new(&[
        ("a.py", "a"),
        ("pkg/b.py", "b"),
        (".git/hooks/x.py", "g"),
        ("pkg/__pycache__/b.py", "c"),
        ("venv/pyvenv.cfg", "v"),
        ("venv/lib/x.py", "v"),
        (".tiers/t/k/x.py", "t"),
    ]);
    let (got, _) = f.run();
    let paths: Vec<_> = got.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["a.py", "pkg/b.py"]);
}

// Through the engine: `--no-stat-cache` and the config switch give the same keys.

struct Files {
    spec: InputSpec,
}

#[async_trait]
impl Tier for Files {
    async fn key(&self, cx: &Context) -> Result<KeyDoc> {
        Ok(KeyDoc::new("files", 1).inputs(&cx.inputs(&self.spec)?))
    }
    async fn build(&self, _cx: &Context, _entry: &Entry) -> Result<BuildOutcome> {
        Ok(BuildOutcome::default())
    }
    fn path(&self, entry: &Entry) -> PathBuf {
        entry.dir.clone()
    }
}

fn engine(f: &Fixture, no_stat_cache: bool, toml: &str) -> Engine {
    let mut registry = Registry::new();
    registry.register("files", |_spec| Ok(Box::new(Files { spec: py() })));
    let options = EngineOptions {
        config: ConfigSource {
            project: f.project().to_owned(),
            toml: Some(format!("[tiers.src]\nkind = \"files\"\n{toml}")),
            no_stat_cache,
            ..Default::default()
        },
        ..Default::default()
    };
    Engine::open(options, &registry).unwrap()
}

fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(fut)
}

fn status_key(e: &Engine) -> Key {
    let report = block_on(e.status(&[])).unwrap();
    report.tier("src").unwrap().key.clone().unwrap()
}

#[test]
fn no_stat_cache_gives_the_same_keys() {
    let f = Fixture::new(&[("a.py", "x = 1\n"), ("pkg/b.py", "y = 1\n")]);
    settle();
    let e = engine(&f, false, "");
    block_on(e.build(&BuildRequest::default())).unwrap();
    let built = status_key(&e);
    assert!(
        f.stat_cache_file().is_file(),
        "build and status save the stat cache"
    );
    let warm = status_key(&engine(&f, false, ""));
    let flag = status_key(&engine(&f, true, ""));
    let config = status_key(&engine(&f, false, "[inputs]\nstat_cache = false\n"));
    assert_eq!([&warm, &flag, &config], [&built; 3]);
    // An edit changes every one of them alike.
    f.write("a.py", "x = 2\n");
    let keys = [
        status_key(&engine(&f, false, "")),
        status_key(&engine(&f, true, "")),
    ];
    assert_ne!(keys[0], built);
    assert_eq!(keys[0], keys[1]);
}

#[test]
fn no_stat_cache_writes_no_stat_cache() {
    let f = Fixture::new(&[("a.py", "x = 1\n")]);
    let e = engine(&f, true, "");
    block_on(e.build(&BuildRequest::default())).unwrap();
    assert!(f.cache().join("src").is_dir());
    assert!(!f.stat_cache_file().exists());
}

/// Files of a second spec, which the walk (told of the first) did not stat,
/// are stat'ed when asked for: their edits are seen, and the stat cache vouches
/// for them the next time as for any other.
#[test]
fn a_second_specs_files_are_stat_ed_when_asked_for() {
    let f = Fixture::new(&[
        ("a.py", "A = 1\n"),
        ("notes.txt", "one\n"),
        ("d/b.txt", "two\n"),
    ]);
    let txt = InputSpec::new("u", &["**/*.txt".into()], &[]).unwrap();
    let run = || {
        let inputs = Inputs::new(f.project(), vec![f.cache()]).with_stat_cache(Some(&f.cache()));
        let py = inputs.collect(&py()).unwrap().len();
        let set = inputs.collect(&txt).unwrap();
        let digests: Vec<(String, String)> = set
            .iter()
            .map(|(p, d)| (p.to_owned(), d.to_owned()))
            .collect();
        inputs.save_stat_cache().unwrap();
        (py, digests, inputs.stats())
    };
    let (py_count, cold, _) = run();
    assert_eq!(py_count, 1);
    assert_eq!(cold.len(), 2);
    for (rel, d) in &cold {
        assert_eq!(*d, hash_file(&f.path(rel)).unwrap(), "{rel}");
    }
    settle();
    run();
    // Warm: the `.txt` files are vouched for by their stat data, read nowhere.
    let (_, warm, s) = run();
    assert_eq!(warm, cold);
    assert_eq!((s.hashed_files, s.stat_hits), (0, 3), "{s:?}");
    // An edit of a file only the second spec matches is seen.
    f.write("d/b.txt", "three\n");
    let (_, edited, s) = run();
    assert_eq!(
        digest(&edited, "d/b.txt"),
        hash_file(&f.path("d/b.txt")).unwrap()
    );
    assert_ne!(digest(&edited, "d/b.txt"), digest(&cold, "d/b.txt"));
    assert_eq!(s.hashed_files, 1, "{s:?}");
}
