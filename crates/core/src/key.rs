//! Keys, key documents and the reasons a key changed.
//!
//! | part of the key document | why it is there |
//! | --- | --- |
//! | `format` | the layout of this document; bumped when it changes, so old entries miss |
//! | `kind`, `kind_version` | a kind that changes how it builds bumps its version |
//! | `options` | every configured option that changes the artifact |
//! | `toolchain` | identity of the tools the build runs (interpreter, uv, CodeQL CLI…) |
//! | `inputs` | `(relative path, SHA-256)` of every declared input |
//! | `upstream` | the key of every tier named in `after` |
//!
//! The key is the SHA-256 of the document's canonical JSON: maps are `BTreeMap`s
//! (serde_json without `preserve_order` sorts objects too), so one document has one
//! serialization on every machine.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::fsutil::hex;
use crate::inputs::InputSet;

/// Version of the key document layout.
pub const KEY_FORMAT: u32 = 1;

/// Input reasons beyond this many are folded into one [`Reason::MoreInputs`].
const MAX_INPUT_REASONS: usize = 20;

/// A SHA-256 in lowercase hex: 64 digits, checked wherever one is made, so a key
/// read from a marker, a candidate list or a shared cache can name no path outside
/// its directory (`../../x`, `/tmp/x`) and is always long enough to shorten.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Key(String);

impl TryFrom<String> for Key {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Key, String> {
        if is_key(&s) {
            Ok(Key(s))
        } else {
            let shown: String = s.chars().take(80).collect();
            Err(format!(
                "`{shown}` is not a key (64 lowercase hexadecimal digits)"
            ))
        }
    }
}

impl From<Key> for String {
    fn from(k: Key) -> String {
        k.0
    }
}

fn is_key(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Key {
    pub fn of_bytes(bytes: &[u8]) -> Key {
        Key(hex(&Sha256::digest(bytes)))
    }

    /// A key read back from disk; `None` unless it is 64 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Key> {
        let s = s.trim();
        is_key(s).then(|| Key(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 digits, for humans.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything that can change an artifact. See the module docs for the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyDoc {
    pub format: u32,
    pub kind: String,
    pub kind_version: u32,
    #[serde(default)]
    pub options: BTreeMap<String, Value>,
    #[serde(default)]
    pub toolchain: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "in_order")]
    pub inputs: BTreeMap<String, String>,
    #[serde(default)]
    pub upstream: BTreeMap<String, Key>,
}

/// A map read as a list, then built in one go: a marker's 10,000 inputs come in
/// order, and inserting them one at a time compared paths at every level.
fn in_order<'de, D>(d: D) -> std::result::Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Pairs;
    impl<'de> serde::de::Visitor<'de> for Pairs {
        type Value = Vec<(String, String)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map of strings")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(pair) = map.next_entry()? {
                pairs.push(pair);
            }
            Ok(pairs)
        }
    }
    // Equal keys: the last one wins, as inserting them one at a time does.
    Ok(d.deserialize_map(Pairs)?.into_iter().collect())
}

impl KeyDoc {
    pub fn new(kind: impl Into<String>, kind_version: u32) -> Self {
        KeyDoc {
            format: KEY_FORMAT,
            kind: kind.into(),
            kind_version,
            options: BTreeMap::new(),
            toolchain: BTreeMap::new(),
            inputs: BTreeMap::new(),
            upstream: BTreeMap::new(),
        }
    }

    /// Record an option that changes the artifact.
    pub fn option(mut self, name: impl Into<String>, value: impl Serialize) -> Self {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.options.insert(name.into(), value);
        self
    }

    /// Record the identity of a tool the build runs.
    pub fn toolchain(mut self, what: impl Into<String>, identity: impl Into<String>) -> Self {
        self.toolchain.insert(what.into(), identity.into());
        self
    }

    /// Record a set of hashed inputs.
    pub fn inputs(mut self, inputs: &InputSet) -> Self {
        let set = inputs.iter().map(|(p, d)| (p.to_owned(), d.to_owned()));
        if self.inputs.is_empty() {
            // Collected from sorted pairs, the map is built in bulk.
            self.inputs = set.collect();
        } else {
            self.inputs.extend(set);
        }
        self
    }

    /// The canonical serialization the key is computed over.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a key document always serializes")
    }

    pub fn key(&self) -> Key {
        Key::of_bytes(&self.canonical())
    }

    /// The key of this document with input paths but without their contents: two
    /// builds whose declared input *set* and everything else agree share it.
    pub fn structure_key(&self) -> Key {
        let mut shape = self.clone();
        for digest in shape.inputs.values_mut() {
            digest.clear();
        }
        shape.key()
    }

    /// Why an entry built from `old` does not fit this document.
    pub fn diff(&self, old: &KeyDoc) -> Vec<Reason> {
        let mut reasons = Vec::new();
        if self.format != old.format
            || self.kind != old.kind
            || self.kind_version != old.kind_version
        {
            reasons.push(Reason::KindChanged {
                old: format!("{} v{}", old.kind, old.kind_version),
                new: format!("{} v{}", self.kind, self.kind_version),
            });
        }
        for (what, old_v, new_v) in changed(&old.toolchain, &self.toolchain) {
            reasons.push(Reason::ToolchainChanged {
                what: what.clone(),
                old: old_v.cloned(),
                new: new_v.cloned(),
            });
        }
        for (name, old_v, new_v) in changed(&old.options, &self.options) {
            reasons.push(Reason::OptionChanged {
                name: name.clone(),
                old: old_v.cloned(),
                new: new_v.cloned(),
            });
        }
        for (tier, _, _) in changed(&old.upstream, &self.upstream) {
            reasons.push(Reason::UpstreamChanged { tier: tier.clone() });
        }
        let mut input_reasons = changed(&old.inputs, &self.inputs)
            .map(|(path, old_v, new_v)| match (old_v, new_v) {
                (None, _) => Reason::InputAdded { path: path.clone() },
                (_, None) => Reason::InputRemoved { path: path.clone() },
                _ => Reason::InputChanged { path: path.clone() },
            })
            .collect::<Vec<_>>();
        if input_reasons.len() > MAX_INPUT_REASONS {
            let more = input_reasons.len() - MAX_INPUT_REASONS;
            input_reasons.truncate(MAX_INPUT_REASONS);
            input_reasons.push(Reason::MoreInputs { count: more });
        }
        reasons.extend(input_reasons);
        reasons
    }
}

/// The entries of two sorted maps that differ: `(key, old, new)`, in key order.
/// One walk of both maps side by side (an edit compares 11,000 inputs).
fn changed<'a, K: Ord, V: PartialEq>(
    old: &'a BTreeMap<K, V>,
    new: &'a BTreeMap<K, V>,
) -> impl Iterator<Item = (&'a K, Option<&'a V>, Option<&'a V>)> {
    use std::cmp::Ordering;
    let (mut o, mut n) = (old.iter().peekable(), new.iter().peekable());
    std::iter::from_fn(move || loop {
        let next = match (o.peek(), n.peek()) {
            (None, None) => return None,
            (Some(_), None) => o.next().map(|(k, v)| (k, Some(v), None)),
            (None, Some(_)) => n.next().map(|(k, v)| (k, None, Some(v))),
            (Some((ko, _)), Some((kn, _))) => match ko.cmp(kn) {
                Ordering::Less => o.next().map(|(k, v)| (k, Some(v), None)),
                Ordering::Greater => n.next().map(|(k, v)| (k, None, Some(v))),
                Ordering::Equal => {
                    let ((k, vo), (_, vn)) = (o.next()?, n.next()?);
                    (vo != vn).then_some((k, Some(vo), Some(vn)))
                }
            },
        };
        if next.is_some() {
            return next;
        }
    })
}

/// Why a tier is not fresh. Data first; [`fmt::Display`] renders one sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Reason {
    InputChanged {
        path: String,
    },
    InputAdded {
        path: String,
    },
    InputRemoved {
        path: String,
    },
    /// More input reasons than are worth listing.
    MoreInputs {
        count: usize,
    },
    ToolchainChanged {
        what: String,
        old: Option<String>,
        new: Option<String>,
    },
    OptionChanged {
        name: String,
        old: Option<Value>,
        new: Option<Value>,
    },
    KindChanged {
        old: String,
        new: String,
    },
    UpstreamChanged {
        tier: String,
    },
    Forced {
        by: String,
    },
    Corrupt {
        why: String,
    },
    /// Reused through discovered inputs: `path` changed, but the build did not use it.
    UnusedInputChanged {
        path: String,
    },
    /// Reused an entry downloaded from the shared cache.
    SharedCache {
        from: String,
    },
    /// Reported with `skipped`: why the tier did not run.
    Skipped {
        why: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn show(v: &Option<impl fmt::Display>) -> String {
            v.as_ref()
                .map_or_else(|| "nothing".to_owned(), |v| v.to_string())
        }
        match self {
            Reason::InputChanged { path } => write!(f, "the input `{path}` changed"),
            Reason::InputAdded { path } => write!(f, "the input `{path}` was added"),
            Reason::InputRemoved { path } => write!(f, "the input `{path}` was removed"),
            Reason::MoreInputs { count } => write!(f, "{count} more inputs changed"),
            Reason::ToolchainChanged { what, old, new } => {
                write!(f, "the {what} changed from {} to {}", show(old), show(new))
            }
            Reason::OptionChanged { name, old, new } => {
                write!(
                    f,
                    "the option `{name}` changed from {} to {}",
                    show(old),
                    show(new)
                )
            }
            Reason::KindChanged { old, new } => {
                write!(f, "the kind changed from {old} to {new}")
            }
            Reason::UpstreamChanged { tier } => write!(f, "the upstream tier `{tier}` changed"),
            Reason::Forced { by } => write!(f, "a rebuild was forced by {by}"),
            Reason::Corrupt { why } => write!(f, "the entry is corrupt: {why}"),
            Reason::UnusedInputChanged { path } => {
                write!(f, "`{path}` changed but the last build did not use it")
            }
            Reason::SharedCache { from } => write!(f, "restored from the shared cache {from}"),
            Reason::Skipped { why } => f.write_str(why),
        }
    }
}

/// Whether a tier's entry can be used as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    Missing,
    Stale(Vec<Reason>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_read_in_one_go_with_the_last_of_equal_paths() {
        let doc: KeyDoc = serde_json::from_str(
            r#"{"format":1,"kind":"k","kind_version":1,
                "inputs":{"b.py":"2","a.py":"1","b.py":"3"}}"#,
        )
        .unwrap();
        let inputs: Vec<(&str, &str)> = doc
            .inputs
            .iter()
            .map(|(p, d)| (p.as_str(), d.as_str()))
            .collect();
        assert_eq!(inputs, [("a.py", "1"), ("b.py", "3")]);
        assert!(serde_json::from_str::<KeyDoc>(
            r#"{"format":1,"kind":"k","kind_version":1,"inputs":["a.py"]}"#
        )
        .is_err());
    }

    fn doc(inputs: &[(&str, &str)]) -> KeyDoc {
        let mut d = KeyDoc::new("command", 1).option("run", ["make"]);
        for (p, c) in inputs {
            d.inputs.insert((*p).into(), (*c).into());
        }
        d
    }

    /// Issue 14, finding 3: a key from a shared cache or a marker is parsed at
    /// deserialization; a path or a short string never becomes a `Key`.
    #[test]
    fn a_key_that_is_not_64_hex_digits_does_not_deserialize() {
        let good = "a".repeat(64);
        let key: Key = serde_json::from_str(&format!("\"{good}\"")).unwrap();
        assert_eq!(key.short(), "aaaaaaaaaaaa");
        for bad in [
            "../../../../tmp/x".to_owned(),
            "/tmp/x".to_owned(),
            "abc".to_owned(),
            "A".repeat(64),
            format!("{}é", "a".repeat(62)),
            format!("{}/", "a".repeat(63)),
            "a".repeat(65),
        ] {
            let err = serde_json::from_value::<Key>(serde_json::Value::String(bad.clone()))
                .expect_err(&bad);
            assert!(err.to_string().contains("is not a key"), "{err}");
        }
    }

    #[test]
    fn key_is_stable_across_insertion_order() {
        let a = doc(&[("a", "1"), ("b", "2")]);
        let b = doc(&[("b", "2"), ("a", "1")]);
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().as_str().len(), 64);
    }

    #[test]
    fn diff_names_each_input() {
        let old = doc(&[("a", "1"), ("b", "2"), ("gone", "3")]);
        let new = doc(&[("a", "1"), ("b", "9"), ("new", "4")]);
        let reasons: Vec<String> = new.diff(&old).iter().map(ToString::to_string).collect();
        assert_eq!(
            reasons,
            [
                "the input `b` changed",
                "the input `gone` was removed",
                "the input `new` was added"
            ]
        );
    }

    #[test]
    fn changed_walks_both_maps_in_key_order() {
        let map = |pairs: &[(&str, u32)]| -> BTreeMap<String, u32> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
        };
        let old = map(&[("a", 1), ("c", 3), ("d", 4), ("f", 6), ("g", 7)]);
        let new = map(&[("b", 2), ("c", 3), ("d", 5), ("g", 7), ("h", 8)]);
        let got: Vec<(&str, Option<u32>, Option<u32>)> = changed(&old, &new)
            .map(|(k, o, n)| (k.as_str(), o.copied(), n.copied()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", Some(1), None),
                ("b", None, Some(2)),
                ("d", Some(4), Some(5)),
                ("f", Some(6), None),
                ("h", None, Some(8)),
            ]
        );
        assert_eq!(changed(&old, &old).count(), 0);
        assert_eq!(changed(&map(&[]), &new).count(), new.len());
        assert_eq!(changed(&old, &map(&[])).count(), old.len());
    }

    #[test]
    fn diff_renders_option_and_toolchain_sentences() {
        let old = doc(&[]).toolchain("python", "3.11.7");
        let new = KeyDoc::new("command", 1)
            .option("run", ["make", "all"])
            .toolchain("python", "3.12.1");
        let reasons: Vec<String> = new.diff(&old).iter().map(ToString::to_string).collect();
        assert_eq!(
            reasons,
            [
                "the python changed from 3.11.7 to 3.12.1",
                "the option `run` changed from [\"make\"] to [\"make\",\"all\"]"
            ]
        );
    }

    #[test]
    fn structure_key_ignores_contents_but_not_paths() {
        let a = doc(&[("a", "1")]);
        assert_eq!(a.structure_key(), doc(&[("a", "2")]).structure_key());
        assert_ne!(a.structure_key(), doc(&[("b", "1")]).structure_key());
        assert_ne!(a.key(), doc(&[("a", "2")]).key());
    }

    #[test]
    fn many_input_changes_fold() {
        let old = doc(&[]);
        let many: Vec<(String, String)> =
            (0..25).map(|i| (format!("f{i:02}"), "x".into())).collect();
        let mut new = doc(&[]);
        new.inputs.extend(many);
        let reasons = new.diff(&old);
        assert_eq!(reasons.len(), MAX_INPUT_REASONS + 1);
        assert_eq!(reasons.last().unwrap().to_string(), "5 more inputs changed");
    }

    #[test]
    fn reasons_serialize_as_tagged_data() {
        let r = Reason::InputChanged {
            path: "a.txt".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"reason":"input-changed","path":"a.txt"}"#
        );
    }
}
