//! One venv build as a backend sees it: where, with what, and how to run a command
//! so that its failure reads as the installer's own message.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use tiers_core::process::{self, Echo};
use tiers_core::Progress;
use tokio::process::Command;

use crate::error::VenvError;
use crate::health::venv_python;
use crate::manifests::Manifests;
use crate::probe::{Interpreter, Tool};
use crate::Options;

/// Environment variables that would point an installer at another environment than
/// the one being built.
const FOREIGN_ENV: &[&str] = &[
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "UV_PROJECT_ENVIRONMENT",
    "PYTHONHOME",
    "PIP_PREFIX",
    "PIP_TARGET",
    "PIP_USER",
];

/// What a backend gets to build one venv.
pub struct Job<'a> {
    pub tier: &'a str,
    pub project: &'a Path,
    /// The venv directory: the entry's final directory, empty, under the key's lock.
    pub venv: &'a Path,
    pub python: &'a Interpreter,
    /// The installer binary, for backends that run one.
    pub tool: Option<&'a Tool>,
    pub manifests: &'a Manifests,
    pub options: &'a Options,
    /// Stream the installer's output.
    pub verbose: bool,
    /// The tier's progress line.
    pub progress: Progress,
}

impl Job<'_> {
    /// `bin/python` of the venv being built.
    pub fn venv_python(&self) -> PathBuf {
        venv_python(self.venv)
    }

    /// Whether the project itself is installed (editable): it has a build file and
    /// `install_project` is not turned off.
    pub fn installs_project(&self) -> bool {
        self.options.install_project && !self.manifests.project_files().is_empty()
    }

    /// `.` or `.[a,b]`: the project with its extras, for `-e`.
    pub fn project_spec(&self) -> String {
        if self.options.extras.is_empty() {
            ".".to_owned()
        } else {
            format!(".[{}]", self.options.extras.join(","))
        }
    }

    /// `-r FILE` for each requirement file, then `-e .[extras]` when the project is
    /// installed, then `--group G` for each group.
    pub fn requirement_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for r in self.manifests.requirement_files() {
            args.extend(["-r".to_owned(), r.to_owned()]);
        }
        if self.installs_project() {
            args.extend(["-e".to_owned(), self.project_spec()]);
        } else if !self.options.extras.is_empty() {
            tracing::warn!(
                tier = self.tier,
                "`extras` apply to the project itself, which is not installed"
            );
        }
        for g in &self.options.groups {
            args.extend(["--group".to_owned(), g.clone()]);
        }
        args
    }

    /// The index options in the flags pip and uv share. Relative `find_links`
    /// directories are the project's.
    pub fn index_args(&self) -> Vec<OsString> {
        let o = self.options;
        let mut args: Vec<OsString> = Vec::new();
        if let Some(url) = &o.index_url {
            args.extend(["--index-url".into(), url.into()]);
        }
        for url in &o.extra_index_urls {
            args.extend(["--extra-index-url".into(), url.into()]);
        }
        for link in &o.find_links {
            let value: OsString = if link.contains("://") {
                link.into()
            } else {
                self.project.join(link).into()
            };
            args.extend(["--find-links".into(), value]);
        }
        if o.no_index {
            args.push("--no-index".into());
        }
        args
    }

    /// A command run in the project without the variables that would send an
    /// installer to another environment. [`Job::run`] runs it with no stdin.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(self.project);
        for var in FOREIGN_ENV {
            cmd.env_remove(var);
        }
        cmd
    }

    /// Run `cmd` to completion, its output streamed as the engine's other tools'
    /// is. On failure the error carries the last lines of its output: the
    /// installer's own explanation.
    pub async fn run(&self, cmd: Command) -> Result<(), VenvError> {
        let shown = show(&cmd);
        let program = cmd.as_std().get_program().to_owned();
        let label = Path::new(&program)
            .file_name()
            .unwrap_or(&program)
            .to_string_lossy()
            .into_owned();
        tracing::info!(tier = self.tier, "running {shown}");
        self.progress.phase(&phase_of(&cmd, &label));
        let done = process::run(cmd, Echo::choose(self.verbose, &self.progress), &label)
            .await
            .map_err(|source| VenvError::Spawn {
                tier: self.tier.to_owned(),
                program: program.to_string_lossy().into_owned(),
                source,
            })?;
        if done.status.success() {
            return Ok(());
        }
        let how = match done.status.code() {
            Some(code) => format!("exited with status {code}"),
            None => {
                use std::os::unix::process::ExitStatusExt;
                format!("was killed by signal {}", done.status.signal().unwrap_or(0))
            }
        };
        Err(VenvError::Install {
            tier: self.tier.to_owned(),
            command: shown,
            how,
            tail: process::show_tail(&done.tail),
        })
    }

    /// `python -m venv DIR`: the venv the pip and poetry backends install into, with
    /// the pip the interpreter bundles.
    pub async fn create_with_venv_module(&self) -> Result<(), VenvError> {
        let mut cmd = self.command(&self.python.executable);
        cmd.args(["-m", "venv"]).arg(self.venv);
        self.run(cmd).await
    }
}

/// What running `cmd` does, for the progress display: `uv venv` and `python -m
/// venv` create the venv, the rest installs (`python -m pip` with pip).
fn phase_of(cmd: &Command, label: &str) -> String {
    let args: Vec<_> = cmd
        .as_std()
        .get_args()
        .take(2)
        .map(OsStr::to_string_lossy)
        .collect();
    match args.as_slice() {
        [first, ..] if first == "venv" => "creating the venv".to_owned(),
        [m, module] if m == "-m" && module == "venv" => "creating the venv".to_owned(),
        [m, module] if m == "-m" => format!("installing with {module}"),
        _ => format!("installing with {label}"),
    }
}

/// A command line for messages: the program's file name and the arguments.
fn show(cmd: &Command) -> String {
    let std = cmd.as_std();
    let program = Path::new(std.get_program())
        .file_name()
        .unwrap_or(std.get_program())
        .to_string_lossy()
        .into_owned();
    std::iter::once(program)
        .chain(std.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(program: &str, args: &[&str]) -> String {
        let mut cmd = Command::new(program);
        cmd.args(args);
        phase_of(&cmd, program)
    }

    #[test]
    fn the_progress_step_names_what_the_installer_does() {
        assert_eq!(phase("uv", &["venv", "--python", "x"]), "creating the venv");
        assert_eq!(
            phase("python3", &["-m", "venv", "dir"]),
            "creating the venv"
        );
        assert_eq!(
            phase(
                "python",
                &["-m", "pip", "install", "-r", "requirements.txt"]
            ),
            "installing with pip"
        );
        assert_eq!(
            phase("uv", &["pip", "install", "-e", "."]),
            "installing with uv"
        );
        assert_eq!(phase("uv", &["sync", "--frozen"]), "installing with uv");
        assert_eq!(phase("poetry", &["install"]), "installing with poetry");
    }
}
