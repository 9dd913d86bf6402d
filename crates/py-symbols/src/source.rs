//! From bytes to text, as CPython's tokenizer does it: size and NUL guards, a
//! UTF-8 BOM, and the PEP 263 coding declaration on line 1 or 2.

use std::borrow::Cow;

use crate::FileError;

const BOM: &[u8] = b"\xEF\xBB\xBF";

pub(crate) fn decode(bytes: &[u8], max_bytes: usize) -> Result<Cow<'_, str>, FileError> {
    if bytes.len() > max_bytes {
        return Err(FileError::TooLarge {
            size: bytes.len() as u64,
            limit: max_bytes as u64,
        });
    }
    // `contains` searches word by word; `position` only finds the offset.
    if let Some(offset) = bytes
        .contains(&0)
        .then(|| bytes.iter().position(|&b| b == 0))
        .flatten()
    {
        return Err(FileError::Binary {
            offset: offset as u64,
        });
    }
    // A BOM means UTF-8 whatever a cookie says; CPython rejects a conflicting
    // cookie, we just read the text.
    if let Some(rest) = bytes.strip_prefix(BOM) {
        return utf8(rest, "utf-8", BOM.len());
    }
    let Some((label, line)) = coding_cookie(bytes) else {
        return utf8(bytes, "utf-8", 0);
    };
    let name = label.to_ascii_lowercase().replace('_', "-");
    if name == "utf-8" || name == "utf8" || name.starts_with("utf-8-") {
        return utf8(bytes, "utf-8", 0);
    }
    // CPython's normal names for Latin-1 (WHATWG would map them to windows-1252).
    if [
        "latin-1",
        "iso-8859-1",
        "iso-latin-1",
        "latin1",
        "l1",
        "iso8859-1",
    ]
    .iter()
    .any(|n| name == *n || name.starts_with(&format!("{n}-")))
    {
        return Ok(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()));
    }
    if name == "ascii" || name == "us-ascii" {
        return match bytes.iter().position(|b| !b.is_ascii()) {
            Some(offset) => Err(FileError::InvalidEncoding {
                encoding: "ascii".into(),
                offset: offset as u64,
            }),
            None => utf8(bytes, "ascii", 0),
        };
    }
    match encoding_rs::Encoding::for_label_no_replacement(name.as_bytes()) {
        Some(encoding)
            if encoding != encoding_rs::UTF_16LE && encoding != encoding_rs::UTF_16BE =>
        {
            match encoding.decode_without_bom_handling_and_without_replacement(bytes) {
                Some(text) => Ok(Cow::Owned(text.into_owned())),
                None => Err(FileError::InvalidEncoding {
                    encoding: encoding.name().to_ascii_lowercase(),
                    offset: first_malformed(encoding, bytes),
                }),
            }
        }
        // Any ASCII-compatible codec reads pure ASCII the same way, so an
        // unknown name only matters when there is something else.
        _ if bytes.is_ascii() => utf8(bytes, "utf-8", 0),
        _ => Err(FileError::UnknownEncoding {
            encoding: label.to_string(),
            line,
        }),
    }
}

fn utf8<'a>(bytes: &'a [u8], encoding: &str, skipped: usize) -> Result<Cow<'a, str>, FileError> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(Cow::Borrowed(text)),
        Err(e) => Err(FileError::InvalidEncoding {
            encoding: encoding.into(),
            offset: (e.valid_up_to() + skipped) as u64,
        }),
    }
}

fn first_malformed(encoding: &'static encoding_rs::Encoding, bytes: &[u8]) -> u64 {
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let mut out = String::with_capacity(bytes.len() * 3 + 16);
    let (result, read) = decoder.decode_to_string_without_replacement(bytes, &mut out, true);
    match result {
        encoding_rs::DecoderResult::Malformed(bad, _) => {
            read.saturating_sub(usize::from(bad)) as u64
        }
        _ => read as u64,
    }
}

/// The PEP 263 declaration: `^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)` on line 1,
/// or on line 2 when line 1 is blank or only a comment. Returns the label and
/// its 1-based line.
fn coding_cookie(bytes: &[u8]) -> Option<(&str, u32)> {
    let mut lines = bytes.split(|&b| b == b'\n');
    let first = lines.next()?;
    if let Some(label) = cookie_in_line(first) {
        return Some((label, 1));
    }
    let trimmed = trim_start(first);
    let first_is_comment_or_blank = trimmed.is_empty() || trimmed[0] == b'#' || trimmed == b"\r";
    if !first_is_comment_or_blank {
        return None;
    }
    cookie_in_line(lines.next()?).map(|label| (label, 2))
}

fn trim_start(line: &[u8]) -> &[u8] {
    let start = line
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\x0c'))
        .unwrap_or(line.len());
    &line[start..]
}

fn cookie_in_line(line: &[u8]) -> Option<&str> {
    let line = trim_start(line);
    if line.first() != Some(&b'#') {
        return None;
    }
    let mut from = 0;
    while let Some(at) = find(&line[from..], b"coding") {
        let after = from + at + b"coding".len();
        if matches!(line.get(after), Some(b':' | b'=')) {
            let rest = &line[after + 1..];
            let rest = &rest[rest
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t'))
                .unwrap_or(rest.len())..];
            let len = rest
                .iter()
                .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.'))
                .unwrap_or(rest.len());
            if len == 0 {
                return None;
            }
            return std::str::from_utf8(&rest[..len]).ok();
        }
        from = after;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `\r\n` and `\r` as `\n`, as CPython's tokenizer reads source (string
/// literals included). Lines and columns do not move: only line ends change.
pub(crate) fn universal_newlines(text: Cow<'_, str>) -> Cow<'_, str> {
    if !text.contains('\r') {
        return text;
    }
    Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
}
