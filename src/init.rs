//! `tiers init`: a `tiers.toml` for the project at hand, from what is in it.

use std::path::Path;

use anyhow::Context as _;

/// Write `<project>/tiers.toml` (or `file`); refuses to overwrite one. Returns the
/// tiers it configured.
pub fn init(project: &Path, file: &Path) -> anyhow::Result<Vec<&'static str>> {
    if file.exists() {
        return Err(tiers::Error::config(format!(
            "`{}` already exists; tiers init does not overwrite it",
            file.display()
        ))
        .into());
    }
    let manifests: Vec<&str> = tiers_venv::DEFAULT_MANIFESTS
        .iter()
        .copied()
        .filter(|m| project.join(m).is_file())
        .collect();
    let has_python = tiers::Inputs::new(project, vec![project.join(".tiers")])
        .files()
        .iter()
        .any(|f| f.ends_with(".py"));

    let mut text = String::from(
        "# tiers.toml: one table per tier. See the README's tiers.toml reference.\n\
         # `tiers build` builds what is not fresh; `tiers status` says why.\n",
    );
    let mut tiers = Vec::new();
    if !manifests.is_empty() {
        tiers.push("venv");
        text.push_str(&format!(
            "\n# The virtualenv, keyed on {} and the interpreter; source edits never\n\
             # rebuild it, and `--eager` reuses it. Backend: poetry for a poetry.lock,\n\
             # else uv when installed, else pip.\n\
             [tiers.venv]\nkind = \"venv\"\nbackend = \"auto\"\n",
            manifests.join(", ")
        ));
    }
    if has_python {
        tiers.push("symtab");
        tiers.push("codeql");
        text.push_str(
            "\n# The symbol table, per file content: an edit re-parses the edited files.\n\
             [tiers.symtab]\nkind = \"symtab\"\ninputs = [\"**/*.py\"]\n\
             \n# One CodeQL database per source state, the last 5 kept. Skipped when the\n\
             # CodeQL CLI is not installed.\n\
             [tiers.codeql]\nkind = \"codeql\"\nlanguage = \"python\"\ninputs = [\"**/*.py\"]\n",
        );
    }
    text.push_str(
        "\n# Any command with declared inputs: it fills $TIERS_OUT.\n\
         # [tiers.lint]\n# kind = \"command\"\n# inputs = [\"**/*.py\"]\n\
         # run = [\"python3\", \"tools/lint.py\"]\n# after = [\"venv\"]\n",
    );
    std::fs::write(file, text).with_context(|| format!("cannot write `{}`", file.display()))?;
    Ok(tiers)
}
