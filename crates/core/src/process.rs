//! Running a kind's tool: its output streamed, a tail of it kept.
//!
//! Tools interleave progress on stdout and stderr, so both feed one tail, in the
//! order the lines arrive: on failure that tail is the story of what went wrong.
//! Every kind that runs a process (a command, an installer, the CodeQL CLI) uses
//! this, so `-v`, the terminal progress line and quiet `--json` behave alike.
//!
//! # A tool never outlives tiers
//!
//! Each tool runs in a process group of its own, so a signal reaches it and every
//! process it started. Three things end that group:
//! - tiers is killed by SIGKILL, which no handler sees. When the program embedding
//!   this crate names a supervisor ([`supervise_with`]; the `tiers` driver names
//!   itself), each tool runs under one: a small process that leads the group, holds
//!   a pipe from tiers, and kills the whole group the moment that pipe closes, which
//!   the kernel does when tiers dies ([`supervise`]). Without a supervisor the tool
//!   gets SIGKILL from the kernel (a parent-death signal, Linux) and the processes
//!   it started are left to the next step. Either way the next build of the tier
//!   finds and kills any survivor by the `TIERS_BUILD_OWNER` variable every
//!   process started here inherits ([`kill_orphans`]) before it removes the killed
//!   build's staging dir;
//! - tiers gets SIGINT or SIGTERM: the driver kills every running group
//!   ([`kill_all`]) and the engine removes the build's staging dir;
//! - the future running the tool is dropped: the group is killed.

use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::progress::Progress;

/// How long output is still read once the tool exited and its group was killed.
const READ_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Lines of output kept to show when the tool fails.
pub const TAIL_LINES: usize = 40;

/// What to do with each line of the tool's output as it arrives.
#[derive(Clone, Debug)]
pub enum Echo {
    /// `-v`: every line on stderr (above the progress display, when there is one).
    Lines(Progress),
    /// A progress display: the latest line, beside the tier's current step.
    Progress(Progress),
    /// `--json`, pipes, `-q`: nothing until it fails.
    Quiet,
}

impl Echo {
    /// Every line at `-v`, else the latest on the tier's progress line when a
    /// display listens (the driver has one only on a terminal outside `--json`
    /// and `-q`), else nothing.
    pub fn choose(verbose: bool, progress: &Progress) -> Echo {
        if verbose {
            Echo::Lines(progress.clone())
        } else if progress.is_on() {
            Echo::Progress(progress.clone())
        } else {
            Echo::Quiet
        }
    }
}

pub struct Finished {
    pub status: ExitStatus,
    pub tail: Vec<String>,
}

/// The variable naming the entry a process was started for (see the module docs).
pub const OWNER_VAR: &str = "TIERS_BUILD_OWNER";

tokio::task_local! {
    /// The entry directory the build running on this task produces.
    static OWNER: PathBuf;
}

/// Run `fut` (a kind's build of the entry at `entry_dir`) so that every process it
/// starts through [`run`] carries [`OWNER_VAR`] = `entry_dir`.
pub async fn owned_by<F: std::future::Future>(entry_dir: PathBuf, fut: F) -> F::Output {
    OWNER.scope(entry_dir, fut).await
}

/// Process groups running now, for [`kill_all`].
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// A running group, killed when dropped (the tool was cancelled, or it finished
/// and left processes behind), and taken out of [`GROUPS`].
struct Group {
    id: i32,
}

impl Group {
    fn new(id: i32) -> Group {
        GROUPS.lock().expect("groups lock").insert(id);
        Group { id }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        GROUPS.lock().expect("groups lock").remove(&self.id);
        // Also after the leader was reaped: a job it left in the background must
        // not outlive the build. The id cannot name another group while one of
        // this group's processes lives; only an empty group's id can be reused,
        // by a new process that makes itself a group leader in the microseconds
        // since the reaping: a risk taken, as shells take it for job control.
        kill_group(self.id);
    }
}

fn kill_group(id: i32) {
    #[cfg(unix)]
    if let Some(pid) = rustix::process::Pid::from_raw(id) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Kill every process group started by [`run`] that is still running: the driver
/// calls this on SIGINT and SIGTERM.
pub fn kill_all() {
    let groups: Vec<i32> = GROUPS
        .lock()
        .expect("groups lock")
        .iter()
        .copied()
        .collect();
    for id in groups {
        kill_group(id);
    }
}

/// Kill the processes a killed tiers left running for the entry at `entry_dir`:
/// every process whose environment has [`OWNER_VAR`] = `entry_dir`. Call it with
/// the entry's lock held (so no live build owns them), before removing what they
/// were writing. Waits up to two seconds for them to be gone.
pub fn kill_orphans(entry_dir: &Path) {
    #[cfg(target_os = "linux")]
    {
        let mut wanted = format!("{OWNER_VAR}=").into_bytes();
        wanted.extend_from_slice(entry_dir.as_os_str().as_encoded_bytes());
        let me = std::process::id();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        let mut killed = Vec::new();
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(env) = std::fs::read(p.path().join("environ")) else {
                continue;
            };
            if env.split(|b| *b == 0).any(|var| var == wanted.as_slice()) {
                if let Some(id) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(id, rustix::process::Signal::KILL);
                    killed.push(pid);
                }
            }
        }
        if !killed.is_empty() {
            tracing::info!(
                "killed {} process(es) left running by a killed build of `{}`",
                killed.len(),
                entry_dir.display()
            );
        }
        // A killed process is gone once its parent reaps it; an orphan's parent is
        // init, which does so at once. Zombies of live parents hold no files open.
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until
            && killed.iter().any(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                    s.rsplit(')')
                        .next()
                        .is_some_and(|r| !r.trim_start().starts_with('Z'))
                })
            })
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = entry_dir;
}

/// The argument that makes a binary run [`supervise`] (see [`supervise_with`]).
pub const SUPERVISE_ARG: &str = "__tiers-supervise";

static SUPERVISOR: OnceLock<PathBuf> = OnceLock::new();

/// Run every tool under `program SUPERVISE_ARG TOOL ARGS…`: `program` must call
/// [`supervise`] when its first argument is [`SUPERVISE_ARG`] (the `tiers` driver
/// does, naming itself). Then a tiers killed by SIGKILL takes every process its
/// tools started with it, not only the tools.
pub fn supervise_with(program: PathBuf) {
    let _ = SUPERVISOR.set(program);
}

/// The supervisor: run `args` (a program and its arguments, stdin empty) in this
/// process group, and kill the whole group, itself included, when stdin reaches
/// its end — tiers holds the other end of that pipe until the tool exits, so that
/// happens only when tiers is gone. Exits as the tool did.
pub fn supervise(args: &[OsString]) -> ! {
    use std::io::Read;
    let Some((program, rest)) = args.split_first() else {
        eprintln!("tiers: {SUPERVISE_ARG} needs a program to run");
        std::process::exit(2);
    };
    let mut child = match std::process::Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            // Told to `run` on the pipe it reads, so the kind gets the spawn error
            // it would get without a supervisor, not a tool's exit 127.
            println!("{SPAWN_FAILED}{}", e.raw_os_error().unwrap_or(0));
            std::process::exit(127);
        }
    };
    std::thread::spawn(|| {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 64];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        #[cfg(unix)]
        let _ = rustix::process::kill_current_process_group(rustix::process::Signal::KILL);
        std::process::exit(137);
    });
    let status = match child.wait() {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "tiers: cannot wait for `{}`: {e}",
                program.to_string_lossy()
            );
            std::process::exit(127);
        }
    };
    if let Some(code) = status.code() {
        std::process::exit(code);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            die_of(signal);
        }
    }
    std::process::exit(1)
}

/// The line a supervisor prints when it cannot start the tool: the OS error follows.
const SPAWN_FAILED: &str = "\u{0}tiers-supervise: cannot start the tool: os error ";

/// End the supervisor by `signal`, as its tool ended, so tiers reports the tool
/// as killed by it. The Rust runtime handles SIGSEGV and SIGBUS and ignores
/// SIGPIPE: the default action comes back first. No core file is written (the
/// crash was the tool's).
#[cfg(unix)]
#[allow(unsafe_code)]
fn die_of(signal: i32) -> ! {
    // SAFETY: plain system calls on this process's own signal disposition, mask
    // and limits, with valid arguments; the supervisor's other thread only reads
    // stdin and does not touch signals.
    unsafe {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(signal, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
    std::process::exit(128 + signal)
}

/// `cmd` as the supervisor's command line. The supervisor runs where the tool
/// runs, with its environment, so it finds the program as a spawn of the tool
/// would (relative PATH entries included), and a program it cannot start is the
/// same OS error.
fn supervised(cmd: &tokio::process::Command, supervisor: &Path) -> tokio::process::Command {
    let std_cmd = cmd.as_std();
    let mut s = tokio::process::Command::new(supervisor);
    s.arg(SUPERVISE_ARG)
        .arg(std_cmd.get_program())
        .args(std_cmd.get_args());
    for (k, v) in std_cmd.get_envs() {
        match v {
            Some(v) => s.env(k, v),
            None => s.env_remove(k),
        };
    }
    if let Some(dir) = std_cmd.get_current_dir() {
        s.current_dir(dir);
    }
    s
}

/// Put `cmd` in a process group of its own that dies with this process.
#[allow(unsafe_code)]
fn contain(cmd: &mut tokio::process::Command, supervised: bool) {
    if let Ok(owner) = OWNER.try_with(Clone::clone) {
        cmd.env(OWNER_VAR, owner);
    }
    #[cfg(unix)]
    cmd.process_group(0);
    // A supervisor must outlive tiers for the moment it takes to kill its group.
    #[cfg(target_os = "linux")]
    if !supervised {
        let parent = rustix::process::getpid();
        // SAFETY: the closure runs in the child between fork and exec, and makes
        // only two system calls (no allocation, no locks): async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))?;
                // tiers died before the signal was armed: do not run orphaned.
                if rustix::process::getppid() != Some(parent) {
                    return Err(std::io::Error::other("tiers exited"));
                }
                Ok(())
            });
        }
    }
}

/// Spawn `cmd` (stdout and stderr piped) in a process group of its own, stream its
/// output, and wait for it. `label` prefixes the progress line (`codeql: …`).
/// Dropping the future kills the whole group.
pub async fn run(
    mut cmd: tokio::process::Command,
    echo: Echo,
    label: &str,
) -> std::io::Result<Finished> {
    let supervisor = SUPERVISOR.get();
    if let Some(sup) = supervisor {
        cmd = supervised(&cmd, sup);
    }
    // A supervisor's stdin is the pipe whose end tells it tiers is gone.
    cmd.stdin(if supervisor.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    contain(&mut cmd, supervisor.is_some());
    let mut child = cmd.spawn()?;
    let lifeline = child.stdin.take();
    let group = child.id().map(|id| Group::new(id as i32));
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
    let readers = [
        tokio::spawn(drain(
            child.stdout.take(),
            tail.clone(),
            echo.clone(),
            label.to_owned(),
        )),
        tokio::spawn(drain(
            child.stderr.take(),
            tail.clone(),
            echo.clone(),
            label.to_owned(),
        )),
    ];
    let status = child.wait().await?;
    drop(group);
    drop(lifeline);
    // The group is gone, so its pipes close; a process that left the group (a
    // daemon that made a session of its own) may still hold them: stop reading
    // after a while rather than wait for it.
    for r in readers {
        let abort = r.abort_handle();
        if tokio::time::timeout(READ_AFTER_EXIT, r).await.is_err() {
            abort.abort();
        }
    }
    if let Echo::Progress(progress) = &echo {
        progress.message("");
    }
    let tail: Vec<String> = tail.lock().expect("tail lock").drain(..).collect();
    if supervisor.is_some() && status.code() == Some(127) {
        let errno = tail
            .iter()
            .find_map(|l| l.strip_prefix(SPAWN_FAILED)?.trim().parse().ok());
        if let Some(errno) = errno {
            return Err(std::io::Error::from_raw_os_error(errno));
        }
    }
    Ok(Finished { status, tail })
}

async fn drain(
    stream: Option<impl AsyncRead + Unpin>,
    tail: Arc<Mutex<VecDeque<String>>>,
    echo: Echo,
    label: String,
) {
    let Some(stream) = stream else { return };
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    // Bytes, not `lines()`: output that is not UTF-8 must still be drained, or the
    // tool blocks on a full pipe.
    while let Ok(n) = reader.read_until(b'\n', &mut buf).await {
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf)
            .trim_end_matches(['\n', '\r'])
            .to_owned();
        buf.clear();
        match &echo {
            Echo::Lines(progress) => progress.print(&line),
            // A blank line would hide the last one that said something.
            Echo::Progress(progress) if !line.trim().is_empty() => {
                progress.message(&format!("{label}: {line}"))
            }
            Echo::Progress(_) => {}
            Echo::Quiet => {}
        }
        let mut t = tail.lock().expect("tail lock");
        if t.len() == TAIL_LINES {
            t.pop_front();
        }
        t.push_back(line);
    }
}

/// The tail as an indented block for an error message.
pub fn show_tail(tail: &[String]) -> String {
    if tail.is_empty() {
        return "  | (it printed nothing)".to_owned();
    }
    tail.iter()
        .map(|l| format!("  | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a build killed without a supervisor leaves is found by its variable.
    #[cfg(target_os = "linux")]
    #[test]
    fn kill_orphans_kills_the_processes_started_for_that_entry_only() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("t").join("a".repeat(64));
        let other = dir.path().join("t").join("b".repeat(64));
        let spawn = |owner: &Path| {
            std::process::Command::new("sleep")
                .arg("30")
                .env(OWNER_VAR, owner)
                .spawn()
                .unwrap()
        };
        let mut mine = spawn(&entry);
        let mut theirs = spawn(&other);
        // `spawn` returns once the exec began, before the kernel has set the new
        // program's environment up: until then `/proc/<pid>/environ` is empty.
        for child in [&mine, &theirs] {
            let environ = format!("/proc/{}/environ", child.id());
            let until = Instant::now() + Duration::from_secs(10);
            while !std::fs::read(&environ).is_ok_and(|e| !e.is_empty()) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        kill_orphans(&entry);
        let until = Instant::now() + Duration::from_secs(5);
        let status = loop {
            match mine.try_wait().unwrap() {
                Some(status) => break Some(status),
                None if Instant::now() > until => break None,
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        let _ = mine.kill();
        assert!(
            status.is_some_and(|s| !s.success()),
            "the orphan was killed: {status:?}"
        );
        assert!(
            theirs.try_wait().unwrap().is_none(),
            "another entry's process runs on"
        );
        theirs.kill().unwrap();
        theirs.wait().unwrap();
    }

    #[tokio::test]
    async fn keeps_the_last_lines_of_both_streams() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(
            "i=0; while [ $i -lt 50 ]; do echo out$i; i=$((i+1)); done; echo last >&2; exit 3",
        );
        let done = run(cmd, Echo::Quiet, "sh").await.unwrap();
        assert_eq!(done.status.code(), Some(3));
        assert_eq!(done.tail.len(), TAIL_LINES);
        assert!(done.tail.contains(&"last".to_owned()));
        assert!(!done.tail.contains(&"out0".to_owned()));
        assert!(done.tail.contains(&"out49".to_owned()));
    }
}
