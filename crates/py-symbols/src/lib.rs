//! Python symbol tables, per file content, with incremental cross-file facts.
//!
//! # The big decision: the unit of work is one file's content
//!
//! [`extract`] takes the bytes of one file and nothing else — not its path, not
//! its module name, not its neighbours — and returns a [`FileSymbols`]: imports,
//! classes, functions and methods (with parameters, decorators, docstrings and
//! call sites), module-level variables, and whatever could not be read. Because
//! the result is a pure function of the bytes, it can be cached under the
//! content's digest and shared by every path, branch and project state that
//! holds the same bytes. An edit re-parses the edited files only; returning to an
//! earlier commit re-parses nothing.
//!
//! What depends on more than one file is computed on top, from the per-file
//! results and the project layout:
//!
//! - [`module_name`] names a path's module from the package layout (`src/`,
//!   `__init__.py` packages, PEP 420 namespace packages);
//! - [`resolve_incremental`] resolves each module's imports to project modules
//!   (the import graph) and its call sites to project definitions. The
//!   resolution of a module reads only its own symbols and the **interfaces**
//!   ([`Interface`]: top-level names, class members, import bindings) of the
//!   modules it consulted — those it imports, and those that re-export what it
//!   uses. Each resolved module records the interface digests it consulted, so
//!   the next resolution redoes a module only when its own content changed or
//!   one of those interfaces did. Editing a function body re-resolves that one
//!   module; renaming a function re-resolves its importers too.
//!
//! Parse errors are results, not failures: the parser (Ruff's, pinned exactly) is
//! error tolerant, so a file with a syntax error yields what could be read plus
//! the errors with their positions. Content that is not text (invalid in its
//! encoding, NUL bytes) or is too large yields a [`FileError`], never a panic.
//! The tree walk uses an explicit stack, so deeply nested input costs heap, not
//! stack.
//!
//! Positions are 1-based lines and 0-based columns counted in UTF-8 bytes, as
//! in CPython's `ast`. See [`schema`] for the conventions of every field, and
//! [`SCHEMA_VERSION`] / [`EXTRACTOR_VERSION`], which belong in any cache key.

pub mod codec;
mod error;
mod extract;
mod module_name;
mod parallel;
mod resolve;
pub mod schema;
mod source;

pub use error::{Error, FileError};
pub use extract::{extract, ExtractOptions, Extractor, MAX_FILE_BYTES, MAX_SYNTAX_ERRORS};
pub use module_name::module_name;
pub use parallel::{cores, extract_files, extract_many, read_source};
pub use resolve::{
    first_under, interface_digest, resolve_file, resolve_incremental, sha256_hex, symbols_digest,
    Binding, DefKind, FileToResolve, Interface, ModuleInfo, Modules, ProjectState, ResolveStats,
    ResolvedCall, ResolvedGraph, ResolvedImport, ResolvedModule, Target,
};
pub use schema::{
    CallSite, Class, FileSymbols, Function, Import, ImportKind, ImportedName, ParamKind, Parameter,
    Pos, Span, Variable, EXTRACTOR_VERSION, MAX_TEXT_BYTES, SCHEMA_VERSION,
};
