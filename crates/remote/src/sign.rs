//! Signed records and candidate lists: an HMAC-SHA256, keyed by a secret only trusted
//! writers hold, over the exact bytes stored.
//!
//! A signed object is the unsigned JSON with `"hmac":"<64 hex>",` put right after its
//! opening brace, so it stays JSON that a reader without the key (or an older tiers)
//! parses as before, ignoring the field. The MAC covers a domain tag, the object's
//! name (`records/<tier>/<key>.json`) and the unsigned bytes: a signed record copied
//! under another key's or tier's name does not verify. A reader with the key takes
//! the first 75 bytes apart exactly; anything else — no prefix, another MAC, the field
//! moved — is unsigned, and a miss. The comparison is constant-time
//! ([`Mac::verify_slice`]).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::RemoteError;

/// Bytes a signing secret must have at least: the HMAC-SHA256 output size, below
/// which the key, not the MAC, is the weak part.
pub const MIN_SECRET_BYTES: usize = 32;

const PREFIX: &[u8] = b"{\"hmac\":\"";
const DOMAIN: &[u8] = b"tiers-remote signed object v1\0";
/// `{"hmac":"` + 64 hex digits + `",`
const SIGNED_HEAD: usize = PREFIX.len() + 64 + 2;

/// The secret that signs and verifies. Never printed: its `Debug` shows its length.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({} bytes)", self.0.len())
    }
}

/// Why a stored object was not accepted as signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsigned {
    /// No `hmac` field where a signed object has it.
    Missing,
    /// An `hmac` that this key did not make over these bytes and this name.
    Mismatch,
}

impl std::fmt::Display for Unsigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unsigned::Missing => "it is not signed",
            Unsigned::Mismatch => "its signature does not match the signing key",
        })
    }
}

impl SigningKey {
    /// The secret in the environment variable `var`, which `signing_key_env` names.
    /// Errors name the variable, never its value.
    pub fn from_env(
        var: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<SigningKey, RemoteError> {
        let bad = |why: String| RemoteError::SigningKey {
            var: var.to_owned(),
            why,
        };
        if var.is_empty() || var.contains('=') || var.contains('\0') {
            return Err(bad("it is not a valid environment variable name".into()));
        }
        let Some(secret) = env(var).filter(|s| !s.is_empty()) else {
            return Err(bad("it is not set (or empty)".into()));
        };
        SigningKey::new(secret.as_bytes()).map_err(|n| {
            bad(format!(
                "it holds {n} bytes; a signing secret needs at least {MIN_SECRET_BYTES}"
            ))
        })
    }

    /// A key from `secret`; `Err(len)` when it is shorter than [`MIN_SECRET_BYTES`].
    pub fn new(secret: &[u8]) -> Result<SigningKey, usize> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(secret.len());
        }
        Ok(SigningKey(secret.to_vec()))
    }

    fn mac(&self, name: &str, body: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(DOMAIN);
        mac.update(name.as_bytes());
        mac.update(b"\0");
        mac.update(body);
        mac
    }

    /// A name for this key that reveals nothing of it: an HMAC of a fixed name
    /// under the key, shortened. Tells apart uploads made with and without it.
    pub fn fingerprint(&self) -> String {
        let tag = self.mac("fingerprint", b"").finalize().into_bytes();
        tiers_hex(&tag[..8])
    }

    /// `body` (a JSON object) signed for the object name `name`.
    pub fn sign(&self, name: &str, body: &[u8]) -> Vec<u8> {
        debug_assert!(body.first() == Some(&b'{'));
        let tag = self.mac(name, body).finalize().into_bytes();
        let mut out = Vec::with_capacity(SIGNED_HEAD + body.len());
        out.extend_from_slice(PREFIX);
        out.extend_from_slice(tiers_hex(&tag).as_bytes());
        out.extend_from_slice(b"\",");
        out.extend_from_slice(&body[1..]);
        out
    }

    /// The unsigned body of `stored` when this key signed it for `name`.
    pub fn verify(&self, name: &str, stored: &[u8]) -> Result<Vec<u8>, Unsigned> {
        let (tag, body) = split(stored).ok_or(Unsigned::Missing)?;
        let tag = from_hex(tag).ok_or(Unsigned::Missing)?;
        self.mac(name, &body)
            .verify_slice(&tag)
            .map_err(|_| Unsigned::Mismatch)?;
        Ok(body)
    }
}

/// `stored` without its signature, if it has one: what a reader without the key
/// parses (the JSON parses either way; this keeps one parser for both).
pub fn strip(stored: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match split(stored) {
        Some((_, body)) => body.into(),
        None => stored.into(),
    }
}

/// The hex MAC and the unsigned body of a signed object.
fn split(stored: &[u8]) -> Option<(&[u8], Vec<u8>)> {
    let rest = stored.strip_prefix(PREFIX)?;
    let (tag, rest) = (rest.get(..64)?, rest.get(64..)?);
    let rest = rest.strip_prefix(b"\",")?;
    let mut body = Vec::with_capacity(1 + rest.len());
    body.push(b'{');
    body.extend_from_slice(rest);
    Some((tag, body))
}

fn tiers_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (i, pair) in hex.chunks(2).enumerate() {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SigningKey {
        SigningKey::new(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_signed_object_is_json_and_verifies_only_under_its_key_and_name() {
        let body = br#"{"format":1,"x":[1,2]}"#;
        let signed = key(1).sign("records/t/k.json", body);
        let v: serde_json::Value = serde_json::from_slice(&signed).unwrap();
        assert_eq!(v["format"], 1);
        assert_eq!(v["hmac"].as_str().unwrap().len(), 64);
        assert_eq!(&*strip(&signed), body);
        assert_eq!(key(1).verify("records/t/k.json", &signed).unwrap(), body);
        assert_eq!(
            key(2).verify("records/t/k.json", &signed),
            Err(Unsigned::Mismatch)
        );
        assert_eq!(
            key(1).verify("records/u/k.json", &signed),
            Err(Unsigned::Mismatch),
            "moved under another name"
        );
        assert_eq!(
            key(1).verify("records/t/k.json", body),
            Err(Unsigned::Missing)
        );
        let mut flipped = signed.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 1;
        assert_eq!(
            key(1).verify("records/t/k.json", &flipped),
            Err(Unsigned::Mismatch)
        );
    }

    #[test]
    fn a_short_or_missing_secret_is_refused_without_showing_it() {
        let env = |v: &str| (v == "SHORT").then(|| "s3cret-but-short".to_owned());
        let e = SigningKey::from_env("SHORT", &env).unwrap_err().to_string();
        assert!(e.contains("`SHORT`") && e.contains("16 bytes"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        let e = SigningKey::from_env("UNSET", &env).unwrap_err().to_string();
        assert!(e.contains("`UNSET`") && e.contains("not set"), "{e}");
        assert!(format!("{:?}", key(0)).contains("32 bytes"));
    }
}
