//! The py-symbols library, pinned fact by fact on small inline projects.

use std::collections::HashSet;

use py_symbols::{
    extract, extract_many, interface_digest, module_name, resolve_incremental, symbols_digest,
    CallSite, DefKind, ExtractOptions, Extractor, FileError, FileSymbols, Import, ImportKind,
    ImportedName, Interface, ParamKind, Pos, ProjectState, ResolveStats, ResolvedGraph, Span,
    Target, MAX_FILE_BYTES,
};

fn syms(source: &str) -> FileSymbols {
    extract(source.as_bytes())
}

fn pos(line: u32, column: u32) -> Pos {
    Pos { line, column }
}

fn span(l1: u32, c1: u32, l2: u32, c2: u32) -> Span {
    Span {
        start: pos(l1, c1),
        end: pos(l2, c2),
    }
}

fn name(name: &str, asname: Option<&str>) -> ImportedName {
    ImportedName {
        name: name.into(),
        asname: asname.map(Into::into),
    }
}

fn callees(calls: &[CallSite]) -> Vec<(&str, u32, u32)> {
    calls
        .iter()
        .map(|c| (c.callee.as_str(), c.pos.line, c.pos.column))
        .collect()
}

fn function<'a>(symbols: &'a FileSymbols, qualname: &str) -> &'a py_symbols::Function {
    symbols
        .functions
        .iter()
        .find(|f| f.qualname == qualname)
        .unwrap_or_else(|| panic!("no function {qualname} in {:#?}", symbols.functions))
}

fn class<'a>(symbols: &'a FileSymbols, qualname: &str) -> &'a py_symbols::Class {
    symbols
        .classes
        .iter()
        .find(|c| c.qualname == qualname)
        .unwrap_or_else(|| panic!("no class {qualname}"))
}

// ---------------------------------------------------------------- extraction

#[test]
fn imports_absolute_relative_aliased_and_star() {
    let s = syms(
        "import os, a.b as c\n\
         from ..x import (y as z,\n    w)\n\
         from . import m\n\
         from .mod import *\n\
         from __future__ import annotations\n\
         def f():\n    import json\n",
    );
    assert_eq!(
        s.imports[0],
        Import {
            kind: ImportKind::Import,
            level: 0,
            module: None,
            names: vec![name("os", None), name("a.b", Some("c"))],
            star: false,
            scope: None,
            span: span(1, 0, 1, 19),
        }
    );
    assert_eq!(s.imports[1].kind, ImportKind::From);
    assert_eq!(s.imports[1].level, 2);
    assert_eq!(s.imports[1].module.as_deref(), Some("x"));
    assert_eq!(
        s.imports[1].names,
        vec![name("y", Some("z")), name("w", None)]
    );
    assert_eq!(s.imports[1].span, span(2, 0, 3, 6));
    assert_eq!(
        (s.imports[2].level, s.imports[2].module.as_deref()),
        (1, None)
    );
    assert_eq!(s.imports[2].names, vec![name("m", None)]);
    assert!(s.imports[3].star);
    assert!(s.imports[3].names.is_empty());
    assert_eq!(
        (s.imports[3].level, s.imports[3].module.as_deref()),
        (1, Some("mod"))
    );
    assert_eq!(s.imports[4].module.as_deref(), Some("__future__"));
    assert_eq!(s.imports[4].names, vec![name("annotations", None)]);
    assert_eq!(s.imports[5].scope.as_deref(), Some("f"));
    assert_eq!(s.imports[5].span.start, pos(8, 4));
    assert_eq!(s.imports.len(), 6);
    assert_eq!(s.imports[0].names[1].bound_name(ImportKind::Import), "c");
    assert_eq!(s.imports[0].names[0].bound_name(ImportKind::Import), "os");
    assert!(s.errors.is_empty());
}

#[test]
fn classes_with_bases_decorators_docstrings_members() {
    let s = syms(
        "@register\n\
         @app.route('/x')\n\
         class C(Base, mixins.M, metaclass=Meta):\n\
         \x20   '''Doc of C.'''\n\
         \x20   x: int = 1\n\
         \x20   y = z = 2\n\
         \x20   setup()\n\
         \x20   def meth(self): pass\n\
         \x20   class Inner:\n\
         \x20       pass\n",
    );
    let c = class(&s, "C");
    assert_eq!(c.bases, vec!["Base", "mixins.M"]);
    assert_eq!(c.keywords, vec!["metaclass=Meta"]);
    assert_eq!(c.decorators, vec!["register", "app.route('/x')"]);
    assert_eq!(c.docstring.as_deref(), Some("Doc of C."));
    assert_eq!(c.methods, vec!["meth"]);
    assert_eq!(c.classes, vec!["Inner"]);
    let attributes: Vec<(&str, Option<&str>)> = c
        .attributes
        .iter()
        .map(|a| (a.name.as_str(), a.annotation.as_deref()))
        .collect();
    assert_eq!(
        attributes,
        vec![("x", Some("int")), ("y", None), ("z", None)]
    );
    assert_eq!(callees(&c.calls), vec![("setup", 7, 4)]);
    // The span is the class statement, from `class` (as `ast` has it).
    assert_eq!(c.span, span(3, 0, 10, 12));
    // Decorator calls run in the enclosing (module) scope.
    assert_eq!(callees(&s.calls), vec![("app.route", 2, 1)]);
    assert_eq!(class(&s, "C.Inner").parent.as_deref(), Some("C"));
}

#[test]
fn nested_definitions_get_pep3155_qualnames() {
    let s = syms(
        "class Outer:\n\
         \x20   class Inner:\n\
         \x20       def meth(self):\n\
         \x20           def helper():\n\
         \x20               class Local: pass\n\
         def f():\n\
         \x20   def g():\n\
         \x20       pass\n",
    );
    let qualnames: Vec<(&str, Option<&str>)> = s
        .functions
        .iter()
        .map(|f| (f.qualname.as_str(), f.parent.as_deref()))
        .collect();
    assert_eq!(
        qualnames,
        vec![
            ("Outer.Inner.meth", Some("Outer.Inner")),
            ("Outer.Inner.meth.<locals>.helper", Some("Outer.Inner.meth")),
            ("f", None),
            ("f.<locals>.g", Some("f")),
        ]
    );
    let classes: Vec<&str> = s.classes.iter().map(|c| c.qualname.as_str()).collect();
    assert_eq!(
        classes,
        vec![
            "Outer",
            "Outer.Inner",
            "Outer.Inner.meth.<locals>.helper.<locals>.Local"
        ]
    );
    assert!(function(&s, "Outer.Inner.meth").is_method);
    assert!(!function(&s, "Outer.Inner.meth.<locals>.helper").is_method);
    assert!(!function(&s, "f.<locals>.g").is_method);
}

#[test]
fn async_functions_decorators_returns_docstrings() {
    let s = syms(
        "@functools.cache\n\
         async def fetch(url: str) -> bytes:\n\
         \x20   \"\"\"Fetch it.\n\n    Really.\"\"\"\n\
         \x20   return await get(url)\n\
         def plain(): 'one' \"two\"\n\
         def not_doc(): f'x{y}'\n\
         def bytes_doc(): b'x'\n\
         def raw(): r'a\\n'\n",
    );
    let fetch = function(&s, "fetch");
    assert!(fetch.is_async);
    assert_eq!(fetch.decorators, vec!["functools.cache"]);
    assert_eq!(fetch.returns.as_deref(), Some("bytes"));
    assert_eq!(fetch.docstring.as_deref(), Some("Fetch it.\n\n    Really."));
    // The docstring spans lines 3 to 5.
    assert_eq!(callees(&fetch.calls), vec![("get", 6, 17)]);
    assert_eq!(fetch.span, span(2, 0, 6, 25));
    assert!(!function(&s, "plain").is_async);
    assert_eq!(function(&s, "plain").docstring.as_deref(), Some("onetwo"));
    assert_eq!(function(&s, "not_doc").docstring, None);
    assert_eq!(function(&s, "bytes_doc").docstring, None);
    assert_eq!(function(&s, "raw").docstring.as_deref(), Some("a\\n"));
}

#[test]
fn module_docstring_escapes_are_decoded() {
    // `\N{…}` is decoded too (it was kept as written before the move to
    // Ruff's parser, which carries the Unicode name table); an unknown
    // escape is kept as written, as in Python.
    let s = syms("# comment first\n\"\"\"A\\x41\\t\\u00e9\\N{EM DASH}\\d \\\nend\"\"\"\nx = 1\n");
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.docstring.as_deref(), Some("AA\t\u{e9}\u{2014}\\d end"));
    // Line ends inside a docstring read as `\n` whatever the file uses, as
    // in `ast`; an escaped `\r` stays.
    let crlf = syms("'''a\r\nb\rc\\r'''\r\nx = 1\r\n");
    assert_eq!(crlf.docstring.as_deref(), Some("a\nb\nc\r"));
    assert_eq!(crlf.variables[0].span, span(4, 0, 4, 1));
    assert_eq!(syms("x = 1\n'not a docstring'\n").docstring, None);
}

#[test]
fn parameter_kinds_annotations_defaults() {
    let s = syms(
        "def f(a, b=1, /, c: int = 2, *args: str, d, e=[1, 2], **kw: Any): pass\n\
         def g(x, *, y, z: 'T'): pass\n\
         lambda q, *r: q\n",
    );
    let f = function(&s, "f");
    let params: Vec<(&str, ParamKind, Option<&str>, Option<&str>)> = f
        .parameters
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.kind,
                p.annotation.as_deref(),
                p.default.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        params,
        vec![
            ("a", ParamKind::PositionalOnly, None, None),
            ("b", ParamKind::PositionalOnly, None, Some("1")),
            ("c", ParamKind::PositionalOrKeyword, Some("int"), Some("2")),
            ("args", ParamKind::VarPositional, Some("str"), None),
            ("d", ParamKind::KeywordOnly, None, None),
            ("e", ParamKind::KeywordOnly, None, Some("[1, 2]")),
            ("kw", ParamKind::VarKeyword, Some("Any"), None),
        ]
    );
    let g = function(&s, "g");
    let kinds: Vec<(&str, ParamKind)> = g
        .parameters
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("x", ParamKind::PositionalOrKeyword),
            ("y", ParamKind::KeywordOnly),
            ("z", ParamKind::KeywordOnly),
        ]
    );
    assert_eq!(g.parameters[2].annotation.as_deref(), Some("'T'"));
    // A lambda is not a def.
    assert_eq!(s.functions.len(), 2);
}

#[test]
fn call_sites_by_scope_with_positions() {
    let s = syms(
        "setup(load())\n\
         def f(x=default()) -> ret():\n\
         \x20   a.b.c(1)(2)\n\
         \x20   items[0]()\n\
         \x20   return [g(i) for i in h()] + (lambda: k())()\n\
         class C:\n\
         \x20   attr = make()\n\
         \x20   def m(self):\n\
         \x20       self.helper(\n\
         \x20           nested())\n",
    );
    assert_eq!(
        callees(&s.calls),
        vec![
            ("setup", 1, 0),
            ("load", 1, 6),
            ("default", 2, 8),
            ("ret", 2, 22)
        ]
    );
    let f = function(&s, "f");
    assert_eq!(
        callees(&f.calls),
        vec![
            ("a.b.c(1)", 3, 4),
            ("a.b.c", 3, 4),
            ("items[0]", 4, 4),
            ("g", 5, 12),
            ("h", 5, 26),
            ("(lambda: k())", 5, 33),
            ("k", 5, 42),
        ]
    );
    let dotted: Vec<Option<&str>> = f.calls.iter().map(|c| c.dotted.as_deref()).collect();
    assert_eq!(
        dotted,
        vec![
            None,
            Some("a.b.c"),
            None,
            Some("g"),
            Some("h"),
            None,
            Some("k")
        ]
    );
    assert_eq!(callees(&class(&s, "C").calls), vec![("make", 7, 11)]);
    assert_eq!(
        callees(&function(&s, "C.m").calls),
        vec![("self.helper", 9, 8), ("nested", 10, 12)]
    );
}

#[test]
fn module_variables_from_assignments_only() {
    let s = syms(
        "x = 1\n\
         y: int = 2\n\
         only: str\n\
         a, (b, *c) = p = q()\n\
         obj.attr = 3\n\
         items[0] = 4\n\
         counter += 1\n\
         if DEBUG:\n\
         \x20   level = 'debug'\n\
         try:\n\
         \x20   import fast\n\
         except ImportError:\n\
         \x20   fast = None\n\
         def f():\n\
         \x20   local = 1\n",
    );
    let vars: Vec<(&str, Option<&str>, u32, u32)> = s
        .variables
        .iter()
        .map(|v| {
            (
                v.name.as_str(),
                v.annotation.as_deref(),
                v.span.start.line,
                v.span.start.column,
            )
        })
        .collect();
    assert_eq!(
        vars,
        vec![
            ("x", None, 1, 0),
            ("y", Some("int"), 2, 0),
            ("only", Some("str"), 3, 0),
            ("a", None, 4, 0),
            ("b", None, 4, 4),
            ("c", None, 4, 8),
            ("p", None, 4, 13),
            ("level", None, 9, 4),
            ("fast", None, 13, 4),
        ]
    );
    assert_eq!(s.variables[0].span, span(1, 0, 1, 1));
}

#[test]
fn unicode_identifiers_and_byte_columns() {
    let s = syms("def café(ñ=\"é\"): return naïve(ñ)\nclass Ünï: pass\nπ = 3\n");
    let f = function(&s, "café");
    assert_eq!(f.parameters[0].name, "ñ");
    assert_eq!(f.parameters[0].default.as_deref(), Some("\"é\""));
    // `def café(ñ="é"): return ` is 24 chars but 27 UTF-8 bytes.
    assert_eq!(callees(&f.calls), vec![("naïve", 1, 27)]);
    assert_eq!(s.classes[0].name, "Ünï");
    assert_eq!(s.variables[0].name, "π");
    assert_eq!(s.variables[0].span, span(3, 0, 3, 2));
}

#[test]
fn syntax_errors_have_positions_and_the_rest_is_still_read() {
    let s = syms("import os\n\ndef broken(:\n    pass\n\ndef fine(a):\n    return call(a)\n\nclass K: pass\n");
    assert_eq!(
        s.errors,
        vec![
            FileError::Syntax {
                line: 3,
                column: 11,
                message: "Expected a parameter or the end of the parameter list".into(),
            },
            FileError::Syntax {
                line: 3,
                column: 12,
                message: "Expected `)`, found newline".into(),
            }
        ]
    );
    assert_eq!(s.imports.len(), 1);
    let fine = function(&s, "fine");
    assert_eq!(callees(&fine.calls), vec![("call", 7, 11)]);
    assert_eq!(s.classes[0].name, "K");
    assert_eq!(
        s.errors[0].to_string(),
        "syntax error at line 3, column 11: Expected a parameter or the end of the parameter list"
    );

    let missing = syms("x = f(1\ny = 2\n");
    // Ruff's parser reports the missing `)` where it expected it, at the
    // next line's first token (CPython: at the `(`, "was never closed").
    assert!(
        matches!(
            &missing.errors[..],
            [
                FileError::Syntax {
                    line: 2,
                    column: 0,
                    ..
                },
                ..
            ]
        ),
        "{:?}",
        missing.errors
    );
}

#[test]
fn many_syntax_errors_are_capped() {
    let source = "def f(:\n    pass\n".repeat(500);
    let s = syms(&source);
    let listed = s
        .errors
        .iter()
        .filter(|e| matches!(e, FileError::Syntax { .. }))
        .count();
    assert_eq!(listed, py_symbols::MAX_SYNTAX_ERRORS);
    assert!(
        matches!(s.errors.last(), Some(FileError::MoreSyntaxErrors { omitted }) if *omitted > 0)
    );
}

#[test]
fn binary_and_invalid_utf8_are_file_errors() {
    let binary = extract(b"x = 1\n\x00\x01\x02");
    assert_eq!(binary.errors, vec![FileError::Binary { offset: 6 }]);
    assert!(binary.variables.is_empty());

    let invalid = extract(b"x = 'caf\xe9'\n");
    assert_eq!(
        invalid.errors,
        vec![FileError::InvalidEncoding {
            encoding: "utf-8".into(),
            offset: 8,
        }]
    );
    assert_eq!(
        invalid.errors[0].to_string(),
        "content is not valid utf-8 (first bad byte at offset 8)"
    );
    // Random bytes never panic.
    let mut noise = Vec::new();
    let mut seed: u32 = 12345;
    for _ in 0..100_000 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        noise.push((seed >> 16) as u8 | 1);
    }
    assert!(!extract(&noise).errors.is_empty());
}

#[test]
fn pep263_declared_encodings_and_bom() {
    // Latin-1: the é is one byte in the file, two in the decoded text.
    let latin = extract(b"# -*- coding: latin-1 -*-\ndef caf\xe9(): pass\nx = '\xe9'; f()\n");
    assert!(latin.errors.is_empty(), "{:?}", latin.errors);
    assert_eq!(latin.functions[0].name, "café");
    assert_eq!(latin.calls[0].pos, pos(3, 10));
    // KOI8-R on line 2, after a shebang.
    let koi = extract(b"#!/usr/bin/env python\n# coding: koi8-r\ndef \xc1(): pass\n");
    assert_eq!(koi.functions[0].name, "\u{430}");
    let unknown = extract(b"# coding: klingon\nx = '\xff'\n");
    assert_eq!(
        unknown.errors,
        vec![FileError::UnknownEncoding {
            encoding: "klingon".into(),
            line: 1,
        }]
    );
    // An unknown name on pure ASCII is harmless.
    assert!(extract(b"# coding: klingon\nx = 1\n").errors.is_empty());
    let bom = extract(b"\xef\xbb\xbfimport os\n");
    assert_eq!(bom.imports[0].span.start, pos(1, 0));
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    // Each runs on a test thread (2 MiB stack by default). Ruff's parser
    // grows its stack on the heap (5,000 parentheses: some 10 MB).
    let depth = 5_000;
    let source = format!("x = {}f(1){}\n", "(".repeat(depth), ")".repeat(depth));
    let s = syms(&source);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.variables[0].name, "x");
    assert_eq!(callees(&s.calls), vec![("f", 1, 4 + depth as u32)]);

    // Long chains that the parser reads in a loop make a deep tree all the
    // same; the walk and the tree's disposal do not recurse.
    let terms = 200_000;
    let mut sum = String::from("total = g()");
    for _ in 0..terms {
        sum.push_str("+a");
    }
    sum.push('\n');
    for source in [
        sum,
        format!("x = g(){}\n", "()".repeat(100_000)),
        format!("x = g(){}\n", ".a".repeat(100_000)),
        format!("x = g(){}\n", "[0]".repeat(100_000)),
    ] {
        let s = syms(&source);
        assert!(s.errors.is_empty(), "{:?}", &s.errors[..1]);
        assert_eq!(s.variables[0].name.len(), source.find(' ').unwrap());
        let g = u32::try_from(source.find('g').unwrap()).unwrap();
        // The innermost call, `g()`, comes last (calls are in pre-order).
        assert_eq!(callees(&s.calls).last(), Some(&("g", 1, g)));
    }

    // Files nested deeper than the limit (a level of brackets costs the
    // parser 2 KB of memory) are refused before parsing: each shape goes
    // through another path of the parser.
    let n = 100_000;
    let deep = [
        format!("x = {}g(){}\n", "(".repeat(n), ")".repeat(n)),
        format!("x = {}g(){}\n", "[".repeat(n), "]".repeat(n)),
        format!("x = {}g(){}\n", "{a: ".repeat(n), "}".repeat(n)),
        format!("x = {}g(){}\n", "f(".repeat(n), ")".repeat(n)),
        format!("x = {}g(){}\n", "a[".repeat(n), "]".repeat(n)),
        format!("x = {}g(){}\n", "(a, ".repeat(n), ")".repeat(n)),
        format!("x = {}g(){}\n", "f'{".repeat(n), "}'".repeat(n)),
        format!("x = {}g()\n", "not ".repeat(n)),
        format!("x = {}g()\n", "-".repeat(n)),
        format!("x = {}g()\n", "- a.b ** ".repeat(n)),
        format!("x = {}g()\n", "lambda: ".repeat(n)),
        format!("x = {}g()\n", "a**".repeat(n)),
        format!("x = {}g()\n", "a if b else ".repeat(n)),
        format!("x = {}g()\n", "a if b else lambda p, q=".repeat(n)),
        format!("match y:\n case {}z{}: g()\n", "[".repeat(n), "]".repeat(n)),
        // Unclosed.
        format!("x = {}\n", "[".repeat(n)),
        format!("x = {}\n", "f(".repeat(n)),
    ];
    for source in &deep {
        let s = syms(source);
        let start: String = source.chars().take(12).collect();
        let [FileError::TooDeep { what, depth, limit }] = &s.errors[..] else {
            panic!("{start}…: {:?}", s.errors);
        };
        assert_eq!((what.as_str(), *limit), ("code", 10_000), "{start}…");
        assert!(*depth > 10_000, "{start}…: {depth}");
        assert_eq!(
            s.errors[0].to_string(),
            format!("code nested {depth} levels deep, over the limit of 10000; not parsed")
        );
        assert!(s.calls.is_empty() && s.variables.is_empty());
    }

    // Within the limit, nesting is read as usual, however large the file.
    let padding = format!("'''{}'''\n", "padding, ".repeat(100_000));
    let (open, close) = ("(".repeat(2_000), ")".repeat(2_000));
    let s = syms(&format!("{padding}x = {open}g(){close}\n"));
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(callees(&s.calls), vec![("g", 2, 2_004)]);
    // Nested f-strings have a limit of their own, on depth × size (Ruff's
    // lexer is quadratic in their depth): 2^28 allows 297 levels in a
    // 906 KB file.
    let nested_fstrings = |levels: usize| {
        let (open, close) = ("f'{".repeat(levels), "}'".repeat(levels));
        format!("{padding}x = {open}g(){close}\n")
    };
    let s = syms(&nested_fstrings(250));
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(callees(&s.calls), vec![("g", 2, 4 + 3 * 250)]);
    let source = nested_fstrings(300);
    assert_eq!(
        syms(&source).errors,
        vec![FileError::TooDeep {
            what: "f-strings".into(),
            depth: 300,
            limit: 297,
        }]
    );

    // Deeply nested defs: past CPython's limit of 100 indentation levels, and
    // past serde_json's recursion limit of 128 had the schema been nested.
    let nested_defs = |levels: usize| {
        let mut defs = String::new();
        for level in 0..levels {
            defs.push_str(&" ".repeat(level));
            defs.push_str(&format!("def f{level}():\n"));
        }
        defs.push_str(&" ".repeat(levels));
        defs.push_str("pass\n");
        defs
    };
    // 2,000 levels (4 MB of indentation) are read in full.
    let deeper = syms(&nested_defs(2_000));
    assert!(deeper.errors.is_empty(), "{:?}", deeper.errors);
    assert_eq!(deeper.functions.len(), 2_000);
    let s = syms(&nested_defs(400));
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.functions.len(), 400);
    assert_eq!(s.functions[2].qualname, "f0.<locals>.f1.<locals>.f2");
    // Flat schema: serializing and reading it back does not hit serde_json's
    // recursion limit.
    let json = serde_json::to_string(&s).unwrap();
    let back: FileSymbols = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
}

#[test]
fn files_over_the_size_limit_are_skipped_with_an_error() {
    // 50 MB of generated code: over the default limit, refused without parsing.
    let generated = "x = 1\n".repeat(50_000_000 / 6);
    let s = syms(&generated);
    assert_eq!(
        s.errors,
        vec![FileError::TooLarge {
            size: generated.len() as u64,
            limit: MAX_FILE_BYTES as u64,
        }]
    );
    let mut small = Extractor::new(ExtractOptions { max_file_bytes: 10 });
    assert!(matches!(
        small.extract(b"x = 1\ny = 2\n").errors[..],
        [FileError::TooLarge {
            size: 12,
            limit: 10
        }]
    ));
    assert!(small.extract(b"x = 1\n").errors.is_empty());
}

#[test]
fn an_extractor_is_deterministic_and_reusable_after_errors() {
    // (With tree-sitter this was the parse budget's test; Ruff's parser
    // recovers in linear time, so there is no budget any more.)
    let broken = "def f(x:\n    return g(x) + [h(x)\n".repeat(2_000);
    let mut extractor = Extractor::new(ExtractOptions::default());
    let first = extractor.extract(broken.as_bytes());
    assert!(!first.errors.is_empty());
    assert!(
        matches!(
            first.errors.last(),
            Some(FileError::MoreSyntaxErrors { .. })
        ),
        "{:?}",
        first.errors.last()
    );
    // Same bytes, same result; and nothing carries over to the next file.
    assert_eq!(extractor.extract(broken.as_bytes()), first);
    let small = extractor.extract(b"def g(): pass\n");
    assert!(small.errors.is_empty());
    assert_eq!(small.functions[0].name, "g");
    let source = "def f(x):\n    return g(x) + h(x)\n".repeat(2_000);
    assert_eq!(extractor.extract(source.as_bytes()).functions.len(), 2_000);
    assert_eq!(extract(source.as_bytes()).functions.len(), 2_000);
}

#[test]
fn extract_many_matches_extract_in_order() {
    let files: Vec<(String, String)> = (0..50)
        .map(|i| {
            (
                format!("m{i}.py"),
                format!("def f{i}(): pass\n").repeat(i + 1),
            )
        })
        .collect();
    let many = extract_many(&files);
    assert_eq!(many.len(), 50);
    for (i, (_, source)) in files.iter().enumerate() {
        assert_eq!(many[i], extract(source.as_bytes()));
        assert_eq!(many[i].functions.len(), i + 1);
        assert_eq!(many[i].functions[0].name, format!("f{i}"));
    }
    assert!(extract_many::<String, Vec<u8>>(&[]).is_empty());
}

#[test]
fn file_symbols_round_trip_through_json() {
    let s = syms("import a\nclass C(B):\n    def m(self, *a, k=1): return a.f()\n");
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(
        json["functions"][0]["parameters"][1]["kind"],
        "var-positional"
    );
    assert_eq!(json["imports"][0]["kind"], "import");
    let back: FileSymbols = serde_json::from_value(json).unwrap();
    assert_eq!(back, s);
    let error = serde_json::to_value(FileError::Binary { offset: 3 }).unwrap();
    assert_eq!(error, serde_json::json!({"kind": "binary", "offset": 3}));
}

// ---------------------------------------------------------------- module names

fn file_set(paths: &[&str]) -> HashSet<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

#[test]
fn module_names_for_src_layout_packages_and_namespaces() {
    let files = file_set(&[
        "src/pkg/__init__.py",
        "src/pkg/core.py",
        "src/pkg/sub/__init__.py",
        "src/pkg/sub/leaf.py",
        "tools/gen.py",
        "ns/part/__init__.py",
        "ns/part/mod.py",
        "my-project/app/__init__.py",
        "my-project/app/main.py",
        "setup.py",
        "__init__.py",
        "docs/conf.py",
        "bad-name.py",
        "README.md",
    ]);
    let name = |p: &str| module_name(p, &files);
    assert_eq!(name("src/pkg/__init__.py").as_deref(), Some("pkg"));
    assert_eq!(name("src/pkg/core.py").as_deref(), Some("pkg.core"));
    assert_eq!(name("src/pkg/sub/__init__.py").as_deref(), Some("pkg.sub"));
    assert_eq!(name("src/pkg/sub/leaf.py").as_deref(), Some("pkg.sub.leaf"));
    // Namespace packages: directories without __init__.py still count.
    assert_eq!(name("tools/gen.py").as_deref(), Some("tools.gen"));
    assert_eq!(name("ns/part/mod.py").as_deref(), Some("ns.part.mod"));
    assert_eq!(name("ns/part/__init__.py").as_deref(), Some("ns.part"));
    // A directory that is not an identifier cannot be a package.
    assert_eq!(name("my-project/app/main.py").as_deref(), Some("app.main"));
    assert_eq!(name("setup.py").as_deref(), Some("setup"));
    assert_eq!(name("./docs/conf.py").as_deref(), Some("docs.conf"));
    assert_eq!(name("__init__.py"), None);
    assert_eq!(name("bad-name.py"), None);
    assert_eq!(name("README.md"), None);
    assert_eq!(name("../outside.py"), None);
    // `src` that is itself a package is not a source root.
    let files = file_set(&["src/__init__.py", "src/util.py"]);
    assert_eq!(
        module_name("src/util.py", &files).as_deref(),
        Some("src.util")
    );
    assert_eq!(
        module_name("src/__init__.py", &files).as_deref(),
        Some("src")
    );
}

// ---------------------------------------------------------------- resolution

fn project(files: &[(&str, &str)]) -> ProjectState {
    ProjectState::from_files(files.iter().map(|(p, s)| (p.to_string(), syms(s))))
}

fn target(module: &str, qualname: &str, kind: DefKind) -> Target {
    Target {
        module: module.into(),
        qualname: qualname.into(),
        kind,
    }
}

fn calls_of<'g>(graph: &'g ResolvedGraph, module: &str) -> Vec<(&'g str, &'g Target)> {
    graph
        .module(module)
        .unwrap_or_else(|| panic!("no module {module}"))
        .calls
        .iter()
        .map(|c| (c.callee.as_str(), &c.target))
        .collect()
}

const APP: &[(&str, &str)] = &[
    ("src/app/__init__.py", "from .util import helper\nfrom .models import *\n"),
    ("src/app/util.py", "def helper():\n    return 1\n\ndef other(): pass\n"),
    (
        "src/app/models.py",
        "class Model:\n    def save(self):\n        return self.validate()\n    def validate(self): pass\n\n_private = 1\n",
    ),
    (
        "src/app/views/__init__.py",
        "from .. import util\nfrom ..models import Model as M\nimport app.util\nimport json\n",
    ),
    (
        "src/app/views/page.py",
        "from app import helper, Model\n\
         from . import render\n\
         from ..util import other\n\
         import app.util as u\n\
         import os.path\n\
         def show(helper_arg):\n\
         \x20   helper()\n\
         \x20   Model().save()\n\
         \x20   Model.save(None)\n\
         \x20   u.other()\n\
         \x20   app.util.helper()\n\
         \x20   render.draw()\n\
         \x20   os.path.join('a')\n\
         \x20   helper_arg()\n\
         \x20   def local(): pass\n\
         \x20   local()\n\
         \x20   def shadow(other): other()\n",
    ),
    ("src/app/views/render.py", "def draw(): pass\n"),
    ("tests/test_page.py", "from app.views.page import show\nshow(1)\n"),
];

#[test]
fn import_graph_resolves_relative_and_absolute_imports() {
    let state = project(APP);
    let (graph, stats) = resolve_incremental(None, &state);
    assert_eq!(
        stats,
        ResolveStats {
            resolved: 7,
            reused: 0
        }
    );
    let imports = graph.import_graph();
    let of = |m: &str| imports[m].iter().copied().collect::<Vec<_>>();
    assert_eq!(of("app"), vec!["app.models", "app.util"]);
    // `from .. import util` → the submodule; `import app.util` → app.util;
    // `import json` is not in the project.
    assert_eq!(of("app.views"), vec!["app.models", "app.util"]);
    assert_eq!(
        of("app.views.page"),
        vec!["app", "app.util", "app.views.render"]
    );
    assert_eq!(of("tests.test_page"), vec!["app.views.page"]);
    assert_eq!(graph.modules["app.views.page"], "src/app/views/page.py");
    let page = graph.module("app.views.page").unwrap();
    assert_eq!(page.imports[0].pos, pos(1, 0));
}

#[test]
fn call_sites_resolve_to_project_definitions() {
    let state = project(APP);
    let (graph, _) = resolve_incremental(None, &state);
    assert_eq!(
        calls_of(&graph, "app.views.page"),
        vec![
            // Re-exported by app/__init__.py from .util.
            ("helper", &target("app.util", "helper", DefKind::Function)),
            // Through `from .models import *` in app/__init__.py.
            ("Model", &target("app.models", "Model", DefKind::Class)),
            (
                "Model.save",
                &target("app.models", "Model.save", DefKind::Function)
            ),
            ("u.other", &target("app.util", "other", DefKind::Function)),
            // `app.util.helper()`: `app` is not bound in this module.
            // `os.path.join`: another project. `helper_arg()`: a parameter.
            // `other()` in `shadow`: the parameter shadows the import.
            (
                "render.draw",
                &target("app.views.render", "draw", DefKind::Function)
            ),
            (
                "local",
                &target("app.views.page", "show.<locals>.local", DefKind::Function)
            ),
        ]
    );
    let show_call = &graph.module("tests.test_page").unwrap().calls[0];
    assert_eq!(
        show_call.target,
        target("app.views.page", "show", DefKind::Function)
    );
    assert_eq!(show_call.scope, None);
    assert_eq!(show_call.pos, pos(2, 0));
    // `self.validate()` in a method resolves to the class's own method.
    assert_eq!(
        calls_of(&graph, "app.models"),
        vec![(
            "self.validate",
            &target("app.models", "Model.validate", DefKind::Function)
        )]
    );
}

#[test]
fn interface_ignores_bodies_and_positions_but_not_definitions() {
    let base = syms("import os\nclass C:\n    def m(self): return 1\ndef f(): return 1\n");
    let body_edit = syms(
        "import os\n\n\nclass C:\n    def m(self): return 2\ndef f():\n    x = 1\n    return x\n",
    );
    let new_def = syms("import os\nclass C:\n    def m(self): return 1\n    def n(self): pass\ndef f(): return 1\n");
    let digest = |s: &FileSymbols| interface_digest(&Interface::new("pkg.mod", false, s));
    assert_ne!(symbols_digest(&base), symbols_digest(&body_edit));
    assert_eq!(digest(&base), digest(&body_edit));
    assert_ne!(digest(&base), digest(&new_def));
    let interface = Interface::new("pkg.mod", false, &base);
    assert_eq!(
        interface.names.keys().collect::<Vec<_>>(),
        vec!["C", "f", "os"]
    );
    assert_eq!(interface.classes["C"].keys().collect::<Vec<_>>(), vec!["m"]);
}

#[test]
fn editing_a_leaf_body_re_resolves_only_that_leaf() {
    let mut state = project(APP);
    let (first, _) = resolve_incremental(None, &state);
    // Same interface: a body edit and a shifted line.
    state.insert(
        "src/app/util.py",
        "app.util",
        syms("\ndef helper():\n    return compute(2)\n\ndef other(): pass\n"),
    );
    let (second, stats) = resolve_incremental(Some(&first), &state);
    assert_eq!(
        stats,
        ResolveStats {
            resolved: 1,
            reused: 6
        }
    );
    assert_eq!(
        calls_of(&second, "app.views.page"),
        calls_of(&first, "app.views.page")
    );
    // Nothing changed: everything is reused.
    let (third, stats) = resolve_incremental(Some(&second), &state);
    assert_eq!(
        stats,
        ResolveStats {
            resolved: 0,
            reused: 7
        }
    );
    assert_eq!(third, second);
}

#[test]
fn changing_a_definition_re_resolves_its_importers() {
    let mut state = project(APP);
    let (first, _) = resolve_incremental(None, &state);
    // Rename `other`: util's interface changes. Its importers (app,
    // app.views, app.views.page) are redone, and so is util itself; models,
    // render and the test module (which reads only app.views.page) are not.
    state.insert(
        "src/app/util.py",
        "app.util",
        syms("def helper():\n    return 1\n\ndef renamed(): pass\n"),
    );
    let (second, stats) = resolve_incremental(Some(&first), &state);
    assert_eq!(
        stats,
        ResolveStats {
            resolved: 4,
            reused: 3
        }
    );
    let page = calls_of(&second, "app.views.page");
    assert!(
        !page.iter().any(|(callee, _)| *callee == "u.other"),
        "{page:?}"
    );
    assert!(page.contains(&("helper", &target("app.util", "helper", DefKind::Function))));
}

#[test]
fn adding_a_module_re_resolves_modules_that_asked_for_it() {
    let mut state = project(&[
        ("pkg/__init__.py", "tool = None\n"),
        ("main.py", "from pkg import tool\ntool.run()\n"),
        ("other.py", "x = 1\n"),
    ]);
    let (first, _) = resolve_incremental(None, &state);
    assert!(first.module("main").unwrap().calls.is_empty());
    assert_eq!(first.module("main").unwrap().imports[0].module, "pkg");
    state.insert("pkg/tool.py", "pkg.tool", syms("def run(): pass\n"));
    let (second, stats) = resolve_incremental(Some(&first), &state);
    assert_eq!(
        stats,
        ResolveStats {
            resolved: 2,
            reused: 2
        }
    );
    let main = second.module("main").unwrap();
    assert_eq!(main.imports[0].module, "pkg.tool");
    assert_eq!(
        main.calls[0].target,
        target("pkg.tool", "run", DefKind::Function)
    );
    assert_eq!(
        main.deps.get("pkg.tool"),
        Some(&Some(interface_digest(
            state.interface("pkg/tool.py").unwrap()
        )))
    );

    assert!(state.remove("pkg/tool.py"));
    let (third, stats) = resolve_incremental(Some(&second), &state);
    assert_eq!(
        stats,
        ResolveStats {
            resolved: 1,
            reused: 2
        }
    );
    assert!(third.module("main").unwrap().calls.is_empty());
}

#[test]
fn re_export_cycles_end_unresolved() {
    let state = project(&[
        ("a.py", "from b import x\nfrom c import *\n"),
        ("b.py", "from a import x\n"),
        ("c.py", "from a import *\nfrom b import *\n"),
        (
            "main.py",
            "import a\nfrom c import x as y\na.x()\ny()\na.z()\n",
        ),
    ]);
    let (graph, stats) = resolve_incremental(None, &state);
    assert_eq!(stats.resolved, 4);
    assert!(graph.module("main").unwrap().calls.is_empty());
    let imports: Vec<&str> = graph
        .module("main")
        .unwrap()
        .imports
        .iter()
        .map(|i| i.module.as_str())
        .collect();
    assert_eq!(imports, vec!["a", "c"]);
}

#[test]
fn resolved_graph_round_trips_through_json() {
    let state = project(APP);
    let (graph, _) = resolve_incremental(None, &state);
    let json = serde_json::to_string(&graph).unwrap();
    let back: ResolvedGraph = serde_json::from_str(&json).unwrap();
    assert_eq!(back, graph);
    // A graph read back is as good as the original for reuse.
    let (_, stats) = resolve_incremental(Some(&back), &state);
    assert_eq!(
        stats,
        ResolveStats {
            resolved: 0,
            reused: 7
        }
    );
}
