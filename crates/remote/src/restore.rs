//! Writing a restored entry's tree into its staging directory — checking every
//! path, since the tree came from the shared cache.
//!
//! [`Tree::decode`](tiers_core::Tree::decode) already refused absolute paths and
//! `..`. Here:
//!
//! - the top level may not hold the names the engine writes itself (the marker,
//!   the tree, the carried blobs), nor anything below the carried blobs' directory;
//! - a symlink's target must be relative and of the form `../../a/b` (leading `..`
//!   only), climbing no higher than the link's own directory depth, so it resolves
//!   inside the entry;
//! - nothing is written through a symlink: directories and files are made first,
//!   every parent must be a real directory, files are created with `O_EXCL`, and
//!   the links come last, so a link cannot redirect a later write.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tiers_core::{Tree, TreeFile};

use crate::error::UnpackError;

/// Names only the engine writes at the top of an entry.
const RESERVED: [&str; 3] = [tiers_core::MARKER, tiers_core::TREE, tiers_core::CARRIED];

/// Check `tree` and make its directories in `dest` (an empty directory).
pub fn prepare(dest: &Path, tree: &Tree) -> Result<(), UnpackError> {
    let paths = tree
        .files
        .iter()
        .map(|f| &f.path)
        .chain(tree.links.iter().map(|l| &l.path))
        .chain(&tree.dirs);
    for path in paths {
        let names = names(path)?;
        // The engine takes whatever is below `.tiers-blobs` out of the entry.
        let reserved = match names[..] {
            [only] => RESERVED.iter().any(|r| OsStr::new(r) == only),
            [first, ..] => first == OsStr::new(tiers_core::CARRIED),
            [] => false,
        };
        if reserved {
            return Err(unsafe_(
                path,
                "has a name tiers reserves for the entry's own records",
            ));
        }
    }
    for dir in &tree.dirs {
        real_dirs(dest, &names(dir)?, dir)?;
    }
    for f in &tree.files {
        let names = names(&f.path)?;
        real_dirs(dest, &names[..names.len() - 1], &f.path)?;
    }
    for l in &tree.links {
        check_link(&l.path, &l.target).map_err(|why| UnpackError::Unsafe {
            path: format!("{} -> {}", l.path.display(), l.target.display()),
            why: why.to_owned(),
        })?;
    }
    Ok(())
}

/// Write one file of the tree (its directories made by [`prepare`]).
pub fn write_file(dest: &Path, file: &TreeFile, bytes: &[u8]) -> Result<(), UnpackError> {
    let names = names(&file.path)?;
    let (last, parents) = names.split_last().expect("a path has a name");
    let path = real_dirs(dest, parents, &file.path)?.join(last);
    let mode = if file.exec { 0o755 } else { 0o644 };
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&path)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            // The umask may have narrowed the mode.
            f.set_permissions(fs::Permissions::from_mode(mode))
        });
    written.map_err(|e| exists_or_write(e, &path, &file.path))
}

/// Make the tree's symlinks, once every file is written.
pub fn write_links(dest: &Path, tree: &Tree) -> Result<(), UnpackError> {
    for l in &tree.links {
        let names = names(&l.path)?;
        let (last, parents) = names.split_last().expect("a path has a name");
        let path = real_dirs(dest, parents, &l.path)?.join(last);
        std::os::unix::fs::symlink(&l.target, &path)
            .map_err(|e| exists_or_write(e, &path, &l.path))?;
    }
    Ok(())
}

fn unsafe_(path: &Path, why: &str) -> UnpackError {
    UnpackError::Unsafe {
        path: path.display().to_string(),
        why: why.to_owned(),
    }
}

/// The plain names of a relative path.
fn names(path: &Path) -> Result<Vec<&OsStr>, UnpackError> {
    let mut names = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => names.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(unsafe_(path, "climbs out with `..`")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_(path, "is an absolute path"))
            }
        }
    }
    if names.is_empty() {
        return Err(unsafe_(path, "has an empty path"));
    }
    Ok(names)
}

/// Whether the symlink at relative `link` with `target` resolves inside the entry:
/// relative, leading `..` only, no higher than the link's directory.
pub fn check_link(link: &Path, target: &Path) -> Result<(), &'static str> {
    if target.as_os_str().is_empty() {
        return Err("has an empty target");
    }
    let depth = names(link)
        .map_err(|_| "is not a relative path")?
        .len()
        .saturating_sub(1);
    let mut up = 0;
    let mut descended = false;
    for c in target.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                return Err("points to an absolute path, outside the entry")
            }
            Component::CurDir => {}
            Component::ParentDir if descended => {
                return Err("has `..` after a name, which may climb out through another link")
            }
            Component::ParentDir => up += 1,
            Component::Normal(_) => descended = true,
        }
    }
    if up > depth {
        return Err("points outside the entry");
    }
    Ok(())
}

/// Create (or find) `dest/names…` as real directories, never through a symlink.
fn real_dirs(dest: &Path, names: &[&OsStr], shown: &Path) -> Result<PathBuf, UnpackError> {
    let mut cur = dest.to_owned();
    for n in names {
        cur.push(n);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(unsafe_(
                    shown,
                    &format!(
                        "has a parent `{}` that is not a directory (a file, or a symlink: never followed)",
                        cur.strip_prefix(dest).unwrap_or(&cur).display()
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&cur).map_err(|e| UnpackError::Write {
                    path: cur.clone(),
                    source: e,
                })?;
            }
            Err(e) => {
                return Err(UnpackError::Write {
                    path: cur.clone(),
                    source: e,
                })
            }
        }
    }
    Ok(cur)
}

fn exists_or_write(e: io::Error, path: &Path, shown: &Path) -> UnpackError {
    if e.kind() == io::ErrorKind::AlreadyExists {
        unsafe_(shown, "is named twice in the tree")
    } else {
        UnpackError::Write {
            path: path.to_owned(),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiers_core::{Digest, TreeLink};

    fn file(path: &str) -> TreeFile {
        TreeFile {
            path: path.into(),
            digest: Digest::of(path.as_bytes()),
            exec: path.ends_with(".sh"),
        }
    }

    fn link(path: &str, target: &str) -> TreeLink {
        TreeLink {
            path: path.into(),
            target: target.into(),
        }
    }

    /// Write `tree` into a fresh `dest` inside a sandbox; the error, if any, and
    /// every path in the sandbox afterwards.
    fn write(tree: &Tree) -> (Result<(), String>, Vec<String>) {
        let sandbox = tempfile::tempdir().unwrap();
        let dest = sandbox.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let got = prepare(&dest, tree)
            .and_then(|()| {
                tree.files
                    .iter()
                    .try_for_each(|f| write_file(&dest, f, f.path.as_os_str().as_encoded_bytes()))
            })
            .and_then(|()| write_links(&dest, tree))
            .map_err(|e| e.to_string());
        let mut seen: Vec<String> = walk(sandbox.path(), sandbox.path());
        seen.sort();
        (got, seen)
    }

    fn walk(root: &Path, dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                out.extend(walk(root, &p));
            }
        }
        out
    }

    #[test]
    fn files_dirs_modes_and_inner_links_are_written() {
        let tree = Tree {
            files: vec![file("db/sub/data.bin"), file("run.sh")],
            links: vec![
                link("current", "db/sub"),
                link("db/sub/alias", "../sub/data.bin"),
            ],
            dirs: vec!["db".into(), "db/sub".into(), "empty".into()],
            ..Tree::default()
        };
        let (got, seen) = write(&tree);
        got.unwrap();
        assert_eq!(
            seen,
            [
                "dest",
                "dest/current",
                "dest/db",
                "dest/db/sub",
                "dest/db/sub/alias",
                "dest/db/sub/data.bin",
                "dest/empty",
                "dest/run.sh"
            ]
        );
    }

    #[test]
    fn links_leaving_the_entry_are_refused_before_anything_is_written() {
        for (path, target) in [
            ("pw", "/etc/passwd"),
            ("up", "../outside"),
            ("a/deep", "../../outside"),
            ("zig", "a/../../outside"),
        ] {
            let tree = Tree {
                files: vec![file("ok.txt")],
                links: vec![link(path, target)],
                ..Tree::default()
            };
            let (got, seen) = write(&tree);
            let e = got.unwrap_err();
            assert!(e.contains(target), "{e}");
            assert!(!seen.iter().any(|p| p.ends_with("ok.txt")), "{seen:?}");
        }
    }

    #[test]
    fn a_file_under_a_link_is_refused_and_nothing_goes_outside() {
        let tree = Tree {
            files: vec![file("escape/x")],
            links: vec![link("escape", "..")],
            ..Tree::default()
        };
        let (got, seen) = write(&tree);
        assert!(got.is_err());
        assert!(seen.iter().all(|p| p.starts_with("dest")), "{seen:?}");
        assert!(!seen.contains(&"x".to_owned()), "{seen:?}");
    }

    #[test]
    fn reserved_and_doubled_names_are_refused() {
        for name in ["entry.json", "entry.tree", ".tiers-blobs"] {
            let tree = Tree {
                files: vec![file(name)],
                ..Tree::default()
            };
            assert!(write(&tree).0.unwrap_err().contains("reserves"), "{name}");
        }
        let twice = Tree {
            files: vec![file("a"), file("a")],
            ..Tree::default()
        };
        assert!(write(&twice).0.unwrap_err().contains("twice"));
        // Review of issue 19: below `.tiers-blobs` too, where the engine takes
        // every file for a carried blob (and out of the entry) after a restore.
        let digest = Digest::of(b"x").to_string();
        for path in [
            format!(".tiers-blobs/{digest}"),
            ".tiers-blobs/sub/a".into(),
        ] {
            let tree = Tree {
                files: vec![file(&path)],
                ..Tree::default()
            };
            assert!(write(&tree).0.unwrap_err().contains("reserves"), "{path}");
        }
        let file_then_dir = Tree {
            files: vec![file("a"), file("a/b")],
            ..Tree::default()
        };
        assert!(write(&file_then_dir).0.is_err());
    }
}
