//! File-system helpers every part of the engine uses: atomic writes, names no
//! other process uses, lock files, removal, sizes, hex.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoContext, Result};

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A name no other process or thread uses at the same time.
pub(crate) fn unique_suffix() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Write `bytes` to `path` atomically: a temp file beside it, renamed over it.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        unique_suffix()
    ));
    let mut f = File::create(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    drop(f);
    fs::rename(&tmp, path).at(path)
}

/// Open (creating) a file used only for its advisory lock.
pub(crate) fn open_lock_file(path: &Path) -> Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at(path)
}

/// Whether `name` is a [`unique_suffix`]: `<pid>-<n>`.
pub(crate) fn is_unique_suffix(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name.split_once('-')
        .is_some_and(|(a, b)| digits(a) && digits(b))
}

pub(crate) fn remove_dir(dir: &Path) -> Result<()> {
    // A process that was writing there may have been killed a moment ago: its
    // last files can still appear while the tree is removed, so try again.
    let mut tries = 0;
    loop {
        let removed = if dir.symlink_metadata().is_ok_and(|m| !m.is_dir()) {
            fs::remove_file(dir)
        } else {
            fs::remove_dir_all(dir)
        };
        match removed {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && tries < 5 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20 * tries));
            }
            Err(e) => return Err(Error::io(dir, e)),
        }
    }
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Bytes under `dir`, links not followed.
pub fn dir_bytes(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| !m.is_dir())
        .map(|m| m.len())
        .sum()
}

/// Lowercase hexadecimal digits of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}
