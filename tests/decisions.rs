//! Issue 14, finding 5: `tiers status` says what `tiers build` then does.
//!
//! Every combination of the tier's state (fresh, stale, missing), its `rebuild`
//! policy (auto, always, never), the request (none, `--rebuild t`, `--eager`) and
//! where a reusable entry is (nowhere, a local candidate, the shared cache's exact
//! entry, a shared candidate) is set up from scratch with real builds; `status`
//! with the request is read, then `build` with the same request runs, and the
//! build's status must be the one `status` predicted.

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use support::procs::DEPFILE_SCRIPT;
use support::{project, runs, Project};

#[derive(Clone, Copy, Debug)]
enum State {
    Fresh,
    Stale,
    Missing,
}

#[derive(Clone, Copy, Debug)]
enum Source {
    Nowhere,
    LocalCandidate,
    RemoteExact,
    RemoteCandidate,
}

fn checkout(policy: &str, a: &str, b: &str) -> Project {
    project()
        .file(
            "tiers.toml",
            format!(
                "[tiers.t]\nkind = \"command\"\ninputs = [\"*.txt\"]\nrun = [\"python3\", \"tool.py\"]\nrebuild = \"{policy}\"\n"
            ),
        )
        .file("tool.py", DEPFILE_SCRIPT)
        .file("a.txt", a)
        .file("b.txt", b)
        .build()
}

/// `tiers ARGS…` on `p` with the shared cache at `remote`; the JSON report and
/// the exit code.
fn run(p: &Project, remote: &Path, cache: &Path, args: &[&str]) -> (Value, i32) {
    let out = p
        .cmd(args)
        .arg("--cache-dir")
        .arg(cache)
        .env("TIERS_REMOTE_URL", format!("file://{}", remote.display()))
        .output()
        .expect("run tiers");
    let code = out.status.code().unwrap_or(-1);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}), exit {code}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (json, code)
}

/// A setup build that must succeed, forced so that `never` tiers build too.
fn setup_build(p: &Project, remote: &Path, cache: &Path, with_remote: bool) {
    let mut args = vec!["build", "--json", "--rebuild", "t"];
    if !with_remote {
        args.push("--no-remote");
    }
    let (json, code) = run(p, remote, cache, &args);
    assert_eq!(code, 0, "setup build failed: {json}");
}

/// What `status` predicts `build` will report.
fn predicted(status: &Value) -> String {
    let word = status["status"].as_str().unwrap();
    match (word, status["available_remotely"].as_bool()) {
        ("stale" | "missing", Some(true)) => "restored".into(),
        ("stale", _) => "rebuilt".into(),
        ("missing", _) => "built".into(),
        (other, _) => other.into(),
    }
}

#[test]
fn status_predicts_what_build_does_in_every_combination() {
    let mut seen = BTreeSet::new();
    let mut cases = 0;
    for state in [State::Fresh, State::Stale, State::Missing] {
        for source in [
            Source::Nowhere,
            Source::LocalCandidate,
            Source::RemoteExact,
            Source::RemoteCandidate,
        ] {
            for policy in ["auto", "always", "never"] {
                for request in [&[][..], &["--rebuild", "t"], &["--eager"]] {
                    let case = format!("{state:?} × {source:?} × {policy} × {request:?}");
                    let remote_dir = tempfile::tempdir().unwrap();
                    let remote = remote_dir.path().join("remote");
                    // The checkout under test ends at a = A, b = B.
                    let me = checkout(policy, "A", "B");
                    let cache = me.cache_dir();
                    match state {
                        State::Fresh => setup_build(&me, &remote, &cache, false),
                        State::Stale => {
                            me.write("a.txt", "A0");
                            setup_build(&me, &remote, &cache, false);
                            me.write("a.txt", "A");
                        }
                        State::Missing => {}
                    }
                    match source {
                        Source::Nowhere => {}
                        // Another checkout sharing the cache dir, differing in b only.
                        Source::LocalCandidate => {
                            let sibling = checkout(policy, "A", "B2");
                            setup_build(&sibling, &remote, &cache, false);
                        }
                        Source::RemoteExact | Source::RemoteCandidate => {
                            let b = if matches!(source, Source::RemoteExact) {
                                "B"
                            } else {
                                "B2"
                            };
                            let publisher = checkout(policy, "A", b);
                            setup_build(&publisher, &remote, &publisher.cache_dir(), true);
                        }
                    }
                    let before = runs(&me, "t");
                    let mut args = vec!["status", "--json"];
                    args.extend_from_slice(request);
                    let (status, _) = run(&me, &remote, &cache, &args);
                    let status = status["tiers"][0].clone();
                    let want = predicted(&status);
                    let mut args = vec!["build", "--json"];
                    args.extend_from_slice(request);
                    let (build, code) = run(&me, &remote, &cache, &args);
                    let got = build["tiers"][0]["status"].as_str().unwrap().to_owned();
                    assert_eq!(got, want, "{case}\nstatus: {status}\nbuild: {build}");
                    assert_eq!(code, i32::from(got == "failed"), "{case}: exit code");
                    let ran = runs(&me, "t") - before;
                    let should_run = matches!(got.as_str(), "built" | "rebuilt");
                    assert_eq!(
                        ran,
                        usize::from(should_run),
                        "{case}: the tool ran {ran} times"
                    );
                    if got != "failed" {
                        assert_eq!(
                            status["key"], build["tiers"][0]["key"],
                            "{case}: status and build key the tier alike"
                        );
                    }
                    if matches!(state, State::Missing)
                        && matches!(source, Source::RemoteExact | Source::RemoteCandidate)
                        && policy == "never"
                        && request.is_empty()
                    {
                        // Restoring is not building: a `never` tier with no entry
                        // here takes the shared cache's.
                        assert_eq!(got, "restored", "{case}");
                    }
                    seen.insert(got);
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 108);
    let all: BTreeSet<String> = ["built", "failed", "fresh", "rebuilt", "restored", "skipped"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(seen, all, "every outcome is exercised");
}
