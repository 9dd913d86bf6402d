//! The per-file symbol table: a versioned, serializable schema.
//!
//! Everything here is a pure function of one file's bytes. Nothing names the
//! file or its module, because one content can sit at several paths (a vendored
//! copy, a file moved between commits) and is extracted once for all of them.
//!
//! Conventions, for every field below:
//! - lines are 1-based, columns 0-based and counted in **UTF-8 bytes** from the
//!   start of the line (as CPython's `ast` counts `col_offset`). For a file that
//!   declares another encoding (PEP 263), the bytes are those of the decoded text
//!   re-encoded as UTF-8, again as `ast` does; a leading UTF-8 BOM is not counted.
//! - lists are in source order.
//! - "text" fields hold the expression's source text as written (comments and
//!   line breaks included), cut to [`MAX_TEXT_BYTES`] bytes with a trailing `…`.
//! - a qualified name follows PEP 3155 (`__qualname__`): `Outer.Inner.meth` for
//!   class members and `f.<locals>.g` for definitions inside a function.
//! - definitions are kept flat (every class and function at any depth is in
//!   [`FileSymbols::classes`] / [`FileSymbols::functions`]) and linked by
//!   qualified name, so that a file of deeply nested definitions is no deeper as
//!   JSON than a flat one.

use serde::{Deserialize, Serialize};

use crate::FileError;

/// Bumped whenever the shape of [`FileSymbols`] changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

/// Bumped whenever the extractor can produce different output for the same
/// bytes (a bug fix, a new fact, a new grammar). Part of every cache key.
pub const EXTRACTOR_VERSION: u32 = 2;

/// Longest expression text kept in a text field, in bytes.
pub const MAX_TEXT_BYTES: usize = 1024;

/// A position: 1-based line, 0-based column in UTF-8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

/// A half-open source range `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    pub start: Pos,
    pub end: Pos,
}

/// Everything extracted from one file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSymbols {
    /// The module docstring, decoded (escapes processed), not dedented.
    pub docstring: Option<String>,
    /// Every `import` / `from … import` statement at any depth.
    pub imports: Vec<Import>,
    /// Every class at any depth.
    pub classes: Vec<Class>,
    /// Every `def` / `async def` at any depth.
    pub functions: Vec<Function>,
    /// Names bound by assignment at module level (including inside module-level
    /// `if`/`try`/`with`/`for`/`while`/`match` blocks).
    pub variables: Vec<Variable>,
    /// Calls made by module-level code (outside any def or class body).
    pub calls: Vec<CallSite>,
    /// What could not be read. A file with errors still carries whatever the
    /// error-tolerant parser recovered.
    pub errors: Vec<FileError>,
}

/// One import statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Import {
    /// `import a.b` or `from m import x`.
    pub kind: ImportKind,
    /// Number of leading dots of a `from` import (0 = absolute).
    pub level: u32,
    /// The `from` module, dotted (`None` for `import …` and for `from . import x`).
    pub module: Option<String>,
    /// The imported names; for `import a.b as c` the name is `a.b`.
    /// Empty for a star import.
    pub names: Vec<ImportedName>,
    /// `from m import *`.
    pub star: bool,
    /// Qualified name of the enclosing def or class, `None` at module level.
    pub scope: Option<String>,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImportKind {
    Import,
    From,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedName {
    pub name: String,
    pub asname: Option<String>,
}

impl ImportedName {
    /// The name this import binds in its scope: the alias, else for
    /// `import a.b` the first component `a`, else the name.
    pub fn bound_name(&self, kind: ImportKind) -> &str {
        match (&self.asname, kind) {
            (Some(alias), _) => alias,
            (None, ImportKind::Import) => self.name.split('.').next().unwrap_or(&self.name),
            (None, ImportKind::From) => &self.name,
        }
    }
}

/// One `class` statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Class {
    pub name: String,
    pub qualname: String,
    /// Qualified name of the enclosing class or def, `None` at module level.
    pub parent: Option<String>,
    /// Positional base expressions, as text.
    pub bases: Vec<String>,
    /// Keyword arguments of the class statement (`metaclass=M`), as text.
    pub keywords: Vec<String>,
    /// Decorator expressions without the `@`, as text, top to bottom.
    pub decorators: Vec<String>,
    pub docstring: Option<String>,
    /// Names of the methods defined directly in the body (any nesting of
    /// `if`/`try` blocks, but not inside another def or class).
    pub methods: Vec<String>,
    /// Names of the classes defined directly in the body.
    pub classes: Vec<String>,
    /// Names bound by assignment directly in the body.
    pub attributes: Vec<Variable>,
    /// Calls made by the class body itself (not by its methods).
    pub calls: Vec<CallSite>,
    /// From the `class` keyword (decorators excluded, as in `ast`) to the end
    /// of the body.
    pub span: Span,
}

/// One `def` or `async def`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Function {
    pub name: String,
    pub qualname: String,
    /// Qualified name of the enclosing class or def, `None` at module level.
    pub parent: Option<String>,
    /// Defined directly in a class body.
    pub is_method: bool,
    pub is_async: bool,
    pub parameters: Vec<Parameter>,
    /// Return annotation, as text.
    pub returns: Option<String>,
    /// Decorator expressions without the `@`, as text, top to bottom.
    pub decorators: Vec<String>,
    pub docstring: Option<String>,
    /// Calls made by the body, including those inside lambdas and
    /// comprehensions, but not those of nested defs or classes. Calls in
    /// decorators, defaults and annotations run in the enclosing scope and are
    /// recorded there.
    pub calls: Vec<CallSite>,
    /// From `def` (or `async`; decorators excluded, as in `ast`) to the end of
    /// the body.
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameter {
    pub name: String,
    pub kind: ParamKind,
    pub annotation: Option<String>,
    /// Default value, as text.
    pub default: Option<String>,
}

/// The kinds of `inspect.Parameter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamKind {
    /// Before a `/`.
    PositionalOnly,
    PositionalOrKeyword,
    /// `*args`.
    VarPositional,
    /// After `*` or `*args`.
    KeywordOnly,
    /// `**kwargs`.
    VarKeyword,
}

/// A name bound by assignment (`x = …`, `x: T = …`, `x: T`, `a, *b = …`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    pub annotation: Option<String>,
    /// The span of the name itself.
    pub span: Span,
}

/// One call expression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSite {
    /// The callee expression, as text (`foo.bar`, `make()`, `x[0]`).
    pub callee: String,
    /// The callee as a dotted name when it is a plain name or a chain of
    /// attributes on one (`foo.bar.baz`), whitespace and comments removed.
    pub dotted: Option<String>,
    /// Where the call expression starts.
    pub pos: Pos,
}
