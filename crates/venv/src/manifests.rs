//! Dependency manifests: which exist, and what each backend makes of them.

use tiers_core::InputSet;

/// The manifests a venv tier hashes when the configuration names none. Source files
/// are never among them: a venv does not depend on them (the project itself is
/// installed editable).
pub const DEFAULT_MANIFESTS: &[&str] = &[
    "requirements.txt",
    "requirements-dev.txt",
    "dev-requirements.txt",
    "test-requirements.txt",
    "pyproject.toml",
    "setup.py",
    "setup.cfg",
    "Pipfile",
    "Pipfile.lock",
    "poetry.lock",
    "uv.lock",
];

/// Files at the project root that make the project itself installable.
pub const PROJECT_FILES: &[&str] = &["pyproject.toml", "setup.py", "setup.cfg"];

/// The manifests that exist, as project-relative `/`-separated paths, sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifests {
    present: Vec<String>,
}

impl Manifests {
    pub fn new(present: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let mut present: Vec<String> = present.into_iter().map(Into::into).collect();
        present.sort();
        present.dedup();
        Manifests { present }
    }

    pub fn from_inputs(inputs: &InputSet) -> Self {
        Manifests::new(inputs.paths())
    }

    pub fn paths(&self) -> &[String] {
        &self.present
    }

    pub fn has(&self, rel: &str) -> bool {
        self.present.iter().any(|p| p == rel)
    }

    /// Requirement files (`*.txt`), installed with `-r`, in path order.
    pub fn requirement_files(&self) -> Vec<&str> {
        self.present
            .iter()
            .map(String::as_str)
            .filter(|p| p.ends_with(".txt"))
            .collect()
    }

    /// The project's own build files at its root.
    pub fn project_files(&self) -> Vec<&str> {
        PROJECT_FILES
            .iter()
            .copied()
            .filter(|f| self.has(f))
            .collect()
    }

    /// What `pip install -r … -e .` reads: the requirement files, and the project's
    /// build files when the project itself is installed.
    pub fn read_by_requirements_install(&self, install_project: bool) -> Vec<String> {
        let mut read: Vec<String> = self
            .requirement_files()
            .into_iter()
            .map(str::to_owned)
            .collect();
        if install_project {
            read.extend(self.project_files().into_iter().map(str::to_owned));
        }
        read.sort();
        read
    }
}

/// The manifest globs of a tier: `manifests` (or the defaults) plus `extra_manifests`.
pub fn patterns(manifests: Option<&[String]>, extra: &[String]) -> Vec<String> {
    let mut out: Vec<String> = match manifests {
        Some(m) => m.to_vec(),
        None => DEFAULT_MANIFESTS.iter().map(|s| (*s).to_owned()).collect(),
    };
    for e in extra {
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirement_install_reads_txt_files_and_project_files() {
        let m = Manifests::new([
            "requirements.txt",
            "pyproject.toml",
            "poetry.lock",
            "requirements-dev.txt",
            "Pipfile",
        ]);
        assert_eq!(
            m.requirement_files(),
            ["requirements-dev.txt", "requirements.txt"]
        );
        assert_eq!(
            m.read_by_requirements_install(true),
            ["pyproject.toml", "requirements-dev.txt", "requirements.txt"]
        );
        assert_eq!(
            m.read_by_requirements_install(false),
            ["requirements-dev.txt", "requirements.txt"]
        );
    }

    #[test]
    fn patterns_replace_then_extend() {
        let p = patterns(None, &["constraints.txt".into(), "uv.lock".into()]);
        assert_eq!(p.len(), DEFAULT_MANIFESTS.len() + 1);
        assert_eq!(p.last().unwrap(), "constraints.txt");
        let p = patterns(Some(&["reqs/*.txt".into()]), &["pyproject.toml".into()]);
        assert_eq!(p, ["reqs/*.txt", "pyproject.toml"]);
    }
}
