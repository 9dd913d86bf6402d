//! The terminal display of `tiers build`: one line per running tier on stderr —
//! its name and kind, what it is doing, a bar with a count or bytes and a rate
//! where the total is known, a spinner with the tool's last output line where it
//! is not, and the elapsed time — drawn with indicatif.
//!
//! A tier's line appears only once the tier has run for [`SHOW_AFTER`] and
//! reported a step, so tiers that are fresh (or nearly so) print nothing before
//! the summary; it goes when the tier is done. Log lines and tools' output at
//! `-v` are printed above the lines through [`Terminal::log_writer`] and
//! [`ProgressLine::print`], which suspend the display while they write.
//!
//! The display is off — output exactly as without it — when stderr is not a
//! terminal, with `--json` or `-q`, and with `TERM=dumb` or `NO_COLOR`: see
//! [`Terminal::wanted`].

use std::io::{IsTerminal, Write};
use std::sync::{mpsc, Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use indicatif::{
    HumanCount, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle,
};
use tiers_core::{ProgressDisplay, ProgressLine, Unit};

/// How long a tier runs before its line is shown.
pub const SHOW_AFTER: Duration = Duration::from_millis(150);
/// How often spinners turn and elapsed times advance.
const TICK: Duration = Duration::from_millis(100);

/// The display on stderr. Dropping it (or [`Terminal::finish`]) clears it.
pub struct Terminal {
    shared: Arc<Shared>,
    /// Dropping the sender stops the ticker at once (not at its next tick: a
    /// warm `tiers status` takes less than a tick).
    ticker: Mutex<Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
}

struct Shared {
    multi: MultiProgress,
    lines: Mutex<Vec<Weak<Bar>>>,
}

impl Terminal {
    /// Whether to show the display: stderr is a terminal, neither `-q` nor
    /// `--json`, `TERM` is not `dumb` and `NO_COLOR` is not set (to a non-empty
    /// value, as no-color.org says).
    pub fn wanted(quiet: bool, json: bool) -> bool {
        !quiet && !json && !plain() && std::io::stderr().is_terminal()
    }

    /// Start the display on stderr.
    pub fn new() -> Arc<Terminal> {
        let shared = Arc::new(Shared {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            lines: Mutex::new(Vec::new()),
        });
        let ticking = shared.clone();
        let (stop, stopped) = mpsc::channel::<()>();
        let ticker = std::thread::Builder::new()
            .name("tiers-display".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                    ticking.tick();
                }
            })
            .ok()
            .map(|t| (stop, t));
        Arc::new(Terminal {
            shared,
            ticker: Mutex::new(ticker),
        })
    }

    /// A writer for `tracing` whose lines go above the display, intact.
    pub fn log_writer(&self) -> impl Fn() -> LogWriter + Send + Sync + 'static {
        let multi = self.shared.multi.clone();
        move || LogWriter {
            multi: multi.clone(),
            buf: Vec::new(),
        }
    }

    /// Stop and clear the display. A tier's line goes when the tier is done, so
    /// once the engine has returned nothing is drawn: the summary needs no call.
    pub fn finish(&self) {
        let ticker = self.ticker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((stop, t)) = ticker {
            drop(stop);
            let _ = t.join();
        }
        let _ = self.shared.multi.clear();
    }
}

/// Whether the terminal asks for no control characters: `TERM=dumb`, or
/// `NO_COLOR` set to a non-empty value. Logs are then written without colors.
pub fn plain() -> bool {
    std::env::var_os("TERM").is_some_and(|t| t == "dumb")
        || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Shared {
    /// Show the lines whose time has come, turn the spinners, forget ended lines.
    fn tick(&self) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.retain(|l| l.strong_count() > 0);
        for line in lines.iter().filter_map(Weak::upgrade) {
            if line.show_if_due() {
                line.bar.tick();
            }
        }
    }
}

impl ProgressDisplay for Terminal {
    fn start(&self, tier: &str, kind: &str) -> Box<dyn ProgressLine> {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
            .with_prefix(format!("{tier} ({kind})"));
        let bar = Arc::new(Bar {
            bar,
            multi: self.shared.multi.clone(),
            started: Instant::now(),
            state: Mutex::new(State::default()),
        });
        self.shared
            .lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(&bar));
        Box::new(TierLine(bar))
    }
}

/// One tier's line; its end removes the line.
struct TierLine(Arc<Bar>);

struct Bar {
    bar: ProgressBar,
    multi: MultiProgress,
    started: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The current step; `None` until the tier reports one.
    phase: Option<String>,
    unit: Option<Unit>,
    message: String,
    shown: bool,
}

impl Bar {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Put the line on the display once the tier has reported a step and run
    /// for [`SHOW_AFTER`]; whether it is shown.
    fn show_if_due(&self) -> bool {
        let mut s = self.state();
        if !s.shown && s.phase.is_some() && self.started.elapsed() >= SHOW_AFTER {
            s.shown = true;
            self.bar.set_elapsed(self.started.elapsed());
            self.multi.add(self.bar.clone());
        }
        s.shown
    }

    fn restyle(&self, s: &State) {
        let phase = s
            .phase
            .as_deref()
            .unwrap_or("")
            .replace('{', "{{")
            .replace('}', "}}");
        let head = format!("{{spinner:.cyan}} {{prefix:.bold}}  {phase}");
        let template = match s.unit {
            None => format!("{head}  {{elapsed}}  {{wide_msg:.dim}}"),
            Some(Unit::Bytes) => format!(
                "{head}  [{{bar:20.cyan/blue}}] {{binary_bytes}}/{{binary_total_bytes}}  {{binary_bytes_per_sec}}  {{elapsed}}  {{wide_msg:.dim}}"
            ),
            Some(Unit::Items(what)) => format!(
                "{head}  [{{bar:20.cyan/blue}}] {{human_pos}}/{{human_len}} {what}  {{rate}}  {{elapsed}}  {{wide_msg:.dim}}"
            ),
        };
        let style = ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key("rate", |st: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{}/s", HumanCount(st.per_sec() as u64));
            })
            .progress_chars("=> ");
        self.bar.set_style(style);
    }
}

impl ProgressLine for TierLine {
    fn phase(&self, what: &str, total: Option<(u64, Unit)>) {
        let b = &self.0;
        {
            let mut s = b.state();
            s.phase = Some(what.to_owned());
            s.unit = total.map(|(_, unit)| unit);
            s.message.clear();
            b.restyle(&s);
        }
        match total {
            Some((n, _)) => b.bar.set_length(n),
            None => b.bar.unset_length(),
        }
        b.bar.set_position(0);
        b.bar.reset_eta();
        b.bar.set_message("");
        b.show_if_due();
    }

    fn set_total(&self, total: u64, unit: Unit) {
        let b = &self.0;
        {
            let mut s = b.state();
            if s.unit != Some(unit) {
                s.unit = Some(unit);
                b.restyle(&s);
            }
        }
        b.bar.set_length(total);
    }

    fn advance(&self, n: u64) {
        self.0.bar.inc(n);
    }

    fn message(&self, text: &str) {
        let b = &self.0;
        let mut s = b.state();
        if s.message != text {
            s.message = text.to_owned();
            b.bar.set_message(text.to_owned());
        }
    }

    fn print(&self, text: &str) {
        self.0.multi.suspend(|| {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{text}");
            let _ = err.flush();
        });
    }
}

impl Drop for TierLine {
    fn drop(&mut self) {
        let b = &self.0;
        let shown = b.state().shown;
        b.bar.finish_and_clear();
        if shown {
            b.multi.remove(&b.bar);
        }
    }
}

/// One log event, written above the display when dropped.
pub struct LogWriter {
    multi: MultiProgress,
    buf: Vec<u8>,
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        self.multi.suspend(|| {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&self.buf);
            let _ = err.flush();
        });
    }
}
