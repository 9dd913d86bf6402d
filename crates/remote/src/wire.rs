//! What a shared cache's candidate lists hold, parsed into types at the boundary:
//! an entry key and digests are keys (64 lowercase hex), a used input is a relative,
//! `/`-separated path without `..`, and a list is read up to
//! [`CANDIDATE_LIMIT`](tiers_core::CANDIDATE_LIMIT) candidates — the rest are skipped
//! unparsed, so a list of 5,000 costs a scan of its bytes, not 5,000 values.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;
use tiers_core::{Candidate, Key, CANDIDATE_LIMIT};

/// A path relative to the project, as the key document spells it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct InputPath(String);

impl TryFrom<String> for InputPath {
    type Error = String;

    fn try_from(s: String) -> Result<InputPath, String> {
        if is_input_path(&s) {
            Ok(InputPath(s))
        } else {
            let shown: String = s.chars().take(80).collect();
            Err(format!(
                "`{shown}` is not an input path (relative, `/`-separated, without `..`)"
            ))
        }
    }
}

impl<'de> Deserialize<'de> for InputPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        InputPath::try_from(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Relative, `/`-separated, no empty, `.` or `..` segment, no NUL or backslash.
pub fn is_input_path(s: &str) -> bool {
    !s.is_empty()
        && !s.contains(['\0', '\\'])
        && s.split('/').all(|seg| !matches!(seg, "" | "." | ".."))
}

#[derive(Deserialize)]
struct WireCandidate {
    entry: Key,
    used: BTreeMap<InputPath, Key>,
    recorded_unix: u64,
}

impl From<WireCandidate> for Candidate {
    fn from(w: WireCandidate) -> Candidate {
        Candidate {
            entry: w.entry,
            used: w
                .used
                .into_iter()
                .map(|(p, d)| (p.0, d.to_string()))
                .collect(),
            recorded_unix: w.recorded_unix,
        }
    }
}

/// The list's format, read first: another format is not parsed further.
#[derive(Deserialize)]
pub struct Head {
    pub format: u32,
}

/// A candidate list of the current format, at most [`CANDIDATE_LIMIT`] candidates.
#[derive(Deserialize)]
pub struct CandidateList {
    #[serde(deserialize_with = "first_candidates")]
    pub candidates: Vec<Candidate>,
}

fn first_candidates<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Candidate>, D::Error> {
    d.deserialize_seq(Capped(PhantomData))
}

struct Capped(PhantomData<Candidate>);

impl<'de> Visitor<'de> for Capped {
    type Value = Vec<Candidate>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of candidates")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while out.len() < CANDIDATE_LIMIT {
            match seq.next_element::<WireCandidate>()? {
                Some(c) => out.push(c.into()),
                None => return Ok(out),
            }
        }
        // Beyond the limit: skipped, never allocated or parsed into values.
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> String {
        Key::of_bytes(n.to_string().as_bytes()).to_string()
    }

    #[test]
    fn input_paths_are_relative_and_stay_inside() {
        for ok in ["a.txt", "src/pkg/util.py", ".hidden/x"] {
            assert!(is_input_path(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a\\b",
            "a/",
        ] {
            assert!(!is_input_path(bad), "{bad}");
        }
    }

    #[test]
    fn a_long_list_is_read_up_to_the_limit() {
        let one = |n| {
            format!(
                r#"{{"entry":"{}","used":{{"a.txt":"{}"}},"recorded_unix":{n}}}"#,
                key(n),
                key(n + 1)
            )
        };
        let items: Vec<String> = (0..5000).map(one).collect();
        let json = format!(r#"{{"format":1,"candidates":[{}]}}"#, items.join(","));
        let list: CandidateList = serde_json::from_str(&json).unwrap();
        assert_eq!(list.candidates.len(), CANDIDATE_LIMIT);
        assert_eq!(list.candidates[31].recorded_unix, 31);
    }

    #[test]
    fn a_traversal_key_or_path_refuses_the_list() {
        for (entry, path) in [
            ("../../../../tmp/x".to_owned(), "a.txt"),
            ("/tmp/x".to_owned(), "a.txt"),
            (key(1), "../../a.txt"),
        ] {
            let json = format!(
                r#"{{"format":1,"candidates":[{{"entry":"{entry}","used":{{"{path}":"{}"}},"recorded_unix":1}}]}}"#,
                key(2)
            );
            let e = serde_json::from_str::<CandidateList>(&json)
                .err()
                .expect("refused")
                .to_string();
            assert!(e.contains("is not"), "{e}");
        }
    }
}
