//! Errors of the shared cache. Each names the object or path involved and carries the
//! remote (without secrets) in `remote`; the engine shows one as a warning prefixed
//! with the remote (`shared cache redis://…: cannot read …`) and builds locally.

use std::path::PathBuf;

/// An error of `tiers-remote`.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("the shared cache url `{url}` is not usable: {why}")]
    Url { url: String, why: String },

    #[error(
        "no shared cache is configured\nhint: set `[remote] url` in tiers.toml or TIERS_REMOTE_URL"
    )]
    NoUrl,

    #[error("cannot open the shared cache `{remote}`: {source}{hint}")]
    Open {
        remote: String,
        hint: String,
        #[source]
        source: Box<opendal::Error>,
    },

    /// A request failed for good. `why` is one line (the HTTP status or the deepest
    /// cause); the whole OpenDAL error is logged at debug level.
    #[error("cannot {op} `{path}`: {why}")]
    Request {
        remote: String,
        op: &'static str,
        path: String,
        status: Option<u16>,
        why: String,
    },

    #[error("cannot {op} `{path}`: no answer within {secs} s (tried {attempts} times)")]
    Timeout {
        remote: String,
        op: &'static str,
        path: String,
        secs: f64,
        attempts: u32,
    },

    #[error("`{name}` cannot be part of an object name (letters, digits, `-`, `_`, `.`)")]
    Name { name: String },

    /// `signing_key_env` names a variable that holds no usable secret. The secret
    /// itself is never part of a message.
    #[error("the shared cache's signing key is not usable: `[remote] signing_key_env` names the environment variable `{var}`, but {why}\nhint: give trusted writers a secret of at least 32 bytes in `{var}`, or remove `signing_key_env`")]
    SigningKey { var: String, why: String },

    /// With a signing key: a record or candidate list that is unsigned, or signed
    /// with another key or for another name.
    #[error("`{path}` (tier `{tier}`, key {key}) is not used: {why}")]
    Unsigned {
        remote: String,
        path: String,
        tier: String,
        key: String,
        why: crate::sign::Unsigned,
    },

    /// An object larger than anything tiers writes there, refused unparsed.
    #[error(
        "`{path}` is not used: it is larger than {limit} bytes, the most tiers accepts for {what}"
    )]
    TooLarge {
        remote: String,
        path: String,
        what: &'static str,
        limit: u64,
    },

    #[error("the record `{path}` is not usable: {why}")]
    Record {
        remote: String,
        path: String,
        why: String,
    },

    #[error("`{path}`, named by `{record}`, is missing: not used; the next upload sends what it held again")]
    MissingBlob {
        remote: String,
        path: String,
        record: String,
    },

    /// A pack whose bytes are not what its name and index say. A writable remote
    /// removes it, so that every uploader finds it gone.
    #[error("`{path}` is corrupt ({why}): not used; the next upload sends what it held again")]
    Digest {
        remote: String,
        path: String,
        why: String,
    },

    /// A file or blob of an entry being uploaded that does not hash to the
    /// digest its tree gives: the entry is not uploaded.
    #[error("`{}` does not match its digest {digest}: the entry is not uploaded\nhint: `tiers build --rebuild <tier>` builds the entry again", path.display())]
    Damaged { path: PathBuf, digest: String },

    #[error("the entry of `{record}` was rejected: {source}")]
    Rejected {
        remote: String,
        record: String,
        #[source]
        source: UnpackError,
    },

    #[error("cannot pack the entry `{}` for the shared cache: {why}", dir.display())]
    Pack { dir: PathBuf, why: String },

    #[error("I/O error at `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why an archive from the shared cache was not unpacked. Nothing is ever written
/// outside the destination directory; on any of these, what was written inside it is
/// removed.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("the archive holds `{path}`, which {why}")]
    Unsafe { path: String, why: String },

    #[error("the archive cannot be read: {0}")]
    Archive(#[source] std::io::Error),

    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<RemoteError> for tiers_core::Error {
    fn from(e: RemoteError) -> Self {
        match e {
            // A url or service set up wrong is the user's configuration (exit 2);
            // a server that misbehaves later is only ever a warning.
            RemoteError::Url { .. }
            | RemoteError::NoUrl
            | RemoteError::Open { .. }
            | RemoteError::SigningKey { .. } => tiers_core::Error::config(e.to_string()),
            other => tiers_core::Error::Kind(Box::new(other)),
        }
    }
}
