//! A compact binary codec for [`FileSymbols`] and for graph buckets of
//! [`ResolvedModule`]s, in place of JSON where results are stored and read
//! back often (a cache of per-file results).
//!
//! Layout, for every type: unsigned integers are LEB128 varints, a bool is one
//! byte (0/1), an `Option` a 0/1 byte then the value, a string its byte length
//! then its UTF-8 bytes, a `Vec` its count then its items, an enum a one-byte
//! tag then its fields in declaration order. A [`FileSymbols`] document and a
//! bucket start with a 4-byte magic and [`CODEC_VERSION`] as a u32 LE; a
//! [`ResolvedModule`] body has no header of its own (it lives in a bucket).
//!
//! The input of a decoder is untrusted (a cache file can be truncated or
//! corrupt): every length is checked against the bytes left before anything is
//! allocated, and every failure is a [`CodecError`] naming the byte offset,
//! never a panic. Since every item of every list takes at least one byte, a
//! count larger than the bytes left is rejected outright, and what is reserved
//! up front is capped besides, so a hostile count cannot reserve more than
//! 1 MiB per list.
//!
//! Besides the documents of this crate's types, a caller can lay out a format
//! of its own with the same primitives and checks: a [`Writer`] and a
//! [`Reader`], and the hashing of the keys such a format holds ([`DigestSet`],
//! [`FastMap`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use crate::error::FileError;
use crate::resolve::{DefKind, ResolvedCall, ResolvedImport, ResolvedModule, Target};
use crate::schema::{
    CallSite, Class, FileSymbols, Function, Import, ImportKind, ImportedName, ParamKind, Parameter,
    Pos, Span, Variable,
};

/// Bumped when the byte layout changes.
pub const CODEC_VERSION: u32 = 1;

const SYMBOLS_MAGIC: [u8; 4] = *b"TSYM";
const BUCKET_MAGIC: [u8; 4] = *b"TGRB";

/// A u64 takes at most 10 LEB128 bytes (9 × 7 bits, then 1 bit).
const MAX_VARINT_BYTES: usize = 10;

/// The most a list reserves before its items are read; beyond it the list
/// grows as items actually decode.
const MAX_PREALLOC_BYTES: usize = 1 << 20;

/// Why bytes could not be decoded, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {offset}")]
pub struct CodecError {
    pub what: String,
    pub offset: usize,
}

type Result<T> = std::result::Result<T, CodecError>;

// ------------------------------------------------------------------ public API

/// Encodes one file's symbols as a self-describing document (magic, version).
pub fn encode_symbols(s: &FileSymbols) -> Vec<u8> {
    let mut w = Writer::with_capacity(symbols_size_hint(s));
    w.header(SYMBOLS_MAGIC);
    encode_file_symbols(&mut w, s);
    w.buf
}

/// Decodes a document of [`encode_symbols`]; trailing bytes are an error.
pub fn decode_symbols(bytes: &[u8]) -> Result<FileSymbols> {
    let mut r = Reader::new(bytes);
    r.header(SYMBOLS_MAGIC)?;
    let s = decode_file_symbols(&mut r)?;
    r.finish()?;
    Ok(s)
}

/// [`decode_symbols`] of what a module's [`Interface`](crate::Interface) and
/// its resolution ([`resolve_file`](crate::resolve_file)) read: the text they
/// do not read is skipped, not checked, and left empty (docstrings, bases and
/// keywords of classes, annotations, defaults, and the callee text of call
/// sites, whose dotted form is kept).
pub fn decode_symbols_to_resolve(bytes: &[u8]) -> Result<FileSymbols> {
    let mut r = Reader::new(bytes);
    r.lean = true;
    r.header(SYMBOLS_MAGIC)?;
    let s = decode_file_symbols(&mut r)?;
    r.finish()?;
    Ok(s)
}

/// Encodes one module's resolution: a record body of a bucket, no header.
pub fn encode_resolved(m: &ResolvedModule) -> Vec<u8> {
    let hint = 64
        + m.module.len()
        + m.symbols_digest.len()
        + m.deps.keys().map(|k| k.len() + 68).sum::<usize>()
        + m.imports.len() * 32
        + m.calls.len() * 96;
    let mut w = Writer::with_capacity(hint);
    encode_resolved_module(&mut w, m);
    w.buf
}

/// Decodes a body of [`encode_resolved`]; trailing bytes are an error.
pub fn decode_resolved(bytes: &[u8]) -> Result<ResolvedModule> {
    let mut r = Reader::new(bytes);
    let m = decode_resolved_module(&mut r)?;
    r.finish()?;
    Ok(m)
}

/// Encodes a graph bucket: header, count, then each record's path and its
/// length-prefixed body (as made by [`encode_resolved`]). The records must come
/// in strictly increasing path order, as a `BTreeMap` iterates: the decoder
/// checks it.
pub fn encode_bucket<'a>(records: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let records: Vec<(&str, &[u8])> = records.into_iter().collect();
    debug_assert!(
        records.windows(2).all(|p| p[0].0 < p[1].0),
        "bucket records must be in strictly increasing path order"
    );
    let size = 8
        + MAX_VARINT_BYTES
        + records
            .iter()
            .map(|(path, body)| path.len() + body.len() + 2 * MAX_VARINT_BYTES)
            .sum::<usize>();
    let mut w = Writer::with_capacity(size);
    w.header(BUCKET_MAGIC);
    w.len(records.len());
    for (path, body) in records {
        w.str(path);
        w.len(body.len());
        w.buf.extend_from_slice(body);
    }
    w.buf
}

/// Splits a bucket into `(path, body)` records; bodies are borrowed and not
/// decoded (see [`decode_resolved`]).
pub fn decode_bucket(bytes: &[u8]) -> Result<Vec<(String, &[u8])>> {
    let mut r = Reader::new(bytes);
    r.header(BUCKET_MAGIC)?;
    let records = r.vec(|r| {
        let at = r.at;
        let path = r.str()?;
        let n = r.len("record length")?;
        Ok((at, path, r.take(n)?))
    })?;
    r.finish()?;
    for pair in records.windows(2) {
        if pair[0].1 >= pair[1].1 {
            return Err(r.error(pair[1].0, "bucket paths not in strictly increasing order"));
        }
    }
    Ok(records
        .into_iter()
        .map(|(_, path, body)| (path, body))
        .collect())
}

// --------------------------------------------------------------------- writer

/// The 32 bytes of a SHA-256 given as 64 lowercase hex digits (as
/// [`sha256_hex`](crate::sha256_hex) makes them); `None` for anything else.
pub fn digest_bytes(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (hi, lo) = (NIBBLE[usize::from(pair[0])], NIBBLE[usize::from(pair[1])]);
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    (bad & 0xf0 == 0).then_some(out)
}

/// The value of each lowercase hex digit; 0xff for every other byte.
const NIBBLE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// A set of SHA-256 digests. They are uniformly distributed already, so
/// their first eight bytes are the hash: no SipHash over 32 bytes each.
pub type DigestSet = HashSet<[u8; 32], BuildHasherDefault<DigestHasher>>;

/// The hasher of [`DigestSet`]: the first eight bytes of a digest, as they are.
#[derive(Default)]
pub struct DigestHasher(u64);

/// A map keyed by strings the project itself holds (module names, paths),
/// hashed eight bytes at a time (FxHash's round) instead of with SipHash: no
/// one picks these keys to collide, and an edit looks up 36,000 of them.
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// The hasher of [`FastMap`].
#[derive(Default)]
pub struct FastHasher(u64);

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
    }

    fn write_u8(&mut self, b: u8) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(word);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Appends values in the layout of this module to a buffer.
pub struct Writer {
    /// What has been written: take it when done.
    pub buf: Vec<u8>,
}

impl Writer {
    /// An empty writer that reserves `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }

    /// A document's header: `magic`, then [`CODEC_VERSION`] as a u32 LE, so
    /// that a change of this layout is a decoding error, not a misread.
    pub fn header(&mut self, magic: [u8; 4]) {
        self.buf.extend_from_slice(&magic);
        self.buf.extend_from_slice(&CODEC_VERSION.to_le_bytes());
    }

    #[inline]
    pub(crate) fn u64(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// A u32, as a varint.
    #[inline]
    pub fn u32(&mut self, v: u32) {
        self.u64(u64::from(v));
    }

    /// A length or count, as a varint.
    #[inline]
    pub fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }

    /// One byte: an enum's tag.
    #[inline]
    pub fn tag(&mut self, t: u8) {
        self.buf.push(t);
    }

    #[inline]
    pub(crate) fn bool(&mut self, b: bool) {
        self.buf.push(u8::from(b));
    }

    /// A string: its byte length, then its UTF-8 bytes.
    #[inline]
    pub fn str(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// A SHA-256 given in hex, as its 32 bytes; `None` if it is not 64
    /// lowercase hex digits (nothing is written then).
    #[must_use]
    pub fn digest(&mut self, hex: &str) -> Option<()> {
        self.buf.extend_from_slice(&digest_bytes(hex)?);
        Some(())
    }

    #[inline]
    pub(crate) fn opt<T: ?Sized>(&mut self, v: Option<&T>, f: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.buf.push(0),
            Some(v) => {
                self.buf.push(1);
                f(self, v);
            }
        }
    }

    /// An optional string: 0, or 1 then the string.
    #[inline]
    pub fn opt_str(&mut self, v: &Option<String>) {
        self.opt(v.as_deref(), Self::str);
    }

    /// A list: its count, then each item as `f` writes it.
    #[inline]
    pub fn vec<T>(&mut self, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        self.len(items.len());
        for item in items {
            f(self, item);
        }
    }

    #[inline]
    pub(crate) fn strs(&mut self, items: &[String]) {
        self.vec(items, |w, s| w.str(s));
    }

    #[inline]
    pub(crate) fn pos(&mut self, p: Pos) {
        self.u32(p.line);
        self.u32(p.column);
    }

    #[inline]
    pub(crate) fn span(&mut self, s: Span) {
        self.pos(s.start);
        self.pos(s.end);
    }
}

// --------------------------------------------------------------------- reader

/// Reads values in the layout of this module from untrusted bytes: every
/// failure is a [`CodecError`] at the offset it was found, never a panic.
pub struct Reader<'a> {
    bytes: &'a [u8],
    /// The offset of the next byte to read, for errors a caller reports
    /// itself ([`Reader::error`]). Moved past the end, the reader has nothing
    /// left to read.
    pub at: usize,
    /// Skip the text resolution does not read ([`decode_symbols_to_resolve`]).
    lean: bool,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader {
            bytes,
            at: 0,
            lean: false,
        }
    }

    /// An error found at `offset`: what a caller's own check of the values
    /// it read returns.
    #[cold]
    #[inline(never)]
    pub fn error(&self, offset: usize, what: impl Into<String>) -> CodecError {
        CodecError {
            what: what.into(),
            offset,
        }
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn unknown_tag(&self, offset: usize, tag: u8, ty: &str) -> CodecError {
        self.error(offset, format!("unknown tag {tag} for {ty}"))
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.at)
    }

    /// The next `n` bytes, as they are.
    #[inline]
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.error(self.at, "truncated"));
        }
        // `at` is public: past the end it is an error here, not a panic.
        let Some(slice) = self.bytes.get(self.at..self.at + n) else {
            return Err(self.error(self.at, "truncated"));
        };
        self.at += n;
        Ok(slice)
    }

    #[inline]
    pub(crate) fn byte(&mut self) -> Result<u8> {
        match self.bytes.get(self.at) {
            Some(&b) => {
                self.at += 1;
                Ok(b)
            }
            None => Err(self.error(self.at, "truncated")),
        }
    }

    /// A header of [`Writer::header`]: an error unless it holds `magic` and
    /// this [`CODEC_VERSION`].
    pub fn header(&mut self, magic: [u8; 4]) -> Result<()> {
        if self.take(4)? != magic {
            return Err(self.error(0, "bad magic"));
        }
        let mut version = [0; 4];
        version.copy_from_slice(self.take(4)?);
        let version = u32::from_le_bytes(version);
        if version != CODEC_VERSION {
            return Err(self.error(
                4,
                format!("codec version {version}, expected {CODEC_VERSION}"),
            ));
        }
        Ok(())
    }

    /// An error unless every byte has been read.
    pub fn finish(&self) -> Result<()> {
        if self.remaining() > 0 {
            return Err(self.error(self.at, "trailing bytes"));
        }
        Ok(())
    }

    /// A varint.
    #[inline]
    pub fn u64(&mut self) -> Result<u64> {
        let b = self.byte()?;
        if b < 0x80 {
            return Ok(u64::from(b));
        }
        self.u64_slow(b)
    }

    pub(crate) fn u64_slow(&mut self, first: u8) -> Result<u64> {
        let start = self.at - 1;
        let mut value = u64::from(first & 0x7f);
        for i in 1..MAX_VARINT_BYTES {
            let b = self.byte()?;
            if i == MAX_VARINT_BYTES - 1 {
                if b & 0x80 != 0 {
                    return Err(self.error(start, "varint longer than 10 bytes"));
                }
                if b > 1 {
                    return Err(self.error(start, "varint overflows 64 bits"));
                }
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        // The last byte either ended the varint or was rejected above.
        Err(self.error(start, "varint longer than 10 bytes"))
    }

    /// A varint that must fit in a u32.
    #[inline]
    pub fn u32(&mut self) -> Result<u32> {
        let start = self.at;
        let v = self.u64()?;
        u32::try_from(v).map_err(|_| self.error(start, format!("varint {v} overflows u32")))
    }

    /// A length or count, which can't exceed the bytes left (every item of a
    /// list takes at least one byte); `what` names it in the error.
    #[inline]
    pub fn len(&mut self, what: &str) -> Result<usize> {
        let start = self.at;
        let v = self.u64()?;
        let left = self.remaining();
        if v > left as u64 {
            return Err(self.error(start, format!("{what} {v} exceeds the {left} bytes left")));
        }
        Ok(v as usize)
    }

    #[inline]
    pub(crate) fn bool(&mut self) -> Result<bool> {
        let start = self.at;
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.error(start, format!("invalid bool {b}"))),
        }
    }

    /// A string of [`Writer::str`], checked to be UTF-8.
    #[inline]
    pub fn str(&mut self) -> Result<String> {
        let n = self.len("string length")?;
        let start = self.at;
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(self.error(start + e.valid_up_to(), "invalid UTF-8")),
        }
    }

    /// 32 bytes, as the lowercase hex of a SHA-256 (see [`Writer::digest`]).
    pub fn digest(&mut self) -> Result<String> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let bytes = self.take(32)?;
        let mut hex = Vec::with_capacity(64);
        for b in bytes {
            hex.push(HEX[usize::from(b >> 4)]);
            hex.push(HEX[usize::from(b & 15)]);
        }
        Ok(String::from_utf8(hex).expect("hex digits are ASCII"))
    }

    /// An optional value: 0, or 1 then the value as `f` reads it.
    #[inline]
    pub fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        let start = self.at;
        match self.byte()? {
            0 => Ok(None),
            1 => f(self).map(Some),
            t => Err(self.unknown_tag(start, t, "Option")),
        }
    }

    /// An optional string of [`Writer::opt_str`].
    #[inline]
    pub fn opt_str(&mut self) -> Result<Option<String>> {
        self.opt(Self::str)
    }

    /// A list of [`Writer::vec`], each item as `f` reads it; what is reserved
    /// up front is capped, whatever the count says.
    #[inline]
    pub fn vec<T>(&mut self, mut f: impl FnMut(&mut Self) -> Result<T>) -> Result<Vec<T>> {
        let n = self.len("count")?;
        let mut items = Vec::with_capacity(n.min(MAX_PREALLOC_BYTES / size_of::<T>().max(1)));
        for _ in 0..n {
            items.push(f(self)?);
        }
        Ok(items)
    }

    #[inline]
    pub(crate) fn strs(&mut self) -> Result<Vec<String>> {
        self.vec(Self::str)
    }

    /// A string resolution does not read: empty, its bytes skipped, in a
    /// lean reader.
    #[inline]
    fn text(&mut self) -> Result<String> {
        if !self.lean {
            return self.str();
        }
        let n = self.len("string length")?;
        self.take(n)?;
        Ok(String::new())
    }

    /// [`Reader::text`] of an optional string: `None` in a lean reader.
    #[inline]
    fn opt_text(&mut self) -> Result<Option<String>> {
        let text = self.opt(Self::text)?;
        Ok(text.filter(|_| !self.lean))
    }

    /// [`Reader::text`] of a list of strings: empty in a lean reader.
    #[inline]
    fn texts(&mut self) -> Result<Vec<String>> {
        if !self.lean {
            return self.strs();
        }
        for _ in 0..self.len("count")? {
            self.text()?;
        }
        Ok(Vec::new())
    }

    #[inline]
    pub(crate) fn pos(&mut self) -> Result<Pos> {
        Ok(Pos {
            line: self.u32()?,
            column: self.u32()?,
        })
    }

    #[inline]
    pub(crate) fn span(&mut self) -> Result<Span> {
        Ok(Span {
            start: self.pos()?,
            end: self.pos()?,
        })
    }
}

// ---------------------------------------------------------------- FileSymbols

/// A guess at the encoded size, so that encoding rarely reallocates.
fn symbols_size_hint(s: &FileSymbols) -> usize {
    64 + s.docstring.as_ref().map_or(0, String::len)
        + s.imports.len() * 40
        + s.classes.len() * 160
        + s.functions.len() * 192
        + s.variables.len() * 24
        + s.calls.len() * 24
        + s.errors.len() * 64
}

fn encode_file_symbols(w: &mut Writer, s: &FileSymbols) {
    w.opt_str(&s.docstring);
    w.vec(&s.imports, encode_import);
    w.vec(&s.classes, encode_class);
    w.vec(&s.functions, encode_function);
    w.vec(&s.variables, encode_variable);
    w.vec(&s.calls, encode_call_site);
    w.vec(&s.errors, encode_file_error);
}

fn decode_file_symbols(r: &mut Reader<'_>) -> Result<FileSymbols> {
    Ok(FileSymbols {
        docstring: r.opt_text()?,
        imports: r.vec(decode_import)?,
        classes: r.vec(decode_class)?,
        functions: r.vec(decode_function)?,
        variables: r.vec(decode_variable)?,
        calls: r.vec(decode_call_site)?,
        errors: r.vec(decode_file_error)?,
    })
}

fn encode_import(w: &mut Writer, i: &Import) {
    encode_import_kind(w, i.kind);
    w.u32(i.level);
    w.opt_str(&i.module);
    w.vec(&i.names, encode_imported_name);
    w.bool(i.star);
    w.opt_str(&i.scope);
    w.span(i.span);
}

fn decode_import(r: &mut Reader<'_>) -> Result<Import> {
    Ok(Import {
        kind: decode_import_kind(r)?,
        level: r.u32()?,
        module: r.opt_str()?,
        names: r.vec(decode_imported_name)?,
        star: r.bool()?,
        scope: r.opt_str()?,
        span: r.span()?,
    })
}

fn encode_import_kind(w: &mut Writer, k: ImportKind) {
    w.tag(match k {
        ImportKind::Import => 0,
        ImportKind::From => 1,
    });
}

fn decode_import_kind(r: &mut Reader<'_>) -> Result<ImportKind> {
    let at = r.at;
    match r.byte()? {
        0 => Ok(ImportKind::Import),
        1 => Ok(ImportKind::From),
        t => Err(r.unknown_tag(at, t, "ImportKind")),
    }
}

fn encode_imported_name(w: &mut Writer, n: &ImportedName) {
    w.str(&n.name);
    w.opt_str(&n.asname);
}

fn decode_imported_name(r: &mut Reader<'_>) -> Result<ImportedName> {
    Ok(ImportedName {
        name: r.str()?,
        asname: r.opt_str()?,
    })
}

fn encode_class(w: &mut Writer, c: &Class) {
    w.str(&c.name);
    w.str(&c.qualname);
    w.opt_str(&c.parent);
    w.strs(&c.bases);
    w.strs(&c.keywords);
    w.strs(&c.decorators);
    w.opt_str(&c.docstring);
    w.strs(&c.methods);
    w.strs(&c.classes);
    w.vec(&c.attributes, encode_variable);
    w.vec(&c.calls, encode_call_site);
    w.span(c.span);
}

fn decode_class(r: &mut Reader<'_>) -> Result<Class> {
    Ok(Class {
        name: r.str()?,
        qualname: r.str()?,
        parent: r.opt_str()?,
        bases: r.texts()?,
        keywords: r.texts()?,
        decorators: r.strs()?,
        docstring: r.opt_text()?,
        methods: r.strs()?,
        classes: r.strs()?,
        attributes: r.vec(decode_variable)?,
        calls: r.vec(decode_call_site)?,
        span: r.span()?,
    })
}

fn encode_function(w: &mut Writer, f: &Function) {
    w.str(&f.name);
    w.str(&f.qualname);
    w.opt_str(&f.parent);
    w.bool(f.is_method);
    w.bool(f.is_async);
    w.vec(&f.parameters, encode_parameter);
    w.opt_str(&f.returns);
    w.strs(&f.decorators);
    w.opt_str(&f.docstring);
    w.vec(&f.calls, encode_call_site);
    w.span(f.span);
}

fn decode_function(r: &mut Reader<'_>) -> Result<Function> {
    Ok(Function {
        name: r.str()?,
        qualname: r.str()?,
        parent: r.opt_str()?,
        is_method: r.bool()?,
        is_async: r.bool()?,
        parameters: r.vec(decode_parameter)?,
        returns: r.opt_text()?,
        decorators: r.strs()?,
        docstring: r.opt_text()?,
        calls: r.vec(decode_call_site)?,
        span: r.span()?,
    })
}

fn encode_parameter(w: &mut Writer, p: &Parameter) {
    w.str(&p.name);
    encode_param_kind(w, p.kind);
    w.opt_str(&p.annotation);
    w.opt_str(&p.default);
}

fn decode_parameter(r: &mut Reader<'_>) -> Result<Parameter> {
    Ok(Parameter {
        name: r.str()?,
        kind: decode_param_kind(r)?,
        annotation: r.opt_text()?,
        default: r.opt_text()?,
    })
}

fn encode_param_kind(w: &mut Writer, k: ParamKind) {
    w.tag(match k {
        ParamKind::PositionalOnly => 0,
        ParamKind::PositionalOrKeyword => 1,
        ParamKind::VarPositional => 2,
        ParamKind::KeywordOnly => 3,
        ParamKind::VarKeyword => 4,
    });
}

fn decode_param_kind(r: &mut Reader<'_>) -> Result<ParamKind> {
    let at = r.at;
    match r.byte()? {
        0 => Ok(ParamKind::PositionalOnly),
        1 => Ok(ParamKind::PositionalOrKeyword),
        2 => Ok(ParamKind::VarPositional),
        3 => Ok(ParamKind::KeywordOnly),
        4 => Ok(ParamKind::VarKeyword),
        t => Err(r.unknown_tag(at, t, "ParamKind")),
    }
}

fn encode_variable(w: &mut Writer, v: &Variable) {
    w.str(&v.name);
    w.opt_str(&v.annotation);
    w.span(v.span);
}

fn decode_variable(r: &mut Reader<'_>) -> Result<Variable> {
    Ok(Variable {
        name: r.str()?,
        annotation: r.opt_text()?,
        span: r.span()?,
    })
}

fn encode_call_site(w: &mut Writer, c: &CallSite) {
    w.str(&c.callee);
    w.opt_str(&c.dotted);
    w.pos(c.pos);
}

fn decode_call_site(r: &mut Reader<'_>) -> Result<CallSite> {
    Ok(CallSite {
        callee: r.text()?,
        dotted: r.opt_str()?,
        pos: r.pos()?,
    })
}

fn encode_file_error(w: &mut Writer, e: &FileError) {
    match e {
        FileError::Syntax {
            line,
            column,
            message,
        } => {
            w.tag(0);
            w.u32(*line);
            w.u32(*column);
            w.str(message);
        }
        FileError::MoreSyntaxErrors { omitted } => {
            w.tag(1);
            w.u32(*omitted);
        }
        FileError::InvalidEncoding { encoding, offset } => {
            w.tag(2);
            w.str(encoding);
            w.u64(*offset);
        }
        FileError::UnknownEncoding { encoding, line } => {
            w.tag(3);
            w.str(encoding);
            w.u32(*line);
        }
        FileError::Binary { offset } => {
            w.tag(4);
            w.u64(*offset);
        }
        FileError::TooLarge { size, limit } => {
            w.tag(5);
            w.u64(*size);
            w.u64(*limit);
        }
        FileError::TooDeep { what, depth, limit } => {
            w.tag(6);
            w.str(what);
            w.u64(*depth);
            w.u64(*limit);
        }
        FileError::NoTree => w.tag(7),
    }
}

fn decode_file_error(r: &mut Reader<'_>) -> Result<FileError> {
    let at = r.at;
    Ok(match r.byte()? {
        0 => FileError::Syntax {
            line: r.u32()?,
            column: r.u32()?,
            message: r.str()?,
        },
        1 => FileError::MoreSyntaxErrors { omitted: r.u32()? },
        2 => FileError::InvalidEncoding {
            encoding: r.str()?,
            offset: r.u64()?,
        },
        3 => FileError::UnknownEncoding {
            encoding: r.str()?,
            line: r.u32()?,
        },
        4 => FileError::Binary { offset: r.u64()? },
        5 => FileError::TooLarge {
            size: r.u64()?,
            limit: r.u64()?,
        },
        6 => FileError::TooDeep {
            what: r.str()?,
            depth: r.u64()?,
            limit: r.u64()?,
        },
        7 => FileError::NoTree,
        t => return Err(r.unknown_tag(at, t, "FileError")),
    })
}

// ------------------------------------------------------------- ResolvedModule

fn encode_resolved_module(w: &mut Writer, m: &ResolvedModule) {
    w.str(&m.module);
    w.str(&m.symbols_digest);
    w.len(m.deps.len());
    for (module, digest) in &m.deps {
        w.str(module);
        w.opt_str(digest);
    }
    w.vec(&m.imports, encode_resolved_import);
    w.vec(&m.calls, encode_resolved_call);
}

fn decode_resolved_module(r: &mut Reader<'_>) -> Result<ResolvedModule> {
    let module = r.str()?;
    let symbols_digest = r.str()?;
    let deps = r.vec(|r| Ok((r.at, r.str()?, r.opt_str()?)))?;
    // Strictly increasing keys: the map is exactly the one encoded, and
    // collecting a sorted list builds the tree in bulk.
    for pair in deps.windows(2) {
        if pair[0].1 >= pair[1].1 {
            return Err(r.error(pair[1].0, "deps keys not in strictly increasing order"));
        }
    }
    let deps: BTreeMap<String, Option<String>> = deps.into_iter().map(|(_, k, v)| (k, v)).collect();
    Ok(ResolvedModule {
        module,
        symbols_digest,
        deps,
        imports: r.vec(decode_resolved_import)?,
        calls: r.vec(decode_resolved_call)?,
    })
}

fn encode_resolved_import(w: &mut Writer, i: &ResolvedImport) {
    w.str(&i.module);
    w.pos(i.pos);
}

fn decode_resolved_import(r: &mut Reader<'_>) -> Result<ResolvedImport> {
    Ok(ResolvedImport {
        module: r.str()?,
        pos: r.pos()?,
    })
}

fn encode_resolved_call(w: &mut Writer, c: &ResolvedCall) {
    w.opt_str(&c.scope);
    w.str(&c.callee);
    w.pos(c.pos);
    encode_target(w, &c.target);
}

fn decode_resolved_call(r: &mut Reader<'_>) -> Result<ResolvedCall> {
    Ok(ResolvedCall {
        scope: r.opt_str()?,
        callee: r.str()?,
        pos: r.pos()?,
        target: decode_target(r)?,
    })
}

fn encode_target(w: &mut Writer, t: &Target) {
    w.str(&t.module);
    w.str(&t.qualname);
    encode_def_kind(w, t.kind);
}

fn decode_target(r: &mut Reader<'_>) -> Result<Target> {
    Ok(Target {
        module: r.str()?,
        qualname: r.str()?,
        kind: decode_def_kind(r)?,
    })
}

fn encode_def_kind(w: &mut Writer, k: DefKind) {
    w.tag(match k {
        DefKind::Function => 0,
        DefKind::Class => 1,
        DefKind::Variable => 2,
    });
}

fn decode_def_kind(r: &mut Reader<'_>) -> Result<DefKind> {
    let at = r.at;
    match r.byte()? {
        0 => Ok(DefKind::Function),
        1 => Ok(DefKind::Class),
        2 => Ok(DefKind::Variable),
        t => Err(r.unknown_tag(at, t, "DefKind")),
    }
}

// ---------------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract;

    #[test]
    fn digest_bytes_takes_lowercase_hex_only() {
        let hex: String = (0u8..32).map(|b| format!("{:02x}", b * 7 + 3)).collect();
        let bytes = digest_bytes(&hex).unwrap();
        assert_eq!(bytes, std::array::from_fn(|i| i as u8 * 7 + 3));
        let mut r = Reader::new(&bytes);
        assert_eq!(r.digest().unwrap(), hex, "round trip");
        for bad in [
            hex.to_uppercase(),
            hex.replacen('3', "g", 1),
            hex[..62].to_owned(),
            format!("{hex}00"),
            hex.replacen('0', "\u{e9}", 1)[..64].to_owned(),
        ] {
            assert_eq!(digest_bytes(&bad), None, "{bad}");
        }
        let set: DigestSet = [bytes, [0; 32]].into_iter().collect();
        assert!(set.contains(&bytes) && set.contains(&[0; 32]) && !set.contains(&[1; 32]));
    }

    #[test]
    fn the_fast_hasher_spreads_module_names() {
        use std::hash::BuildHasher;
        let names: Vec<String> = (0..36_000)
            .map(|i| format!("pkg{}.sub{}.mod_{i}", i % 97, i % 13))
            .chain(["", "a", "a.b", "a.b.c"].map(String::from))
            .collect();
        let build = BuildHasherDefault::<FastHasher>::default();
        let hashes: HashSet<u64> = names.iter().map(|n| build.hash_one(n.as_str())).collect();
        assert!(hashes.len() >= names.len() - 1, "{} distinct", hashes.len());
        let map: FastMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        assert!(names.iter().enumerate().all(|(i, n)| map[n.as_str()] == i));
    }

    const RICH: &str = r#""""Module docstring: é and ☃."""
import os
import os.path as osp, sys
from . import sibling
from ..pkg.mod import a as b, c
from collections import *

X: int = 1
Y, *Z = 1, 2, 3
print("module call", os.getcwd())

@decorator(arg=1)
class Outer(Base, metaclass=Meta):
    """Class docstring."""
    attr: str = "x"
    counter = 0
    register(attr)

    class Inner:
        def method(self):
            return Outer.Inner()

    def method(self, a, /, b: int = 2, *args: str, c, d=4, **kwargs) -> "Outer":
        """Method docstring."""
        import json
        self.helper(json.dumps(a))

    @staticmethod
    async def run(*, key=None):
        await go(key)

def outer(x):
    def inner(y=x + 1):
        return y
    return inner

async def main() -> None:
    pass
"#;

    fn sources() -> Vec<&'static [u8]> {
        vec![
            RICH.as_bytes(),
            b"",
            b"def broken(:\n    pass\nclass C(\n",
            b"\x00",
            b"x = '\xff'\n",
            b"# coding: klingon\nx = '\xff'\n",
            b"# -*- coding: latin-1 -*-\ns = '\xe9'\n",
        ]
    }

    fn round_trip(s: &FileSymbols) {
        let bytes = encode_symbols(s);
        assert_eq!(decode_symbols(&bytes).as_ref(), Ok(s));
    }

    fn pos(line: u32, column: u32) -> Pos {
        Pos { line, column }
    }

    fn resolved() -> ResolvedModule {
        let target = |module: &str, qualname: &str, kind| Target {
            module: module.into(),
            qualname: qualname.into(),
            kind,
        };
        ResolvedModule {
            module: "pkg.mod".into(),
            symbols_digest: "ab".repeat(32),
            deps: BTreeMap::from([
                ("pkg".into(), Some("cd".repeat(32))),
                ("pkg.missing".into(), None),
                ("pkg.util".into(), Some("ef".repeat(32))),
            ]),
            imports: vec![
                ResolvedImport {
                    module: "pkg".into(),
                    pos: pos(1, 0),
                },
                ResolvedImport {
                    module: "pkg.util".into(),
                    pos: pos(2, 4),
                },
            ],
            calls: vec![
                ResolvedCall {
                    scope: None,
                    callee: "util.f".into(),
                    pos: pos(3, 0),
                    target: target("pkg.util", "f", DefKind::Function),
                },
                ResolvedCall {
                    scope: Some("C.m".into()),
                    callee: "self.g".into(),
                    pos: pos(300, 8),
                    target: target("pkg.mod", "C.g", DefKind::Class),
                },
                ResolvedCall {
                    scope: Some("h".into()),
                    callee: "v".into(),
                    pos: pos(u32::MAX, u32::MAX),
                    target: target("pkg.mod", "v", DefKind::Variable),
                },
            ],
        }
    }

    #[test]
    fn codec_round_trips_extracted_symbols() {
        let rich = extract(RICH.as_bytes());
        // The sample exercises what it claims to.
        assert!(rich.docstring.is_some());
        assert!(rich.imports.iter().any(|i| i.star));
        assert!(rich.imports.iter().any(|i| i.level == 2));
        assert!(rich.imports.iter().any(|i| i.scope.is_some()));
        assert!(rich.classes.iter().any(|c| c.parent.is_some()));
        assert!(rich.classes.iter().any(|c| !c.attributes.is_empty()));
        assert!(rich.functions.iter().any(|f| f.is_async && f.is_method));
        let kinds: Vec<ParamKind> = rich
            .functions
            .iter()
            .flat_map(|f| f.parameters.iter().map(|p| p.kind))
            .collect();
        for kind in [
            ParamKind::PositionalOnly,
            ParamKind::PositionalOrKeyword,
            ParamKind::VarPositional,
            ParamKind::KeywordOnly,
            ParamKind::VarKeyword,
        ] {
            assert!(kinds.contains(&kind), "{kind:?} missing");
        }
        assert!(!rich.variables.is_empty() && !rich.calls.is_empty());

        let mut error_kinds = Vec::new();
        for source in sources() {
            let s = extract(source);
            error_kinds.extend(s.errors.iter().map(std::mem::discriminant));
            round_trip(&s);
        }
        // Syntax, InvalidEncoding, UnknownEncoding, Binary.
        error_kinds.sort_by_key(|d| format!("{d:?}"));
        error_kinds.dedup();
        assert_eq!(error_kinds.len(), 4, "{error_kinds:?}");
    }

    #[test]
    fn a_lean_decode_gives_the_same_interface_and_resolution() {
        use crate::{resolve_file, FileToResolve, Interface, ModuleInfo, Modules};
        /// Every module the resolution asks about is the file itself.
        struct One(ModuleInfo);
        impl Modules for One {
            fn get(&self, module: &str) -> Option<&ModuleInfo> {
                (module == self.0.interface.module).then_some(&self.0)
            }
            fn has_submodules(&self, _: &str) -> bool {
                false
            }
        }
        let full = extract(RICH.as_bytes());
        let encoded = encode_symbols(&full);
        let lean = decode_symbols_to_resolve(&encoded).unwrap();
        assert_ne!(lean, full, "text is left out");
        assert!(lean.docstring.is_none() && lean.calls.iter().all(|c| c.callee.is_empty()));
        for is_package in [false, true] {
            let interface = Interface::new("pkg.rich", is_package, &full);
            assert_eq!(Interface::new("pkg.rich", is_package, &lean), interface);
            let world = One(ModuleInfo::new(interface));
            let resolve = |symbols| {
                resolve_file(
                    &world,
                    FileToResolve {
                        module: "pkg.rich",
                        is_package,
                        symbols,
                        symbols_digest: "d",
                        interface: None,
                    },
                )
            };
            let resolved = resolve(&full);
            assert!(!resolved.calls.is_empty(), "the sample resolves calls");
            assert_eq!(resolve(&lean), resolved);
        }
        // A cut entry is still refused.
        assert!(decode_symbols_to_resolve(&encoded[..encoded.len() - 1]).is_err());
    }

    #[test]
    fn codec_round_trips_every_file_error_and_extremes() {
        let s = FileSymbols {
            docstring: Some(String::new()),
            errors: vec![
                FileError::Syntax {
                    line: u32::MAX,
                    column: 0,
                    message: "bad ✗".into(),
                },
                FileError::MoreSyntaxErrors { omitted: 127 },
                FileError::InvalidEncoding {
                    encoding: "utf-8".into(),
                    offset: u64::MAX,
                },
                FileError::UnknownEncoding {
                    encoding: "x".into(),
                    line: 128,
                },
                FileError::Binary { offset: 1 << 35 },
                FileError::TooLarge {
                    size: u64::MAX - 1,
                    limit: 16384,
                },
                FileError::TooDeep {
                    what: "f-strings".into(),
                    depth: 300,
                    limit: 200,
                },
                FileError::NoTree,
            ],
            ..FileSymbols::default()
        };
        round_trip(&s);
        round_trip(&FileSymbols::default());
    }

    #[test]
    fn codec_round_trips_resolved_modules() {
        let m = resolved();
        assert_eq!(decode_resolved(&encode_resolved(&m)), Ok(m));
        let empty = ResolvedModule {
            module: String::new(),
            symbols_digest: String::new(),
            deps: BTreeMap::new(),
            imports: vec![],
            calls: vec![],
        };
        assert_eq!(decode_resolved(&encode_resolved(&empty)), Ok(empty));
    }

    #[test]
    fn codec_rejects_unsorted_or_duplicate_deps() {
        // Two deps, "b" then "a": hand-written, since a map can't hold them.
        let mut w = Writer::with_capacity(32);
        w.str("m");
        w.str("d");
        w.len(2);
        for key in ["b", "a"] {
            w.str(key);
            w.opt_str(&None);
        }
        w.len(0);
        w.len(0);
        let err = decode_resolved(&w.buf).unwrap_err();
        assert!(err.what.contains("increasing"), "{err}");
        assert_eq!(err.offset, 8);
    }

    #[test]
    fn codec_bucket_round_trips() {
        let bodies: Vec<Vec<u8>> = (0..3)
            .map(|i| {
                let mut m = resolved();
                m.module = format!("pkg.m{i}");
                encode_resolved(&m)
            })
            .collect();
        let paths = ["a/x.py", "b.py", "b/é.py"];
        let bucket = encode_bucket(paths.iter().copied().zip(bodies.iter().map(Vec::as_slice)));
        let records = decode_bucket(&bucket).unwrap();
        assert_eq!(records.len(), 3);
        for (i, (path, body)) in records.iter().enumerate() {
            assert_eq!(path, paths[i]);
            assert_eq!(*body, bodies[i].as_slice());
            assert_eq!(decode_resolved(body).unwrap().module, format!("pkg.m{i}"));
        }

        let empty = encode_bucket(std::iter::empty());
        assert_eq!(decode_bucket(&empty), Ok(vec![]));
        assert!(decode_bucket(&encode_symbols(&FileSymbols::default()))
            .unwrap_err()
            .what
            .contains("magic"));
        for n in 0..bucket.len() {
            assert!(decode_bucket(&bucket[..n]).is_err(), "prefix {n}");
        }

        let mut unsorted = Writer::with_capacity(32);
        unsorted.header(BUCKET_MAGIC);
        unsorted.len(2);
        for path in ["b", "a"] {
            unsorted.str(path);
            unsorted.len(0);
        }
        let err = decode_bucket(&unsorted.buf).unwrap_err();
        assert!(err.what.contains("increasing"), "{err}");
    }

    #[test]
    fn codec_truncation_is_an_error() {
        let bytes = encode_symbols(&extract(RICH.as_bytes()));
        for n in 0..bytes.len() {
            assert!(decode_symbols(&bytes[..n]).is_err(), "prefix of {n} bytes");
        }
        let body = encode_resolved(&resolved());
        for n in 0..body.len() {
            assert!(decode_resolved(&body[..n]).is_err(), "prefix of {n} bytes");
        }
    }

    #[test]
    fn a_reader_moved_past_the_end_fails_to_read_rather_than_panics() {
        let bytes = [1u8, 2, 3];
        let mut r = Reader::new(&bytes);
        r.at = 5;
        let truncated = Err(CodecError {
            what: "truncated".into(),
            offset: 5,
        });
        assert_eq!(r.take(0), truncated);
        assert_eq!(r.u64(), truncated.clone().map(|_: &[u8]| 0));
        assert_eq!(r.str(), truncated.clone().map(|_: &[u8]| String::new()));
        // At the end exactly, an empty read is still fine.
        r.at = 3;
        assert_eq!(r.take(0), Ok(&[][..]));
    }

    #[test]
    fn codec_trailing_bytes_are_an_error() {
        let mut bytes = encode_symbols(&extract(b"x = 1\n"));
        let len = bytes.len();
        bytes.push(0);
        assert_eq!(
            decode_symbols(&bytes),
            Err(CodecError {
                what: "trailing bytes".into(),
                offset: len,
            })
        );
        let mut body = encode_resolved(&resolved());
        body.push(0);
        assert!(decode_resolved(&body).is_err());
    }

    #[test]
    fn codec_flipped_bytes_never_panic() {
        let s = extract(b"import a as b\ndef f(x: int = 1, *a, k, **kw) -> T:\n    g(x)\n");
        let bytes = encode_symbols(&s);
        let mut errors = 0;
        for i in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[i] ^= 0xFF;
            match decode_symbols(&corrupt) {
                Ok(decoded) => assert_ne!(decoded, s, "flipping byte {i} changed nothing"),
                Err(_) => errors += 1,
            }
        }
        // Most single-byte corruptions are caught (tags, bools, lengths, UTF-8).
        assert!(errors * 2 > bytes.len(), "{errors} of {}", bytes.len());

        let body = encode_resolved(&resolved());
        for i in 0..body.len() {
            let mut corrupt = body.clone();
            corrupt[i] ^= 0xFF;
            let _ = decode_resolved(&corrupt);
        }
    }

    #[test]
    fn codec_checks_magic_and_version() {
        let mut bytes = encode_symbols(&FileSymbols::default());
        bytes[0] = b'X';
        assert_eq!(
            decode_symbols(&bytes),
            Err(CodecError {
                what: "bad magic".into(),
                offset: 0,
            })
        );
        let mut bytes = encode_symbols(&FileSymbols::default());
        bytes[4..8].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(
            decode_symbols(&bytes),
            Err(CodecError {
                what: format!("codec version 7, expected {CODEC_VERSION}"),
                offset: 4,
            })
        );
        let mut bucket = encode_bucket(std::iter::empty());
        bucket[4..8].copy_from_slice(&2u32.to_le_bytes());
        assert!(decode_bucket(&bucket)
            .unwrap_err()
            .what
            .contains("codec version 2"));
        assert!(decode_symbols(b"TSY").is_err());
    }

    #[test]
    fn codec_huge_count_fails_fast_without_allocating() {
        let mut w = Writer::with_capacity(20);
        w.header(SYMBOLS_MAGIC);
        w.opt_str(&None);
        w.u64(1 << 40); // imports
        w.buf.resize(20, 0);
        assert_eq!(w.buf.len(), 20);
        let err = decode_symbols(&w.buf).unwrap_err();
        assert_eq!(err.offset, 9);
        assert!(err.what.contains("1099511627776"), "{err}");

        // A count that fits in the bytes left still only reserves a bounded
        // amount, then fails on the first incomplete item.
        let mut w = Writer::with_capacity(64);
        w.header(SYMBOLS_MAGIC);
        w.opt_str(&None);
        w.len(0);
        w.len(0);
        w.len(40); // functions, each far bigger than one byte
        w.buf.resize(w.buf.len() + 40, 0);
        assert!(decode_symbols(&w.buf).is_err());
    }

    #[test]
    fn codec_varints() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), 1 << 63, u64::MAX] {
            let mut w = Writer::with_capacity(10);
            w.u64(v);
            assert!(w.buf.len() <= MAX_VARINT_BYTES);
            let mut r = Reader::new(&w.buf);
            assert_eq!(r.u64(), Ok(v));
            assert_eq!(r.remaining(), 0);
        }
        let too_long = [0xFF; 11];
        let err = Reader::new(&too_long).u64().unwrap_err();
        assert!(err.what.contains("longer than 10"), "{err}");
        let mut overflow = [0xFF; 10];
        overflow[9] = 0x02;
        let err = Reader::new(&overflow).u64().unwrap_err();
        assert!(err.what.contains("overflows"), "{err}");
        let mut w = Writer::with_capacity(10);
        w.u64(u64::from(u32::MAX) + 1);
        assert!(Reader::new(&w.buf).u32().is_err());
        assert!(Reader::new(&[0x80, 0x80]).u64().is_err());
    }

    #[test]
    fn codec_rejects_bad_scalars() {
        assert_eq!(
            Reader::new(&[2]).bool(),
            Err(CodecError {
                what: "invalid bool 2".into(),
                offset: 0,
            })
        );
        assert_eq!(
            Reader::new(&[2, b'a', 0xFF]).str(),
            Err(CodecError {
                what: "invalid UTF-8".into(),
                offset: 2,
            })
        );
        assert!(Reader::new(&[5, b'a']).str().is_err());
        assert!(Reader::new(&[2]).opt_str().is_err());
        assert_eq!(
            decode_parameter(&mut Reader::new(&[1, b'a', 9, 0, 0])),
            Err(CodecError {
                what: "unknown tag 9 for ParamKind".into(),
                offset: 2,
            })
        );
        assert!(decode_file_error(&mut Reader::new(&[8])).is_err());
        assert!(decode_import_kind(&mut Reader::new(&[2])).is_err());
        assert!(decode_def_kind(&mut Reader::new(&[3])).is_err());
    }

    /// The Python standard library through both codecs:
    /// `cargo test -p py-symbols --release codec -- --ignored --nocapture`.
    #[test]
    #[ignore = "reads the local Python stdlib; prints sizes and timings"]
    fn codec_stdlib_corpus_versus_json() {
        use std::time::{Duration, Instant};

        let Ok(out) = std::process::Command::new("python3")
            .args([
                "-c",
                "import sysconfig;print(sysconfig.get_paths()['stdlib'])",
            ])
            .output()
        else {
            eprintln!("python3 not found; skipped");
            return;
        };
        let root = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let mut files = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            entries.sort();
            for path in entries.into_iter().rev() {
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "py") {
                    files.push(path);
                }
            }
        }
        files.sort();
        files.truncate(2000);
        let symbols: Vec<FileSymbols> = files
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .map(|b| extract(&b))
            .collect();
        assert!(!symbols.is_empty(), "no stdlib files found");

        let (mut json_bytes, mut bin_bytes) = (0, 0);
        let mut times = [Duration::ZERO; 4];
        for s in &symbols {
            let t = Instant::now();
            let json = serde_json::to_vec(s).unwrap();
            times[0] += t.elapsed();
            let t = Instant::now();
            let back: FileSymbols = serde_json::from_slice(&json).unwrap();
            times[1] += t.elapsed();
            let t = Instant::now();
            let bin = encode_symbols(s);
            times[2] += t.elapsed();
            let t = Instant::now();
            let decoded = decode_symbols(&bin).unwrap();
            times[3] += t.elapsed();
            assert_eq!(&decoded, s);
            assert_eq!(&back, s);
            json_bytes += json.len();
            bin_bytes += bin.len();
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        eprintln!(
            "{} files: JSON {json_bytes} B, binary {bin_bytes} B ({:.1}%)",
            symbols.len(),
            100.0 * bin_bytes as f64 / json_bytes as f64
        );
        eprintln!(
            "JSON encode {:.1} ms, decode {:.1} ms; binary encode {:.1} ms, decode {:.1} ms",
            ms(times[0]),
            ms(times[1]),
            ms(times[2]),
            ms(times[3])
        );
    }
}
