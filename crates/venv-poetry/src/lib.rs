//! The `venv-poetry` kind: the locked dependencies of a poetry project, installed into
//! the tier's own venv.
//!
//! The one decision: poetry installs into the venv tiers made (`python -m venv` in the
//! entry directory, announced to poetry as the active `VIRTUAL_ENV`), never into one
//! of its own choosing, and only from `poetry.lock`: a project without one is an
//! error, because locking would rewrite the project. Indexes are poetry's sources in
//! `pyproject.toml`; the index options of pip and uv do not apply.
//!
//! ```toml
//! [tiers.venv]
//! kind = "venv-poetry"
//! groups = ["test"]          # poetry install --with test
//! ```

use std::sync::Arc;

use tiers_core::{async_trait, Registry};
use tiers_venv::probe::path_with;
use tiers_venv::{Backend, Job, Manifests, Options, ToolSpec, VenvError};

pub const KIND: &str = "venv-poetry";

/// The poetry backend.
pub struct Poetry;

/// The poetry backend, for [`tiers_venv::register_auto`].
pub fn backend() -> Arc<dyn Backend> {
    Arc::new(Poetry)
}

/// Register the `venv-poetry` kind.
pub fn register(registry: &mut Registry) {
    tiers_venv::register_backend(registry, KIND, backend());
}

#[async_trait]
impl Backend for Poetry {
    fn name(&self) -> &'static str {
        "poetry"
    }

    fn tool(&self) -> Option<ToolSpec> {
        Some(ToolSpec {
            binary: "poetry",
            install_hint: "install it with `pipx install poetry` (or `pip install poetry`)",
        })
    }

    fn suits(&self, manifests: &Manifests) -> bool {
        manifests.has("poetry.lock")
    }

    fn unsupported(&self, options: &Options) -> Option<(&'static str, &'static str)> {
        options.index_options().first().map(|option| {
            (
                *option,
                "poetry reads its package sources from `[[tool.poetry.source]]` in pyproject.toml",
            )
        })
    }

    fn index_env(&self, name: &str) -> bool {
        name.starts_with("POETRY_REPOSITORIES_") && name.ends_with("_URL")
    }

    fn reads(&self, manifests: &Manifests, _options: &Options) -> Vec<String> {
        ["poetry.lock", "pyproject.toml"]
            .into_iter()
            .filter(|m| manifests.has(m))
            .map(str::to_owned)
            .collect()
    }

    async fn install(&self, job: &Job<'_>) -> Result<(), VenvError> {
        for (manifest, hint) in [
            ("pyproject.toml", "a poetry project is described by pyproject.toml"),
            ("poetry.lock", "run `poetry lock` in the project (tiers never locks: that would rewrite the project)"),
        ] {
            if !job.manifests.has(manifest) {
                return Err(VenvError::MissingManifest {
                    tier: job.tier.to_owned(),
                    backend: self.name().to_owned(),
                    manifest: manifest.to_owned(),
                    hint: hint.to_owned(),
                });
            }
        }
        job.create_with_venv_module().await?;
        let mut install = poetry_install(job);
        if !job.options.install_project {
            install.arg("--no-root");
        }
        for extra in &job.options.extras {
            install.args(["--extras", extra]);
        }
        if !job.options.groups.is_empty() {
            install.args(["--with", &job.options.groups.join(",")]);
        }
        job.run(install).await
    }

    /// `poetry install --only-root`: the project alone, its locked dependencies left
    /// as they are.
    async fn reinstall_project(&self, job: &Job<'_>) -> Result<bool, VenvError> {
        let mut install = poetry_install(job);
        install.arg("--only-root");
        job.run(install).await?;
        Ok(true)
    }
}

/// `poetry install` into the venv being built, announced as the active one.
fn poetry_install(job: &Job<'_>) -> tokio::process::Command {
    let poetry = &job
        .tool
        .expect("the poetry backend always has its tool")
        .path;
    let mut install = job.command(poetry);
    install
        .args(["install", "--no-interaction", "--no-ansi"])
        .env("VIRTUAL_ENV", job.venv)
        .env("PATH", path_with(&job.venv.join("bin")));
    install
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_picks_poetry_only_for_a_poetry_lock() {
        assert!(Poetry.suits(&Manifests::new(["pyproject.toml", "poetry.lock"])));
        assert!(!Poetry.suits(&Manifests::new(["pyproject.toml", "uv.lock"])));
    }

    #[test]
    fn index_options_point_to_poetry_sources() {
        let o = Options {
            find_links: vec!["wheels".into()],
            ..Options::default()
        };
        let (option, hint) = Poetry.unsupported(&o).unwrap();
        assert_eq!(option, "find_links");
        assert!(hint.contains("[[tool.poetry.source]]"));
        assert_eq!(Poetry.unsupported(&Options::default()), None);
    }

    #[test]
    fn poetry_reads_its_lock_and_pyproject_only() {
        let m = Manifests::new(["pyproject.toml", "poetry.lock", "requirements.txt"]);
        assert_eq!(
            Poetry.reads(&m, &Options::default()),
            ["poetry.lock", "pyproject.toml"]
        );
    }
}
