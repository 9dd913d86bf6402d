//! Discovered inputs: entries reusable when only inputs their build did not use changed.
//!
//! An entry's key covers every declared input. When a build reports the inputs it
//! used, the engine also records a **candidate** under the tier's **structure key**
//! (the key document with input paths but not their contents): the used inputs with
//! their digests, and the entry they lead to. A later lookup whose exact key misses
//! tries the candidates of its structure key, most recently used first, and accepts
//! the first whose used inputs all have the same digests now — on this machine, in a
//! fresh clone, or anywhere the cache dir is shared, since nothing here depends on a
//! daemon's memory.
//!
//! ```text
//! <tier root>/.candidates/<structure key>.json   newest first, at most CANDIDATE_LIMIT
//! <tier root>/.candidates/<structure key>.lock   held for each read-modify-write
//! <tier root>/.aliases/<key>                     an exact key restored through a candidate
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{now_unix, open_lock_file, write_atomic};
use crate::key::Key;

/// Candidates kept per structure key; the least recently used go first.
pub const CANDIDATE_LIMIT: usize = 32;
const FORMAT: u32 = 1;

/// One reusable entry: the inputs its build used, with their digests then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub entry: Key,
    pub used: BTreeMap<String, String>,
    pub recorded_unix: u64,
}

impl Candidate {
    /// The used inputs whose digest in `current` differs (or that are gone).
    pub fn mismatches<'a>(&'a self, current: &BTreeMap<String, String>) -> Vec<&'a str> {
        self.used
            .iter()
            .filter(|(p, d)| current.get(*p) != Some(*d))
            .map(|(p, _)| p.as_str())
            .collect()
    }
}

#[derive(Serialize, Deserialize)]
struct CandidateFile {
    format: u32,
    candidates: Vec<Candidate>,
}

pub(crate) struct Candidates {
    dir: PathBuf,
}

impl Candidates {
    pub(crate) fn new(tier_root: &std::path::Path) -> Self {
        Candidates {
            dir: tier_root.join(".candidates"),
        }
    }

    fn file(&self, skey: &Key) -> PathBuf {
        self.dir.join(format!("{skey}.json"))
    }

    /// Whether any build of this tier recorded candidates: when none did,
    /// a lookup need not compute a structure key (a hash of the whole key
    /// document) to find there are none.
    pub(crate) fn any(&self) -> bool {
        std::fs::read_dir(&self.dir).is_ok_and(|mut d| d.next().is_some())
    }

    /// The candidates of `skey`, most recently used first. An unreadable list is
    /// treated as empty: a candidate is an optimization, never trusted blindly.
    pub(crate) fn load(&self, skey: &Key) -> Vec<Candidate> {
        let path = self.file(skey);
        let Ok(bytes) = fs::read(&path) else {
            return Vec::new();
        };
        match serde_json::from_slice::<CandidateFile>(&bytes) {
            Ok(f) if f.format == FORMAT => f.candidates,
            Ok(_) | Err(_) => {
                tracing::debug!(
                    "ignoring the unreadable candidate list `{}`",
                    path.display()
                );
                Vec::new()
            }
        }
    }

    /// Put `entry` first in `skey`'s list (recording `used` when given), evicting
    /// beyond [`CANDIDATE_LIMIT`]. Serialized across processes by a lock file.
    pub(crate) fn touch(
        &self,
        skey: &Key,
        entry: &Key,
        used: Option<BTreeMap<String, String>>,
    ) -> Result<()> {
        fs::create_dir_all(&self.dir).at(&self.dir)?;
        let lock_path = self.dir.join(format!("{skey}.lock"));
        let lock = open_lock_file(&lock_path)?;
        lock.lock().at(&lock_path)?;
        let mut list = self.load(skey);
        let existing = list
            .iter()
            .position(|c| &c.entry == entry)
            .map(|i| list.remove(i));
        let candidate = match (used, existing) {
            (Some(used), _) => Candidate {
                entry: entry.clone(),
                used,
                recorded_unix: now_unix(),
            },
            (None, Some(c)) => c,
            (None, None) => return Ok(()),
        };
        list.insert(0, candidate);
        list.truncate(CANDIDATE_LIMIT);
        let bytes = serde_json::to_vec(&CandidateFile {
            format: FORMAT,
            candidates: list,
        })
        .map_err(|e| Error::build(format!("cannot serialize candidates: {e}")))?;
        write_atomic(&self.file(skey), &bytes)
    }
}
