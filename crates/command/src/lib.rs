//! The `command` kind: any command with declared inputs and an output dir.
//!
//! The one decision: the command never writes where the artifact is read from. It
//! fills `TIERS_OUT`, a staging dir the engine renames into place once the command
//! exits 0, so a failed or killed command leaves nothing that looks like an entry.
//!
//! ```toml
//! [tiers.lint]
//! kind = "command"
//! inputs = ["**/*.py"]
//! exclude = ["tests/**"]
//! run = ["python3", "tools/lint.py"]
//! env = { LINT_LEVEL = "strict" }
//! after = ["venv"]
//! ```
//!
//! The command runs in the project with `TIERS_OUT`, `TIERS_PROJECT`, `TIERS_TIER`,
//! `TIERS_KEY`, `TIERS_DEPFILE` and `TIERS_PATH_<UPSTREAM>` set. Its key is the
//! command line, `env`, the globs and the content of every matched file.
//!
//! `TIERS_DEPFILE` names a file the command may write: the project-relative paths of
//! the inputs it actually read, one per line. The entry is then reused when only
//! other inputs change (see "Discovered inputs" in tiers-core). No file means every
//! input was used.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use tiers_core::{
    async_trait, process, BuildOutcome, Context, Entry, Error, InputSpec, KeyDoc, Registry, Result,
    Tier, TierSpec,
};

/// Bumped whenever the way this kind builds changes: old entries then miss.
pub const KIND_VERSION: u32 = 1;
pub const KIND: &str = "command";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    inputs: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
    run: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("tier `{tier}`: cannot run `{program}`: {source}\nhint: check that `{program}` is installed and on PATH, or give its full path in `run`")]
    Spawn {
        tier: String,
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tier `{tier}`: `{command}` {how}\n{tail}")]
    Failed {
        tier: String,
        command: String,
        how: String,
        tail: String,
    },
}

impl From<CommandError> for Error {
    fn from(e: CommandError) -> Self {
        Error::Kind(Box::new(e))
    }
}

pub struct CommandTier {
    spec: InputSpec,
    run: Vec<String>,
    env: BTreeMap<String, String>,
}

impl CommandTier {
    pub fn from_spec(spec: &TierSpec<'_>) -> Result<Self> {
        let o: Options = spec.options()?;
        if o.run.is_empty() {
            return Err(spec.error(
                "`run` is empty: give the command as a list, e.g. `run = [\"make\", \"lint\"]`",
            ));
        }
        Ok(CommandTier {
            spec: InputSpec::new(spec.name, &o.inputs, &o.exclude)?,
            run: o.run,
            env: o.env,
        })
    }
}

/// Register the `command` kind.
pub fn register(registry: &mut Registry) {
    registry.register(KIND, |spec| Ok(Box::new(CommandTier::from_spec(spec)?)));
}

#[async_trait]
impl Tier for CommandTier {
    async fn key(&self, cx: &Context) -> Result<KeyDoc> {
        let inputs = cx.inputs(&self.spec)?;
        Ok(KeyDoc::new(KIND, KIND_VERSION)
            .option("run", &self.run)
            .option("env", &self.env)
            .option("inputs", self.spec.patterns())
            .inputs(&inputs))
    }

    async fn build(&self, cx: &Context, entry: &Entry) -> Result<BuildOutcome> {
        // Beside the staging dir, not in it: the artifact is only what the command made.
        let depfile = entry.build_dir.with_extension("deps");
        let _ = std::fs::remove_file(&depfile);
        let mut cmd = tokio::process::Command::new(&self.run[0]);
        cmd.args(&self.run[1..])
            .current_dir(cx.project())
            .envs(&self.env)
            .env("TIERS_OUT", &entry.build_dir)
            .env("TIERS_PROJECT", cx.project())
            .env("TIERS_TIER", cx.tier())
            .env("TIERS_KEY", entry.key.as_str())
            .env("TIERS_DEPFILE", &depfile);
        for (name, up) in cx.upstream() {
            cmd.env(format!("TIERS_PATH_{}", env_name(name)), &up.path);
        }
        let program = std::path::Path::new(&self.run[0])
            .file_name()
            .map_or_else(|| self.run[0].clone(), |n| n.to_string_lossy().into_owned());
        cx.progress().phase(&format!("running {program}"));
        let echo = process::Echo::choose(cx.verbose(), cx.progress());
        let done = process::run(cmd, echo, &program).await;
        let used_inputs = match &done {
            Ok(d) if d.status.success() => Some(read_depfile(&depfile, cx.project())),
            _ => None,
        };
        // Whatever happened, the dep file is no part of the entry.
        let _ = std::fs::remove_file(&depfile);
        let done = done.map_err(|source| CommandError::Spawn {
            tier: cx.tier().to_owned(),
            program: self.run[0].clone(),
            source,
        })?;
        if let Some(used_inputs) = used_inputs {
            return Ok(BuildOutcome {
                used_inputs: used_inputs?,
                ..BuildOutcome::default()
            });
        }
        let how = match done.status.code() {
            Some(code) => format!("exited with status {code}"),
            None => {
                use std::os::unix::process::ExitStatusExt;
                format!("was killed by signal {}", done.status.signal().unwrap_or(0))
            }
        };
        Err(CommandError::Failed {
            tier: cx.tier().to_owned(),
            command: self.run.join(" "),
            how,
            tail: process::show_tail(&done.tail),
        }
        .into())
    }

    fn path(&self, entry: &Entry) -> PathBuf {
        entry.dir.clone()
    }
}

/// The project-relative paths listed in a dep file; `None` when there is none.
fn read_depfile(path: &std::path::Path, project: &std::path::Path) -> Result<Option<Vec<String>>> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut used: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let p = std::path::Path::new(l);
            let rel = p.strip_prefix(project).unwrap_or(p);
            rel.to_string_lossy().trim_start_matches("./").to_owned()
        })
        .collect();
    used.sort();
    used.dedup();
    Ok(Some(used))
}

/// `my-tier.x` → `MY_TIER_X`, for `TIERS_PATH_<NAME>`.
pub fn env_name(tier: &str) -> String {
    tier.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}
