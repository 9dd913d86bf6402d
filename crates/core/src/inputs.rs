//! Declared inputs: globs over the project, walked once per run, hashed in parallel.
//!
//! Paths are relative to the project and `/`-separated, so two clones of one project
//! produce the same input sets. The cache dir, `.git`, `__pycache__`, any directory
//! holding a `pyvenv.cfg` and the configured ignored dirs are never walked.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::key::hex;

/// Which project files a tier reads: `include` globs minus `exclude` globs.
///
/// `*` does not cross `/`; `**/` matches any number of directories.
#[derive(Clone, Debug)]
pub struct InputSpec {
    include: GlobSet,
    exclude: GlobSet,
    patterns: Vec<String>,
}

impl InputSpec {
    pub fn new(tier: &str, include: &[String], exclude: &[String]) -> Result<Self> {
        let build = |globs: &[String]| -> Result<GlobSet> {
            let mut set = GlobSetBuilder::new();
            for glob in globs {
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
            patterns: include.iter().chain(exclude).cloned().collect(),
        })
    }

    pub fn matches(&self, rel: &str) -> bool {
        self.include.is_match(rel) && !self.exclude.is_match(rel)
    }

    /// The globs, for key documents: a changed glob is a changed option.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

/// `(relative path, SHA-256 hex)` of each matched file, sorted by path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputSet {
    files: BTreeMap<String, String>,
}

impl InputSet {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.files.iter().map(|(p, d)| (p.as_str(), d.as_str()))
    }
    pub fn len(&self) -> usize {
        self.files.len()
    }
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
    pub fn get(&self, rel: &str) -> Option<&str> {
        self.files.get(rel).map(String::as_str)
    }
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }
}

/// The project's files for one run: walked once, each digest computed at most once,
/// whichever tiers ask for it.
pub struct Inputs {
    project: PathBuf,
    skip_dirs: Vec<PathBuf>,
    files: OnceLock<Vec<String>>,
    digests: Mutex<HashMap<String, String>>,
}

impl Inputs {
    /// `skip_dirs` are absolute directories never walked (the cache dir, output dirs).
    pub fn new(project: &Path, skip_dirs: Vec<PathBuf>) -> Self {
        Inputs {
            project: project.to_owned(),
            skip_dirs,
            files: OnceLock::new(),
            digests: Mutex::new(HashMap::new()),
        }
    }

    pub fn project(&self) -> &Path {
        &self.project
    }

    /// Every walkable file of the project, relative, sorted.
    pub fn files(&self) -> &[String] {
        self.files
            .get_or_init(|| walk(&self.project, &self.skip_dirs))
    }

    /// Match `spec` against the project and hash what matched.
    pub fn collect(&self, spec: &InputSpec) -> Result<InputSet> {
        let matched: Vec<&str> = self
            .files()
            .iter()
            .map(String::as_str)
            .filter(|rel| spec.matches(rel))
            .collect();
        let digests = self.digests(&matched)?;
        Ok(InputSet {
            files: matched
                .into_iter()
                .map(str::to_owned)
                .zip(digests)
                .collect(),
        })
    }

    /// The current digest of one project file, `None` if it does not exist.
    pub fn digest_of(&self, rel: &str) -> Result<Option<String>> {
        if !self.project.join(rel).is_file() {
            return Ok(None);
        }
        Ok(self.digests(&[rel])?.pop())
    }

    /// Digests of `rels`, in order: cached ones reused, the rest hashed in parallel.
    fn digests(&self, rels: &[&str]) -> Result<Vec<String>> {
        let todo: Vec<&str> = {
            let known = self.digests.lock().expect("digest cache poisoned");
            rels.iter()
                .copied()
                .filter(|r| !known.contains_key(*r))
                .collect()
        };
        let hashed = parallel_map(&todo, |rel| hash_file(&self.project.join(rel)))?;
        let mut known = self.digests.lock().expect("digest cache poisoned");
        known.extend(todo.iter().map(|r| (*r).to_owned()).zip(hashed));
        Ok(rels.iter().map(|r| known[*r].clone()).collect())
    }
}

/// Apply `f` to each item on every core, keeping order; the first error wins.
pub(crate) fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if workers <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut out: Vec<(usize, Result<R>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        mine.push((i, f(item)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a hashing thread panicked"))
            .collect()
    });
    out.sort_unstable_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

/// SHA-256 of a file's content, in hex.
pub fn hash_file(path: &Path) -> Result<String> {
    let io = |e| Error::io(path, e);
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

fn walk(project: &Path, skip_dirs: &[PathBuf]) -> Vec<String> {
    let mut files = Vec::new();
    let walker = walkdir::WalkDir::new(project)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            if e.depth() == 0 || !e.file_type().is_dir() {
                return true;
            }
            let name = e.file_name();
            !(name == ".git"
                || name == "__pycache__"
                || skip_dirs.iter().any(|d| d == e.path())
                || e.path().join("pyvenv.cfg").exists())
        });
    for entry in walker {
        let entry = match entry {
            Ok(e) => e,
            Err(err) => {
                tracing::warn!("skipping an unreadable part of the project: {err}");
                continue;
            }
        };
        let ft = entry.file_type();
        // A link counts as the file it points to; a link to a directory is not followed.
        let is_file = ft.is_file() || (ft.is_symlink() && entry.path().is_file());
        if !is_file {
            continue;
        }
        if let Ok(rel) = entry.path().strip_prefix(project) {
            let rel: Vec<_> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect();
            files.push(rel.join("/"));
        }
    }
    files
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
