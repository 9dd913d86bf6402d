//! An entry directory as one tar + zstd stream, and back — checking every path.
//!
//! Packing is deterministic (sorted names, mtime 0, owner 0, modes 0644/0755), so two
//! machines that build the same bytes upload the same blob. Unpacking trusts nothing
//! in the archive:
//!
//! - a path must be relative, made of plain names (no `/`, `..`, drive or root);
//! - only regular files, directories and symlinks; no hard links, devices or fifos;
//! - a symlink's target must be relative and of the form `../../a/b` (leading `..`
//!   only), climbing no higher than the link's own directory depth, so it resolves
//!   inside the entry;
//! - nothing is written through a symlink: every parent of a path must be a real
//!   directory, and files and links are created with `O_EXCL`, so a path that already
//!   exists (say, a symlink planted by an earlier member) is an error, not followed.
//!
//! With the last rule the lexical symlink check is exact: the only symlinks are those
//! this code created, each resolving inside the entry.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::error::{RemoteError, UnpackError};

/// zstd level: fast, and most of the gain on text-like artifacts.
const ZSTD_LEVEL: i32 = 3;

/// What a packed entry holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub files: u64,
    pub bytes: u64,
}

/// Pack the contents of `dir` (without the top-level `skip` name, the marker) as
/// tar + zstd into `out`, then each file of `carried` as `<carry_dir>/<its name>`.
pub fn pack(
    dir: &Path,
    skip: &str,
    carried: &[std::path::PathBuf],
    carry_dir: &str,
    out: impl Write,
) -> Result<Counts, RemoteError> {
    let fail = |why: String| RemoteError::Pack {
        dir: dir.to_owned(),
        why,
    };
    let io_fail = |path: &Path, e: io::Error| RemoteError::Io {
        path: path.to_owned(),
        source: e,
    };
    let encoder = zstd::Encoder::new(out, ZSTD_LEVEL).map_err(|e| io_fail(dir, e))?;
    let mut tar = tar::Builder::new(encoder);
    tar.follow_symlinks(false);
    let mut counts = Counts::default();
    let walk = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for item in walk {
        let item = item.map_err(|e| fail(e.to_string()))?;
        let rel = item
            .path()
            .strip_prefix(dir)
            .expect("walkdir stays under its root");
        if item.depth() == 1 && rel.as_os_str() == skip {
            continue;
        }
        check_relative(rel).map_err(|why| fail(format!("`{}` {why}", rel.display())))?;
        let ft = item.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            tar.append_data(&mut header, rel, io::empty())
                .map_err(|e| io_fail(item.path(), e))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(item.path()).map_err(|e| io_fail(item.path(), e))?;
            check_link(rel, &target).map_err(|why| {
                fail(format!(
                    "the symlink `{}` -> `{}` {why}; such an entry cannot be shared",
                    rel.display(),
                    target.display()
                ))
            })?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            tar.append_link(&mut header, rel, &target)
                .map_err(|e| io_fail(item.path(), e))?;
        } else if ft.is_file() {
            let file = File::open(item.path()).map_err(|e| io_fail(item.path(), e))?;
            let meta = file.metadata().map_err(|e| io_fail(item.path(), e))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(mode_of(meta.permissions().mode()));
            header.set_size(meta.len());
            tar.append_data(&mut header, rel, file)
                .map_err(|e| io_fail(item.path(), e))?;
            counts.files += 1;
            counts.bytes += meta.len();
        } else {
            return Err(fail(format!(
                "`{}` is not a file, directory or symlink",
                rel.display()
            )));
        }
    }
    if !carried.is_empty() {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        tar.append_data(&mut header, carry_dir, io::empty())
            .map_err(|e| io_fail(dir, e))?;
    }
    for path in carried {
        let name = path
            .file_name()
            .ok_or_else(|| fail(format!("`{}` is not a file", path.display())))?;
        let file = File::open(path).map_err(|e| io_fail(path, e))?;
        let meta = file.metadata().map_err(|e| io_fail(path, e))?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(meta.len());
        tar.append_data(&mut header, Path::new(carry_dir).join(name), file)
            .map_err(|e| io_fail(path, e))?;
        counts.files += 1;
        counts.bytes += meta.len();
    }
    let encoder = tar.into_inner().map_err(|e| io_fail(dir, e))?;
    let mut out = encoder.finish().map_err(|e| io_fail(dir, e))?;
    out.flush().map_err(|e| io_fail(dir, e))?;
    Ok(counts)
}

/// Executable for everyone or for no one: the owner and umask of the restoring
/// machine decide the rest.
fn mode_of(mode: u32) -> u32 {
    if mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// Unpack a tar + zstd stream into `dest`, an existing empty directory, checking
/// every member (see the module docs). `reserved` names a top-level name the archive
/// may not hold (the marker, which the engine writes). On error, whatever was written
/// into `dest` is removed again.
pub fn unpack(input: impl Read, dest: &Path, reserved: &str) -> Result<Counts, UnpackError> {
    let result = unpack_inner(input, dest, reserved);
    if result.is_err() {
        clear_dir(dest);
    }
    result
}

fn unpack_inner(input: impl Read, dest: &Path, reserved: &str) -> Result<Counts, UnpackError> {
    let decoder = zstd::Decoder::new(input).map_err(UnpackError::Archive)?;
    let mut archive = tar::Archive::new(decoder);
    let mut counts = Counts::default();
    for member in archive.entries().map_err(UnpackError::Archive)? {
        let mut member = member.map_err(UnpackError::Archive)?;
        let raw_path = member.path().map_err(UnpackError::Archive)?.into_owned();
        let shown = raw_path.display().to_string();
        let unsafe_ = |why: &str| UnpackError::Unsafe {
            path: shown.clone(),
            why: why.to_owned(),
        };
        let kind = member.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            continue;
        }
        let names = check_relative(&raw_path).map_err(&unsafe_)?;
        if names.is_empty() {
            if kind.is_dir() {
                continue;
            }
            return Err(unsafe_("has an empty path"));
        }
        if names.len() == 1 && names[0] == reserved {
            return Err(unsafe_(
                "has the name of the entry marker (only the engine writes it)",
            ));
        }
        let (last, parents) = names.split_last().expect("not empty");
        let target = dest.join(names.iter().collect::<PathBuf>());
        match kind {
            tar::EntryType::Directory => {
                real_dirs(dest, &names, &shown)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let parent = real_dirs(dest, parents, &shown)?;
                let path = parent.join(last);
                let mode = mode_of(member.header().mode().map_err(UnpackError::Archive)?);
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&path)
                    .map_err(|e| exists_or_write(e, &path, &shown))?;
                let n = io::copy(&mut member, &mut file).map_err(UnpackError::Archive)?;
                // The umask may have narrowed the mode; the archive's is what was built.
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|e| UnpackError::Write {
                        path: path.clone(),
                        source: e,
                    })?;
                counts.files += 1;
                counts.bytes += n;
            }
            tar::EntryType::Symlink => {
                let link = member
                    .link_name()
                    .map_err(UnpackError::Archive)?
                    .ok_or_else(|| unsafe_("is a symlink without a target"))?
                    .into_owned();
                check_link(&raw_path, &link).map_err(|why| UnpackError::Unsafe {
                    path: format!("{shown} -> {}", link.display()),
                    why: why.to_owned(),
                })?;
                let parent = real_dirs(dest, parents, &shown)?;
                let path = parent.join(last);
                std::os::unix::fs::symlink(&link, &path)
                    .map_err(|e| exists_or_write(e, &path, &shown))?;
            }
            tar::EntryType::Link => return Err(unsafe_("is a hard link")),
            tar::EntryType::Char | tar::EntryType::Block => return Err(unsafe_("is a device")),
            tar::EntryType::Fifo => return Err(unsafe_("is a fifo")),
            other => {
                return Err(unsafe_(&format!(
                    "is of type {:?}, which an entry never holds",
                    other
                )))
            }
        }
        debug_assert!(target.starts_with(dest));
    }
    Ok(counts)
}

/// The plain names of a relative path; why not, otherwise.
fn check_relative(path: &Path) -> Result<Vec<&OsStr>, &'static str> {
    let mut names = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => names.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("climbs out with `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    Ok(names)
}

/// Whether the symlink at relative `link` with `target` resolves inside the entry:
/// relative, leading `..` only, no higher than the link's directory.
fn check_link(link: &Path, target: &Path) -> Result<(), &'static str> {
    if target.as_os_str().is_empty() {
        return Err("has an empty target");
    }
    let depth = check_relative(link)
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
fn real_dirs(dest: &Path, names: &[&OsStr], shown: &str) -> Result<PathBuf, UnpackError> {
    let mut cur = dest.to_owned();
    for n in names {
        cur.push(n);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(UnpackError::Unsafe {
                    path: shown.to_owned(),
                    why: format!(
                        "has a parent `{}` that is not a directory (a file, or a symlink: never followed)",
                        cur.strip_prefix(dest).unwrap_or(&cur).display()
                    ),
                })
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

fn exists_or_write(e: io::Error, path: &Path, shown: &str) -> UnpackError {
    if e.kind() == io::ErrorKind::AlreadyExists {
        UnpackError::Unsafe {
            path: shown.to_owned(),
            why: "comes twice: a second member never replaces the first".to_owned(),
        }
    } else {
        UnpackError::Write {
            path: path.to_owned(),
            source: e,
        }
    }
}

/// Remove everything inside `dir`, symlinks not followed.
fn clear_dir(dir: &Path) {
    let Ok(read) = fs::read_dir(dir) else {
        return;
    };
    for item in read.flatten() {
        let path = item.path();
        let is_dir = item.file_type().is_ok_and(|t| t.is_dir());
        let _ = if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar + zstd stream with members written header-byte by header-byte, so the
    /// names can be anything a hostile archive holds (tar::Builder refuses `..`).
    struct Crafted {
        tar: tar::Builder<Vec<u8>>,
    }

    impl Crafted {
        fn new() -> Self {
            Crafted {
                tar: tar::Builder::new(Vec::new()),
            }
        }

        fn member(mut self, kind: tar::EntryType, name: &str, link: &str, data: &[u8]) -> Self {
            let mut h = tar::Header::new_old();
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            let lb = link.as_bytes();
            h.as_old_mut().linkname[..lb.len()].copy_from_slice(lb);
            h.set_entry_type(kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            h.set_cksum();
            self.tar.append(&h, data).unwrap();
            self
        }

        fn file(self, name: &str, data: &str) -> Self {
            self.member(tar::EntryType::Regular, name, "", data.as_bytes())
        }

        fn dir(self, name: &str) -> Self {
            self.member(tar::EntryType::Directory, name, "", b"")
        }

        fn symlink(self, name: &str, target: &str) -> Self {
            self.member(tar::EntryType::Symlink, name, target, b"")
        }

        fn zst(self) -> Vec<u8> {
            let tar = self.tar.into_inner().unwrap();
            zstd::encode_all(&tar[..], 3).unwrap()
        }
    }

    /// A sandbox: `outside/` must stay empty, `dest` is `outside/a/b/dest`.
    struct Sandbox {
        _tmp: tempfile::TempDir,
        outside: PathBuf,
        dest: PathBuf,
    }

    fn sandbox() -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        let dest = outside.join("a/b/dest");
        fs::create_dir_all(&dest).unwrap();
        Sandbox {
            outside,
            dest,
            _tmp: tmp,
        }
    }

    /// Every path under `dir`, relative, sorted; symlinks not followed.
    fn tree(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = walkdir::WalkDir::new(dir)
            .min_depth(1)
            .into_iter()
            .map(|e| {
                e.unwrap()
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        v.sort();
        v
    }

    fn rejected(archive: Vec<u8>) -> (String, Sandbox) {
        let s = sandbox();
        let err = unpack(&archive[..], &s.dest, "entry.json").unwrap_err();
        // Only the sandbox's own dirs: nothing beside or above `dest`, and `dest` emptied.
        assert_eq!(tree(&s.outside), ["a", "a/b", "a/b/dest"], "{err}");
        (err.to_string(), s)
    }

    #[test]
    fn round_trip_keeps_files_dirs_modes_and_inner_symlinks() {
        let src = tempfile::tempdir().unwrap();
        let d = src.path();
        fs::create_dir_all(d.join("db/sub")).unwrap();
        fs::write(d.join("db/sub/data.bin"), vec![7u8; 100_000]).unwrap();
        fs::write(d.join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(d.join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(d.join("entry.json"), "{}").unwrap();
        fs::create_dir(d.join("empty")).unwrap();
        std::os::unix::fs::symlink("db/sub", d.join("current")).unwrap();
        std::os::unix::fs::symlink("../sub/data.bin", d.join("db/sub/alias")).unwrap();
        let mut packed = Vec::new();
        let counts = pack(d, "entry.json", &[], ".tiers-blobs", &mut packed).unwrap();
        assert_eq!(counts.files, 2);

        let s = sandbox();
        let got = unpack(&packed[..], &s.dest, "entry.json").unwrap();
        assert_eq!(got, counts);
        assert_eq!(
            tree(&s.dest),
            [
                "current",
                "db",
                "db/sub",
                "db/sub/alias",
                "db/sub/data.bin",
                "empty",
                "run.sh"
            ]
        );
        assert_eq!(
            fs::read(s.dest.join("current/data.bin")).unwrap().len(),
            100_000
        );
        let mode = fs::metadata(s.dest.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_link(s.dest.join("current")).unwrap(),
            Path::new("db/sub")
        );
        assert_eq!(
            fs::read(s.dest.join("db/sub/alias")).unwrap().len(),
            100_000
        );
    }

    #[test]
    fn packing_is_deterministic() {
        let src = tempfile::tempdir().unwrap();
        fs::write(src.path().join("b"), "2").unwrap();
        fs::write(src.path().join("a"), "1").unwrap();
        let (mut one, mut two) = (Vec::new(), Vec::new());
        pack(src.path(), "entry.json", &[], ".tiers-blobs", &mut one).unwrap();
        // Touch the files: a new mtime must not change the blob.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(src.path().join("a"), "1").unwrap();
        pack(src.path(), "entry.json", &[], ".tiers-blobs", &mut two).unwrap();
        assert_eq!(one, two);
    }

    #[test]
    fn packing_refuses_a_symlink_leaving_the_entry() {
        let src = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("pw")).unwrap();
        let e = pack(src.path(), "entry.json", &[], ".tiers-blobs", Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`pw` -> `/etc/passwd`") && e.contains("absolute"),
            "{e}"
        );
    }

    #[test]
    fn parent_dir_member_is_rejected() {
        let (e, s) = rejected(
            Crafted::new()
                .file("ok.txt", "fine")
                .file("../escape", "x")
                .zst(),
        );
        assert!(e.contains("`../escape`") && e.contains("`..`"), "{e}");
        assert!(!s.dest.join("../escape").exists());
    }

    #[test]
    fn nested_parent_dir_member_is_rejected() {
        let (e, _) = rejected(Crafted::new().file("d/../../../escape", "x").zst());
        assert!(e.contains("`..`"), "{e}");
    }

    #[test]
    fn absolute_member_is_rejected() {
        let s0 = sandbox();
        let abs = s0.outside.join("abs.txt");
        let (e, _) = rejected(Crafted::new().file(abs.to_str().unwrap(), "x").zst());
        assert!(e.contains("absolute"), "{e}");
        assert!(!abs.exists());
    }

    #[test]
    fn escaping_symlinks_are_rejected() {
        for target in ["../../..", "../x", "/tmp", "a/../..", "."] {
            let archive = Crafted::new()
                .symlink("link", target)
                .file("link/pwned", "x")
                .zst();
            let s = sandbox();
            let r = unpack(&archive[..], &s.dest, "entry.json");
            assert_eq!(
                tree(&s.outside),
                ["a", "a/b", "a/b/dest"],
                "target {target}"
            );
            // `.` is inside the entry, but writing `link/pwned` would go through it.
            assert!(r.is_err(), "target {target} was accepted");
        }
    }

    #[test]
    fn a_symlink_to_the_root_cannot_be_climbed_through() {
        // `up -> .` stays inside, but `x -> up/..` would then reach the parent of the
        // entry: `..` after a name is refused.
        let (e, _) = rejected(
            Crafted::new()
                .symlink("up", ".")
                .symlink("x", "up/..")
                .zst(),
        );
        assert!(e.contains("`..` after a name"), "{e}");
    }

    #[test]
    fn writing_through_an_inner_symlink_is_refused() {
        let (e, _) = rejected(
            Crafted::new()
                .dir("real")
                .symlink("alias", "real")
                .file("alias/f", "x")
                .zst(),
        );
        assert!(e.contains("never followed"), "{e}");
    }

    #[test]
    fn duplicate_member_over_a_symlink_is_refused() {
        let (e, _) = rejected(
            Crafted::new()
                .file("target", "t")
                .symlink("f", "target")
                .file("f", "overwrite through the link")
                .zst(),
        );
        assert!(e.contains("comes twice"), "{e}");
    }

    #[test]
    fn hard_links_devices_and_fifos_are_rejected() {
        for (kind, what) in [
            (tar::EntryType::Link, "hard link"),
            (tar::EntryType::Char, "device"),
            (tar::EntryType::Block, "device"),
            (tar::EntryType::Fifo, "fifo"),
        ] {
            let (e, _) = rejected(
                Crafted::new()
                    .file("a", "1")
                    .member(kind, "b", "a", b"")
                    .zst(),
            );
            assert!(e.contains(what), "{e}");
        }
    }

    #[test]
    fn the_marker_name_is_reserved() {
        let (e, _) = rejected(Crafted::new().file("entry.json", "{}").zst());
        assert!(e.contains("marker"), "{e}");
    }

    #[test]
    fn garbage_is_an_archive_error() {
        let (e, _) = rejected(b"not zstd at all".to_vec());
        assert!(e.contains("cannot be read"), "{e}");
    }
}
