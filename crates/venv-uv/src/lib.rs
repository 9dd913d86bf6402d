//! The `venv-uv` kind: `uv venv`, then `uv sync --frozen` for a project with
//! `uv.lock`, else `uv pip install` of its requirement files and of the project
//! itself, editable.
//!
//! The one decision: with `uv.lock` the lock is the truth (`--frozen`: never
//! re-resolved, never rewritten); without one, uv resolves the requirement files like
//! pip would. uv is `uv` on PATH, or `uv = "/path/to/uv"`.
//!
//! ```toml
//! [tiers.venv]
//! kind = "venv-uv"
//! python = "python3.12"
//! groups = ["dev"]
//! ```

use std::sync::Arc;

use tiers_core::{async_trait, Registry};
use tiers_venv::{Backend, Job, Manifests, Options, ToolSpec, VenvError};

pub const KIND: &str = "venv-uv";

/// Variables through which uv is pointed at other indexes.
const INDEX_ENV: &[&str] = &[
    "UV_INDEX",
    "UV_DEFAULT_INDEX",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
    "UV_INDEX_STRATEGY",
];

/// The uv backend.
pub struct Uv;

/// The uv backend, for [`tiers_venv::register_auto`].
pub fn backend() -> Arc<dyn Backend> {
    Arc::new(Uv)
}

/// Register the `venv-uv` kind.
pub fn register(registry: &mut Registry) {
    tiers_venv::register_backend(registry, KIND, backend());
}

#[async_trait]
impl Backend for Uv {
    fn name(&self) -> &'static str {
        "uv"
    }

    fn tool(&self) -> Option<ToolSpec> {
        Some(ToolSpec {
            binary: "uv",
            install_hint: "install it with `pip install uv` (or `pipx install uv`)",
        })
    }

    fn index_env(&self, name: &str) -> bool {
        INDEX_ENV.contains(&name)
    }

    fn reads(&self, manifests: &Manifests, options: &Options) -> Vec<String> {
        if !manifests.has("uv.lock") {
            return manifests.read_by_requirements_install(options.install_project);
        }
        let mut read = vec!["uv.lock".to_owned()];
        for f in manifests.project_files() {
            // `uv sync` reads pyproject.toml whatever it installs; a setup.py or
            // setup.cfg only when it builds the project itself.
            if f == "pyproject.toml" || options.install_project {
                read.push(f.to_owned());
            }
        }
        read.sort();
        read
    }

    async fn install(&self, job: &Job<'_>) -> Result<(), VenvError> {
        let uv = &job.tool.expect("the uv backend always has its tool").path;
        let mut venv = job.command(uv);
        venv.args(["venv", "--no-project", "--python"])
            .arg(&job.python.executable)
            .arg(job.venv);
        job.run(venv).await?;
        if job.manifests.has("uv.lock") {
            let mut sync = job.command(uv);
            sync.args(["sync", "--frozen", "--python"])
                .arg(job.venv_python())
                .env("UV_PROJECT_ENVIRONMENT", job.venv);
            for extra in &job.options.extras {
                sync.args(["--extra", extra]);
            }
            for group in &job.options.groups {
                sync.args(["--group", group]);
            }
            if !job.options.install_project {
                sync.arg("--no-install-project");
            }
            sync.args(job.index_args());
            return job.run(sync).await;
        }
        let requirements = job.requirement_args();
        if requirements.is_empty() {
            return Ok(());
        }
        let mut install = job.command(uv);
        install
            .args(["pip", "install", "--python"])
            .arg(job.venv_python())
            .args(requirements)
            .args(job.index_args());
        job.run(install).await
    }

    /// `uv pip install --no-deps --reinstall -e .`: the project alone, into a venv
    /// made by `uv sync` or `uv pip install` alike.
    async fn reinstall_project(&self, job: &Job<'_>) -> Result<bool, VenvError> {
        let uv = &job.tool.expect("the uv backend always has its tool").path;
        let mut install = job.command(uv);
        install
            .args(["pip", "install", "--no-deps", "--reinstall", "--python"])
            .arg(job.venv_python())
            .args(["-e", &job.project_spec()])
            .args(job.index_args());
        job.run(install).await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_read_instead_of_the_requirement_files() {
        let m = Manifests::new(["uv.lock", "pyproject.toml", "setup.cfg", "requirements.txt"]);
        let o = Options::default();
        assert_eq!(Uv.reads(&m, &o), ["pyproject.toml", "setup.cfg", "uv.lock"]);
        let no_project = Options {
            install_project: false,
            ..Options::default()
        };
        assert_eq!(Uv.reads(&m, &no_project), ["pyproject.toml", "uv.lock"]);
        let m = Manifests::new(["pyproject.toml", "requirements.txt", "Pipfile"]);
        assert_eq!(Uv.reads(&m, &o), ["pyproject.toml", "requirements.txt"]);
    }

    #[test]
    fn only_uv_variables_are_index_settings() {
        assert!(Uv.index_env("UV_INDEX_URL"));
        assert!(!Uv.index_env("PIP_INDEX_URL"));
        assert!(!Uv.index_env("UV_OFFLINE"));
    }
}
