//! Issue 14, second round: each test reproduces a bug an adversarial review of
//! the hardening found (races with retention, background jobs, kills before an
//! edit, signing turned on, huge records, status writing, reasons after a
//! restore…), through the real `tiers` binary.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::procs::{alive, counting, kill, ONE_TIER, WRITER_SCRIPT};
use support::{project, runs, Project, COUNTING_SCRIPT};

/// A project directory whose name is not UTF-8 (legal on Linux: a path is bytes)
/// builds: the per-checkout pointer records the path lossily, no panic.
#[cfg(target_os = "linux")]
#[test]
fn a_project_path_that_is_not_utf8_does_not_panic() {
    use std::os::unix::ffi::OsStrExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent
        .path()
        .join(std::ffi::OsStr::from_bytes(b"proj-\xff"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("tiers.toml"), ONE_TIER).unwrap();
    std::fs::write(dir.join("count.py"), COUNTING_SCRIPT).unwrap();
    std::fs::write(dir.join("a.txt"), "alpha\n").unwrap();
    let out = Command::new(support::tiers_bin())
        .arg("-C")
        .arg(&dir)
        .arg("build")
        .env_remove("TIERS_CACHE_DIR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(101) && !stderr.contains("panicked"),
        "tiers panicked on a non-UTF-8 project path (exit {:?}):\n{stderr}",
        out.status.code()
    );
}

/// SIGTERM (or Ctrl-C) to a build that waits for another process's lock on the
/// same key ends it at once with 143, not when that lock is released (the
/// lock is waited for on a blocking thread the runtime would wait for).
#[test]
fn sigterm_while_waiting_for_another_builds_lock_exits_at_once() {
    const SLOW: &str = r#"import os, pathlib, time
project = pathlib.Path(os.environ["TIERS_PROJECT"])
with open(project / "runs.log", "a") as log:
    log.write(os.environ["TIERS_TIER"] + "\n")
time.sleep(8)
(pathlib.Path(os.environ["TIERS_OUT"]) / "result.txt").write_text("done\n")
"#;
    let p = project()
        .file("tiers.toml", ONE_TIER)
        .file("count.py", SLOW)
        .file("a.txt", "alpha\n")
        .build();
    let mut first = p
        .cmd(&["build"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while runs(&p, "t") == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let waiter = p
        .cmd(&["build"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let the second build reach the key's lock and wait there.
    std::thread::sleep(Duration::from_millis(700));
    kill(waiter.id(), "TERM");
    let signalled = Instant::now();
    let out = waiter.wait_with_output().unwrap();
    let took = signalled.elapsed();
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took < Duration::from_secs(3),
        "the interrupted build took {took:?} to exit: it waited for the other build's lock"
    );
}

/// `status` predicts `build` for a tier downstream of one that cannot build: an
/// upstream with `rebuild = "never"` and no entry fails, and its downstream is
/// skipped in both (a failed tier passes no key on).
#[test]
fn status_predicts_build_downstream_of_a_tier_that_cannot_build() {
    let toml = r#"
[tiers.up]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "count.py"]
rebuild = "never"

[tiers.down]
kind = "command"
inputs = ["*.txt"]
run = ["python3", "count.py"]
after = ["up"]
"#;
    let p = counting(toml);
    let status = p.status(&[]);
    let build = p.tiers(&["build", "--json"]);
    assert_eq!(build.code, 1, "{}", build.stderr);
    assert_eq!(status.status("up"), build.status("up"));
    assert_eq!(
        status.status("down"),
        build.status("down"),
        "status said `down` is {}, build made it {} ({:?})",
        status.status("down"),
        build.status("down"),
        build.reasons("down")
    );
    assert_eq!(runs(&p, "down"), 0);
}

/// `tiers status` builds, locks and writes nothing but the stat cache: with a
/// `file://` shared cache that does not exist yet, it creates no directory.
#[test]
fn status_with_a_file_remote_creates_no_directory() {
    let p = counting(ONE_TIER);
    let remote = tempfile::tempdir().unwrap();
    let root = remote.path().join("not/yet/there");
    let url = format!("file://{}", root.display());
    for cmd in ["status", "paths"] {
        let out = p
            .cmd(&[cmd, "--json"])
            .env("TIERS_REMOTE_URL", &url)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !remote.path().join("not").exists(),
            "`tiers {cmd}` created `{}`",
            root.display()
        );
    }
}

/// A WebDAV server that answers every request 404 at once but holds each PUT
/// without answering: an upload that takes long. Says when the first PUT came.
fn stalling_webdav() -> (String, std::sync::mpsc::Receiver<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                if head.starts_with(b"PUT") {
                    let _ = tx.send(());
                    std::thread::sleep(Duration::from_secs(60));
                    return;
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    (format!("webdav+http://127.0.0.1:{port}/cache"), rx)
}

/// A build points its checkout at the entry it published before it releases
/// the entry's lock and uploads: retention running meanwhile (a `tiers gc`, or
/// another checkout's build) never removes the entry the build reports.
#[test]
fn gc_while_a_build_uploads_keeps_the_entry_the_build_just_published() {
    let (url, put_came) = stalling_webdav();
    let toml = format!("{ONE_TIER}keep = 1\n\n[remote]\nurl = \"{url}\"\ntimeout = 2\n");
    let p = counting(&toml);
    p.build(&["--no-remote"]);
    p.write("a.txt", "edited\n");
    let build = p
        .cmd(&["build", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    put_came
        .recv_timeout(Duration::from_secs(60))
        .expect("the build never uploaded");
    // The entry is published and its upload is under way: retention runs now.
    p.tiers(&["gc", "--no-remote"]).expect_code(0);
    let out = build.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    let t = &report["tiers"][0];
    assert_eq!(t["status"], "rebuilt", "{stdout}");
    let path = std::path::PathBuf::from(t["path"].as_str().unwrap());
    assert!(
        path.join("result.txt").exists(),
        "the build reported `{}`, which a concurrent gc removed",
        path.display()
    );
    let paths = p.paths();
    assert_eq!(paths["tiers"]["t"]["exists"], true, "{paths}");
}

const SIGNING_VAR: &str = "TIERS_REVIEW_SIGNING_KEY";
const TEAM_KEY: &str = "team-secret-0123456789abcdef-0123456789";

/// `tiers build --json` on `p` against the `file://` remote `url`, signing with
/// `key` when given; its tier `t`'s status.
fn build_against(p: &Project, url: &str, key: Option<&str>) -> String {
    let mut c = p.cmd(&["build", "--json"]);
    c.env("TIERS_REMOTE_URL", url).env_remove(SIGNING_VAR);
    match key {
        Some(k) => c
            .env("TIERS_REMOTE_SIGNING_KEY_ENV", SIGNING_VAR)
            .env(SIGNING_VAR, k),
        None => c.env_remove("TIERS_REMOTE_SIGNING_KEY_ENV"),
    };
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    json["tiers"][0]["status"].as_str().unwrap().to_owned()
}

/// A team turns signing on after CI uploaded unsigned records, which signed
/// readers treat as misses: CI's next build, finding its entries fresh, uploads
/// them again, signed (what was uploaded is remembered per signing key).
#[test]
fn turning_signing_on_uploads_signed_records_of_entries_already_uploaded_unsigned() {
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().join("r").display());
    let ci = counting(ONE_TIER);
    assert_eq!(build_against(&ci, &url, None), "built");
    // Signing on: CI's next build is a no-op that owes the remote a signed record.
    assert_eq!(build_against(&ci, &url, Some(TEAM_KEY)), "fresh");
    let records = remote.path().join("r/records/t");
    let record = std::fs::read_dir(&records)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .next()
        .unwrap();
    assert!(
        record.starts_with(b"{\"hmac\":\""),
        "CI's fresh entry was never uploaded signed: the remote's record is unsigned"
    );
    // And a teammate holding the key is served.
    let mate = counting(ONE_TIER);
    assert_eq!(build_against(&mate, &url, Some(TEAM_KEY)), "restored");
}

/// SIGKILL a build whose command started a grandchild, then edit an input (the
/// ordinary next step: the user killed it to fix something) and build again:
/// nothing of the killed build is left running, though its key is never built
/// again.
#[cfg(target_os = "linux")]
#[test]
fn a_killed_builds_grandchild_is_killed_by_the_next_build_even_after_an_edit() {
    let p = project()
        .file("tiers.toml", ONE_TIER.replace("count.py", "writer.py"))
        .file("writer.py", WRITER_SCRIPT)
        .file("a.txt", "alpha\n")
        .build();
    let mut tiers = p
        .cmd(&["build"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let grandchild = loop {
        if let Ok(text) = std::fs::read_to_string(p.path("pids")) {
            break text
                .split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u32>()
                .unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(30), "never started");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(200));
    tiers.kill().unwrap();
    tiers.wait().unwrap();
    p.write("a.txt", "alpha, edited\n");
    p.write("mode", "finish");
    assert_eq!(p.build(&[]).status("t"), "built");
    std::thread::sleep(Duration::from_millis(300));
    let left = alive(grandchild);
    if left {
        kill(grandchild, "KILL");
    }
    assert!(
        !left,
        "the killed build's grandchild {grandchild} still runs after the next build"
    );
}

/// Input globs that leave the project are refused, but a backslash escapes a
/// glob character: `\[draft\].txt` names the file `[draft].txt`, an input.
#[test]
fn an_escaped_glob_naming_a_file_in_the_project_is_not_refused_as_absolute() {
    let toml = ONE_TIER.replace("\"*.txt\"", r#"'\[draft\].txt'"#);
    let p = counting(&toml);
    p.write("[draft].txt", "draft\n");
    let run = p.build(&[]);
    assert_eq!(run.status("t"), "built");
    let path = std::path::PathBuf::from(run.tier("t")["path"].as_str().unwrap());
    let marker: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path.join("entry.json")).unwrap()).unwrap();
    assert!(
        marker["doc"]["inputs"].get("[draft].txt").is_some(),
        "{}",
        marker["doc"]["inputs"]
    );
}

/// A bad value of `[cache] pointer_days` (and of every `[cache]` or `[remote]`
/// key) is reported under the key the user wrote, not figment's
/// `default.cache.pointer_days`.
#[test]
fn a_bad_pointer_days_names_the_key_the_user_wrote() {
    let p = counting(&format!("[cache]\npointer_days = -1\n{ONE_TIER}"));
    let run = p.tiers(&["status"]).expect_code(2);
    assert!(
        run.stderr.contains("cache.pointer_days") && !run.stderr.contains("default.cache"),
        "{}",
        run.stderr
    );
}

/// A command that leaves a background job behind (`tool &`, a daemon, a test
/// server it forgot to stop): the job neither makes the build wait for it (it
/// holds the output pipes) nor outlives the build.
#[test]
fn a_commands_background_job_neither_hangs_the_build_nor_outlives_it() {
    let toml = r#"
[tiers.t]
kind = "command"
inputs = ["*.txt"]
run = ["sh", "-c", "sleep 20 & sleep 21 >/dev/null 2>&1 & echo $! > \"$TIERS_PROJECT/bgpid\"; echo hi > \"$TIERS_OUT/r\""]
"#;
    let p = counting(toml);
    let started = Instant::now();
    let run = p.build(&[]);
    let took = started.elapsed();
    assert_eq!(run.status("t"), "built");
    let pid: u32 = p.read("bgpid").trim().parse().unwrap();
    // Killed as the build ends; dead once the signal is delivered and it is reaped.
    let until = Instant::now() + Duration::from_secs(2);
    while alive(pid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let left = alive(pid);
    if left {
        kill(pid, "KILL");
    }
    assert!(
        took < Duration::from_secs(10),
        "the build waited {took:?} for a background job holding its output pipe"
    );
    assert!(
        !left,
        "the command's background job {pid} outlived the build"
    );
}

/// After a build restored through discovered inputs, the next build's reasons
/// compare with the restored key's own document: editing only `a.txt` names
/// `a.txt`, not `b.txt`, which the restored entry's build saw otherwise.
#[test]
fn reasons_after_a_restore_name_only_inputs_changed_since_that_build() {
    let toml = r#"
[tiers.dep]
kind = "command"
inputs = ["src/*.txt"]
run = ["sh", "-c", "echo src/a.txt > \"$TIERS_DEPFILE\"; cat src/a.txt > \"$TIERS_OUT/result.txt\""]
"#;
    let p = project()
        .file("tiers.toml", toml)
        .file("src/a.txt", "alpha\n")
        .file("src/b.txt", "beta\n")
        .build();
    assert_eq!(p.build(&[]).status("dep"), "built");
    p.write("src/b.txt", "beta 2\n");
    assert_eq!(p.build(&[]).status("dep"), "restored");
    p.write("src/a.txt", "alpha 2\n");
    let status = p.status(&[]);
    assert_eq!(status.status("dep"), "stale");
    let reasons = status.reasons("dep");
    assert!(
        !reasons.iter().any(|r| r.contains("src/b.txt")),
        "only src/a.txt changed since the last build: {reasons:?}"
    );
}

/// A hostile or broken shared cache serves a huge record: it is refused before
/// it is read (a directory store's size is checked first), so a 400 MB record
/// costs no 400 MB of memory.
#[cfg(target_os = "linux")]
#[test]
fn a_huge_record_in_the_shared_cache_is_refused_before_it_is_read() {
    let p = counting(ONE_TIER);
    let key = p.status(&[]).tier("t")["key"].as_str().unwrap().to_owned();
    let remote = tempfile::tempdir().unwrap();
    let records = remote.path().join("records/t");
    std::fs::create_dir_all(&records).unwrap();
    // Sparse: no disk space used.
    std::fs::File::create(records.join(format!("{key}.json")))
        .unwrap()
        .set_len(400 << 20)
        .unwrap();
    // The child's peak memory, through Python's getrusage (no GNU time needed).
    let measure = "import resource, subprocess, sys\n\
        r = subprocess.run(sys.argv[1:], capture_output=True)\n\
        sys.stderr.write(r.stderr.decode(errors='replace'))\n\
        print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
        sys.exit(r.returncode)\n";
    let out = Command::new("python3")
        .args(["-c", measure])
        .arg(support::tiers_bin())
        .arg("-C")
        .arg(p.root())
        .args(["build", "--json"])
        .env_remove("TIERS_CACHE_DIR")
        .env(
            "TIERS_REMOTE_URL",
            format!("file://{}", remote.path().display()),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("it is larger than"),
        "one warning: {stderr}"
    );
    let kb: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no maxrss in: {}", String::from_utf8_lossy(&out.stdout)));
    assert!(
        kb < 200 * 1024,
        "tiers used {} MB to refuse a 400 MB record",
        kb / 1024
    );
}
