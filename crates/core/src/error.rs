//! Errors of the engine. Every message names the file, key, tier or path involved.

use std::path::PathBuf;

/// An error of `tiers-core`, or of a kind reported through it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file or value is wrong. Exit code 2 in the driver.
    #[error("{message}")]
    Config { message: String },

    #[error("tier `{tier}` has unknown kind `{kind}` (known kinds: {known})")]
    UnknownKind {
        tier: String,
        kind: String,
        known: String,
    },

    #[error("tier `{tier}` lists `{upstream}` in `after`, but no tier `{upstream}` is configured")]
    UnknownUpstream { tier: String, upstream: String },

    #[error("the tiers form a cycle through `after`: {}", cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },

    #[error("no tier named `{name}` is configured (configured tiers: {known})")]
    UnknownTier { name: String, known: String },

    #[error("tier `{tier}`: the glob `{glob}` cannot be parsed: {source}")]
    Glob {
        tier: String,
        glob: String,
        #[source]
        source: globset::Error,
    },

    #[error("cannot create the cache dir `{}`: {source}", path.display())]
    CacheDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("I/O error at `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the entry marker `{}` cannot be read: {why}", path.display())]
    Marker { path: PathBuf, why: String },

    /// A build did not produce its artifact. `message` is shown to the user as is.
    #[error("{message}")]
    Build { message: String },

    /// The tool a tier needs is not installed; the engine reports the tier as `skipped`.
    #[error("{message}")]
    Unavailable { message: String },

    #[error("tier `{tier}` has `rebuild = \"never\"` and no entry exists yet\nhint: build it once with `tiers build --rebuild {tier}`")]
    NeverWithoutEntry { tier: String },

    #[error("upstream tier `{upstream}` did not produce an entry")]
    UpstreamFailed { upstream: String },

    /// An error of a kind crate, kept with its own type as the source.
    #[error(transparent)]
    Kind(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }

    pub fn build(message: impl Into<String>) -> Self {
        Error::Build {
            message: message.into(),
        }
    }

    /// Whether this error is the user's configuration or invocation (exit code 2)
    /// rather than a tier that failed (exit code 1).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Error::Config { .. }
                | Error::UnknownKind { .. }
                | Error::UnknownUpstream { .. }
                | Error::Cycle { .. }
                | Error::UnknownTier { .. }
                | Error::Glob { .. }
                | Error::CacheDir { .. }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `std::io::Result` to [`Result`], naming the path.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
