//! The walk: every file of the project with its stat data, on every core.
//!
//! On unix each directory is opened relative to its parent and each file stat'ed
//! relative to its directory, so no system call resolves a long path. A directory
//! whose stat data matches the listing in the stat cache, and is not racy, is not
//! read at all: its entries come from the cache (adding, removing or renaming an
//! entry changes a directory's mtime and ctime). Reading a directory costs several
//! system calls and the filesystem's own bookkeeping; checking one costs an `open`
//! and an `fstat`. Elsewhere the walk reads every directory through `std::fs`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use super::{threads, Paths};
use crate::statcache::{DirRecord, Entries, Kind, Stat, StatCache};

/// What the walk found.
pub(super) struct Walk {
    pub paths: Paths,
    /// Stat data of each path.
    pub stat: Vec<FileStat>,
    /// Every directory walked, sorted by path: what the stat cache keeps.
    pub dirs: Vec<WalkedDir>,
    /// How many of `dirs` were read this run rather than taken from the cache.
    pub dirs_read: usize,
}

/// One directory of the walk and its listing.
pub(super) struct WalkedDir {
    pub rel: String,
    pub stat: Stat,
    pub listing: Listing,
}

/// A directory's entries: the stat cache's (by index), or read in this run.
pub(super) enum Listing {
    Cached(usize),
    Read {
        names: String,
        entries: Vec<(Kind, usize, usize)>,
    },
}

impl WalkedDir {
    /// As the stat cache records it; `cache` is the one the walk was given.
    pub fn record<'a>(&'a self, cache: Option<&'a StatCache>) -> Option<DirRecord<'a>> {
        let entries = match &self.listing {
            Listing::Cached(i) => cache?.dir_kept(*i),
            Listing::Read { names, entries } => {
                Entries::Listed(entries.iter().map(|&(k, a, b)| (k, &names[a..b])).collect())
            }
        };
        Some(DirRecord {
            rel: &self.rel,
            stat: self.stat,
            entries,
        })
    }
}

/// What one walker found: paths appended to one string, each item `(start, end,
/// stat data)`, and the directories it walked.
#[derive(Default)]
struct Found {
    text: String,
    items: Vec<(usize, usize, FileStat)>,
    dirs: Vec<WalkedDir>,
    dirs_read: usize,
}

/// A file's stat data as the walk has it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum FileStat {
    /// Stat'ed (`None`: listed but not stat'able, or no stat data here).
    Now(Option<Stat>),
    /// Not stat'ed: no input the walk was told of can be this file.
    Later,
}

/// Which files the walk stats; the others are stat'ed when asked for.
pub(super) type Want<'a> = Option<&'a (dyn Fn(&str) -> bool + Sync)>;

impl Found {
    /// Room for a share of `files` paths of `text` bytes in all (what the
    /// last walk found), so that the buffers are seldom grown and copied
    /// while walking: each of `workers` walkers gets half again its share,
    /// since they do not find as many each.
    fn with_capacity((files, text): (usize, usize), workers: usize) -> Found {
        let share = |n: usize| n / workers.max(1) * 3 / 2;
        Found {
            text: String::with_capacity(share(text)),
            items: Vec::with_capacity(share(files)),
            ..Found::default()
        }
    }

    fn push_file(&mut self, rel: &str, name: &str, stat: FileStat) {
        let start = self.push_path(rel, name);
        self.items.push((start, self.text.len(), stat));
    }

    /// Append the path of `name` in `rel` to `text`; where it starts.
    fn push_path(&mut self, rel: &str, name: &str) -> usize {
        let start = self.text.len();
        if !rel.is_empty() {
            self.text.push_str(rel);
            self.text.push('/');
        }
        self.text.push_str(name);
        start
    }
}

/// What never is an input: `.git`, `__pycache__` and the skipped directories.
struct Rules {
    skip: HashSet<String>,
}

impl Rules {
    fn new(project: &Path, skip_dirs: &[PathBuf]) -> Rules {
        let mut skip = HashSet::new();
        for d in skip_dirs {
            for d in [Some(d.clone()), d.canonicalize().ok()]
                .into_iter()
                .flatten()
            {
                if let Ok(rel) = d.strip_prefix(project) {
                    skip.insert(slash_path(rel));
                }
            }
        }
        Rules { skip }
    }

    /// The relative path of subdirectory `name` of `rel`, unless it is skipped.
    fn subdir(&self, rel: &str, name: &str) -> Option<String> {
        if name == ".git" || name == "__pycache__" {
            return None;
        }
        let child = join(rel, name);
        (!self.skip.contains(&child)).then_some(child)
    }
}

/// A virtualenv (not the project itself): nothing in it is an input.
fn is_venv<'a>(rel: &str, mut names: impl Iterator<Item = &'a str>) -> bool {
    !rel.is_empty() && names.any(|n| n == "pyvenv.cfg")
}

fn join(rel: &str, name: &str) -> String {
    let mut p = String::with_capacity(rel.len() + 1 + name.len());
    if !rel.is_empty() {
        p.push_str(rel);
        p.push('/');
    }
    p.push_str(name);
    p
}

/// `rel` with `/` separators.
fn slash_path(rel: &Path) -> String {
    let parts: Vec<_> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect();
    parts.join("/")
}

/// Directories waiting for a walker, shared only when some walker is idle: each
/// walker goes depth first through its own stack and hands the shallower half of it
/// over when another one waits, so the lock is taken about once per hand-over.
struct Queue<J> {
    state: Mutex<(Vec<J>, usize)>,
    idle: AtomicUsize,
    wake: Condvar,
    workers: usize,
}

impl<J> Queue<J> {
    fn new(first: J, workers: usize) -> Self {
        Queue {
            state: Mutex::new((vec![first], 0)),
            idle: AtomicUsize::new(0),
            wake: Condvar::new(),
            workers,
        }
    }

    /// A shared job, or `None` once every walker is idle and nothing is left.
    fn take(&self) -> Option<J> {
        let mut s = self.state.lock().expect("walk queue poisoned");
        s.1 += 1;
        self.idle.store(s.1, Ordering::Relaxed);
        loop {
            if let Some(d) = s.0.pop() {
                s.1 -= 1;
                self.idle.store(s.1, Ordering::Relaxed);
                return Some(d);
            }
            if s.1 == self.workers {
                self.wake.notify_all();
                return None;
            }
            s = self.wake.wait(s).expect("walk queue poisoned");
        }
    }

    /// Share part of `local` when a walker waits for work.
    fn share(&self, local: &mut Vec<J>) {
        if local.len() < 2 || self.idle.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut s = self.state.lock().expect("walk queue poisoned");
        s.0.extend(local.drain(..local.len() / 2));
        self.wake.notify_all();
    }
}

/// Run `visit` on every job on every core, starting from `first`; `visit` pushes the
/// jobs it finds. The calling thread walks too.
fn run<J: Send>(
    first: J,
    size: (usize, usize),
    visit: impl Fn(J, &mut Found, &mut Vec<J>) + Sync,
) -> Vec<Found> {
    let workers = threads();
    let queue = Queue::new(first, workers);
    let work = || {
        let mut found = Found::with_capacity(size, workers);
        let mut local = Vec::new();
        while let Some(job) = local.pop().or_else(|| queue.take()) {
            visit(job, &mut found, &mut local);
            queue.share(&mut local);
        }
        found
    };
    std::thread::scope(|s| {
        let others: Vec<_> = (1..workers).map(|_| s.spawn(work)).collect();
        let mut parts = vec![work()];
        parts.extend(
            others
                .into_iter()
                .map(|h| h.join().expect("a walking thread panicked")),
        );
        parts
    })
}

/// Sort every walker's paths and directories into one [`Walk`].
fn merge(mut parts: Vec<Found>) -> Walk {
    let mut order: Vec<(&str, FileStat)> = parts
        .iter()
        .flat_map(|f| {
            f.items
                .iter()
                .map(|&(start, end, stat)| (&f.text[start..end], stat))
        })
        .collect();
    order.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut paths = Paths {
        text: String::with_capacity(parts.iter().map(|f| f.text.len()).sum()),
        ends: Vec::with_capacity(order.len()),
    };
    let mut stat = Vec::with_capacity(order.len());
    for (path, st) in order {
        paths.text.push_str(path);
        paths.ends.push(paths.text.len());
        stat.push(st);
    }
    let dirs_read = parts.iter().map(|f| f.dirs_read).sum();
    let mut dirs: Vec<WalkedDir> = parts.iter_mut().flat_map(|f| f.dirs.drain(..)).collect();
    dirs.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
    Walk {
        paths,
        stat,
        dirs,
        dirs_read,
    }
}

fn unreadable(path: &Path, err: impl std::fmt::Display) {
    tracing::warn!(
        "skipping an unreadable part of the project `{}`: {err}",
        path.display()
    );
}

/// Every file of the project not under a skipped directory, sorted, with its stat
/// data; directories whose listing `cache` vouches for are not read.
#[cfg(unix)]
pub(super) fn walk(
    project: &Path,
    skip_dirs: &[PathBuf],
    cache: Option<&StatCache>,
    want: Want<'_>,
) -> Walk {
    let rules = Rules::new(project, skip_dirs);
    let size = cache.map_or((0, 0), StatCache::walk_size);
    let parts = run(fast::Job::root(), size, |job, found, jobs| {
        fast::visit(project, &rules, cache, want, job, found, jobs)
    });
    merge(parts)
}

#[cfg(not(unix))]
pub(super) fn walk(
    project: &Path,
    skip_dirs: &[PathBuf],
    _cache: Option<&StatCache>,
    _want: Want<'_>,
) -> Walk {
    portable(project, skip_dirs)
}

#[cfg(unix)]
mod fast {
    use std::os::fd::OwnedFd;
    use std::path::Path;
    use std::sync::Arc;

    use rustix::fs::{fstat, openat, statat, AtFlags, Dir, FileType, Mode, OFlags, CWD};
    use rustix::io::Errno;

    use super::{is_venv, unreadable, FileStat, Found, Listing, Rules, WalkedDir, Want};
    use crate::statcache::{Kind, Stat, StatCache};

    /// Opening a directory only to stat it and use it as a base needs no read access.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const BASE: OFlags = OFlags::PATH;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const BASE: OFlags = OFlags::RDONLY;

    /// A directory to walk: its path and its parent, open.
    pub struct Job {
        rel: String,
        parent: Option<Arc<OwnedFd>>,
    }

    impl Job {
        pub fn root() -> Job {
            Job {
                rel: String::new(),
                parent: None,
            }
        }
    }

    // The field types differ between platforms: the casts are not all no-ops.
    #[allow(clippy::unnecessary_cast)]
    fn stat_of(s: &rustix::fs::Stat) -> Stat {
        Stat {
            ino: s.st_ino as u64,
            size: s.st_size as u64,
            mtime_ns: (s.st_mtime as i64)
                .saturating_mul(1_000_000_000)
                .saturating_add(s.st_mtime_nsec as i64),
            ctime_ns: (s.st_ctime as i64)
                .saturating_mul(1_000_000_000)
                .saturating_add(s.st_ctime_nsec as i64),
        }
    }

    pub fn visit(
        project: &Path,
        rules: &Rules,
        cache: Option<&StatCache>,
        want: Want<'_>,
        job: Job,
        found: &mut Found,
        jobs: &mut Vec<Job>,
    ) {
        let where_ = || project.join(&job.rel);
        let flags = BASE | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let opened = match &job.parent {
            Some(parent) => {
                let name = job.rel.rsplit('/').next().unwrap_or(&job.rel);
                openat(&**parent, name, flags, Mode::empty())
            }
            None => openat(CWD, project, flags - OFlags::NOFOLLOW, Mode::empty()),
        };
        let fd = match opened.and_then(|fd| Ok((fstat(&fd)?, fd))) {
            Ok((st, fd)) => (stat_of(&st), fd),
            // Gone since its parent was listed.
            Err(Errno::NOENT) => return,
            Err(e) => return unreadable(&where_(), e),
        };
        let (stat, fd) = fd;
        let cached = cache.and_then(|c| {
            let i = c.dir(&job.rel)?;
            (c.dir_stat(i) == stat && !stat.racy(c.written_ns)).then_some(i)
        });
        let listing = match cached {
            Some(i) => Listing::Cached(i),
            None => match read(&fd) {
                Ok(l) => {
                    found.dirs_read += 1;
                    l
                }
                Err(e) => return unreadable(&where_(), e),
            },
        };
        let dir = WalkedDir {
            rel: job.rel,
            stat,
            listing,
        };
        let entries: Box<dyn Iterator<Item = (Kind, &str)>> = match &dir.listing {
            Listing::Cached(i) => Box::new(cache.expect("cached").dir_entries(*i)),
            Listing::Read { names, entries } => {
                Box::new(entries.iter().map(|&(k, a, b)| (k, &names[a..b])))
            }
        };
        let entries: Vec<(Kind, &str)> = entries.collect();
        if !is_venv(&dir.rel, entries.iter().map(|e| e.1)) {
            let fd = Arc::new(fd);
            for (kind, name) in entries {
                if kind == Kind::Dir {
                    if let Some(rel) = rules.subdir(&dir.rel, name) {
                        jobs.push(Job {
                            rel,
                            parent: Some(fd.clone()),
                        });
                    }
                    continue;
                }
                // Stat'ing is most of the walk's cost: regular files no input
                // can be wait until someone asks.
                if let (Kind::File, Some(want)) = (kind, want) {
                    let start = found.push_path(&dir.rel, name);
                    if !want(&found.text[start..]) {
                        found.items.push((start, found.text.len(), FileStat::Later));
                        continue;
                    }
                    found.text.truncate(start);
                }
                // A link counts as the file it points to; a link to a directory is
                // not followed.
                let follow = if kind == Kind::Link {
                    AtFlags::empty()
                } else {
                    AtFlags::SYMLINK_NOFOLLOW
                };
                match statat(&*fd, name, follow) {
                    Ok(s) if FileType::from_raw_mode(s.st_mode as _) == FileType::RegularFile => {
                        found.push_file(&dir.rel, name, FileStat::Now(Some(stat_of(&s))))
                    }
                    // A link leading nowhere, dangling or in a loop, is no file.
                    Ok(_) | Err(Errno::NOENT | Errno::LOOP) => {}
                    // Listed but not stat'able: hashing it reports why.
                    Err(_) => found.push_file(&dir.rel, name, FileStat::Now(None)),
                }
            }
        }
        found.dirs.push(dir);
    }

    /// Read the entries of the directory `fd` (opened as a base: read it anew).
    fn read(fd: &OwnedFd) -> rustix::io::Result<Listing> {
        let dir_fd = openat(
            fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut names = String::new();
        let mut entries = Vec::new();
        for entry in Dir::new(dir_fd)? {
            let entry = entry?;
            let bytes = entry.file_name().to_bytes();
            if bytes == b"." || bytes == b".." {
                continue;
            }
            let Ok(name) = std::str::from_utf8(bytes) else {
                tracing::warn!(
                    "skipping `{}`: its name is not UTF-8",
                    String::from_utf8_lossy(bytes)
                );
                continue;
            };
            let mut ft = entry.file_type();
            if ft == FileType::Unknown {
                // Filesystems that do not fill in the type in directory entries.
                ft = match statat(fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(s) => FileType::from_raw_mode(s.st_mode as _),
                    Err(_) => continue,
                };
            }
            let kind = match ft {
                FileType::RegularFile => Kind::File,
                FileType::Directory => Kind::Dir,
                FileType::Symlink => Kind::Link,
                _ => continue,
            };
            let start = names.len();
            names.push_str(name);
            entries.push((kind, start, names.len()));
        }
        Ok(Listing::Read { names, entries })
    }
}

/// The walk through `std::fs` alone: every directory read, no listing kept. The
/// walk on platforms without `openat`; on unix, a test compares the two.
#[cfg_attr(unix, allow(dead_code))]
pub(super) fn portable(project: &Path, skip_dirs: &[PathBuf]) -> Walk {
    let rules = Rules::new(project, skip_dirs);
    let parts = run(String::new(), (0, 0), |rel, found, jobs| {
        let abs = project.join(&rel);
        let entries = match std::fs::read_dir(&abs) {
            Ok(e) => e,
            Err(err) => return unreadable(&abs, err),
        };
        let (text_before, items_before, jobs_before) =
            (found.text.len(), found.items.len(), jobs.len());
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(err) => {
                    unreadable(&abs, err);
                    continue;
                }
            };
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                tracing::warn!(
                    "skipping `{}`: its name is not UTF-8",
                    entry.path().display()
                );
                continue;
            };
            if is_venv(&rel, std::iter::once(name)) {
                found.text.truncate(text_before);
                found.items.truncate(items_before);
                jobs.truncate(jobs_before);
                return;
            }
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                jobs.extend(rules.subdir(&rel, name));
                continue;
            }
            let meta = if ft.is_file() {
                entry.metadata()
            } else if ft.is_symlink() {
                std::fs::metadata(entry.path())
            } else {
                continue;
            };
            match meta {
                Ok(m) if m.is_file() => found.push_file(&rel, name, FileStat::Now(Stat::of(&m))),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound || is_loop(&e) => {}
                Err(_) => found.push_file(&rel, name, FileStat::Now(None)),
            }
        }
    });
    merge(parts)
}

/// Whether `e` is a link loop (ELOOP), which counts as a dangling link.
fn is_loop(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    return rustix::io::Errno::from_io_error(e) == Some(rustix::io::Errno::LOOP);
    #[cfg(not(unix))]
    return false;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for f in [
            "a.py",
            "a-b/x.py",
            "a/x.py",
            "pkg/b.py",
            "pkg/deep/er/c.txt",
            ".git/config",
            "pkg/__pycache__/b.pyc",
            "venv/pyvenv.cfg",
            "venv/lib/x.py",
            "out/gen.py",
            ".tiers/t/k/x.py",
        ] {
            std::fs::create_dir_all(p.join(f).parent().unwrap()).unwrap();
            std::fs::write(p.join(f), f).unwrap();
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink("a.py", p.join("link.py")).unwrap();
            symlink("pkg", p.join("linkdir")).unwrap();
            symlink("missing.py", p.join("dangling.py")).unwrap();
            // Issue 14: a link loop is skipped as a dangling link is.
            symlink("loop.py", p.join("loop.py")).unwrap();
            symlink("loop-b.py", p.join("loop-a.py")).unwrap();
            symlink("loop-a.py", p.join("loop-b.py")).unwrap();
        }
        dir
    }

    #[test]
    fn the_walk_skips_what_is_never_input_and_sorts_as_strings() {
        let dir = tree();
        let p = dir.path().canonicalize().unwrap();
        let w = portable(&p, &[p.join(".tiers"), p.join("out")]);
        let mut want = vec![
            "a-b/x.py",
            "a.py",
            "a/x.py",
            "pkg/b.py",
            "pkg/deep/er/c.txt",
        ];
        if cfg!(unix) {
            want.extend(["link.py"]);
            want.sort();
        }
        assert_eq!(w.paths.iter().collect::<Vec<_>>(), want);
    }

    /// The fast walk sees what the portable one sees, with and without a cache of
    /// listings, and the cache spares it every directory read.
    #[cfg(unix)]
    #[test]
    fn fast_walk_agrees_with_the_portable_one() {
        let dir = tree();
        let p = dir.path().canonicalize().unwrap();
        let skip = [p.join(".tiers"), p.join("out")];
        let slow = portable(&p, &skip);
        let fast = walk(&p, &skip, None, None);
        let view = |w: &Walk| -> Vec<(String, FileStat)> {
            w.paths
                .iter()
                .map(str::to_owned)
                .zip(w.stat.clone())
                .collect()
        };
        assert_eq!(view(&fast), view(&slow));
        assert!(fast
            .stat
            .iter()
            .all(|s| matches!(s, FileStat::Now(Some(_)))));
        // Told which files can be inputs, the walk stats those only; it
        // lists the same files.
        let only_py = |rel: &str| rel.ends_with(".py");
        let some = walk(&p, &skip, None, Some(&only_py));
        assert_eq!(
            some.paths.iter().collect::<Vec<_>>(),
            fast.paths.iter().collect::<Vec<_>>()
        );
        for (path, stat) in view(&some) {
            match stat {
                FileStat::Now(Some(_)) => assert!(path.ends_with(".py"), "{path} stat'ed"),
                FileStat::Later => assert!(!path.ends_with(".py"), "{path} left"),
                FileStat::Now(None) => panic!("{path} not stat'able"),
            }
        }
        assert!(view(&some).iter().any(|(_, s)| *s == FileStat::Later));
        // root, a, a-b, pkg, pkg/deep, pkg/deep/er, venv (listed, not entered)
        assert_eq!((fast.dirs.len(), fast.dirs_read), (7, 7));

        // A cache written long after the listings vouches for all of them.
        let elsewhere = tempfile::tempdir().unwrap();
        let cache_path = elsewhere.path().join("cache");
        let dirs: Vec<_> = fast.dirs.iter().filter_map(|d| d.record(None)).collect();
        crate::statcache::save(&cache_path, &p, std::iter::empty(), &dirs).unwrap();
        // As written, just now: every listing too recent to trust.
        let mut cache = StatCache::load(&cache_path, &p).unwrap();
        let racy = walk(&p, &skip, Some(&cache), None);
        assert_eq!(racy.dirs_read, 7);
        cache.written_ns += 10 * crate::statcache::RACY_MARGIN_NS;
        let warm = walk(&p, &skip, Some(&cache), None);
        assert_eq!(view(&warm), view(&slow));
        assert_eq!((warm.dirs.len(), warm.dirs_read), (7, 0));
    }
}
