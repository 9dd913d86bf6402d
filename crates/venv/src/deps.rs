//! What a venv's key takes from each manifest: the content its installer reads.
//!
//! | manifest | the key covers | not covered (recorded beside the entry) |
//! | --- | --- | --- |
//! | `pyproject.toml` | `[build-system]`; `[project]` `name`, `requires-python`, `dependencies`, `optional-dependencies`, `dynamic`; `[dependency-groups]`; the dependency and source keys of `[tool.uv]`, `[tool.poetry]`, `[tool.pdm]` | every other table (`[tool.ruff]`, `[tool.pytest.ini_options]`…), the project's own metadata (version, scripts, entry points), comments, formatting |
//! | requirement files (`*.txt`, `*.in`) | the requirement lines, and the files they include with `-r`/`-c` | comments, blank lines, spacing |
//! | `uv.lock` | its content | the root project's own `version` |
//! | anything else (`setup.py`, `setup.cfg`, `Pipfile`, `poetry.lock`…) | its bytes | nothing |
//!
//! Files are parsed (TOML with the `toml` crate, requirement files by pip's line
//! rules), so quoting, key order, inline or standard tables and comments do not
//! count. A `pyproject.toml` that does not parse, or whose `[project] dynamic` lists
//! its dependencies (the build backend computes them), is keyed on its bytes, and the
//! key document says why.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tiers_core::Key;

/// Keys of `[project]` that change what is installed.
const PROJECT_COVERED: &[&str] = &[
    "name",
    "requires-python",
    "dependencies",
    "optional-dependencies",
    "dynamic",
];

/// Keys of `[project]` that are the project's own installed metadata: a change
/// re-installs the project, not its dependencies.
const PROJECT_OWN: &[&str] = &["version", "scripts", "gui-scripts", "entry-points"];

/// Per tool, its keys that change what is installed.
const TOOL_COVERED: &[(&str, &[&str])] = &[
    (
        "uv",
        &[
            "dev-dependencies",
            "sources",
            "index",
            "index-url",
            "extra-index-url",
            "find-links",
            "no-index",
            "index-strategy",
            "override-dependencies",
            "constraint-dependencies",
            "build-constraint-dependencies",
            "default-groups",
            "conflicts",
            "workspace",
            "package",
            "prerelease",
            "resolution",
            "exclude-newer",
            "no-binary",
            "no-build",
            "no-binary-package",
            "no-build-package",
            "no-build-isolation",
            "no-build-isolation-package",
            "config-settings",
            "dependency-metadata",
            "environments",
            "required-environments",
        ],
    ),
    (
        "poetry",
        &[
            "name",
            "dependencies",
            "dev-dependencies",
            "group",
            "extras",
            "source",
            "packages",
            "package-mode",
        ],
    ),
    (
        "pdm",
        &["dev-dependencies", "source", "resolution", "overrides"],
    ),
];

/// Per tool, its keys that are the project's own installed metadata.
const TOOL_OWN: &[(&str, &[&str])] = &[("poetry", &["version", "scripts", "plugins"])];

/// How the key reads one manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyMode {
    /// What installers read (the default).
    Dependencies,
    /// Every byte of every manifest.
    Bytes,
}

/// What the key takes from one manifest, and what it leaves out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// What goes into the key document's inputs for this file.
    pub digest: String,
    /// One sentence for the key document: what of this file the key covers.
    pub keyed_on: String,
    /// Whether the key holds the file's bytes (by rule, or because it could not be
    /// parsed): then nothing of it is uncovered.
    pub by_bytes: bool,
    /// SHA-256 of the file's bytes, empty when it is missing.
    pub file_digest: String,
    /// The covered content, by table (`[project] dependencies`), canonical: each is an
    /// option of the key document, so `tiers explain` shows it and a change names it.
    pub covered: BTreeMap<String, Value>,
    /// Digests of what the key does not cover, by table (`[tool.ruff]`).
    pub uncovered: BTreeMap<String, String>,
    /// The project's own installed metadata in this file (`[project] version`…).
    pub own: BTreeMap<String, Value>,
    /// Files this one includes with `-r`/`-c`, project-relative.
    pub includes: Vec<String>,
}

impl Reading {
    /// A file keyed on its bytes, whose digest is `digest`.
    pub fn bytes(digest: &str, why: Option<&str>) -> Reading {
        Reading {
            digest: digest.to_owned(),
            by_bytes: true,
            file_digest: digest.to_owned(),
            keyed_on: match why {
                Some(why) => format!("its bytes: {why}"),
                None => "its bytes".to_owned(),
            },
            ..Reading::default()
        }
    }
}

/// How the key reads the manifest `rel`, whose content is `bytes`.
pub fn read(rel: &str, bytes: &[u8]) -> Reading {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let mut r = if name == "pyproject.toml" {
        pyproject(bytes)
    } else if name == "uv.lock" {
        uv_lock(bytes)
    } else if is_requirements(name) {
        requirements(rel, bytes)
    } else {
        Reading::bytes(&digest_of(bytes), None)
    };
    r.file_digest = digest_of(bytes);
    r
}

/// Whether the key reads `name` (a file name) rather than taking its bytes.
pub fn is_parsed(name: &str) -> bool {
    name == "pyproject.toml" || name == "uv.lock" || is_requirements(name)
}

/// Whether `name` is read as a requirement file.
pub fn is_requirements(name: &str) -> bool {
    name.ends_with(".txt") || (name.ends_with(".in") && name.contains("requirements"))
}

fn digest_of(bytes: &[u8]) -> String {
    Key::of_bytes(bytes).as_str().to_owned()
}

fn digest_value(v: &Value) -> String {
    Key::of_bytes(&serde_json::to_vec(v).expect("JSON serializes")).to_string()
}

fn json(v: &toml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn parse(bytes: &[u8]) -> Result<toml::Table, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("it is not UTF-8 ({e})"))?;
    text.parse::<toml::Table>().map_err(|e| {
        let first = e.to_string();
        let first = first.lines().next().unwrap_or_default().trim().to_owned();
        format!("it does not parse as TOML ({first})")
    })
}

fn pyproject(bytes: &[u8]) -> Reading {
    let doc = match parse(bytes) {
        Ok(doc) => doc,
        Err(why) => return Reading::bytes(&digest_of(bytes), Some(&why)),
    };
    let dynamic: Vec<&str> = doc
        .get("project")
        .and_then(|p| p.get("dynamic"))
        .and_then(toml::Value::as_array)
        .map(|a| a.iter().filter_map(toml::Value::as_str).collect())
        .unwrap_or_default();
    if let Some(d) = dynamic
        .iter()
        .find(|d| **d == "dependencies" || **d == "optional-dependencies")
    {
        let why = format!("`[project] dynamic` lists `{d}`, which the build backend computes");
        return Reading::bytes(&digest_of(bytes), Some(&why));
    }
    let mut r = Reading {
        keyed_on: "its dependency tables".to_owned(),
        ..Reading::default()
    };
    for (key, value) in &doc {
        match (key.as_str(), value) {
            ("build-system" | "dependency-groups", v) => {
                r.covered.insert(format!("[{key}]"), json(v));
            }
            ("project", toml::Value::Table(t)) => {
                split(&mut r, "project", t, PROJECT_COVERED, PROJECT_OWN)
            }
            ("tool", toml::Value::Table(tools)) => {
                for (tool, v) in tools {
                    let covered = TOOL_COVERED.iter().find(|(n, _)| n == tool);
                    match (covered, v) {
                        (Some((_, keys)), toml::Value::Table(t)) => {
                            let own = TOOL_OWN
                                .iter()
                                .find(|(n, _)| n == tool)
                                .map_or(&[][..], |(_, o)| *o);
                            split(&mut r, &format!("tool.{tool}"), t, keys, own);
                        }
                        // A `tool.uv = 1` the installer would reject: keep it.
                        (Some(_), v) => {
                            r.covered.insert(format!("[tool.{tool}]"), json(v));
                        }
                        (None, v) => uncovered(&mut r, &format!("tool.{tool}"), v),
                    }
                }
            }
            // `project` that is not a table: the installer will say so; key on it.
            ("project" | "tool", v) => {
                r.covered.insert(format!("[{key}]"), json(v));
            }
            (_, v) => uncovered(&mut r, key, v),
        }
    }
    r.digest = digest_value(&serde_json::to_value(&r.covered).expect("JSON serializes"));
    r
}

/// The keys of table `[name]`: `covered` into the key, `own` into the project's
/// metadata (and the uncovered record), the rest into the uncovered record.
fn split(r: &mut Reading, name: &str, table: &toml::Table, covered: &[&str], own: &[&str]) {
    for (k, v) in table {
        let label = format!("[{name}] {k}");
        if covered.contains(&k.as_str()) {
            r.covered.insert(label, json(v));
            continue;
        }
        let v = json(v);
        r.uncovered.insert(label.clone(), digest_value(&v));
        if own.contains(&k.as_str()) {
            r.own.insert(label, v);
        }
    }
}

/// Record `value`, found at `[path]`, as uncovered: one digest per table, so a
/// change names the innermost table it is in (`[tool.pytest.ini_options]`).
fn uncovered(r: &mut Reading, path: &str, value: &toml::Value) {
    let toml::Value::Table(t) = value else {
        r.uncovered
            .insert(format!("[{path}]"), digest_value(&json(value)));
        return;
    };
    let mut own = serde_json::Map::new();
    for (k, v) in t {
        match v {
            toml::Value::Table(_) => uncovered(r, &format!("{path}.{k}"), v),
            v => {
                own.insert(k.clone(), json(v));
            }
        }
    }
    if !own.is_empty() || t.is_empty() {
        r.uncovered
            .insert(format!("[{path}]"), digest_value(&Value::Object(own)));
    }
}

fn uv_lock(bytes: &[u8]) -> Reading {
    let mut doc = match parse(bytes) {
        Ok(doc) => doc,
        Err(why) => return Reading::bytes(&digest_of(bytes), Some(&why)),
    };
    let mut r = Reading {
        keyed_on: "its content but the root project's version".to_owned(),
        ..Reading::default()
    };
    if let Some(toml::Value::Array(packages)) = doc.get_mut("package") {
        for p in packages.iter_mut().filter_map(toml::Value::as_table_mut) {
            let root = p
                .get("source")
                .and_then(toml::Value::as_table)
                .is_some_and(|s| {
                    ["editable", "virtual"]
                        .iter()
                        .any(|k| s.get(*k).and_then(toml::Value::as_str) == Some("."))
                });
            if root {
                if let Some(v) = p.remove("version") {
                    let name = p.get("name").and_then(toml::Value::as_str).unwrap_or("?");
                    r.uncovered.insert(
                        format!("the version of the root project `{name}`"),
                        digest_value(&json(&v)),
                    );
                }
            }
        }
    }
    r.digest = digest_value(&json(&toml::Value::Table(doc)));
    r
}

/// pip's reading of a requirement file: continuation lines joined, comments (`#`
/// at the start or after blanks) and blank lines dropped, blanks collapsed.
fn requirements(rel: &str, bytes: &[u8]) -> Reading {
    let text = String::from_utf8_lossy(bytes);
    let mut lines: Vec<String> = Vec::new();
    let mut pending = String::new();
    for raw in text.lines() {
        if let Some(head) = raw.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(raw);
        let line = strip_comment(&pending);
        let words: Vec<&str> = line.split_whitespace().collect();
        if !words.is_empty() {
            lines.push(words.join(" "));
        }
        pending.clear();
    }
    let line = strip_comment(&pending);
    if !line.trim().is_empty() {
        lines.push(line.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    let dir = rel.rsplit_once('/').map_or("", |(d, _)| d);
    let includes = lines
        .iter()
        .filter_map(|l| included(l))
        .map(|f| join(dir, f))
        .collect();
    let covered = BTreeMap::from([("requirements".to_owned(), serde_json::json!(lines))]);
    Reading {
        digest: digest_value(&serde_json::json!(lines)),
        keyed_on: "its requirement lines".to_owned(),
        covered,
        includes,
        ..Reading::default()
    }
}

fn strip_comment(line: &str) -> &str {
    let mut prev_blank = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_blank {
            return &line[..i];
        }
        prev_blank = c.is_whitespace();
    }
    line
}

/// The file a `-r`/`-c` line includes.
fn included(line: &str) -> Option<&str> {
    for flag in ["--requirement", "--constraint", "-r", "-c"] {
        let Some(rest) = line.strip_prefix(flag) else {
            continue;
        };
        let rest = rest.strip_prefix('=').unwrap_or(rest).trim();
        // `-rfile` is pip's too; `--requirementx` is not a flag.
        if rest.is_empty()
            || (flag.starts_with("--") && !line[flag.len()..].starts_with([' ', '=']))
        {
            return None;
        }
        return Some(rest);
    }
    None
}

/// `file` as written in a requirement file in `dir`, as a project-relative path.
fn join(dir: &str, file: &str) -> String {
    let mut parts: Vec<&str> = if file.starts_with('/') {
        Vec::new()
    } else {
        dir.split('/').filter(|p| !p.is_empty()).collect()
    };
    let mut up = 0usize;
    for part in file.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    up += 1;
                }
            }
            p => parts.push(p),
        }
    }
    let mut out: Vec<&str> = std::iter::repeat_n("..", up).collect();
    out.extend(parts);
    let joined = out.join("/");
    if file.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
    }
}

/// What changed between two records of uncovered content: one phrase per table.
pub fn changed_tables(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (table, digest) in new {
        match old.get(table) {
            None => out.push(format!("{table} was added")),
            Some(d) if d != digest => out.push(format!("{table} changed")),
            _ => {}
        }
    }
    for table in old.keys().filter(|t| !new.contains_key(*t)) {
        out.push(format!("{table} was removed"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "demo"
version = "1.0"
description = "A demo"
requires-python = ">=3.9"
dependencies = ["tinya>=1"]

[project.scripts]
demo = "demo:main"

[tool.ruff]
line-length = 100

[tool.pytest.ini_options]
addopts = "-q"
"#;

    #[test]
    fn comments_formatting_and_tool_tables_do_not_change_the_digest() {
        let base = read("pyproject.toml", BASE.as_bytes());
        assert_eq!(base.keyed_on, "its dependency tables");
        let edited = BASE
            .replace("line-length = 100", "line-length = 120  # wider")
            .replace("addopts = \"-q\"", "addopts = '-q -x'")
            .replace("[project]\n", "# the project\n[project]\n")
            .replace(
                r#"dependencies = ["tinya>=1"]"#,
                "dependencies = [\n  'tinya>=1',\n]",
            );
        let r = read("pyproject.toml", edited.as_bytes());
        assert_eq!(r.digest, base.digest);
        assert_eq!(
            changed_tables(&base.uncovered, &r.uncovered),
            ["[tool.pytest.ini_options] changed", "[tool.ruff] changed"]
        );
        assert_eq!(
            r.covered["[project] dependencies"],
            serde_json::json!(["tinya>=1"])
        );
    }

    #[test]
    fn each_dependency_table_changes_the_digest() {
        let base = read("pyproject.toml", BASE.as_bytes()).digest;
        for (from, to) in [
            (r#"["tinya>=1"]"#, r#"["tinya>=1", "tinyb"]"#),
            (r#"["tinya>=1"]"#, r#"["tinya>=2"]"#),
            (">=3.9", ">=3.10"),
            ("\"hatchling\"]", "\"hatchling>=1.20\"]"),
            (
                "[project.scripts]",
                "[project.optional-dependencies]\ntest = [\"tinyb\"]\n[project.scripts]",
            ),
            (
                "[tool.ruff]",
                "[dependency-groups]\ndev = [\"tinyb\"]\n[tool.ruff]",
            ),
            (
                "[tool.ruff]",
                "[[tool.uv.index]]\nurl = \"https://example.test/simple\"\n[tool.ruff]",
            ),
            (
                "[tool.ruff]",
                "[tool.poetry.group.dev.dependencies]\ntinyb = \"*\"\n[tool.ruff]",
            ),
        ] {
            let edited = BASE.replacen(from, to, 1);
            assert_ne!(edited, BASE);
            let r = read("pyproject.toml", edited.as_bytes());
            assert_ne!(r.digest, base, "{from} → {to}");
        }
    }

    #[test]
    fn the_projects_own_metadata_is_not_in_the_digest_but_recorded() {
        let base = read("pyproject.toml", BASE.as_bytes());
        assert_eq!(base.own["[project] version"], "1.0");
        assert_eq!(
            base.own["[project] scripts"],
            serde_json::json!({"demo": "demo:main"})
        );
        let bumped = read("pyproject.toml", BASE.replace("1.0", "1.1").as_bytes());
        assert_eq!(bumped.digest, base.digest);
        assert_eq!(bumped.own["[project] version"], "1.1");
    }

    #[test]
    fn unparsable_or_dynamic_dependencies_fall_back_to_bytes() {
        let broken = format!("{BASE}\n[tool.ruff\n");
        let r = read("pyproject.toml", broken.as_bytes());
        assert!(
            r.keyed_on
                .starts_with("its bytes: it does not parse as TOML"),
            "{}",
            r.keyed_on
        );
        assert_eq!(r.digest, digest_of(broken.as_bytes()));
        let dynamic = BASE.replace(
            "dependencies = [\"tinya>=1\"]",
            "dynamic = [\"dependencies\"]",
        );
        let r = read("pyproject.toml", dynamic.as_bytes());
        assert_eq!(
            r.keyed_on,
            "its bytes: `[project] dynamic` lists `dependencies`, which the build backend computes"
        );
    }

    #[test]
    fn requirement_files_keep_requirement_lines_and_their_includes() {
        let a = read(
            "reqs/dev.txt",
            b"# tools\n-r base.txt\ntinya>=1  # pinned later\n\n--constraint=../c.txt\npytest \\\n  >=8\n",
        );
        let b = read(
            "reqs/dev.txt",
            b"-r   base.txt\n\ntinya>=1\n--constraint=../c.txt\npytest >=8\n# done\n",
        );
        assert_eq!(a.digest, b.digest);
        assert_eq!(a.includes, ["reqs/base.txt", "c.txt"]);
        assert_eq!(
            a.covered["requirements"],
            serde_json::json!([
                "-r base.txt",
                "tinya>=1",
                "--constraint=../c.txt",
                "pytest >=8"
            ])
        );
        let c = read("reqs/dev.txt", b"-r base.txt\ntinya>=2\n");
        assert_ne!(a.digest, c.digest);
        assert_eq!(
            read("r.txt", b"x#not-a-comment\n").covered["requirements"],
            serde_json::json!(["x#not-a-comment"])
        );
    }

    #[test]
    fn a_uv_lock_is_keyed_without_the_root_projects_version() {
        let lock = |version: &str, dep: &str| {
            format!(
                "version = 1\n\n[[package]]\nname = \"demo\"\nversion = \"{version}\"\nsource = {{ editable = \".\" }}\ndependencies = [{{ name = \"tinya\" }}]\n\n[[package]]\nname = \"tinya\"\nversion = \"{dep}\"\nsource = {{ registry = \"wheels\" }}\n"
            )
        };
        let a = read("uv.lock", lock("1.0", "1.0").as_bytes());
        let bumped = read("uv.lock", lock("1.1", "1.0").as_bytes());
        assert_eq!(a.digest, bumped.digest);
        assert_eq!(
            changed_tables(&a.uncovered, &bumped.uncovered),
            ["the version of the root project `demo` changed"]
        );
        assert_ne!(
            a.digest,
            read("uv.lock", lock("1.0", "2.0").as_bytes()).digest
        );
    }

    #[test]
    fn other_manifests_are_their_bytes() {
        let r = read("setup.py", b"setup()\n");
        assert_eq!(r.keyed_on, "its bytes");
        assert_eq!(r.digest, digest_of(b"setup()\n"));
    }

    #[test]
    fn includes_resolve_against_the_including_file() {
        assert_eq!(join("", "base.txt"), "base.txt");
        assert_eq!(join("a/b", "../c.txt"), "a/c.txt");
        assert_eq!(join("", "../x.txt"), "../x.txt");
        assert_eq!(join("a", "./b/./c.txt"), "a/b/c.txt");
        assert_eq!(included("-rbase.txt"), Some("base.txt"));
        assert_eq!(included("--requirement base.txt"), Some("base.txt"));
        assert_eq!(included("--requirementsx"), None);
        assert_eq!(included("requests"), None);
    }
}
