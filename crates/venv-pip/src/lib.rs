//! The `venv-pip` kind: `python -m venv`, then pip — needs nothing but Python.
//!
//! The one decision: the pip that installs is the one the interpreter bundles
//! (`ensurepip`), so its version is part of the interpreter's identity and the key
//! never depends on a pip found elsewhere. The requirement files are installed with
//! `-r`, and the project itself editable (`-e .`) when it has a `pyproject.toml`,
//! `setup.py` or `setup.cfg`.
//!
//! ```toml
//! [tiers.venv]
//! kind = "venv-pip"
//! extras = ["test"]
//! ```

use std::sync::Arc;

use tiers_core::{async_trait, Registry};
use tiers_venv::{Backend, Interpreter, Job, Manifests, Options, Tool, VenvError};

pub const KIND: &str = "venv-pip";

/// Variables through which pip is pointed at other indexes.
const INDEX_ENV: &[&str] = &[
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_FIND_LINKS",
    "PIP_NO_INDEX",
];

/// The pip backend.
pub struct Pip;

/// The pip backend, for [`tiers_venv::register_auto`].
pub fn backend() -> Arc<dyn Backend> {
    Arc::new(Pip)
}

/// Register the `venv-pip` kind.
pub fn register(registry: &mut Registry) {
    tiers_venv::register_backend(registry, KIND, backend());
}

#[async_trait]
impl Backend for Pip {
    fn name(&self) -> &'static str {
        "pip"
    }

    fn index_env(&self, name: &str) -> bool {
        INDEX_ENV.contains(&name)
    }

    fn toolchain(&self, python: &Interpreter, _tool: Option<&Tool>) -> Vec<(String, String)> {
        let pip = if python.bundled_pip.is_empty() {
            "none bundled".to_owned()
        } else {
            format!("pip {} (bundled)", python.bundled_pip)
        };
        vec![("pip".to_owned(), pip)]
    }

    fn reads(&self, manifests: &Manifests, options: &Options) -> Vec<String> {
        manifests.read_by_requirements_install(options.install_project)
    }

    async fn install(&self, job: &Job<'_>) -> Result<(), VenvError> {
        job.create_with_venv_module().await?;
        let requirements = job.requirement_args();
        if requirements.is_empty() {
            return Ok(());
        }
        let mut pip = pip_install(job);
        pip.args(requirements).args(job.index_args());
        job.run(pip).await
    }

    /// `pip install --no-deps --force-reinstall -e .`: the project alone.
    async fn reinstall_project(&self, job: &Job<'_>) -> Result<bool, VenvError> {
        let mut pip = pip_install(job);
        pip.args(["--no-deps", "--force-reinstall", "-e", &job.project_spec()])
            .args(job.index_args());
        job.run(pip).await?;
        Ok(true)
    }
}

/// `pip install` of the venv's own pip, quiet about itself.
fn pip_install(job: &Job<'_>) -> tokio::process::Command {
    let mut pip = job.command(job.venv_python());
    pip.args([
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
    ]);
    pip
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_pip_is_the_toolchain() {
        let python = Interpreter {
            executable: "/usr/bin/python3.12".into(),
            version: "3.12.1".into(),
            implementation: "CPython".into(),
            platform: "linux-x86_64".into(),
            abiflags: String::new(),
            bundled_pip: "23.2.1".into(),
        };
        assert_eq!(
            Pip.toolchain(&python, None),
            [("pip".to_owned(), "pip 23.2.1 (bundled)".to_owned())]
        );
    }
}
