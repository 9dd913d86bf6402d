//! Errors of the venv kinds. Each names the tier and the binary, file or command
//! involved, and says what to do next where there is something to do.

use std::path::PathBuf;

/// An error of a venv tier, reported by the engine as the tier's failure (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum VenvError {
    /// A tool the tier needs is not on PATH.
    #[error("tier `{tier}`: `{binary}` was not found on PATH (looked in: {looked})\nhint: {hint}, or set `{option} = \"/path/to/{binary}\"` in `[tiers.{tier}]`")]
    MissingTool {
        tier: String,
        binary: String,
        option: String,
        looked: String,
        hint: String,
    },

    /// A tool configured by path is not there.
    #[error("tier `{tier}`: `{}` (set by `{option}`) does not exist or is not executable\nhint: {hint}, or fix `{option}` in `[tiers.{tier}]`", path.display())]
    ToolNotAt {
        tier: String,
        option: String,
        path: PathBuf,
        hint: String,
    },

    /// The interpreter could not be found or did not answer the identity probe.
    #[error("tier `{tier}`: the interpreter `{python}` {why}")]
    Interpreter {
        tier: String,
        python: String,
        why: String,
    },

    /// A tool did not tell its version.
    #[error("tier `{tier}`: `{} --version` {why}", path.display())]
    ToolVersion {
        tier: String,
        path: PathBuf,
        why: String,
    },

    #[error("tier `{tier}`: cannot run `{program}`: {source}")]
    Spawn {
        tier: String,
        program: String,
        #[source]
        source: std::io::Error,
    },

    /// An installer (or venv creation) failed; `tail` is its own message.
    #[error("tier `{tier}`: `{command}` {how}\n{tail}")]
    Install {
        tier: String,
        command: String,
        how: String,
        tail: String,
    },

    /// The backend needs a manifest the project does not have.
    #[error("tier `{tier}`: the {backend} backend needs `{manifest}`, which the project does not have\nhint: {hint}")]
    MissingManifest {
        tier: String,
        backend: String,
        manifest: String,
        hint: String,
    },

    /// An option the chosen backend cannot honour.
    #[error("tier `{tier}`: the {backend} backend does not support `{option}`\nhint: {hint}")]
    Unsupported {
        tier: String,
        backend: String,
        option: String,
        hint: String,
    },

    /// The build finished but left a venv that fails the health check.
    #[error("tier `{tier}`: the {backend} backend left an unusable venv at `{}`: {why}", venv.display())]
    Unhealthy {
        tier: String,
        backend: String,
        venv: PathBuf,
        why: String,
    },

    /// A manifest (or a file one includes) cannot be read.
    #[error("tier `{tier}`: cannot read the manifest `{}`: {source}", path.display())]
    Manifest {
        tier: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// What the key was computed from changed before the build started.
    #[error("tier `{tier}`: the manifests, interpreter or tools changed while the venv was being built; run the build again")]
    Moved { tier: String },
}

impl From<VenvError> for tiers_core::Error {
    fn from(e: VenvError) -> Self {
        tiers_core::Error::Kind(Box::new(e))
    }
}
