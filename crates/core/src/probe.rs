//! What a tool says about itself, asked once per binary and kept while the binary
//! is unchanged.
//!
//! Asking an interpreter or a CLI who it is costs from tens of milliseconds to a
//! second (a JVM); a warm check must cost a few. So each answer is remembered in the
//! process and in `<cache dir>/.tool-probes/`, one small JSON record per
//! (probe, binary path), and reused while its [`Fingerprint`] is unchanged:
//!
//! | input | why |
//! | --- | --- |
//! | the path's own stat data (a link is not followed) | a link re-pointed at another install |
//! | the stat data of what it links to, and of its canonical path | an upgrade writes a new file, or new bytes in place (the change time moves even when size and mtime are kept) |
//! | lines the caller adds ([`Fingerprint::line`], [`Fingerprint::file`]) | what else steers the answer: a version manager's shim reads the environment and `.python-version` files |
//! | files the answer names (`named` in [`ToolCache::put`]) | the interpreter a shim resolved to may be upgraded while the shim stays |
//!
//! Stat data is dev, inode, size, mtime and ctime, to the nanosecond. Records are
//! read always, but written only when the caller allows it ([`ToolCache::writing`]:
//! builds do, `tiers status` does not), and only into a cache dir that exists. At
//! most [`PROBE_LIMIT`] records are kept per probe; the oldest written go first.
//!
//! Earlier versions kept these answers in `.venv-probes/python-*`, `tool-*` and
//! `.codeql-cli.json`; those are no longer read (nor deleted).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::fsutil::write_atomic;
use crate::key::Key;

/// The directory of the records, in the cache dir.
pub const PROBE_DIR: &str = ".tool-probes";
/// Records kept per probe; a new one beyond this removes the oldest written.
pub const PROBE_LIMIT: usize = 32;
/// Version of the record layout; a record of another is a miss.
const RECORD_FORMAT: u32 = 1;

/// One question asked of binaries: its name (part of the record's file name) and
/// the version of its answer, bumped when the answer's type or the way it is asked
/// changes, so older records miss rather than misread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Probe {
    name: &'static str,
    version: u32,
}

impl Probe {
    /// `name` is lowercase ASCII letters, digits and `-` (checked when compiled).
    pub const fn new(name: &'static str, version: u32) -> Probe {
        let b = name.as_bytes();
        assert!(!b.is_empty(), "a probe needs a name");
        let mut i = 0;
        while i < b.len() {
            assert!(
                b[i].is_ascii_lowercase() || b[i].is_ascii_digit() || b[i] == b'-',
                "a probe name is lowercase letters, digits and `-`"
            );
            i += 1;
        }
        Probe { name, version }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// What must stay the same for a kept answer to hold, as comparable lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(Vec<String>);

impl Fingerprint {
    /// The binary at `path`: the path itself, what it links to, and its canonical
    /// path (the file a chain of links ends at).
    pub fn of_binary(path: &Path) -> Fingerprint {
        let mut fp = Fingerprint(vec![stat_line(path, false), stat_line(path, true)]);
        if let Ok(real) = fs::canonicalize(path) {
            fp.0.push(stat_line(&real, true));
        }
        fp
    }

    /// Add the stat data of `path` (links followed; a missing file counts too).
    pub fn file(mut self, path: &Path) -> Fingerprint {
        self.0.push(stat_line(path, true));
        self
    }

    /// Add a line of the caller's (an environment variable, say).
    pub fn line(mut self, line: impl Into<String>) -> Fingerprint {
        self.0.push(line.into());
        self
    }

    fn of_files(paths: &[PathBuf]) -> Fingerprint {
        paths
            .iter()
            .fold(Fingerprint::default(), |fp, p| fp.file(p))
    }
}

/// The stat data that identifies one version of a file, as one line.
fn stat_line(path: &Path, follow: bool) -> String {
    let meta = if follow {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    };
    match meta {
        Ok(m) => format!(
            "{} {} {} {} {}.{} {}.{}",
            path.display(),
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        ),
        Err(_) => format!("{} -", path.display()),
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct Record<V> {
    format: u32,
    probe: String,
    version: u32,
    program: PathBuf,
    fingerprint: Fingerprint,
    /// Files the answer names, and their stat data when it was given.
    named: Vec<PathBuf>,
    named_stat: Fingerprint,
    value: V,
}

impl<V> Record<V> {
    fn holds(&self, probe: Probe, program: &Path, fingerprint: &Fingerprint) -> bool {
        self.format == RECORD_FORMAT
            && self.probe == probe.name
            && self.version == probe.version
            && self.program == program
            && &self.fingerprint == fingerprint
            && Fingerprint::of_files(&self.named) == self.named_stat
    }
}

type Memo = HashMap<(Probe, PathBuf), Record<serde_json::Value>>;

/// Answers given in this process, shared by every tier and engine in it.
static MEMO: Mutex<Option<Memo>> = Mutex::new(None);

fn memo<R>(f: impl FnOnce(&mut Memo) -> R) -> R {
    // A panic while the map was held leaves it whole: every update is one insert.
    let mut guard = MEMO.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// The answers of tools about themselves: in memory always, on disk as configured.
#[derive(Clone, Debug)]
pub struct ToolCache {
    /// The cache dir, when records are read from (and may be written to) disk.
    cache_dir: Option<PathBuf>,
    write: bool,
}

impl ToolCache {
    /// Read records from `cache_dir`'s [`PROBE_DIR`]; write none until
    /// [`ToolCache::writing`] allows it.
    pub fn new(cache_dir: &Path) -> ToolCache {
        ToolCache {
            cache_dir: Some(cache_dir.to_owned()),
            write: false,
        }
    }

    /// Remember answers for this process only (no file is read or written).
    pub fn in_memory() -> ToolCache {
        ToolCache {
            cache_dir: None,
            write: false,
        }
    }

    /// Whether new answers are written to disk: builds may, `tiers status` must not.
    pub fn writing(mut self, allowed: bool) -> ToolCache {
        self.write = allowed;
        self
    }

    fn file(&self, probe: Probe, program: &Path) -> Option<PathBuf> {
        let id = Key::of_bytes(format!("{}\0{}", probe.name, program.display()).as_bytes());
        self.cache_dir.as_ref().map(|d| {
            d.join(PROBE_DIR)
                .join(format!("{}-{}.json", probe.name, &id.as_str()[..24]))
        })
    }

    /// The answer `probe` got from `program` while its fingerprint was
    /// `fingerprint`, if one is kept and the files it names are unchanged.
    pub fn get<T: DeserializeOwned>(
        &self,
        probe: Probe,
        program: &Path,
        fingerprint: &Fingerprint,
    ) -> Option<T> {
        let key = (probe, program.to_owned());
        let mut record =
            memo(|m| m.get(&key).cloned()).filter(|r| r.holds(probe, program, fingerprint));
        if record.is_none() {
            let bytes = fs::read(self.file(probe, program)?).ok()?;
            let read: Record<serde_json::Value> = serde_json::from_slice(&bytes).ok()?;
            if read.holds(probe, program, fingerprint) {
                memo(|m| m.insert(key, read.clone()));
                record = Some(read);
            }
        }
        serde_json::from_value(record?.value).ok()
    }

    /// Keep `value`, the answer `probe` got from `program` while its fingerprint
    /// was `fingerprint`; it also holds only while the files `named` are unchanged.
    /// Best effort: a record that cannot be written costs one probe later.
    pub fn put<T: Serialize>(
        &self,
        probe: Probe,
        program: &Path,
        fingerprint: Fingerprint,
        named: &[PathBuf],
        value: &T,
    ) {
        let Ok(value) = serde_json::to_value(value) else {
            return;
        };
        let record = Record {
            format: RECORD_FORMAT,
            probe: probe.name.to_owned(),
            version: probe.version,
            program: program.to_owned(),
            fingerprint,
            named: named.to_vec(),
            named_stat: Fingerprint::of_files(named),
            value,
        };
        let file = self.file(probe, program);
        let bytes = serde_json::to_vec_pretty(&record).expect("a probe record serializes");
        memo(|m| m.insert((probe, program.to_owned()), record));
        let (Some(file), Some(cache_dir)) = (file, &self.cache_dir) else {
            return;
        };
        // A cache dir is made (and tagged) by the engine, never here.
        if !self.write || !cache_dir.is_dir() {
            return;
        }
        let dir = cache_dir.join(PROBE_DIR);
        let _ = fs::create_dir_all(&dir);
        if let Err(e) = write_atomic(&file, &bytes) {
            tracing::debug!(
                "cannot keep the {} probe of `{}`: {e}",
                probe.name,
                program.display()
            );
            return;
        }
        evict(&dir, probe);
    }
}

/// Remove the oldest written records of `probe` beyond [`PROBE_LIMIT`].
fn evict(dir: &Path, probe: Probe) {
    let Ok(read) = fs::read_dir(dir) else {
        return;
    };
    let mut records: Vec<(i128, PathBuf)> = read
        .flatten()
        .filter(|e| is_record_of(probe, &e.file_name().to_string_lossy()))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((
                i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                e.path(),
            ))
        })
        .collect();
    if records.len() <= PROBE_LIMIT {
        return;
    }
    records.sort();
    for (_, path) in &records[..records.len() - PROBE_LIMIT] {
        // Another process may have removed it first.
        let _ = fs::remove_file(path);
    }
}

/// Whether `name` is a record file of `probe` (and not of a probe whose name
/// merely starts with the same letters).
fn is_record_of(probe: Probe, name: &str) -> bool {
    name.strip_prefix(probe.name)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.strip_suffix(".json"))
        .is_some_and(|id| id.len() == 24 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn set_mtime(path: &Path, secs: u64) {
        let f = fs::File::options().write(true).open(path).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    }

    /// Issue 14: an upgrade in place that keeps the size and puts the mtime back
    /// still changes the fingerprint (through the change time).
    #[test]
    fn a_fingerprint_changes_with_bytes_rewritten_in_place_keeping_size_and_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("codeql");
        fs::write(&bin, "#!/bin/sh\necho 2.23.3\n").unwrap();
        set_mtime(&bin, 1_000_000);
        let a = Fingerprint::of_binary(&bin);
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&bin, "#!/bin/sh\necho 2.24.0\n").unwrap();
        set_mtime(&bin, 1_000_000);
        assert_eq!(fs::metadata(&bin).unwrap().len(), 22);
        assert_ne!(a, Fingerprint::of_binary(&bin));
    }

    #[test]
    fn a_fingerprint_follows_a_link_to_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("tool-1");
        fs::write(&bin, "1").unwrap();
        let link = dir.path().join("tool");
        std::os::unix::fs::symlink(&bin, &link).unwrap();
        let a = Fingerprint::of_binary(&link);
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&bin, "2").unwrap();
        assert_ne!(a, Fingerprint::of_binary(&link));
    }

    const TEST: Probe = Probe::new("core-test", 1);

    #[test]
    fn an_answer_is_kept_on_disk_only_when_writing_and_while_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("a-tool-kept-on-disk");
        fs::write(&bin, "x").unwrap();
        let fp = Fingerprint::of_binary(&bin);
        let status = ToolCache::new(dir.path());
        status.put(TEST, &bin, fp.clone(), &[], &"1.0");
        assert!(
            !dir.path().join(PROBE_DIR).exists(),
            "status writes nothing"
        );
        let forget = || memo(|m| m.remove(&(TEST, bin.clone())));
        forget();

        let build = ToolCache::new(dir.path()).writing(true);
        build.put(TEST, &bin, fp.clone(), &[], &"1.0");
        forget();
        let read = ToolCache::new(dir.path());
        assert_eq!(read.get::<String>(TEST, &bin, &fp).as_deref(), Some("1.0"));
        let other = fp.clone().line("PYENV_VERSION=3.12");
        assert_eq!(read.get::<String>(TEST, &bin, &other), None);
        let newer = Probe::new("core-test", 2);
        assert_eq!(read.get::<String>(newer, &bin, &fp), None);

        set_mtime(&bin, 1_000_000);
        let changed = Fingerprint::of_binary(&bin);
        assert_eq!(read.get::<String>(TEST, &bin, &changed), None);
    }

    #[test]
    fn an_answer_holds_while_the_files_it_names_are_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let shim = dir.path().join("a-shim-naming-a-file");
        let target = dir.path().join("python3.99");
        fs::write(&shim, "#!/bin/sh\n").unwrap();
        fs::write(&target, "x").unwrap();
        let fp = Fingerprint::of_binary(&shim);
        let cache = ToolCache::in_memory();
        cache.put(TEST, &shim, fp.clone(), std::slice::from_ref(&target), &1);
        assert_eq!(cache.get::<u32>(TEST, &shim, &fp), Some(1));
        set_mtime(&target, 1_000_000);
        assert_eq!(cache.get::<u32>(TEST, &shim, &fp), None);
    }

    #[test]
    fn at_most_the_limit_of_records_is_kept_per_probe() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ToolCache::new(dir.path()).writing(true);
        let bound = Probe::new("core-test-bound", 1);
        for i in 0..PROBE_LIMIT + 3 {
            let bin = dir.path().join(format!("bin-{i}"));
            fs::write(&bin, "x").unwrap();
            cache.put(bound, &bin, Fingerprint::of_binary(&bin), &[], &i);
            let file = cache.file(bound, &bin).unwrap();
            set_mtime(&file, 1_000_000 + i as u64);
        }
        cache.put(
            TEST,
            &dir.path().join("bin-0"),
            Fingerprint::default(),
            &[],
            &0,
        );
        let names: Vec<String> = fs::read_dir(dir.path().join(PROBE_DIR))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let bounded = names.iter().filter(|n| n.starts_with("core-test-bound-"));
        assert_eq!(bounded.count(), PROBE_LIMIT);
        assert_eq!(names.len(), PROBE_LIMIT + 1, "other probes are not evicted");
        let first = cache.file(bound, &dir.path().join("bin-0")).unwrap();
        assert!(!first.exists(), "the oldest went first");
    }
}
