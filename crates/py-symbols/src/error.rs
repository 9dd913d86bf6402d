use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Something about one file's content that could not be read. These are
/// results, stored in [`FileSymbols::errors`](crate::FileSymbols::errors) and
/// cached like any other fact: the same bytes give the same errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FileError {
    /// The parser could not make sense of the text at this position; what
    /// surrounds it was still extracted.
    #[error("syntax error at line {line}, column {column}: {message}")]
    Syntax {
        line: u32,
        column: u32,
        message: String,
    },
    /// More syntax errors than [`MAX_SYNTAX_ERRORS`](crate::MAX_SYNTAX_ERRORS);
    /// the rest are counted, not listed.
    #[error("{omitted} more syntax errors not listed")]
    MoreSyntaxErrors { omitted: u32 },
    /// Not parsed: the content is not text in its declared encoding.
    #[error("content is not valid {encoding} (first bad byte at offset {offset})")]
    InvalidEncoding { encoding: String, offset: u64 },
    /// Not parsed: the file declares an encoding (PEP 263) this crate does not know.
    #[error("unknown source encoding `{encoding}` declared on line {line}")]
    UnknownEncoding { encoding: String, line: u32 },
    /// Not parsed: a NUL byte, which Python source cannot contain.
    #[error("content looks binary: NUL byte at offset {offset}")]
    Binary { offset: u64 },
    /// Not parsed: over the size limit.
    #[error("file is {size} bytes, over the limit of {limit} bytes; not parsed")]
    TooLarge { size: u64, limit: u64 },
    /// Not parsed: nested too deep for the parser to read in bounded memory
    /// and time. `what` is `code` (brackets, blocks and operator chains, as
    /// estimated from the tokens) or `f-strings`.
    #[error("{what} nested {depth} levels deep, over the limit of {limit}; not parsed")]
    TooDeep {
        what: String,
        depth: u64,
        limit: u64,
    },
    /// The parser failed without a tree (it should not happen: the parser is
    /// meant never to panic; kept so that it is a result and not a panic).
    #[error("the parser returned no tree")]
    NoTree,
}

/// Errors of the library's own operations (file-content problems are
/// [`FileError`]s, inside the result).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
