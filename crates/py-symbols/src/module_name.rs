//! A path's module name, from the package layout.

use std::collections::HashSet;
use std::hash::BuildHasher;

/// The dotted module name of the project file `rel_path` (relative,
/// `/`-separated), or `None` when it has none: not a `.py` file, the project
/// root's own `__init__.py`, or a file whose own name is not an identifier.
///
/// The rule:
/// - the **source root** is `src/` for paths under it (unless `src/__init__.py`
///   exists, which makes `src` a package like any other), else the project root;
/// - every directory between the source root and the file is a package: a
///   regular one when it holds `__init__.py` (checked in `files`), a PEP 420
///   namespace package otherwise. Both count, so `tools/gen.py` without any
///   `__init__.py` is `tools.gen`, and `ns/pkg/__init__.py` is `ns.pkg`;
/// - a directory whose name is not an identifier (`my-project`, `docs.src`)
///   cannot be a package, so the name starts below the deepest such directory:
///   `my-project/pkg/mod.py` is `pkg.mod`;
/// - `pkg/__init__.py` names the package itself, `pkg`.
///
/// `files` is the set of the project's file paths, in the same form.
pub fn module_name<S: BuildHasher>(rel_path: &str, files: &HashSet<String, S>) -> Option<String> {
    let path = rel_path.strip_prefix("./").unwrap_or(rel_path);
    let stem_path = path.strip_suffix(".py")?;
    let mut parts: Vec<&str> = stem_path.split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return None;
    }
    if parts.len() > 1 && parts[0] == "src" && !files.contains("src/__init__.py") {
        parts.remove(0);
    }
    if parts.last() == Some(&"__init__") {
        parts.pop();
    }
    let last = parts.last()?;
    if !is_identifier(last) {
        return None;
    }
    let start = parts
        .iter()
        .rposition(|p| !is_identifier(p))
        .map_or(0, |i| i + 1);
    Some(parts[start..].join("."))
}

/// A Python identifier that is not a keyword (a keyword cannot be imported by
/// name). Non-ASCII letters count, as they do in Python 3.
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first == '_' || first.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
        && !KEYWORDS.contains(&name)
}

const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];
