//! Processes in the end-to-end tests: a command that leaves a grandchild
//! running, and whether a process is still alive.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{project, Project};

/// One command tier `t` over `*.txt`, running `count.py` (the counting script).
pub const ONE_TIER: &str = r#"
[tiers.t]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "count.py"]
"#;

/// A project with `toml`, the counting script as `count.py` and `a.txt`.
pub fn counting(toml: &str) -> Project {
    project()
        .file("tiers.toml", toml)
        .file("count.py", super::COUNTING_SCRIPT)
        .file("a.txt", "alpha\n")
        .build()
}

/// A command that starts a grandchild writing into `$TIERS_OUT` forever, writes
/// both pids, and then writes files itself until `mode` says `finish`.
pub const WRITER_SCRIPT: &str = r#"import os, pathlib, subprocess, sys, time
project = pathlib.Path(os.environ["TIERS_PROJECT"])
out = pathlib.Path(os.environ["TIERS_OUT"])
with open(project / "runs.log", "a") as log:
    log.write(os.environ["TIERS_TIER"] + "\n")
mode = (project / "mode").read_text().strip() if (project / "mode").exists() else ""
if mode != "finish":
    loop = "import pathlib, sys, time\nout = pathlib.Path(sys.argv[1])\ni = 0\nwhile True:\n    i += 1\n    (out / ('g%d' % (i % 500))).write_text('x' * 1000)\n    time.sleep(0.002)\n"
    child = subprocess.Popen([sys.executable, "-c", loop, str(out)])
    tmp = project / "pids.tmp"
    tmp.write_text(f"{os.getpid()} {child.pid}")
    tmp.rename(project / "pids")
    i = 0
    while True:
        i += 1
        (out / ("p%d" % (i % 500))).write_text("y" * 1000)
        time.sleep(0.002)
(out / "result.txt").write_text("complete\n")
"#;

pub fn writer_project() -> Project {
    project()
        .file("tiers.toml", ONE_TIER.replace("count.py", "writer.py"))
        .file("writer.py", WRITER_SCRIPT)
        .file("a.txt", "alpha\n")
        .build()
}

pub fn wait_for_pids(p: &Project) -> (u32, u32) {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(p.path("pids")) {
            let mut it = text.split_whitespace().map(|n| n.parse::<u32>().unwrap());
            return (it.next().unwrap(), it.next().unwrap());
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

pub fn gone_within(pid: u32, limit: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

pub fn kill(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A command that reads `a.txt` alone of its inputs, says so in `$TIERS_DEPFILE`,
/// logs its run and copies `a.txt` into its output.
pub const DEPFILE_SCRIPT: &str = r#"import os, pathlib
project = pathlib.Path(os.environ["TIERS_PROJECT"])
with open(project / "runs.log", "a") as log:
    log.write(os.environ["TIERS_TIER"] + "\n")
(pathlib.Path(os.environ["TIERS_OUT"]) / "result.txt").write_text((project / "a.txt").read_text())
pathlib.Path(os.environ["TIERS_DEPFILE"]).write_text("a.txt\n")
"#;
