//! Writes to a `file://` shared cache, and the removal of what killed writers left.
//!
//! OpenDAL's fs service writes into `<atomic_write_dir>/<name>.<random>` and renames;
//! a writer killed before the rename leaves that file forever, and its name says
//! neither who wrote it nor whether that writer still runs, so no later run can tell
//! debris from a write in progress. Here every temporary is named for its writer —
//! `.tmp/tiers-<host>-<pid>-<start>-<n>`, `host` being the host name and pid
//! namespace and `start` the process's start time in clock ticks since boot, so a
//! reused pid is not mistaken for the writer — and the first upload of each run
//! removes the temporaries of writers on this host that no longer run. Anything else in `.tmp` (another host's, or OpenDAL's names from an
//! older tiers) is removed once it is older than [`STALE_AFTER`]: no upload of one
//! 32 MiB chunk takes that long.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// Where temporaries are written, under the store's root.
pub const TMP_DIR: &str = ".tmp";

/// Temporaries whose writer cannot be checked are removed after this long.
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);

const PREFIX: &str = "tiers-";

/// This process as a writer: host, pid, start time.
struct Writer {
    host: Option<String>,
    pid: u32,
    start: Option<u64>,
}

fn me() -> &'static Writer {
    static ME: OnceLock<Writer> = OnceLock::new();
    ME.get_or_init(|| {
        let pid = std::process::id();
        Writer {
            host: host_name(),
            pid,
            start: start_ticks(pid),
        }
    })
}

/// Where a pid means this process: the host name and the pid namespace (containers
/// that share a host name and a store but not their pids), as one safe name segment,
/// when the platform tells both.
fn host_name() -> Option<String> {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let ns = fs::read_link("/proc/self/ns/pid").ok()?;
    let host: String = format!("{}_{}", raw.trim(), ns.to_string_lossy())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    Some(host)
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in ticks since boot.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn temp_name() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let w = me();
    format!(
        "{PREFIX}{}-{}-{}-{}",
        w.host.as_deref().unwrap_or("unknown"),
        w.pid,
        w.start.unwrap_or(0),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Write `bytes` to `<root>/<path>` whole or not at all: into a temporary under
/// `.tmp`, flushed to disk, then renamed over the object.
pub fn put(root: &Path, path: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp_dir = root.join(TMP_DIR);
    fs::create_dir_all(&tmp_dir)?;
    let tmp = tmp_dir.join(temp_name());
    let dest = root.join(path);
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::rename(&tmp, &dest)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Remove the temporaries of writers that are gone; how many were removed and their
/// bytes. Errors (a file another run removed first) are skipped.
pub fn sweep(root: &Path) -> (usize, u64) {
    let Ok(dir) = fs::read_dir(root.join(TMP_DIR)) else {
        return (0, 0);
    };
    let now = SystemTime::now();
    let (mut n, mut bytes) = (0, 0);
    for entry in dir.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        let name = entry.file_name();
        let dead = match owner(&name.to_string_lossy()) {
            Some(w) if w.host.is_some() && w.host == me().host => !alive(&w),
            _ => meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > STALE_AFTER),
        };
        if dead && fs::remove_file(entry.path()).is_ok() {
            n += 1;
            bytes += meta.len();
        }
    }
    (n, bytes)
}

/// The writer a temporary's name records; `None` for names tiers did not make.
fn owner(name: &str) -> Option<Writer> {
    let rest = name.strip_prefix(PREFIX)?;
    let mut parts = rest.rsplitn(4, '-');
    let _seq: u64 = parts.next()?.parse().ok()?;
    let start: u64 = parts.next()?.parse().ok()?;
    let pid: u32 = parts.next()?.parse().ok()?;
    let host = parts.next()?.to_owned();
    Some(Writer {
        host: (host != "unknown").then_some(host),
        pid,
        start: (start != 0).then_some(start),
    })
}

/// Whether the writer still runs: its pid exists with the same start time. Without a
/// recorded start time only the pid can be checked, and a live pid counts as alive.
fn alive(w: &Writer) -> bool {
    match (start_ticks(w.pid), w.start) {
        (None, _) => false,
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_its_names_parse_back() {
        let name = temp_name();
        let w = owner(&name).expect("our own name parses");
        assert_eq!(w.pid, std::process::id());
        assert_eq!(w.host, me().host);
        assert!(alive(&w));
        assert!(owner("blob.12345").is_none());
    }

    #[test]
    fn the_sweep_removes_dead_writers_temporaries_and_keeps_live_ones() {
        let root = tempfile::tempdir().unwrap();
        put(root.path(), "blobs/x", b"whole").unwrap();
        assert_eq!(fs::read(root.path().join("blobs/x")).unwrap(), b"whole");
        let tmp = root.path().join(TMP_DIR);
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);

        // A child that exits: its pid is gone (or reused with another start time).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = start_ticks(pid);
        child.wait().unwrap();
        let host = me().host.clone().unwrap_or_else(|| "unknown".into());
        let dead = format!("{PREFIX}{host}-{pid}-{}-0", start.unwrap_or(1));
        fs::write(tmp.join(&dead), vec![0u8; 1000]).unwrap();
        let live = temp_name();
        fs::write(tmp.join(&live), b"in progress").unwrap();
        let foreign = "blob.8815402537"; // recent: kept
        fs::write(tmp.join(foreign), b"?").unwrap();

        let removed = sweep(root.path());
        if me().host.is_some() && start.is_some() {
            assert_eq!(removed, (1, 1000));
            assert!(!tmp.join(&dead).exists());
        }
        assert!(tmp.join(&live).exists());
        assert!(tmp.join(foreign).exists());
    }
}
