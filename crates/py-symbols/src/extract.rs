//! The per-file extractor: Ruff's parser, and a walk that takes the tree apart.
//!
//! Ruff's parser recurses, but grows its stack on the heap as it goes (through
//! `stacker`), so deep nesting costs memory, not a stack overflow; files whose
//! nesting would cost too much are refused before parsing (see [`nesting`]).
//! Its tree, however, would be dropped recursively, and a 200,000-term `a+a+…`
//! is a tree 200,000 levels deep. So the walk owns the tree: it pops one node
//! at a time from an explicit stack, records what the node says, moves the
//! node's children onto the stack, and drops the emptied node. No step
//! recurses, and every node is freed on its own. Children are visited in
//! source order, each carrying the scope (module, class or def) its code runs
//! in.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ruff_python_ast::{
    self as ast, Expr, FStringPart, InterpolatedStringElement, InterpolatedStringElements, Mod,
    Pattern, Stmt, TypeParam,
};
use ruff_python_parser::{parse_unchecked, Mode, ParseOptions};
use ruff_text_size::{Ranged, TextRange, TextSize};

use crate::schema::{
    CallSite, Class, FileSymbols, Function, Import, ImportKind, ImportedName, ParamKind, Parameter,
    Pos, Span, Variable, MAX_TEXT_BYTES,
};
use crate::FileError;

/// Files larger than this are not parsed; they get [`FileError::TooLarge`].
/// The largest file of the reference corpus (CPython's stdlib plus ~100
/// packages) is 4 MB. Measured on 16.5 MB of ordinary code (`_pydecimal.py`
/// 72 times): 0.45 s of CPU and 140 MB of peak memory for the whole
/// extraction, so 16 MiB keeps one file around half a second and 150 MB.
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// Syntax errors listed per file; the rest are counted in
/// [`FileError::MoreSyntaxErrors`].
pub const MAX_SYNTAX_ERRORS: usize = 100;

/// Longest syntax-error message kept, in bytes.
const MAX_MESSAGE_BYTES: usize = 200;

/// Ruff's parser has no nesting limit: it recurses once or more per level
/// and grows its stack on the heap, about 2 KB per level of brackets (a
/// megabyte of `(` would take 2 GB). Files nested deeper than this are not
/// parsed; they get [`FileError::TooDeep`]. The depth is estimated from the
/// tokens before parsing (see [`nesting`]): brackets, open blocks, and
/// chains of prefix and right-associative operators, at most about 4 KB of
/// stack per level counted (so 40 MB at the limit). CPython itself refuses
/// 200 levels of brackets; the deepest file of the reference corpus is
/// estimated at 28, and with an unclosed bracket inserted (which the
/// estimate cannot see the parser recover from) at 878.
pub(crate) const MAX_NESTING: u32 = 10_000;

/// f-strings nested so deep that their depth times the file's size exceeds
/// this are not parsed ([`FileError::TooDeep`]): Ruff's lexer copies its
/// stack of open f-strings at every lookahead, so parsing time grows with
/// depth × size (100,000 levels in 500 KB take a minute; at this limit a
/// crafted file takes about a second). That allows 16 levels in a 16 MiB
/// file, 256 in a 1 MiB one; CPython 3.12 allows 150, and the reference
/// corpus nests 2 at most.
pub(crate) const FSTRING_DEPTH_TIMES_SIZE: u64 = 1 << 28;

/// Options that change what is extracted. They are part of the cache key of
/// anything built from the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractOptions {
    /// See [`MAX_FILE_BYTES`].
    pub max_file_bytes: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            max_file_bytes: MAX_FILE_BYTES,
        }
    }
}

/// A reusable extractor, for one thread at a time: it keeps its buffers (the
/// walk's stack, the line index) from one file to the next.
#[derive(Default)]
pub struct Extractor {
    options: ExtractOptions,
    stack: Vec<(Node, u32)>,
    kids: Vec<(Node, u32)>,
    lines: Vec<u32>,
}

impl Extractor {
    pub fn new(options: ExtractOptions) -> Self {
        Self {
            options,
            stack: Vec::new(),
            kids: Vec::new(),
            lines: Vec::new(),
        }
    }

    /// Extracts the symbols of one file's content. Never panics; whatever could
    /// not be read is in [`FileSymbols::errors`].
    pub fn extract(&mut self, source: &[u8]) -> FileSymbols {
        let failed = |error| FileSymbols {
            errors: vec![error],
            ..FileSymbols::default()
        };
        let text = match crate::source::decode(source, self.options.max_file_bytes) {
            Ok(text) => crate::source::universal_newlines(text),
            Err(error) => return failed(error),
        };
        // Ruff's offsets are 32-bit.
        if u32::try_from(text.len()).is_err() {
            return failed(FileError::TooLarge {
                size: text.len() as u64,
                limit: u64::from(u32::MAX),
            });
        }
        // The parser is fuzzed and meant never to panic; should it, the file
        // gets an error rather than the caller a panic.
        let parsed = catch_unwind(AssertUnwindSafe(|| {
            nesting(&text)?;
            Ok(parse_unchecked(&text, ParseOptions::from(Mode::Module)))
        }));
        let parsed = match parsed {
            Ok(Ok(parsed)) => parsed,
            Ok(Err(error)) => return failed(error),
            Err(_) => return failed(FileError::NoTree),
        };
        line_starts(&text, &mut self.lines);
        let mut walker = Walker {
            src: &text,
            lines: &self.lines,
            out: FileSymbols::default(),
            scopes: vec![Scope {
                kind: ScopeKind::Module,
                qualname: None,
            }],
            kids: std::mem::take(&mut self.kids),
        };
        walker.syntax_errors(parsed.errors());
        match parsed.into_syntax() {
            Mod::Module(module) => {
                walker.out.docstring = docstring(&module.body);
                walker.body(module.body, 0);
            }
            Mod::Expression(expression) => walker.kid_expr(*expression.body, 0),
        }
        let (symbols, mut kids) = walker.run(&mut self.stack);
        // Keep the buffers for the next file, but not what a huge one grew.
        const KEEP: usize = 1 << 12;
        kids.shrink_to(KEEP);
        self.stack.shrink_to(KEEP);
        self.lines.shrink_to(KEEP * 16);
        self.kids = kids;
        symbols
    }
}

thread_local! {
    static EXTRACTOR: RefCell<Extractor> = RefCell::new(Extractor::default());
}

/// Extracts the symbols of one file's content with the default options.
///
/// Pure: the result depends on the bytes only (not on the file's path or
/// module name). Reuses one extractor's buffers per thread.
pub fn extract(source: &[u8]) -> FileSymbols {
    EXTRACTOR.with(|cell| match cell.try_borrow_mut() {
        Ok(mut extractor) => extractor.extract(source),
        Err(_) => Extractor::default().extract(source),
    })
}

/// The offset of the start of each line (the text's newlines are `\n` only).
fn line_starts(text: &str, lines: &mut Vec<u32>) {
    // Eight bytes at a time: a newline is a zero byte of `word ^ 0x0a…0a`,
    // found exactly (no carry crosses a byte) by setting the high bit of
    // every non-zero byte.
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const NEWLINES: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    lines.clear();
    lines.push(0);
    let bytes = text.as_bytes();
    let mut chunks = bytes.chunks_exact(8);
    let mut base = 0usize;
    let push = |lines: &mut Vec<u32>, at: usize| {
        lines.push(u32::try_from(at + 1).unwrap_or(u32::MAX));
    };
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ NEWLINES;
        let mut zeros = !(((x & LOW7).wrapping_add(LOW7)) | x) & HIGH;
        while zeros != 0 {
            push(lines, base + zeros.trailing_zeros() as usize / 8);
            zeros &= zeros - 1;
        }
        base += 8;
    }
    for (i, &b) in chunks.remainder().iter().enumerate() {
        if b == b'\n' {
            push(lines, base + i);
        }
    }
}

/// A node of the tree waiting on the walk's stack, owned.
enum Node {
    Stmt(Stmt),
    Expr(Expr),
    Pattern(Pattern),
    /// The parts of an f-string or t-string, or of a format spec.
    Elements(InterpolatedStringElements),
}

#[derive(Clone, Copy)]
enum ScopeKind {
    Module,
    Class(usize),
    Function(usize),
}

struct Scope {
    kind: ScopeKind,
    qualname: Option<String>,
}

struct Walker<'s> {
    src: &'s str,
    lines: &'s [u32],
    out: FileSymbols,
    /// Every scope met so far, never popped: nodes refer to theirs by index.
    scopes: Vec<Scope>,
    /// The children of the node being visited, in source order.
    kids: Vec<(Node, u32)>,
}

impl Walker<'_> {
    /// One pre-order pass in source order. The stack holds the nodes still to
    /// visit, last first; each visit pushes the node's children.
    fn run(mut self, stack: &mut Vec<(Node, u32)>) -> (FileSymbols, Vec<(Node, u32)>) {
        stack.clear();
        stack.extend(self.kids.drain(..).rev());
        while let Some((node, scope)) = stack.pop() {
            match node {
                Node::Stmt(stmt) => self.stmt(stmt, scope),
                Node::Expr(expr) => self.expr(expr, scope),
                Node::Pattern(pattern) => self.pattern(pattern, scope),
                Node::Elements(elements) => self.elements(elements, scope),
            }
            stack.extend(self.kids.drain(..).rev());
        }
        (self.out, self.kids)
    }

    fn syntax_errors(&mut self, errors: &[ruff_python_parser::ParseError]) {
        let mut found: Vec<(TextSize, &ruff_python_parser::ParseError)> =
            errors.iter().map(|e| (e.location.start(), e)).collect();
        found.sort_by_key(|(at, _)| *at);
        for (at, error) in found.iter().take(MAX_SYNTAX_ERRORS) {
            let at = self.pos(*at);
            self.out.errors.push(FileError::Syntax {
                line: at.line,
                column: at.column,
                message: clip(&error.error.to_string(), MAX_MESSAGE_BYTES),
            });
        }
        if found.len() > MAX_SYNTAX_ERRORS {
            self.out.errors.push(FileError::MoreSyntaxErrors {
                omitted: u32::try_from(found.len() - MAX_SYNTAX_ERRORS).unwrap_or(u32::MAX),
            });
        }
    }

    fn kid(&mut self, node: Node, scope: u32) {
        self.kids.push((node, scope));
    }

    fn kid_expr(&mut self, expr: Expr, scope: u32) {
        // Leaves (about half the expressions) say nothing: dropped here
        // rather than moved through the stack.
        if !matches!(
            expr,
            Expr::Name(_)
                | Expr::NumberLiteral(_)
                | Expr::StringLiteral(_)
                | Expr::BytesLiteral(_)
                | Expr::BooleanLiteral(_)
                | Expr::NoneLiteral(_)
                | Expr::EllipsisLiteral(_)
        ) {
            self.kids.push((Node::Expr(expr), scope));
        }
    }

    fn kid_opt(&mut self, expr: Option<Box<Expr>>, scope: u32) {
        if let Some(expr) = expr {
            self.kid_expr(*expr, scope);
        }
    }

    fn kid_exprs(&mut self, exprs: impl IntoIterator<Item = Expr>, scope: u32) {
        for expr in exprs {
            self.kid_expr(expr, scope);
        }
    }

    fn body(&mut self, body: impl IntoIterator<Item = Stmt>, scope: u32) {
        self.kids
            .extend(body.into_iter().map(|s| (Node::Stmt(s), scope)));
    }

    fn kind(&self, scope: u32) -> ScopeKind {
        self.scopes
            .get(scope as usize)
            .map_or(ScopeKind::Module, |s| s.kind)
    }

    fn qualname(&self, scope: u32) -> Option<String> {
        self.scopes
            .get(scope as usize)
            .and_then(|s| s.qualname.clone())
    }

    fn stmt(&mut self, stmt: Stmt, scope: u32) {
        match stmt {
            Stmt::FunctionDef(def) => self.function(def, scope),
            Stmt::ClassDef(def) => self.class(def, scope),
            Stmt::Import(import) => self.import(import, scope),
            Stmt::ImportFrom(import) => self.import_from(import, scope),
            Stmt::Assign(ast::StmtAssign { targets, value, .. }) => {
                if !matches!(self.kind(scope), ScopeKind::Function(_)) {
                    let mut found = Vec::new();
                    for target in &targets {
                        self.bound_names(target, &mut found);
                    }
                    self.bind(scope, found);
                }
                self.kid_exprs(targets, scope);
                self.kid_expr(*value, scope);
            }
            Stmt::AnnAssign(ast::StmtAnnAssign {
                target,
                annotation,
                value,
                range,
                ..
            }) => {
                if !matches!(self.kind(scope), ScopeKind::Function(_)) {
                    let mut found = Vec::new();
                    if let Expr::Name(name) = &*target {
                        let hi = value.as_ref().map_or(range.end(), |v| v.start());
                        found.push(Variable {
                            name: name.id.to_string(),
                            annotation: Some(self.text_within(
                                annotation.range(),
                                target.end(),
                                hi,
                            )),
                            span: self.span(name.range),
                        });
                    } else {
                        self.bound_names(&target, &mut found);
                    }
                    self.bind(scope, found);
                }
                self.kid_expr(*target, scope);
                self.kid_expr(*annotation, scope);
                self.kid_opt(value, scope);
            }
            Stmt::AugAssign(ast::StmtAugAssign { target, value, .. }) => {
                self.kid_expr(*target, scope);
                self.kid_expr(*value, scope);
            }
            Stmt::Return(ast::StmtReturn { value, .. }) => self.kid_opt(value, scope),
            Stmt::Delete(ast::StmtDelete { targets, .. }) => self.kid_exprs(targets, scope),
            Stmt::TypeAlias(ast::StmtTypeAlias {
                name,
                type_params,
                value,
                ..
            }) => {
                self.kid_expr(*name, scope);
                self.type_params(type_params, scope);
                self.kid_expr(*value, scope);
            }
            Stmt::For(ast::StmtFor {
                target,
                iter,
                body,
                orelse,
                ..
            }) => {
                self.kid_expr(*target, scope);
                self.kid_expr(*iter, scope);
                self.body(body, scope);
                self.body(orelse, scope);
            }
            Stmt::While(ast::StmtWhile {
                test, body, orelse, ..
            }) => {
                self.kid_expr(*test, scope);
                self.body(body, scope);
                self.body(orelse, scope);
            }
            Stmt::If(ast::StmtIf {
                test,
                body,
                elif_else_clauses,
                ..
            }) => {
                self.kid_expr(*test, scope);
                self.body(body, scope);
                for clause in elif_else_clauses {
                    if let Some(test) = clause.test {
                        self.kid_expr(test, scope);
                    }
                    self.body(clause.body, scope);
                }
            }
            Stmt::With(ast::StmtWith { items, body, .. }) => {
                for item in items {
                    self.kid_expr(item.context_expr, scope);
                    self.kid_opt(item.optional_vars, scope);
                }
                self.body(body, scope);
            }
            Stmt::Match(ast::StmtMatch { subject, cases, .. }) => {
                self.kid_expr(*subject, scope);
                for case in cases {
                    self.kid(Node::Pattern(case.pattern), scope);
                    self.kid_opt(case.guard, scope);
                    self.body(case.body, scope);
                }
            }
            Stmt::Raise(ast::StmtRaise { exc, cause, .. }) => {
                self.kid_opt(exc, scope);
                self.kid_opt(cause, scope);
            }
            Stmt::Try(ast::StmtTry {
                body,
                handlers,
                orelse,
                finalbody,
                ..
            }) => {
                self.body(body, scope);
                for handler in handlers {
                    let ast::ExceptHandler::ExceptHandler(handler) = handler;
                    self.kid_opt(handler.type_, scope);
                    self.body(handler.body, scope);
                }
                self.body(orelse, scope);
                self.body(finalbody, scope);
            }
            Stmt::Assert(ast::StmtAssert { test, msg, .. }) => {
                self.kid_expr(*test, scope);
                self.kid_opt(msg, scope);
            }
            Stmt::Expr(ast::StmtExpr { value, .. }) => self.kid_expr(*value, scope),
            Stmt::Global(_)
            | Stmt::Nonlocal(_)
            | Stmt::Pass(_)
            | Stmt::Break(_)
            | Stmt::Continue(_)
            | Stmt::IpyEscapeCommand(_) => {}
        }
    }

    fn expr(&mut self, expr: Expr, scope: u32) {
        match expr {
            Expr::Call(call) => {
                let start = call.range().start();
                let ast::ExprCall {
                    func, arguments, ..
                } = call;
                self.call(start, &func, arguments.range.start(), scope);
                self.kid_expr(*func, scope);
                self.arguments(arguments, scope);
            }
            Expr::BoolOp(ast::ExprBoolOp { values, .. }) => self.kid_exprs(values, scope),
            Expr::Named(ast::ExprNamed { target, value, .. }) => {
                self.kid_expr(*target, scope);
                self.kid_expr(*value, scope);
            }
            Expr::BinOp(ast::ExprBinOp { left, right, .. }) => {
                self.kid_expr(*left, scope);
                self.kid_expr(*right, scope);
            }
            Expr::UnaryOp(ast::ExprUnaryOp { operand, .. }) => self.kid_expr(*operand, scope),
            Expr::Lambda(ast::ExprLambda {
                parameters, body, ..
            }) => {
                if let Some(parameters) = parameters {
                    self.parameter_parts(*parameters, scope);
                }
                self.kid_expr(*body, scope);
            }
            // `body if test else orelse`
            Expr::If(ast::ExprIf {
                test, body, orelse, ..
            }) => {
                self.kid_expr(*body, scope);
                self.kid_expr(*test, scope);
                self.kid_expr(*orelse, scope);
            }
            Expr::Dict(ast::ExprDict { items, .. }) => {
                for item in items {
                    if let Some(key) = item.key {
                        self.kid_expr(key, scope);
                    }
                    self.kid_expr(item.value, scope);
                }
            }
            Expr::Set(ast::ExprSet { elts, .. })
            | Expr::List(ast::ExprList { elts, .. })
            | Expr::Tuple(ast::ExprTuple { elts, .. }) => self.kid_exprs(elts, scope),
            Expr::ListComp(ast::ExprListComp {
                elt, generators, ..
            })
            | Expr::SetComp(ast::ExprSetComp {
                elt, generators, ..
            })
            | Expr::Generator(ast::ExprGenerator {
                elt, generators, ..
            }) => {
                self.kid_expr(*elt, scope);
                self.comprehensions(generators, scope);
            }
            Expr::DictComp(ast::ExprDictComp {
                key,
                value,
                generators,
                ..
            }) => {
                self.kid_opt(key, scope);
                self.kid_expr(*value, scope);
                self.comprehensions(generators, scope);
            }
            Expr::Await(ast::ExprAwait { value, .. })
            | Expr::YieldFrom(ast::ExprYieldFrom { value, .. })
            | Expr::Attribute(ast::ExprAttribute { value, .. })
            | Expr::Starred(ast::ExprStarred { value, .. }) => self.kid_expr(*value, scope),
            Expr::Yield(ast::ExprYield { value, .. }) => self.kid_opt(value, scope),
            Expr::Compare(ast::ExprCompare {
                left, comparators, ..
            }) => {
                self.kid_expr(*left, scope);
                self.kid_exprs(comparators.into_vec(), scope);
            }
            Expr::FString(ast::ExprFString { mut value, .. }) => {
                for part in value.iter_mut() {
                    if let FStringPart::FString(fstring) = part {
                        let elements = std::mem::take(&mut fstring.elements);
                        self.kid(Node::Elements(elements), scope);
                    }
                }
            }
            Expr::TString(ast::ExprTString { mut value, .. }) => {
                for tstring in value.iter_mut() {
                    let elements = std::mem::take(&mut tstring.elements);
                    self.kid(Node::Elements(elements), scope);
                }
            }
            Expr::Subscript(ast::ExprSubscript { value, slice, .. }) => {
                self.kid_expr(*value, scope);
                self.kid_expr(*slice, scope);
            }
            Expr::Slice(ast::ExprSlice {
                lower, upper, step, ..
            }) => {
                self.kid_opt(lower, scope);
                self.kid_opt(upper, scope);
                self.kid_opt(step, scope);
            }
            Expr::StringLiteral(_)
            | Expr::BytesLiteral(_)
            | Expr::NumberLiteral(_)
            | Expr::BooleanLiteral(_)
            | Expr::NoneLiteral(_)
            | Expr::EllipsisLiteral(_)
            | Expr::Name(_)
            | Expr::IpyEscapeCommand(_) => {}
        }
    }

    /// The expressions inside `{…}` of an f-string (and of their format specs).
    /// The elements are only borrowed mutably, so each expression is swapped
    /// for a leaf.
    fn elements(&mut self, mut elements: InterpolatedStringElements, scope: u32) {
        for element in elements.iter_mut() {
            if let InterpolatedStringElement::Interpolation(interpolation) = element {
                let leaf = Expr::NoneLiteral(ast::ExprNoneLiteral::default());
                let expression = std::mem::replace(&mut *interpolation.expression, leaf);
                self.kid_expr(expression, scope);
                if let Some(spec) = interpolation.format_spec.take() {
                    self.kid(Node::Elements(spec.elements), scope);
                }
            }
        }
    }

    fn pattern(&mut self, pattern: Pattern, scope: u32) {
        let kid_pattern = |walker: &mut Self, p: Pattern| walker.kid(Node::Pattern(p), scope);
        match pattern {
            Pattern::MatchValue(ast::PatternMatchValue { value, .. }) => {
                self.kid_expr(*value, scope)
            }
            Pattern::MatchSequence(ast::PatternMatchSequence { patterns, .. })
            | Pattern::MatchOr(ast::PatternMatchOr { patterns, .. }) => {
                for p in patterns {
                    kid_pattern(self, p);
                }
            }
            Pattern::MatchMapping(ast::PatternMatchMapping { keys, patterns, .. }) => {
                let mut patterns = patterns.into_iter();
                for key in keys {
                    self.kid_expr(key, scope);
                    if let Some(p) = patterns.next() {
                        kid_pattern(self, p);
                    }
                }
                for p in patterns {
                    kid_pattern(self, p);
                }
            }
            Pattern::MatchClass(ast::PatternMatchClass { cls, arguments, .. }) => {
                self.kid_expr(*cls, scope);
                for p in arguments.patterns {
                    kid_pattern(self, p);
                }
                for keyword in arguments.keywords {
                    kid_pattern(self, keyword.pattern);
                }
            }
            Pattern::MatchAs(ast::PatternMatchAs { pattern, .. }) => {
                if let Some(p) = pattern {
                    kid_pattern(self, *p);
                }
            }
            Pattern::MatchSingleton(_) | Pattern::MatchStar(_) => {}
        }
    }

    fn comprehensions(&mut self, generators: Vec<ast::Comprehension>, scope: u32) {
        for generator in generators {
            self.kid_expr(generator.target, scope);
            self.kid_expr(generator.iter, scope);
            self.kid_exprs(generator.ifs, scope);
        }
    }

    /// Positional and keyword arguments, interleaved in source order.
    fn arguments(&mut self, arguments: ast::Arguments, scope: u32) {
        let mut args = arguments.args.into_vec().into_iter().peekable();
        let mut keywords = arguments.keywords.into_iter().peekable();
        loop {
            let arg_first = match (args.peek(), keywords.peek()) {
                (Some(a), Some(k)) => a.start() <= k.start(),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if arg_first {
                if let Some(a) = args.next() {
                    self.kid_expr(a, scope);
                }
            } else if let Some(k) = keywords.next() {
                self.kid_expr(k.value, scope);
            }
        }
    }

    fn type_params(&mut self, type_params: Option<Box<ast::TypeParams>>, scope: u32) {
        let Some(type_params) = type_params else {
            return;
        };
        for param in type_params.type_params {
            match param {
                TypeParam::TypeVar(ast::TypeParamTypeVar { bound, default, .. }) => {
                    self.kid_opt(bound, scope);
                    self.kid_opt(default, scope);
                }
                TypeParam::TypeVarTuple(ast::TypeParamTypeVarTuple { default, .. })
                | TypeParam::ParamSpec(ast::TypeParamParamSpec { default, .. }) => {
                    self.kid_opt(default, scope);
                }
            }
        }
    }

    /// The annotations and defaults of a parameter list, in source order.
    fn parameter_parts(&mut self, parameters: ast::Parameters, scope: u32) {
        let ast::Parameters {
            posonlyargs,
            args,
            vararg,
            kwonlyargs,
            kwarg,
            ..
        } = parameters;
        for p in posonlyargs.into_iter().chain(args) {
            self.kid_opt(p.parameter.annotation, scope);
            self.kid_opt(p.default, scope);
        }
        if let Some(p) = vararg {
            self.kid_opt(p.annotation, scope);
        }
        for p in kwonlyargs {
            self.kid_opt(p.parameter.annotation, scope);
            self.kid_opt(p.default, scope);
        }
        if let Some(p) = kwarg {
            self.kid_opt(p.annotation, scope);
        }
    }

    /// The qualified name of a definition named `name` in `scope`, and its parent's.
    fn names(&self, scope: u32, name: &str) -> (Option<String>, String) {
        let parent = self.qualname(scope);
        let qualname = match (self.kind(scope), &parent) {
            (ScopeKind::Module, _) | (_, None) => name.to_string(),
            (ScopeKind::Class(_), Some(p)) => format!("{p}.{name}"),
            (ScopeKind::Function(_), Some(p)) => format!("{p}.<locals>.{name}"),
        };
        (parent, qualname)
    }

    fn new_scope(&mut self, kind: ScopeKind, qualname: String) -> u32 {
        self.scopes.push(Scope {
            kind,
            qualname: Some(qualname),
        });
        u32::try_from(self.scopes.len() - 1).unwrap_or(u32::MAX)
    }

    fn decorators(&self, decorators: &[ast::Decorator]) -> Vec<String> {
        decorators
            .iter()
            .map(|d| {
                let lo = d.range.start() + TextSize::new(1);
                self.text_within(d.expression.range(), lo, d.range.end())
            })
            .collect()
    }

    /// Records a def. Its decorators, defaults, annotations and type
    /// parameters run in `scope`, its body in its own.
    fn function(&mut self, def: ast::StmtFunctionDef, scope: u32) {
        let ast::StmtFunctionDef {
            range,
            is_async,
            decorator_list,
            name,
            type_params,
            parameters,
            returns,
            body,
            ..
        } = def;
        let (parent, qualname) = self.names(scope, &name.id);
        let returns_text = returns.as_ref().map(|r| {
            let hi = body.first().map_or(range.end(), Ranged::start);
            self.text_within(r.range(), parameters.range.end(), hi)
        });
        let is_method = matches!(self.kind(scope), ScopeKind::Class(_));
        if let ScopeKind::Class(owner) = self.kind(scope) {
            self.out.classes[owner].methods.push(name.id.to_string());
        }
        self.out.functions.push(Function {
            name: name.id.to_string(),
            qualname: qualname.clone(),
            parent,
            is_method,
            is_async,
            parameters: self.parameters(&parameters),
            returns: returns_text,
            decorators: self.decorators(&decorator_list),
            docstring: docstring(&body),
            calls: Vec::new(),
            span: Span {
                start: self.pos(self.keyword_start(range, &decorator_list)),
                end: self.pos(range.end()),
            },
        });
        let inner = self.new_scope(ScopeKind::Function(self.out.functions.len() - 1), qualname);
        for decorator in decorator_list {
            self.kid_expr(decorator.expression, scope);
        }
        self.type_params(type_params, scope);
        self.parameter_parts(*parameters, scope);
        self.kid_opt(returns, scope);
        self.body(body, inner);
    }

    fn class(&mut self, def: ast::StmtClassDef, scope: u32) {
        let ast::StmtClassDef {
            range,
            decorator_list,
            name,
            type_params,
            arguments,
            body,
            ..
        } = def;
        let (parent, qualname) = self.names(scope, &name.id);
        let (mut bases, mut keywords) = (Vec::new(), Vec::new());
        if let Some(arguments) = &arguments {
            // Inside the parentheses of the class statement.
            let lo = arguments.range.start() + TextSize::new(1);
            let hi = arguments.range.end().max(lo + TextSize::new(1)) - TextSize::new(1);
            bases = arguments
                .args
                .iter()
                .map(|a| self.text_within(a.range(), lo, hi))
                .collect();
            keywords = arguments
                .keywords
                .iter()
                .map(|k| self.text(k.range))
                .collect();
        }
        if let ScopeKind::Class(owner) = self.kind(scope) {
            self.out.classes[owner].classes.push(name.id.to_string());
        }
        self.out.classes.push(Class {
            name: name.id.to_string(),
            qualname: qualname.clone(),
            parent,
            bases,
            keywords,
            decorators: self.decorators(&decorator_list),
            docstring: docstring(&body),
            methods: Vec::new(),
            classes: Vec::new(),
            attributes: Vec::new(),
            calls: Vec::new(),
            span: Span {
                start: self.pos(self.keyword_start(range, &decorator_list)),
                end: self.pos(range.end()),
            },
        });
        let inner = self.new_scope(ScopeKind::Class(self.out.classes.len() - 1), qualname);
        for decorator in decorator_list {
            self.kid_expr(decorator.expression, scope);
        }
        self.type_params(type_params, scope);
        if let Some(arguments) = arguments {
            self.arguments(*arguments, scope);
        }
        self.body(body, inner);
    }

    fn parameters(&self, parameters: &ast::Parameters) -> Vec<Parameter> {
        let mut out = Vec::new();
        let with_defaults = [
            (&parameters.posonlyargs, ParamKind::PositionalOnly),
            (&parameters.args, ParamKind::PositionalOrKeyword),
        ];
        for (list, kind) in with_defaults {
            for p in list.iter() {
                out.push(self.parameter(&p.parameter, p.default.as_deref(), p.range, kind));
            }
        }
        if let Some(p) = &parameters.vararg {
            out.push(self.parameter(p, None, p.range, ParamKind::VarPositional));
        }
        for p in &parameters.kwonlyargs {
            out.push(self.parameter(
                &p.parameter,
                p.default.as_deref(),
                p.range,
                ParamKind::KeywordOnly,
            ));
        }
        if let Some(p) = &parameters.kwarg {
            out.push(self.parameter(p, None, p.range, ParamKind::VarKeyword));
        }
        out
    }

    fn parameter(
        &self,
        parameter: &ast::Parameter,
        default: Option<&Expr>,
        within: TextRange,
        kind: ParamKind,
    ) -> Parameter {
        let text = |e: &Expr| self.text_within(e.range(), within.start(), within.end());
        Parameter {
            name: parameter.name.id.to_string(),
            kind,
            annotation: parameter.annotation.as_deref().map(text),
            default: default.map(text),
        }
    }

    fn import(&mut self, import: ast::StmtImport, scope: u32) {
        self.out.imports.push(Import {
            kind: ImportKind::Import,
            level: 0,
            module: None,
            names: import
                .names
                .iter()
                .filter(|a| !a.name.id.is_empty())
                .map(imported_name)
                .collect(),
            star: false,
            scope: self.qualname(scope),
            span: self.span(import.range),
        });
    }

    fn import_from(&mut self, import: ast::StmtImportFrom, scope: u32) {
        let star = import.names.iter().any(|a| a.name.id == "*");
        self.out.imports.push(Import {
            kind: ImportKind::From,
            level: import.level,
            module: import
                .module
                .as_ref()
                .filter(|m| !m.id.is_empty())
                .map(|m| m.id.to_string()),
            names: import
                .names
                .iter()
                .filter(|a| !a.name.id.is_empty() && a.name.id != "*")
                .map(imported_name)
                .collect(),
            star,
            scope: self.qualname(scope),
            span: self.span(import.range),
        });
    }

    /// Names bound by an assignment target: a name, or names inside
    /// tuples, lists and starred targets (not attributes or subscripts).
    fn bound_names(&self, target: &Expr, found: &mut Vec<Variable>) {
        let mut stack = vec![target];
        while let Some(expr) = stack.pop() {
            match expr {
                Expr::Name(name) => found.push(Variable {
                    name: name.id.to_string(),
                    annotation: None,
                    span: self.span(name.range),
                }),
                Expr::Tuple(ast::ExprTuple { elts, .. })
                | Expr::List(ast::ExprList { elts, .. }) => stack.extend(elts.iter().rev()),
                Expr::Starred(starred) => stack.push(&starred.value),
                _ => {}
            }
        }
    }

    fn bind(&mut self, scope: u32, found: Vec<Variable>) {
        match self.kind(scope) {
            ScopeKind::Module => self.out.variables.extend(found),
            ScopeKind::Class(owner) => self.out.classes[owner].attributes.extend(found),
            ScopeKind::Function(_) => {}
        }
    }

    /// A call starting at `start` whose arguments start at `arguments`.
    fn call(&mut self, start: TextSize, func: &Expr, arguments: TextSize, scope: u32) {
        // The callee as written, with its parentheses (`(lambda: k())`).
        let callee = match self.src.get(start.to_usize()..arguments.to_usize()) {
            Some(text) => clip(text.trim_end(), MAX_TEXT_BYTES),
            None => self.text(func.range()),
        };
        let site = CallSite {
            callee,
            dotted: dotted(func),
            pos: self.pos(start),
        };
        match self.kind(scope) {
            ScopeKind::Module => self.out.calls.push(site),
            ScopeKind::Class(i) => self.out.classes[i].calls.push(site),
            ScopeKind::Function(i) => self.out.functions[i].calls.push(site),
        }
    }

    /// Where the `def` (or `async`) or `class` keyword is: the parser's range
    /// starts at the first decorator.
    fn keyword_start(&self, range: TextRange, decorators: &[ast::Decorator]) -> TextSize {
        let Some(last) = decorators.last() else {
            return range.start();
        };
        let bytes = self.src.as_bytes();
        let end = range.end().to_usize().min(bytes.len());
        let mut i = last.range.end().to_usize();
        while i < end {
            match bytes[i] {
                b' ' | b'\t' | b'\x0c' | b'\n' | b'\\' => i += 1,
                b'#' => {
                    while i < end && bytes[i] != b'\n' {
                        i += 1;
                    }
                }
                _ => return TextSize::try_from(i).unwrap_or(range.start()),
            }
        }
        range.start()
    }

    fn pos(&self, offset: TextSize) -> Pos {
        let offset = u32::from(offset);
        let line = self.lines.partition_point(|&start| start <= offset).max(1);
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: offset - self.lines.get(line - 1).copied().unwrap_or(0).min(offset),
        }
    }

    fn span(&self, range: TextRange) -> Span {
        Span {
            start: self.pos(range.start()),
            end: self.pos(range.end()),
        }
    }

    fn text(&self, range: TextRange) -> String {
        clip(
            self.src
                .get(range.start().to_usize()..range.end().to_usize())
                .unwrap_or_default(),
            MAX_TEXT_BYTES,
        )
    }

    /// The text of an expression with the parentheses around it that lie
    /// within `lo..hi` (the parser's ranges leave them out).
    fn text_within(&self, range: TextRange, lo: TextSize, hi: TextSize) -> String {
        let bytes = self.src.as_bytes();
        let (lo, hi) = (lo.to_usize(), hi.to_usize().min(bytes.len()));
        let (mut start, mut end) = (range.start().to_usize(), range.end().to_usize());
        let blank = |b: u8| matches!(b, b' ' | b'\t' | b'\x0c' | b'\n' | b'\\');
        loop {
            let mut left = start;
            while left > lo && blank(bytes[left - 1]) {
                left -= 1;
            }
            let mut right = end;
            while right < hi && blank(bytes[right]) {
                right += 1;
            }
            if left > lo && right < hi && bytes[left - 1] == b'(' && bytes[right] == b')' {
                start = left - 1;
                end = right + 1;
            } else {
                break;
            }
        }
        self.text(TextRange::new(
            TextSize::try_from(start).unwrap_or_default(),
            TextSize::try_from(end).unwrap_or_default(),
        ))
    }
}

fn imported_name(alias: &ast::Alias) -> ImportedName {
    ImportedName {
        name: alias.name.id.to_string(),
        asname: alias.asname.as_ref().map(|a| a.id.to_string()),
    }
}

/// `a.b.c` for a name or a chain of attributes on a name.
fn dotted(mut expr: &Expr) -> Option<String> {
    const MAX_PARTS: usize = 64;
    let mut parts = Vec::new();
    loop {
        match expr {
            Expr::Name(name) => {
                parts.push(name.id.as_str());
                break;
            }
            Expr::Attribute(attribute) => {
                parts.push(attribute.attr.id.as_str());
                expr = &attribute.value;
            }
            _ => return None,
        }
        if parts.len() > MAX_PARTS {
            return None;
        }
    }
    parts.reverse();
    Some(parts.join("."))
}

/// The docstring of a module or of a def/class body: a first statement that
/// is a plain string literal (implicit concatenation included; not bytes,
/// not an f-string), with its escapes processed.
fn docstring(body: &[Stmt]) -> Option<String> {
    match body.first()? {
        Stmt::Expr(statement) => match &*statement.value {
            Expr::StringLiteral(literal) => Some(literal.value.to_str().to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// Cuts `text` to at most `max` bytes at a char boundary, marking the cut with `…`.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Refuses text nested deeper than [`MAX_NESTING`], or with f-strings
/// nested deeper than [`FSTRING_DEPTH_TIMES_SIZE`] allows.
///
/// A count of bytes rules out deep nesting for most files; the others get
/// the estimate of [`nesting_depths`], which lexes them.
fn nesting(text: &str) -> Result<(), FileError> {
    let size = text.len() as u64;
    let (bound, fstrings) = nesting_bound(text.as_bytes());
    if bound <= MAX_NESTING as usize
        && (fstrings as u64).saturating_mul(size) <= FSTRING_DEPTH_TIMES_SIZE
    {
        return Ok(());
    }
    let (deepest, deepest_fstrings) = nesting_depths(text);
    if deepest > MAX_NESTING {
        return Err(FileError::TooDeep {
            what: "code".into(),
            depth: u64::from(deepest),
            limit: u64::from(MAX_NESTING),
        });
    }
    if u64::from(deepest_fstrings).saturating_mul(size) > FSTRING_DEPTH_TIMES_SIZE {
        return Err(FileError::TooDeep {
            what: "f-strings".into(),
            depth: u64::from(deepest_fstrings),
            limit: FSTRING_DEPTH_TIMES_SIZE / size.max(1),
        });
    }
    Ok(())
}

/// Upper bounds of what [`nesting_depths`] can find, from bytes alone: the
/// number of bytes that can start a token it counts (a newline for a block;
/// `( [ { - + ~ * :`; `a n e l i y` at the start of a word, for `await`,
/// `not`, `else`, `lambda`, `if`, `yield`; the first quote of an f-string or
/// t-string), and the number of f-string and t-string starts. Strings and
/// comments are counted as if they were code: the bounds only grow.
fn nesting_bound(bytes: &[u8]) -> (usize, usize) {
    // Comparisons only, over three aligned slices (each byte and the two
    // before it) counted in chunks of 255: the compiler vectorizes it, under
    // a nanosecond a byte where a table lookup per byte takes four.
    #[inline(always)]
    fn counts(b: u8, p1: u8, p2: u8) -> (u8, u8) {
        let nest = (b == b'\n')
            | (b == b'(')
            | (b == b'[')
            | (b == b'{')
            | (b == b'-')
            | (b == b'+')
            | (b == b'~')
            | (b == b'*')
            | (b == b':');
        let keyword =
            (b == b'a') | (b == b'n') | (b == b'e') | (b == b'l') | (b == b'i') | (b == b'y');
        // A word starts after anything but an ASCII letter or `_` (a digit
        // too: `1if x else y` is `1 if x else y`).
        let after_word = ((p1 | 0x20).wrapping_sub(b'a') < 26) | (p1 == b'_');
        let f_or_t = |c: u8| (c | 0x20 == b'f') | (c | 0x20 == b't');
        let fstring =
            ((b == b'\'') | (b == b'"')) & (f_or_t(p1) | ((p1 | 0x20 == b'r') & f_or_t(p2)));
        (u8::from(nest | (keyword & !after_word)), u8::from(fstring))
    }
    let (mut bound, mut fstrings) = (1usize, 0usize);
    let n = bytes.len();
    // The first two bytes come after a newline.
    for i in 0..n.min(2) {
        let p1 = if i == 1 { bytes[0] } else { b'\n' };
        let (b, f) = counts(bytes[i], p1, b'\n');
        bound += usize::from(b);
        fstrings += usize::from(f);
    }
    if n > 2 {
        let (at, p1, p2) = (&bytes[2..], &bytes[1..n - 1], &bytes[..n - 2]);
        for ((at, p1), p2) in at.chunks(255).zip(p1.chunks(255)).zip(p2.chunks(255)) {
            let (mut chunk_bound, mut chunk_fstrings) = (0u8, 0u8);
            for ((&b, &p1), &p2) in at.iter().zip(p1).zip(p2) {
                let (b, f) = counts(b, p1, p2);
                chunk_bound += b;
                chunk_fstrings += f;
            }
            bound += usize::from(chunk_bound);
            fstrings += usize::from(chunk_fstrings);
        }
    }
    (bound + fstrings, fstrings)
}

/// The estimated depth of the parser's recursion, and the depth of f-strings.
fn nesting_depths(text: &str) -> (u32, u32) {
    use ruff_python_ast::token::TokenKind as T;
    #[derive(Default)]
    struct Bracket {
        /// Prefix operators, `**` and `await`, open.
        tight: u32,
        /// `not`, `lambda`, ternaries, `:=`, `yield`, starred `*`, open.
        loose: u32,
        /// `lambda`s whose `:` is still to come.
        lambdas: u32,
        /// A `yield` (its value spans commas).
        yields: bool,
    }
    let mut lexer = ruff_python_parser::lexer::lex(text, Mode::Module);
    let mut brackets = vec![Bracket::default()];
    let (mut chains, mut blocks, mut fstrings) = (0u32, 0u32, 0u32);
    let (mut deepest, mut deepest_fstrings) = (0u32, 0u32);
    let mut prev = T::Newline;
    loop {
        let kind = lexer.next_token();
        let after_operand = matches!(
            prev,
            T::Name
                | T::Int
                | T::Float
                | T::Complex
                | T::String
                | T::FStringEnd
                | T::TStringEnd
                | T::Rpar
                | T::Rsqb
                | T::Rbrace
                | T::True
                | T::False
                | T::None
                | T::Ellipsis
                | T::Case
                | T::Match
                | T::Type
                | T::Lazy
        );
        let top = brackets.len() - 1;
        match kind {
            T::EndOfFile => break,
            T::Comment | T::NonLogicalNewline => continue,
            T::Lpar | T::Lsqb | T::Lbrace | T::FStringStart | T::TStringStart => {
                brackets.push(Bracket::default());
                if matches!(kind, T::FStringStart | T::TStringStart) {
                    fstrings += 1;
                    deepest_fstrings = deepest_fstrings.max(fstrings);
                }
            }
            T::Rpar | T::Rsqb | T::Rbrace | T::FStringEnd | T::TStringEnd => {
                if matches!(kind, T::FStringEnd | T::TStringEnd) {
                    fstrings = fstrings.saturating_sub(1);
                }
                if top > 0 {
                    if let Some(closed) = brackets.pop() {
                        chains -= closed.tight + closed.loose;
                    }
                }
            }
            T::Indent => blocks += 1,
            T::Dedent => blocks = blocks.saturating_sub(1),
            T::Newline | T::Semi if top == 0 => {
                chains -= brackets[0].tight + brackets[0].loose;
                brackets[0] = Bracket::default();
            }
            T::Comma => {
                let b = &mut brackets[top];
                if b.lambdas == 0 && !b.yields {
                    chains -= b.tight + b.loose;
                    b.tight = 0;
                    b.loose = 0;
                }
            }
            T::Colon => brackets[top].lambdas = brackets[top].lambdas.saturating_sub(1),
            _ => {
                let b = &mut brackets[top];
                let binary = after_operand
                    && matches!(
                        kind,
                        T::Star
                            | T::Slash
                            | T::DoubleSlash
                            | T::Percent
                            | T::At
                            | T::Plus
                            | T::Minus
                            | T::LeftShift
                            | T::RightShift
                            | T::Amper
                            | T::CircumFlex
                            | T::Vbar
                            | T::Less
                            | T::Greater
                            | T::EqEqual
                            | T::NotEqual
                            | T::LessEqual
                            | T::GreaterEqual
                            | T::In
                            | T::Is
                            | T::Not
                            | T::And
                            | T::Or
                            | T::If
                            | T::Else
                    );
                if binary {
                    chains -= b.tight;
                    b.tight = 0;
                }
                let tight = match kind {
                    T::Minus | T::Plus | T::Tilde | T::Await => !after_operand,
                    T::DoubleStar => true,
                    _ => false,
                };
                let loose = match kind {
                    T::Star => !after_operand,
                    T::Not | T::If | T::Else | T::ColonEqual | T::Lambda | T::Yield => true,
                    _ => false,
                };
                b.tight += u32::from(tight);
                b.loose += u32::from(loose);
                b.lambdas += u32::from(kind == T::Lambda);
                b.yields |= kind == T::Yield;
                chains += u32::from(tight) + u32::from(loose);
            }
        }
        prev = kind;
        let open = u32::try_from(brackets.len() - 1).unwrap_or(u32::MAX);
        deepest = deepest.max(open.saturating_add(chains).saturating_add(blocks));
    }
    (deepest, deepest_fstrings)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Python-ish text from a deterministic generator: fragments that open,
    /// close and chain, strings of every kind, comments, newlines.
    fn soup(seed: u32, len: usize) -> String {
        const PARTS: &[&str] = &[
            "(",
            ")",
            "[",
            "]",
            "{",
            "}",
            "-",
            "+",
            "~",
            "*",
            "**",
            ":",
            ":=",
            ",",
            ";",
            "\n",
            "\n    ",
            "not ",
            "if ",
            "else ",
            "lambda ",
            "lambda: ",
            "await ",
            "yield ",
            "a",
            "b1",
            "1if",
            "×if",
            " in ",
            " is ",
            ".x",
            "'s'",
            "\"s\"",
            "f'",
            "f'{",
            "}'",
            "rf\"{",
            "Rt'{",
            "fr'''{",
            "'''",
            "# c(\n",
            "\\\n",
            "1e-5",
            "x if y else z",
            "a**b",
            "=",
            "_if",
        ];
        let mut seed = seed;
        let mut out = String::new();
        for _ in 0..len {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            out.push_str(PARTS[(seed >> 16) as usize % PARTS.len()]);
        }
        out
    }

    #[test]
    fn the_byte_count_bounds_the_estimate() {
        let mut samples: Vec<String> = (0..3_000).map(|i| soup(i, 1 + i as usize % 400)).collect();
        samples.push("1if x else-y\nif a:\n    b = not c\n".into());
        samples.push(format!("x = {}\n", "f'{".repeat(50)));
        let mut deepest_seen = 0;
        for text in &samples {
            let (bound, fstrings) = nesting_bound(text.as_bytes());
            let (deepest, deepest_fstrings) = nesting_depths(text);
            deepest_seen = deepest_seen.max(deepest);
            assert!(bound >= deepest as usize, "{text:?}: {bound} < {deepest}");
            assert!(fstrings >= deepest_fstrings as usize, "{text:?}");
        }
        // The samples do nest.
        assert!(deepest_seen > 50, "{deepest_seen}");
    }

    #[test]
    fn line_starts_finds_every_newline() {
        let mut lines = Vec::new();
        for text in [
            "",
            "\n",
            "a",
            "\n\n\n",
            "0123456\n89\n",
            "é\n\n01234567\n0123456789abcdef\n",
        ] {
            line_starts(text, &mut lines);
            let mut expected = vec![0];
            expected.extend(text.match_indices('\n').map(|(i, _)| i as u32 + 1));
            assert_eq!(lines, expected, "{text:?}");
        }
        let long = soup(7, 5_000);
        line_starts(&long, &mut lines);
        assert_eq!(lines.len(), long.matches('\n').count() + 1);
    }
}
