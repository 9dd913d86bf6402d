//! What a run did, tier by tier: the shape `--json` prints.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use crate::key::{Key, Reason};

/// The outcome of one tier in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The entry for the current key was there and healthy.
    Fresh,
    /// Built; the tier had no entry before.
    Built,
    /// Built; an entry existed but was stale, or the rebuild was forced.
    Rebuilt,
    /// Reused an entry built for other inputs (discovered inputs, a shared cache).
    Restored,
    /// `tiers status` only: a build would rebuild it.
    Stale,
    /// `tiers status` only: a build would build it for the first time.
    Missing,
    /// Did not run (a tool not installed, an upstream that failed, `rebuild = "never"`).
    Skipped,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Fresh => "fresh",
            Status::Built => "built",
            Status::Rebuilt => "rebuilt",
            Status::Restored => "restored",
            Status::Stale => "stale",
            Status::Missing => "missing",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
        }
    }
}

/// A reason as data, with its sentence.
#[derive(Clone, Debug, Serialize)]
pub struct ReasonReport {
    #[serde(flatten)]
    pub reason: Reason,
    pub message: String,
}

impl From<Reason> for ReasonReport {
    fn from(reason: Reason) -> Self {
        let message = reason.to_string();
        ReasonReport { reason, message }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct TierReport {
    pub name: String,
    pub kind: String,
    pub key: Option<Key>,
    pub path: Option<PathBuf>,
    pub status: Status,
    pub reasons: Vec<ReasonReport>,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the build did, in the kind's words ("parsed 1 file, reused 11,599").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// `tiers status` with a shared cache: whether a stale tier's entry is there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_remotely: Option<bool>,
}

/// `tiers build --json` and `tiers status --json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub project: PathBuf,
    pub cache_dir: PathBuf,
    pub tiers: Vec<TierReport>,
}

impl Report {
    /// Whether any tier failed (exit code 1).
    pub fn failed(&self) -> bool {
        self.tiers.iter().any(|t| t.status == Status::Failed)
    }

    pub fn tier(&self, name: &str) -> Option<&TierReport> {
        self.tiers.iter().find(|t| t.name == name)
    }
}

/// `tiers paths --json`: the entry each tier's last successful build resolved to.
#[derive(Clone, Debug, Serialize)]
pub struct PathsReport {
    pub project: PathBuf,
    pub cache_dir: PathBuf,
    pub tiers: BTreeMap<String, TierPath>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TierPath {
    pub kind: String,
    pub key: Option<Key>,
    pub path: Option<PathBuf>,
    pub exists: bool,
}
