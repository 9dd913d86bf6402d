//! Declared inputs: globs over the project, walked once per run, hashed in parallel
//! through the stat cache.
//!
//! Paths are relative to the project and `/`-separated, so two clones of one project
//! produce the same input sets. The cache dir, `.git`, `__pycache__`, any directory
//! holding a `pyvenv.cfg` and the configured ignored dirs are never walked.
//!
//! The cost model: one parallel walk per run stats every file (relative to its
//! directory) and reads only the directories whose listing changed (`walk.rs`); a
//! file's content is read only when the stat cache (`statcache.rs`) cannot vouch for
//! it, and then on every core. Each spec is matched against the walk once per run,
//! however many tiers share it, and each file is hashed at most once per run,
//! whichever tiers ask for it. A warm check of an unchanged tree reads no file and
//! no directory.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::fsutil::hex;
use crate::progress::{Progress, Unit};
use crate::statcache::{self, Record, Stat, StatCache};

mod walk;

/// A spec's globs as written, include and exclude apart.
type SpecId = (Vec<String>, Vec<String>);

/// Which project files a tier reads: `include` globs minus `exclude` globs.
///
/// `*` does not cross `/`; `**/` matches any number of directories.
#[derive(Clone, Debug)]
pub struct InputSpec {
    include: GlobSet,
    exclude: GlobSet,
    /// The globs as written, include and exclude apart: what identifies the spec.
    source: SpecId,
    patterns: Vec<String>,
}

/// Refuse a glob that can only name files outside the project (`/etc/passwd`,
/// `../**`): it would match nothing, silently.
fn outside_project(tier: &str, glob: &str) -> Result<()> {
    // A backslash escapes a glob character (`\[draft\].txt`): only `/` separates.
    let why = if glob.starts_with('/') {
        "is absolute"
    } else if glob.split('/').any(|part| part == "..") {
        "leaves the project through `..`"
    } else {
        return Ok(());
    };
    Err(Error::config(format!(
        "tier `{tier}`: the input glob `{glob}` {why}; input globs are relative to the project and match only files inside it"
    )))
}

impl InputSpec {
    pub fn new(tier: &str, include: &[String], exclude: &[String]) -> Result<Self> {
        let build = |globs: &[String]| -> Result<GlobSet> {
            let mut set = GlobSetBuilder::new();
            for glob in globs {
                outside_project(tier, glob)?;
                let g = GlobBuilder::new(glob.trim_start_matches("./"))
                    .literal_separator(true)
                    .backslash_escape(true)
                    .build()
                    .map_err(|source| Error::Glob {
                        tier: tier.to_owned(),
                        glob: glob.clone(),
                        source,
                    })?;
                set.add(g);
            }
            set.build().map_err(|source| Error::Glob {
                tier: tier.to_owned(),
                glob: globs.join(", "),
                source,
            })
        };
        Ok(InputSpec {
            include: build(include)?,
            exclude: build(exclude)?,
            source: (include.to_vec(), exclude.to_vec()),
            patterns: include.iter().chain(exclude).cloned().collect(),
        })
    }

    pub fn matches(&self, rel: &str) -> bool {
        self.matches_candidate(&Candidate::new(rel))
    }

    fn matches_candidate(&self, c: &Candidate<'_>) -> bool {
        self.include.is_match_candidate(c) && !self.exclude.is_match_candidate(c)
    }

    /// The globs, for key documents: a changed glob is a changed option.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// `(relative path, SHA-256 hex)` of each matched file, sorted by path.
///
/// It shares the run's path table rather than copying a string per file.
#[derive(Clone, Default)]
pub struct InputSet {
    paths: Arc<Paths>,
    /// Indices into `paths`, ascending, so sorted by path.
    items: Vec<usize>,
    /// 64 hex digits per item.
    hex: String,
}

impl InputSet {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.items
            .iter()
            .enumerate()
            .map(|(k, &i)| (self.paths.get(i), &self.hex[k * 64..(k + 1) * 64]))
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn get(&self, rel: &str) -> Option<&str> {
        let k = self
            .items
            .binary_search_by(|&i| self.paths.get(i).cmp(rel))
            .ok()?;
        Some(&self.hex[k * 64..(k + 1) * 64])
    }
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(|&i| self.paths.get(i))
    }
}

impl PartialEq for InputSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for InputSet {}

impl std::fmt::Debug for InputSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// The walk's relative paths, sorted, in one buffer: one allocation for the whole
/// walk rather than one per file (allocating and freeing 100,000 strings costs
/// about as much as stat'ing the files).
#[derive(Default)]
struct Paths {
    text: String,
    /// Where each path ends in `text`; it starts where the previous one ends.
    ends: Vec<usize>,
}

impl Paths {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    fn iter(&self) -> impl ExactSizeIterator<Item = &str> {
        (0..self.len()).map(|i| self.get(i))
    }

    fn find(&self, rel: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid).cmp(rel) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }
}

/// What the input layer did so far in this run. `hashed_files` counts every file
/// whose content was read: a warm check of an unchanged tree leaves it at 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InputStats {
    /// Files the walk found.
    pub files: u64,
    /// Digests taken from the stat cache, without reading content.
    pub stat_hits: u64,
    /// Stat cache records whose stat data matched but were too recent to trust.
    pub racy: u64,
    /// Files whose content was read and hashed.
    pub hashed_files: u64,
    pub hashed_bytes: u64,
    /// Directories the walk went through.
    pub dirs: u64,
    /// Directories whose entries were read, rather than known from the stat cache.
    pub dirs_read: u64,
}

/// The project's files for one run: walked once, each digest computed at most once,
/// whichever tiers ask for it.
pub struct Inputs {
    project: PathBuf,
    skip_dirs: Vec<PathBuf>,
    /// The stat cache file; `None` hashes every input (`--no-stat-cache`).
    stat_cache: Option<PathBuf>,
    walked: OnceLock<Walked>,
    /// Indices into the walk of the files each spec matched.
    matched: Mutex<HashMap<SpecId, Arc<[u32]>>>,
    stat_hits: AtomicU64,
    racy: AtomicU64,
    hashed_files: AtomicU64,
    hashed_bytes: AtomicU64,
}

/// The walk, and what is known of each file, by index.
struct Walked {
    paths: Arc<Paths>,
    /// `paths` as strings, for [`Inputs::files`]; made only when asked for.
    strings: OnceLock<Vec<String>>,
    /// Each file's stat data as the walk saw it, or `Later`.
    stat: Vec<walk::FileStat>,
    /// The stat data of the files the walk left for later, once asked for.
    late: Vec<OnceLock<Option<Stat>>>,
    /// The previous run's record of each file (empty without a stat cache).
    old: Vec<Option<Record>>,
    old_written_ns: i64,
    /// The previous stat cache, when there was one to trust.
    cache: Option<StatCache>,
    /// The directories walked, for the stat cache.
    dirs: Vec<walk::WalkedDir>,
    dirs_read: usize,
    /// This run's digest of each file, once a tier asked for it.
    known: Vec<OnceLock<Known>>,
}

impl Walked {
    /// File `i`'s stat data, stat'ing it now if the walk left it for later.
    fn stat(&self, project: &Path, i: usize) -> Option<Stat> {
        match self.stat[i] {
            walk::FileStat::Now(stat) => stat,
            walk::FileStat::Later => *self.late[i].get_or_init(|| {
                std::fs::symlink_metadata(project.join(self.paths.get(i)))
                    .ok()
                    .and_then(|m| Stat::of(&m))
            }),
        }
    }

    /// File `i`'s stat data if this run has it, without a system call.
    fn stat_if_known(&self, i: usize) -> Option<Stat> {
        match self.stat[i] {
            walk::FileStat::Now(stat) => stat,
            walk::FileStat::Later => self.late[i].get().copied().flatten(),
        }
    }
}

#[derive(Clone, Copy)]
struct Known {
    /// The stat data the digest belongs to (`None`: the platform has none).
    stat: Option<Stat>,
    digest: [u8; 32],
    /// Read this run, rather than vouched for by the stat cache.
    hashed: bool,
}

/// A run that read no directory and hashed fewer files and bytes than these
/// leaves a loaded stat cache as it is: the next run hashes the same few files
/// again, microseconds each, where rewriting the cache of a 10,000-file project
/// costs an edit's build milliseconds. What a run hashes is bounded by these,
/// since a run that hashes more saves.
const RESAVE_FILES: u64 = 64;
const RESAVE_BYTES: u64 = 4 << 20;

impl Inputs {
    /// `skip_dirs` are absolute directories never walked (the cache dir, output dirs).
    /// Every input is hashed until [`Inputs::with_stat_cache`] names a cache dir.
    pub fn new(project: &Path, skip_dirs: Vec<PathBuf>) -> Self {
        Inputs {
            project: project.to_owned(),
            skip_dirs,
            stat_cache: None,
            walked: OnceLock::new(),
            matched: Mutex::new(HashMap::new()),
            stat_hits: AtomicU64::new(0),
            racy: AtomicU64::new(0),
            hashed_files: AtomicU64::new(0),
            hashed_bytes: AtomicU64::new(0),
        }
    }

    /// Keep this project's stat cache in `cache_dir`; `None` hashes every input.
    pub fn with_stat_cache(mut self, cache_dir: Option<&Path>) -> Self {
        self.stat_cache = cache_dir.map(|d| statcache::path_for(d, &self.project));
        self
    }

    /// The stat cache file, when one is used.
    pub fn stat_cache_path(&self) -> Option<&Path> {
        self.stat_cache.as_deref()
    }

    pub fn project(&self) -> &Path {
        &self.project
    }

    /// Every walkable file of the project, relative, sorted.
    pub fn files(&self) -> &[String] {
        let w = self.walked(None);
        w.strings
            .get_or_init(|| w.paths.iter().map(str::to_owned).collect())
    }

    /// The walk, made on first use. The walk stats only the files `first`
    /// matches (the inputs of the first tier that asks, which in most
    /// projects are every tier's); another spec's files are stat'ed when it
    /// asks for them.
    fn walked(&self, first: Option<&InputSpec>) -> &Walked {
        self.walked.get_or_init(|| {
            let cache = self
                .stat_cache
                .as_deref()
                .and_then(|p| StatCache::load(p, &self.project));
            let want =
                first.map(|spec| move |rel: &str| spec.matches_candidate(&Candidate::new(rel)));
            let want = want.as_ref().map(|f| f as &(dyn Fn(&str) -> bool + Sync));
            let found = walk::walk(&self.project, &self.skip_dirs, cache.as_ref(), want);
            let (old, old_written_ns) = match &cache {
                Some(c) => (c.align(found.paths.iter()), c.written_ns),
                None => (Vec::new(), 0),
            };
            Walked {
                known: (0..found.paths.len()).map(|_| OnceLock::new()).collect(),
                late: (0..found.paths.len()).map(|_| OnceLock::new()).collect(),
                paths: Arc::new(found.paths),
                strings: OnceLock::new(),
                stat: found.stat,
                old,
                old_written_ns,
                cache,
                dirs: found.dirs,
                dirs_read: found.dirs_read,
            }
        })
    }

    /// Match `spec` against the project and hash what matched.
    pub fn collect(&self, spec: &InputSpec) -> Result<InputSet> {
        self.collect_with(spec, &Progress::none())
    }

    /// [`Inputs::collect`], reporting the bytes it hashes to `progress`.
    pub fn collect_with(&self, spec: &InputSpec, progress: &Progress) -> Result<InputSet> {
        let w = self.walked(Some(spec));
        let matched = self.matched(w, spec);
        self.know(w, &matched, progress)?;
        let mut hex = String::with_capacity(matched.len() * 64);
        for &i in matched.iter() {
            let known = w.known[i as usize].get().expect("known after know()");
            hex_into(&mut hex, &known.digest);
        }
        Ok(InputSet {
            paths: w.paths.clone(),
            items: matched.iter().map(|&i| i as usize).collect(),
            hex,
        })
    }

    /// The current digest of one project file, `None` if it does not exist.
    pub fn digest_of(&self, rel: &str) -> Result<Option<String>> {
        let w = self.walked(None);
        let Some(i) = w.paths.find(rel) else {
            // Not part of the walk (created since, or in a skipped dir): no cache.
            let path = self.project.join(rel);
            if !path.is_file() {
                return Ok(None);
            }
            let (digest, _, n) = hash_into(&path, &mut Vec::new())?;
            self.hashed_files.fetch_add(1, Ordering::Relaxed);
            self.hashed_bytes.fetch_add(n, Ordering::Relaxed);
            return Ok(Some(hex(&digest)));
        };
        match self.know(w, &[i as u32], &Progress::none()) {
            Ok(()) => Ok(w.known[i].get().map(|k| hex(&k.digest))),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// What this run did so far.
    pub fn stats(&self) -> InputStats {
        InputStats {
            files: self.walked.get().map_or(0, |w| w.paths.len() as u64),
            stat_hits: self.stat_hits.load(Ordering::Relaxed),
            racy: self.racy.load(Ordering::Relaxed),
            hashed_files: self.hashed_files.load(Ordering::Relaxed),
            hashed_bytes: self.hashed_bytes.load(Ordering::Relaxed),
            dirs: self.walked.get().map_or(0, |w| w.dirs.len() as u64),
            dirs_read: self.walked.get().map_or(0, |w| w.dirs_read as u64),
        }
    }

    /// Write the stat cache if this run learned something; `Ok(true)` when written.
    pub fn save_stat_cache(&self) -> Result<bool> {
        let (Some(path), Some(w)) = (&self.stat_cache, self.walked.get()) else {
            return Ok(false);
        };
        let record =
            |i: usize| match w.known[i].get() {
                Some(k) => k.stat.map(|stat| Record {
                    stat,
                    digest: k.digest,
                }),
                // Not asked for this run: last run's record stands while the file's stat
                // data still matches it, unless it was racy. Nothing verified it, and this
                // write's later time must not vouch for it.
                None => w.old.get(i).copied().flatten().filter(|r| {
                    w.stat_if_known(i) == Some(r.stat) && !r.stat.racy(w.old_written_ns)
                }),
            };
        let learned = w.dirs_read > 0 || w.known.iter().any(|k| k.get().is_some_and(|k| k.hashed));
        // Every record and listing kept is an old one unless something was hashed or
        // read, so equal counts mean an unchanged cache: a warm no-op writes nothing.
        if !learned {
            let kept = (0..w.paths.len()).filter(|&i| record(i).is_some()).count();
            let (files, dirs) = w
                .cache
                .as_ref()
                .map_or((0, 0), |c| (c.len(), c.dir_count()));
            if files == kept && dirs == w.dirs.len() {
                return Ok(false);
            }
        }
        let records: Vec<(&str, Record)> = (0..w.paths.len())
            .filter_map(|i| Some((w.paths.get(i), record(i)?)))
            .collect();
        let dirs: Vec<_> = w
            .dirs
            .iter()
            .filter_map(|d| d.record(w.cache.as_ref()))
            .collect();
        statcache::save(path, &self.project, records.into_iter(), &dirs)?;
        Ok(true)
    }

    /// End of a run: log what the input layer did and save the stat cache,
    /// unless it was loaded and this run learned too little to pay for a
    /// rewrite (see [`RESAVE_FILES`]).
    pub fn finish(&self) {
        let s = self.stats();
        tracing::debug!(
            "inputs: {} files walked, {} digests from the stat cache, {} too recent to trust, {} files hashed ({} bytes), {} of {} directories read",
            s.files,
            s.stat_hits,
            s.racy,
            s.hashed_files,
            s.hashed_bytes,
            s.dirs_read,
            s.dirs
        );
        let loaded = self.walked.get().is_some_and(|w| w.cache.is_some());
        if loaded
            && s.dirs_read == 0
            && s.hashed_files < RESAVE_FILES
            && s.hashed_bytes < RESAVE_BYTES
        {
            return;
        }
        if let Err(e) = self.save_stat_cache() {
            tracing::warn!("the stat cache was not saved, the next run hashes every input: {e}");
        }
    }

    /// The indices of the files `spec` matches, computed once per run per spec.
    fn matched(&self, w: &Walked, spec: &InputSpec) -> Arc<[u32]> {
        let mut cache = self.matched.lock().expect("match cache poisoned");
        if let Some(m) = cache.get(&spec.source) {
            return m.clone();
        }
        let m: Arc<[u32]> = w
            .paths
            .iter()
            .enumerate()
            .filter(|(_, rel)| spec.matches_candidate(&Candidate::new(rel)))
            .map(|(i, _)| i as u32)
            .collect();
        cache.insert(spec.source.clone(), m.clone());
        m
    }

    /// Make sure the digest of each of `indices` is known: from the stat cache when it
    /// can vouch for the file (no system call: the walk has the stat data), else by
    /// hashing it, in parallel.
    fn know(&self, w: &Walked, indices: &[u32], progress: &Progress) -> Result<()> {
        let mut todo = Vec::new();
        for &i in indices {
            let i = i as usize;
            if w.known[i].get().is_some() {
                continue;
            }
            if let Some(old) = w.old.get(i).copied().flatten() {
                if w.stat(&self.project, i) == Some(old.stat) {
                    if !old.stat.racy(w.old_written_ns) {
                        self.stat_hits.fetch_add(1, Ordering::Relaxed);
                        let _ = w.known[i].set(Known {
                            stat: Some(old.stat),
                            digest: old.digest,
                            hashed: false,
                        });
                        continue;
                    }
                    self.racy.fetch_add(1, Ordering::Relaxed);
                }
            }
            todo.push(i);
        }
        // In bytes when the walk has every size, else in files.
        let mut in_bytes = false;
        if !todo.is_empty() && progress.is_on() {
            let bytes: Option<u64> = todo
                .iter()
                .map(|&i| w.stat_if_known(i).map(|s| s.size))
                .sum();
            in_bytes = bytes.is_some();
            match bytes {
                Some(b) => progress.phase_with_total("hashing inputs", b, Unit::Bytes),
                None => progress.phase_with_total(
                    "hashing inputs",
                    todo.len() as u64,
                    Unit::Items("files"),
                ),
            }
        }
        par_each(&todo, |buf, &i| {
            let (digest, stat, n) = hash_into(&self.project.join(w.paths.get(i)), buf)?;
            self.hashed_files.fetch_add(1, Ordering::Relaxed);
            self.hashed_bytes.fetch_add(n, Ordering::Relaxed);
            progress.advance(if in_bytes { n } else { 1 });
            let _ = w.known[i].set(Known {
                stat,
                digest,
                hashed: true,
            });
            Ok(())
        })
    }
}

/// The machine's cores (asked once: std reads the cgroup quota files every time).
fn threads() -> usize {
    static THREADS: OnceLock<usize> = OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Run `f` on each item on every core, each thread with its own read buffer; the
/// error of the first failing item (in item order) wins.
fn par_each<T: Sync>(items: &[T], f: impl Fn(&mut Vec<u8>, &T) -> Result<()> + Sync) -> Result<()> {
    let workers = threads().min(items.len());
    if workers <= 1 {
        let mut buf = Vec::new();
        return items.iter().try_for_each(|it| f(&mut buf, it));
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<(usize, Error)>> = Mutex::new(None);
    let work = || {
        let mut buf = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            if let Err(e) = f(&mut buf, item) {
                failed.store(true, Ordering::Relaxed);
                let mut first = first_error.lock().expect("error slot poisoned");
                if first.as_ref().is_none_or(|(j, _)| i < *j) {
                    *first = Some((i, e));
                }
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..workers {
            s.spawn(work);
        }
        work();
    });
    match first_error.into_inner().expect("error slot poisoned") {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// Append `bytes` in lowercase hex.
fn hex_into(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
}

/// SHA-256 of a file's content, in hex.
pub fn hash_file(path: &Path) -> Result<String> {
    Ok(hex(&hash_into(path, &mut Vec::new())?.0))
}

/// Read buffer per hashing thread: large enough that a typical source file is one read.
const READ_BUF: usize = 256 * 1024;

/// Digest, the stat data of the file that was read (taken from the open file, before
/// reading, so a later edit makes the record mismatch rather than lie) and its length.
pub(crate) fn hash_into(path: &Path, buf: &mut Vec<u8>) -> Result<([u8; 32], Option<Stat>, u64)> {
    let io = |e| Error::io(path, e);
    let mut file = File::open(path).map_err(io)?;
    let stat = Stat::of(&file.metadata().map_err(io)?);
    if buf.len() < READ_BUF {
        buf.resize(READ_BUF, 0);
    }
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    loop {
        let n = match file.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hasher.finalize().into(), stat, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(inc: &[&str], exc: &[&str]) -> InputSpec {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        InputSpec::new("t", &v(inc), &v(exc)).unwrap()
    }

    #[test]
    fn star_stays_in_its_directory() {
        let s = spec(&["*.py"], &[]);
        assert!(s.matches("a.py"));
        assert!(!s.matches("pkg/a.py"));
        let s = spec(&["**/*.py"], &["tests/**"]);
        assert!(s.matches("a.py"));
        assert!(s.matches("pkg/sub/a.py"));
        assert!(!s.matches("tests/test_a.py"));
    }

    #[test]
    fn a_glob_outside_the_project_is_refused() {
        for glob in ["/etc/passwd", "../**", "src/../../x.py", "a/.."] {
            let err = InputSpec::new("lint", &[glob.to_owned()], &[]).unwrap_err();
            let msg = err.to_string();
            assert!(err.is_usage(), "{msg}");
            assert!(msg.contains("tier `lint`") && msg.contains(glob), "{msg}");
        }
        let err = InputSpec::new("lint", &["**/*.py".into()], &["/tmp/**".into()]).unwrap_err();
        assert!(err.to_string().contains("`/tmp/**` is absolute"), "{err}");
        InputSpec::new("lint", &["src/..py".into(), "**/*.py".into()], &[]).unwrap();
    }

    #[test]
    fn bad_glob_names_tier_and_glob() {
        let err = InputSpec::new("lint", &["src/[".into()], &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("tier `lint`") && msg.contains("`src/[`"),
            "{msg}"
        );
    }

    #[test]
    fn walk_skips_git_venvs_pycache_and_cache_dir() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for f in [
            "a.py",
            "pkg/b.py",
            ".git/config",
            "pkg/__pycache__/b.pyc",
            "venv/pyvenv.cfg",
            "venv/lib/x.py",
            ".tiers/x/entry.json",
        ] {
            std::fs::create_dir_all(p.join(f).parent().unwrap()).unwrap();
            std::fs::write(p.join(f), f).unwrap();
        }
        let inputs = Inputs::new(p, vec![p.join(".tiers")]);
        assert_eq!(inputs.files(), ["a.py", "pkg/b.py"]);
        let set = inputs.collect(&spec(&["**/*.py"], &[])).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(
            set.get("a.py").unwrap(),
            // sha256("a.py")
            hash_file(&p.join("a.py")).unwrap()
        );
    }
}
