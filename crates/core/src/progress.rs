//! Progress a person can watch: what each running tier is doing, and how far along.
//!
//! Kinds report through [`Context::progress`](crate::Context::progress) — a step
//! ([`Progress::phase`]), its total when known ([`Progress::set_total`]), how far it
//! got ([`Progress::advance`]) and a detail such as a tool's last output line
//! ([`Progress::message`]) — and never print. Whoever runs the engine decides what
//! that becomes: the `tiers` driver draws one line per tier on a terminal; an
//! embedder may bring its own [`ProgressDisplay`]; with none, every call is a no-op that
//! costs a branch, so kinds call it from hot loops (a file parsed, a file hashed)
//! without asking first.
//!
//! A tier's line lives as long as its [`Progress`] handle: the engine makes one per
//! tier run and puts it in the [`Context`](crate::Context); when the last clone is
//! dropped the tier is done and the display forgets it. Components the engine calls
//! without a context — a [`SharedCache`](crate::SharedCache) moving an entry's
//! bytes — find the handle of the tier they work for through
//! [`Reporter::of`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// What a total counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Things, named in the plural (`"files"`, `"modules"`).
    Items(&'static str),
    /// Bytes (shown as KiB, MiB…).
    Bytes,
}

/// The display side, implemented by the driver's terminal display or an embedder.
pub trait ProgressDisplay: Send + Sync {
    /// Tier `tier` of kind `kind` starts running: the line it reports on. The line
    /// is dropped when the tier is done. A display may wait for the first report
    /// before it shows anything, so that tiers with nothing to do stay silent.
    fn start(&self, tier: &str, kind: &str) -> Box<dyn ProgressLine>;
}

/// One running tier, as a [`ProgressDisplay`] shows it.
pub trait ProgressLine: Send + Sync {
    /// A new step (`"parsing files"`) with its total when known: the position
    /// starts again from 0.
    fn phase(&self, what: &str, total: Option<(u64, Unit)>);
    /// The current step's total.
    fn set_total(&self, total: u64, unit: Unit);
    /// `n` more done in the current step.
    fn advance(&self, n: u64);
    /// A detail shown beside the step, replacing the last one (a tool's latest
    /// output line); empty clears it.
    fn message(&self, text: &str);
    /// A whole line printed above the display, which stays intact (a tool's output
    /// at `-v`).
    fn print(&self, text: &str);
}

/// A tier's progress handle: cheap to clone, a no-op when no display listens.
#[derive(Clone, Default)]
pub struct Progress {
    line: Option<Arc<dyn ProgressLine>>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("on", &self.is_on())
            .finish()
    }
}

impl Progress {
    /// A handle that reports nowhere.
    pub fn none() -> Progress {
        Progress::default()
    }

    /// Whether a display listens: for work done only to report (summing the sizes
    /// of the files about to be hashed).
    pub fn is_on(&self) -> bool {
        self.line.is_some()
    }

    /// Start a step: what the tier is doing now (`"hashing inputs"`).
    pub fn phase(&self, what: &str) {
        if let Some(l) = &self.line {
            l.phase(what, None);
        }
    }

    /// Start a step whose total is known: a bar.
    pub fn phase_with_total(&self, what: &str, total: u64, unit: Unit) {
        if let Some(l) = &self.line {
            l.phase(what, Some((total, unit)));
        }
    }

    /// The current step's total.
    pub fn set_total(&self, total: u64, unit: Unit) {
        if let Some(l) = &self.line {
            l.set_total(total, unit);
        }
    }

    /// `n` more done in the current step.
    pub fn advance(&self, n: u64) {
        if let Some(l) = &self.line {
            l.advance(n);
        }
    }

    /// A detail beside the step (a tool's latest output line); empty clears it.
    pub fn message(&self, text: &str) {
        if let Some(l) = &self.line {
            l.message(text);
        }
    }

    /// Print a whole line on stderr, above the display when there is one (so that
    /// it does not tear it).
    pub fn print(&self, text: &str) {
        match &self.line {
            Some(l) => l.print(text),
            None => eprintln!("{text}"),
        }
    }
}

/// The engine's side: makes each tier's [`Progress`] on its [`ProgressDisplay`], and finds
/// the handle of a running tier by name.
#[derive(Clone, Default)]
pub struct Reporter {
    display: Option<Arc<dyn ProgressDisplay>>,
    running: Arc<Mutex<HashMap<String, Weak<dyn ProgressLine>>>>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("on", &self.display.is_some())
            .finish()
    }
}

impl Reporter {
    /// Report on `display`.
    pub fn new(display: Arc<dyn ProgressDisplay>) -> Reporter {
        Reporter {
            display: Some(display),
            running: Arc::default(),
        }
    }

    /// Whether a display listens.
    pub fn is_on(&self) -> bool {
        self.display.is_some()
    }

    /// A tier starts running: its handle, until the last clone of it is dropped.
    pub fn start(&self, tier: &str, kind: &str) -> Progress {
        let Some(display) = &self.display else {
            return Progress::none();
        };
        let line: Arc<dyn ProgressLine> = Arc::from(display.start(tier, kind));
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|_, l| l.strong_count() > 0);
        running.insert(tier.to_owned(), Arc::downgrade(&line));
        Progress { line: Some(line) }
    }

    /// The handle of `tier` while it runs; a no-op handle otherwise.
    pub fn of(&self, tier: &str) -> Progress {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        Progress {
            line: running.get(tier).and_then(Weak::upgrade),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every call, to check what reaches a display and when a line ends.
    #[derive(Default)]
    struct Log(Arc<Mutex<Vec<String>>>);

    struct LogLine(String, Arc<Mutex<Vec<String>>>);

    impl ProgressDisplay for Log {
        fn start(&self, tier: &str, kind: &str) -> Box<dyn ProgressLine> {
            self.0.lock().unwrap().push(format!("start {tier} {kind}"));
            Box::new(LogLine(tier.to_owned(), self.0.clone()))
        }
    }

    impl LogLine {
        fn log(&self, what: String) {
            self.1.lock().unwrap().push(format!("{} {what}", self.0));
        }
    }

    impl ProgressLine for LogLine {
        fn phase(&self, what: &str, total: Option<(u64, Unit)>) {
            self.log(format!("phase {what} {total:?}"));
        }
        fn set_total(&self, total: u64, unit: Unit) {
            self.log(format!("total {total} {unit:?}"));
        }
        fn advance(&self, n: u64) {
            self.log(format!("advance {n}"));
        }
        fn message(&self, text: &str) {
            self.log(format!("message {text}"));
        }
        fn print(&self, text: &str) {
            self.log(format!("print {text}"));
        }
    }

    impl Drop for LogLine {
        fn drop(&mut self) {
            self.log("done".into());
        }
    }

    #[test]
    fn a_tier_line_reports_until_its_last_handle_is_dropped() {
        let log = Log::default();
        let calls = log.0.clone();
        let reporter = Reporter::new(Arc::new(log));
        let p = reporter.start("symtab", "symtab");
        let clone = p.clone();
        p.phase_with_total("parsing files", 3, Unit::Items("files"));
        clone.advance(2);
        reporter.of("symtab").message("a.py");
        reporter.of("venv").message("not running: goes nowhere");
        drop(p);
        assert!(!calls.lock().unwrap().iter().any(|c| c.ends_with("done")));
        drop(clone);
        reporter.of("symtab").message("after the end: goes nowhere");
        assert_eq!(
            *calls.lock().unwrap(),
            [
                "start symtab symtab",
                "symtab phase parsing files Some((3, Items(\"files\")))",
                "symtab advance 2",
                "symtab message a.py",
                "symtab done",
            ]
        );
    }

    #[test]
    fn without_a_display_every_call_is_a_no_op() {
        let reporter = Reporter::default();
        let p = reporter.start("symtab", "symtab");
        assert!(!p.is_on());
        p.phase_with_total("parsing files", 3, Unit::Items("files"));
        p.advance(1);
        assert!(!reporter.of("symtab").is_on());
    }
}
