//! Progress a person can watch (issue 16): `tiers build` in a real pseudo-terminal
//! shows one line per running tier and ends with the summary; piped, with
//! `--json`, `-q`, `TERM=dumb` or `NO_COLOR`, its output has no control
//! characters and the summary keeps its shape.
//!
//! The live screen is read through tmux (`scripts/ensure-tools` installs it); the
//! raw bytes a terminal receives through `script` (util-linux).

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{project, tiers_bin, Project};

/// A project with a symtab tier over `modules` generated modules (each content
/// distinct, so each is parsed) and a `command` tier that runs for about
/// `steps` quarter seconds, printing a line at each.
fn corpus(modules: usize, steps: usize) -> Project {
    let config = format!(
        r#"[tiers.symtab]
kind = "symtab"

[tiers.slow]
kind = "command"
inputs = ["pkg0/__init__.py"]
run = ["sh", "-c", "i=1; while [ $i -le {steps} ]; do echo step $i of {steps}; sleep 0.25; i=$((i+1)); done"]
"#
    );
    let mut b = project().file("tiers.toml", config);
    for m in 0..modules {
        let pkg = m / 100;
        if m % 100 == 0 {
            b = b.file(&format!("pkg{pkg}/__init__.py"), format!("PKG = {pkg}\n"));
        }
        let mut text = format!(
            "import os\nfrom pkg{} import PKG\n\nclass C{m}:\n    def f(self, x: int) -> int:\n        return x + {m}\n",
            (pkg + 1) % (modules / 100).max(1)
        );
        for j in 0..12 {
            text.push_str(&format!(
                "\ndef g{j}(a, b={m}):\n    return os.path.join(str(a), str(b))\n"
            ));
        }
        b = b.file(&format!("pkg{pkg}/m{m}.py"), text);
    }
    b.build()
}

/// A tmux server of its own (its own socket), running one command in a window.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(shell_command: &str) -> Tmux {
        let socket = format!(
            "tiers-test-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        );
        let status = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "120", "-y", "40", shell_command])
            .env_remove("NO_COLOR")
            .env_remove("TMUX")
            .env_remove("TIERS_CACHE_DIR")
            .env("TERM", "xterm-256color")
            .stdin(Stdio::null())
            .status()
            .expect("tmux is needed by this test: scripts/ensure-tools installs it");
        assert!(status.success(), "tmux new-session failed");
        Tmux { socket }
    }

    /// The window's screen as text.
    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// The `built`/`rebuilt` line of `tier` in a summary, if there is one.
fn summary_line<'a>(text: &'a str, status: &str, tier: &str) -> Option<&'a str> {
    text.lines().find(|l| {
        let mut words = l.split_whitespace();
        words.next() == Some(status) && words.next() == Some(tier)
    })
}

#[test]
fn a_terminal_build_shows_each_running_tier_then_the_summary() {
    // Enough files that parsing lasts past the display's first frames.
    let modules = 5000;
    let p = corpus(modules, 8);
    // Every module and package `__init__.py` has a content of its own.
    let total = format!(
        "/{},{:03} files",
        (modules + modules / 100) / 1000,
        (modules + modules / 100) % 1000
    );
    let (screens, last) = watch(&p, "build");
    let seen = |what: &dyn Fn(&str) -> bool| screens.iter().any(|s| s.lines().any(what));

    // The command tier: a spinner with the tool's last output line.
    assert!(
        seen(&|l| l.contains("slow (command)  running sh") && l.contains("sh: step ")),
        "no spinner line for the command tier in {} screens; the last:\n{last}",
        screens.len()
    );
    // The symtab tier: files parsed of the total, then modules resolved.
    assert!(
        seen(&|l| l.contains("symtab (symtab)  parsing files  [") && l.contains(&total)),
        "no parsing bar for the symtab tier in {} screens; the last:\n{last}",
        screens.len()
    );
    assert!(
        seen(&|l| l.contains("symtab (symtab)  resolving modules")
            || l.contains("symtab (symtab)  writing the index")),
        "the symtab line did not move past parsing"
    );
    // Counts that change while the build runs: the bar is live, not drawn once.
    // The parsing count only grows; on a quick machine parsing may be seen on
    // one screen only, so the change may be from one phase to the next.
    let counts: Vec<(String, u64)> = screens
        .iter()
        .filter_map(|s| {
            let l = s
                .lines()
                .find(|l| l.contains("symtab (symtab)  ") && l.contains("] "))?;
            let phase = l
                .split("symtab (symtab)  ")
                .nth(1)?
                .split("  [")
                .next()?
                .to_owned();
            let after = l.split("] ").nth(1)?;
            let n = after.split('/').next()?.replace(',', "").parse().ok()?;
            Some((phase, n))
        })
        .collect();
    let parsed: Vec<u64> = counts
        .iter()
        .filter(|(phase, _)| phase == "parsing files")
        .map(|(_, n)| *n)
        .collect();
    parsed
        .windows(2)
        .for_each(|w| assert!(w[0] <= w[1], "{counts:?}"));
    assert!(
        counts
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            >= 2,
        "the symtab tier's count never changed on screen: {counts:?}"
    );

    // The final screen: the summary, and no line of the display left.
    let slow = summary_line(&last, "built", "slow")
        .unwrap_or_else(|| panic!("no summary line for `slow`:\n{last}"));
    let symtab = summary_line(&last, "built", "symtab")
        .unwrap_or_else(|| panic!("no summary line for `symtab`:\n{last}"));
    assert!(slow.starts_with("built    slow    ") && slow.trim_end().ends_with('s'));
    assert!(symtab.starts_with("built    symtab  "));
    assert!(
        last.contains(&format!(
            "         parsed {} files, reused 0",
            &total[1..total.len() - 6]
        )),
        "no symtab summary:\n{last}"
    );
    assert!(
        !last.contains("parsing files") && !last.contains("running sh"),
        "a progress line was left on the final screen:\n{last}"
    );
}

/// Runs `tiers ARGS` on `p` in tmux and returns every screen seen while it ran,
/// then the final screen.
fn watch(p: &Project, args: &str) -> (Vec<String>, String) {
    let done = p.path("done");
    let _ = std::fs::remove_file(&done);
    let tmux = Tmux::start(&format!(
        "{} -C {} {args}; echo $? > {}; sleep 600",
        quoted(&tiers_bin()),
        quoted(p.root()),
        quoted(&done)
    ));
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut screens = Vec::new();
    while !done.exists() {
        assert!(
            Instant::now() < deadline,
            "tiers {args} did not end:\n{}",
            tmux.screen()
        );
        screens.push(tmux.screen());
        std::thread::sleep(Duration::from_millis(40));
    }
    assert_eq!(
        std::fs::read_to_string(&done).unwrap().trim(),
        "0",
        "tiers {args}"
    );
    // The summary is printed after the display is cleared: wait for it to settle.
    std::thread::sleep(Duration::from_millis(300));
    let last = tmux.screen();
    (screens, last)
}

#[test]
fn verbose_output_goes_above_the_display_without_tearing_it() {
    let p = corpus(100, 6);
    let (screens, last) = watch(&p, "-v build slow");
    // Each line of the command's output whole, on a line of its own, in order.
    let lines: Vec<&str> = last.lines().collect();
    let at: Vec<usize> = (1..=6)
        .map(|i| {
            let want = format!("step {i} of 6");
            lines
                .iter()
                .position(|l| l.trim_end() == want)
                .unwrap_or_else(|| panic!("no line `{want}` on the final screen:\n{last}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}:\n{last}");
    assert!(
        screens
            .iter()
            .any(|s| s.contains("slow (command)") && s.contains("running sh")),
        "no display while the command ran at -v"
    );
    assert!(
        !last.contains("running sh"),
        "the display was left:\n{last}"
    );
    assert!(summary_line(&last, "built", "slow").is_some(), "{last}");
}

/// The bytes a terminal receives from `tiers ARGS` run in a pseudo-terminal
/// (`script`), with `env` set; `\r\n` (the terminal's newline) read as `\n`.
fn in_pty(p: &Project, args: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("script");
    cmd.args(["-qfec"])
        .arg(format!(
            "{} -C {} {args}",
            quoted(&tiers_bin()),
            quoted(p.root())
        ))
        .arg("/dev/null")
        .env_remove("NO_COLOR")
        .env_remove("TIERS_CACHE_DIR")
        .env("TERM", "xterm-256color")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .expect("script (util-linux) runs a pseudo-terminal");
    assert!(
        out.status.success(),
        "tiers {args} failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
}

/// The summary without its log lines, each time (`2.05s`) and the spaces that
/// right-align it replaced by ` [ELAPSED]`, so two runs compare byte for byte.
fn redacted(text: &str) -> String {
    let is_time = |w: &str| {
        w.strip_suffix('s')
            .and_then(|n| n.split_once('.'))
            .is_some_and(|(a, b)| {
                !a.is_empty()
                    && a.bytes().all(|c| c.is_ascii_digit())
                    && b.len() == 2
                    && b.bytes().all(|c| c.is_ascii_digit())
            })
    };
    let mut out = String::new();
    for line in text.lines().filter(|l| !l.contains(" INFO ")) {
        for piece in line.split_inclusive(' ') {
            let word = piece.trim_end();
            if is_time(word) {
                while out.ends_with(' ') {
                    out.pop();
                }
                out.push_str(" [ELAPSED]");
                out.push_str(&piece[word.len()..]);
            } else {
                out.push_str(piece);
            }
        }
        out.push('\n');
    }
    out
}

fn no_control_characters(what: &str, text: &str) {
    assert!(
        !text.contains('\x1b') && !text.contains('\r'),
        "{what} has control characters:\n{text:?}"
    );
}

#[test]
fn piped_json_quiet_dumb_no_color_and_fresh_output_has_no_escape_codes_and_keeps_its_shape() {
    let p = corpus(200, 4);
    p.build(&[]);
    let keys = p.build(&["--rebuild", "all"]);
    let key = |t: &str| keys.tier(t)["key"].as_str().unwrap()[..12].to_owned();

    // Piped: the summary as it always was, nothing on stderr.
    let piped = p.tiers(&["build", "--rebuild", "all"]).expect_code(0);
    no_control_characters("piped stdout", &piped.stdout);
    assert_eq!(piped.stderr, "", "piped stderr");
    let forced = "(a rebuild was forced by --rebuild all)";
    let expected_head = format!(
        "rebuilt  slow    {} [ELAPSED]  {forced}\nrebuilt  symtab  {} [ELAPSED]  {forced}\n         parsed ",
        key("slow"),
        key("symtab")
    );
    let shape = redacted(&piped.stdout);
    assert!(
        shape.starts_with(&expected_head),
        "piped summary:\n{shape}\nexpected it to start with:\n{expected_head}"
    );

    // The control: in a terminal the display is on, with its escape codes.
    let live = in_pty(&p, "build --rebuild all", &[]);
    assert!(
        live.contains('\x1b') && live.contains("slow (command)") && live.contains("running sh"),
        "no display in a terminal:\n{live:?}"
    );

    // `--json` in a terminal: the JSON document and not a byte more.
    let json = in_pty(&p, "build --json --rebuild all", &[]);
    no_control_characters("--json in a terminal", &json);
    let doc: serde_json::Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("--json in a terminal is not only JSON ({e}):\n{json}"));
    assert_eq!(doc["tiers"][1]["name"], "symtab");

    // Fresh tiers print nothing before the summary, even in a terminal.
    let fresh = in_pty(&p, "build", &[]);
    no_control_characters("a fresh build in a terminal", &fresh);
    assert_eq!(
        redacted(&fresh),
        format!(
            "fresh    slow    {} [ELAPSED]\nfresh    symtab  {} [ELAPSED]\n",
            key("slow"),
            key("symtab")
        )
    );

    // `-q`, TERM=dumb and NO_COLOR in a terminal: no escape codes, the summary
    // byte for byte as piped (times aside); the last two keep their log lines.
    for (args, env) in [
        ("-q build --rebuild all", vec![]),
        ("build --rebuild all", vec![("TERM", "dumb")]),
        ("build --rebuild all", vec![("NO_COLOR", "1")]),
    ] {
        let out = in_pty(&p, args, &env);
        let what = format!("`tiers {args}` with {env:?} in a terminal");
        no_control_characters(&what, &out);
        assert_eq!(redacted(&out), shape, "{what}:\n{out}");
        assert!(!out.contains("running sh"), "{what} drew progress:\n{out}");
    }
}
