//! The per-file extractor: tree-sitter-python, walked with an explicit stack.
//!
//! The walk never recurses: a file of 100,000 nested parentheses costs heap, not
//! stack. Every node is visited once, in source order, carrying the scope (module,
//! class or def) its code runs in.

use std::cell::RefCell;

use std::num::NonZeroU16 as FieldId;

use tree_sitter::{Language, Node, ParseOptions, ParseState, Parser, Point, Tree, TreeCursor};

use crate::schema::{
    CallSite, Class, FileSymbols, Function, Import, ImportKind, ImportedName, ParamKind, Parameter,
    Pos, Span, Variable, MAX_TEXT_BYTES,
};
use crate::FileError;

/// Files larger than this are not parsed; they get [`FileError::TooLarge`].
/// The largest file of the reference corpus (CPython's stdlib plus ~100
/// packages) is 4 MB. Measured on a 31 MB file of ordinary code: about 5 s of
/// CPU and 850 MB of memory (the syntax tree is some 25 bytes per input byte),
/// so 16 MiB keeps one file under about 2.5 s and 450 MB per thread.
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// Syntax errors listed per file; the rest are counted in
/// [`FileError::MoreSyntaxErrors`].
pub const MAX_SYNTAX_ERRORS: usize = 100;

/// The parser's operation budget, per byte of input, with a floor and a cap:
/// past it the parse is abandoned with [`FileError::ParseBudget`]. Counting
/// operations (not time) keeps the result a pure function of the bytes. On
/// the reference corpus valid code takes 0.6 operations per byte on average
/// and 2.9 at most (about 250 ns each), so only pathological error recovery
/// comes near the budget; the cap bounds one file's parse to about a minute.
const PARSE_OPS_PER_BYTE: u64 = 20;
const PARSE_OPS_MIN: u64 = 2_000_000;
const PARSE_OPS_MAX: u64 = 200_000_000;
/// tree-sitter calls the progress callback once per this many operations.
const OPS_PER_PROGRESS_CALL: u64 = 100;

/// Options that change what is extracted. They are part of the cache key of
/// anything built from the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractOptions {
    /// See [`MAX_FILE_BYTES`].
    pub max_file_bytes: usize,
    /// Parser operations allowed for one file; `None` for the default, which
    /// grows with the file's size (see the crate's `PARSE_OPS_*` constants).
    pub parse_budget: Option<u64>,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            max_file_bytes: MAX_FILE_BYTES,
            parse_budget: None,
        }
    }
}

/// A reusable extractor: one tree-sitter parser, for one thread at a time.
pub struct Extractor {
    parser: Option<Parser>,
    ids: Ids,
    options: ExtractOptions,
}

impl Default for Extractor {
    fn default() -> Self {
        Self::new(ExtractOptions::default())
    }
}

impl Extractor {
    pub fn new(options: ExtractOptions) -> Self {
        let language: Language = tree_sitter_python::LANGUAGE.into();
        let mut parser = Parser::new();
        // Fails only if the grammar's ABI does not match the runtime, which the
        // pinned versions rule out; kept as a result rather than a panic.
        let parser = parser.set_language(&language).ok().map(|()| parser);
        Self {
            parser,
            ids: Ids::new(&language),
            options,
        }
    }

    /// Extracts the symbols of one file's content. Never panics; whatever could
    /// not be read is in [`FileSymbols::errors`].
    pub fn extract(&mut self, source: &[u8]) -> FileSymbols {
        let text = match crate::source::decode(source, self.options.max_file_bytes) {
            Ok(text) => text,
            Err(error) => {
                return FileSymbols {
                    errors: vec![error],
                    ..FileSymbols::default()
                }
            }
        };
        let Some(parser) = self.parser.as_mut() else {
            return FileSymbols {
                errors: vec![FileError::NoTree],
                ..FileSymbols::default()
            };
        };
        match parse(parser, text.as_bytes(), self.options.parse_budget) {
            Ok(tree) => Walker::new(&text, &self.ids).run(&tree),
            Err(error) => FileSymbols {
                errors: vec![error],
                ..FileSymbols::default()
            },
        }
    }
}

fn parse(parser: &mut Parser, text: &[u8], budget: Option<u64>) -> Result<Tree, FileError> {
    let budget = budget.unwrap_or_else(|| {
        (text.len() as u64)
            .saturating_mul(PARSE_OPS_PER_BYTE)
            .clamp(PARSE_OPS_MIN, PARSE_OPS_MAX)
    });
    let mut calls: u64 = 0;
    let mut progress = |_: &ParseState| {
        calls += 1;
        calls.saturating_mul(OPS_PER_PROGRESS_CALL) > budget
    };
    let mut read = |offset: usize, _: Point| text.get(offset..).unwrap_or_default();
    let tree = parser.parse_with_options(
        &mut read,
        None,
        Some(ParseOptions::new().progress_callback(&mut progress)),
    );
    match tree {
        Some(tree) => Ok(tree),
        None => {
            // A cancelled parse would otherwise be resumed by the next call.
            parser.reset();
            if calls.saturating_mul(OPS_PER_PROGRESS_CALL) > budget {
                Err(FileError::ParseBudget { operations: budget })
            } else {
                Err(FileError::NoTree)
            }
        }
    }
}

thread_local! {
    static EXTRACTOR: RefCell<Extractor> = RefCell::new(Extractor::default());
}

/// Extracts the symbols of one file's content with the default options.
///
/// Pure: the result depends on the bytes only (not on the file's path or
/// module name). Uses one parser per thread.
pub fn extract(source: &[u8]) -> FileSymbols {
    EXTRACTOR.with(|cell| match cell.try_borrow_mut() {
        Ok(mut extractor) => extractor.extract(source),
        Err(_) => Extractor::default().extract(source),
    })
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

/// Node kind and field ids of the grammar, looked up once: comparing ids is
/// much cheaper than comparing `Node::kind()` strings on every node.
#[derive(Clone)]
struct Ids {
    function_definition: u16,
    class_definition: u16,
    decorated_definition: u16,
    decorator: u16,
    import_statement: u16,
    import_from_statement: u16,
    future_import_statement: u16,
    expression_statement: u16,
    call: u16,
    identifier: u16,
    attribute: u16,
    async_keyword: u16,
    body: Option<FieldId>,
}

impl Ids {
    fn new(language: &Language) -> Self {
        let named = |kind: &str| language.id_for_node_kind(kind, true);
        Self {
            function_definition: named("function_definition"),
            class_definition: named("class_definition"),
            decorated_definition: named("decorated_definition"),
            decorator: named("decorator"),
            import_statement: named("import_statement"),
            import_from_statement: named("import_from_statement"),
            future_import_statement: named("future_import_statement"),
            expression_statement: named("expression_statement"),
            call: named("call"),
            identifier: named("identifier"),
            attribute: named("attribute"),
            async_keyword: language.id_for_node_kind("async", false),
            body: language.field_id_for_name("body"),
        }
    }
}

/// What to do after looking at a node.
enum Next {
    /// Its subtree holds nothing more of interest.
    Skip,
    /// Visit its children; those in its `body` field (if it is a def or class)
    /// run in the given scope, the others in the node's own scope.
    Descend { body: Option<usize> },
}

struct Walker<'s, 'i> {
    src: &'s str,
    ids: &'i Ids,
    out: FileSymbols,
    scopes: Vec<Scope>,
    /// Decorators read at a `decorated_definition`, for its definition (by node id).
    pending_decorators: Option<(usize, Vec<String>)>,
    syntax_errors: usize,
}

impl<'s, 'i> Walker<'s, 'i> {
    fn new(src: &'s str, ids: &'i Ids) -> Self {
        Self {
            src,
            ids,
            out: FileSymbols::default(),
            scopes: vec![Scope {
                kind: ScopeKind::Module,
                qualname: None,
            }],
            pending_decorators: None,
            syntax_errors: 0,
        }
    }

    /// One pre-order pass with a single tree cursor. The cursor keeps its path
    /// on the heap, and so does `frames` (the scope of each ancestor), so depth
    /// costs no stack.
    fn run(mut self, tree: &Tree) -> FileSymbols {
        let root = tree.root_node();
        self.out.docstring = self.docstring_of_block(root);
        let mut cursor = root.walk();
        // For each ancestor of the current node: its scope and its body scope.
        let mut frames: Vec<(usize, Option<usize>)> = Vec::new();
        let mut scope = 0;
        'walk: loop {
            let node = cursor.node();
            if let Next::Descend { body } = self.visit(node, scope) {
                if cursor.goto_first_child() {
                    frames.push((scope, body));
                    scope = self.child_scope(&frames, &cursor);
                    continue;
                }
            }
            loop {
                if cursor.goto_next_sibling() {
                    scope = self.child_scope(&frames, &cursor);
                    continue 'walk;
                }
                if !cursor.goto_parent() {
                    break 'walk;
                }
                frames.pop();
            }
        }
        if self.syntax_errors > MAX_SYNTAX_ERRORS {
            self.out.errors.push(FileError::MoreSyntaxErrors {
                omitted: u32::try_from(self.syntax_errors - MAX_SYNTAX_ERRORS).unwrap_or(u32::MAX),
            });
        }
        self.out
    }

    fn child_scope(&self, frames: &[(usize, Option<usize>)], cursor: &TreeCursor<'_>) -> usize {
        match frames.last() {
            Some((_, Some(body)))
                if cursor.field_id().is_some() && cursor.field_id() == self.ids.body =>
            {
                *body
            }
            Some((scope, _)) => *scope,
            None => 0,
        }
    }

    fn visit(&mut self, node: Node<'_>, scope: usize) -> Next {
        let kind = node.kind_id();
        let ids = self.ids;
        if node.is_error() {
            let text = self.text(node);
            let first_line = text.lines().next().unwrap_or("").trim();
            let message = if first_line.is_empty() {
                "unexpected input".to_string()
            } else {
                format!("unexpected `{}`", clip(first_line, 40))
            };
            self.syntax_error(node.start_position(), message);
            return Next::Descend { body: None };
        }
        if node.is_missing() {
            self.syntax_error(node.start_position(), format!("missing `{}`", node.kind()));
            return Next::Skip;
        }
        if kind == ids.call {
            self.call(node, scope);
        } else if kind == ids.expression_statement {
            if !matches!(self.scopes[scope].kind, ScopeKind::Function(_)) {
                self.assignment_targets(node, scope);
            }
        } else if kind == ids.function_definition || kind == ids.class_definition {
            let decorators = match self.pending_decorators.take() {
                Some((id, decorators)) if id == node.id() => decorators,
                _ => Vec::new(),
            };
            return Next::Descend {
                body: Some(self.def(node, scope, decorators)),
            };
        } else if kind == ids.decorated_definition {
            let mut decorators = Vec::new();
            let mut cursor = node.walk();
            for child in node.named_children(&mut cursor) {
                if child.kind_id() == ids.decorator {
                    decorators.push(
                        child
                            .named_child(0)
                            .map(|e| self.clipped(e))
                            .unwrap_or_default(),
                    );
                }
            }
            if let Some(definition) = node.child_by_field_name("definition") {
                self.pending_decorators = Some((definition.id(), decorators));
            }
        } else if kind == ids.import_statement
            || kind == ids.import_from_statement
            || kind == ids.future_import_statement
        {
            self.import(node, scope);
            return Next::Skip;
        }
        Next::Descend { body: None }
    }

    fn syntax_error(&mut self, at: Point, message: String) {
        self.syntax_errors += 1;
        if self.syntax_errors <= MAX_SYNTAX_ERRORS {
            let at = pos(at);
            self.out.errors.push(FileError::Syntax {
                line: at.line,
                column: at.column,
                message,
            });
        }
    }

    /// Records a class or def and returns the scope of its body. Its other
    /// parts (decorators, bases, defaults, annotations) run in `scope`.
    fn def(&mut self, node: Node<'_>, scope: usize, decorators: Vec<String>) -> usize {
        let name = node
            .child_by_field_name("name")
            .map(|n| self.text(n).to_string())
            .unwrap_or_default();
        let parent = self.scopes[scope].qualname.clone();
        let qualname = match (&self.scopes[scope].kind, &parent) {
            (ScopeKind::Module, _) | (_, None) => name.clone(),
            (ScopeKind::Class(_), Some(p)) => format!("{p}.{name}"),
            (ScopeKind::Function(_), Some(p)) => format!("{p}.<locals>.{name}"),
        };
        let docstring = node
            .child_by_field_name("body")
            .and_then(|b| self.docstring_of_block(b));
        let span = span(node);
        let inner_kind = if node.kind_id() == self.ids.class_definition {
            let (mut bases, mut keywords) = (Vec::new(), Vec::new());
            if let Some(arguments) = node.child_by_field_name("superclasses") {
                let mut cursor = arguments.walk();
                for argument in arguments.named_children(&mut cursor) {
                    match argument.kind() {
                        "comment" => {}
                        "keyword_argument" | "dictionary_splat" => {
                            keywords.push(self.clipped(argument))
                        }
                        _ => bases.push(self.clipped(argument)),
                    }
                }
            }
            if let ScopeKind::Class(owner) = self.scopes[scope].kind {
                self.out.classes[owner].classes.push(name.clone());
            }
            self.out.classes.push(Class {
                name,
                qualname: qualname.clone(),
                parent,
                bases,
                keywords,
                decorators,
                docstring,
                methods: Vec::new(),
                classes: Vec::new(),
                attributes: Vec::new(),
                calls: Vec::new(),
                span,
            });
            ScopeKind::Class(self.out.classes.len() - 1)
        } else {
            let is_async = node
                .child(0)
                .is_some_and(|c| c.kind_id() == self.ids.async_keyword);
            let is_method = matches!(self.scopes[scope].kind, ScopeKind::Class(_));
            if let ScopeKind::Class(owner) = self.scopes[scope].kind {
                self.out.classes[owner].methods.push(name.clone());
            }
            self.out.functions.push(Function {
                name,
                qualname: qualname.clone(),
                parent,
                is_method,
                is_async,
                parameters: node
                    .child_by_field_name("parameters")
                    .map(|p| self.parameters(p))
                    .unwrap_or_default(),
                returns: node
                    .child_by_field_name("return_type")
                    .map(|r| self.clipped(r)),
                decorators,
                docstring,
                calls: Vec::new(),
                span,
            });
            ScopeKind::Function(self.out.functions.len() - 1)
        };
        self.scopes.push(Scope {
            kind: inner_kind,
            qualname: Some(qualname),
        });
        self.scopes.len() - 1
    }

    fn parameters(&self, node: Node<'_>) -> Vec<Parameter> {
        let mut out: Vec<Parameter> = Vec::new();
        let mut keyword_only = false;
        let mut cursor = node.walk();
        for child in node.named_children(&mut cursor) {
            let (target, annotation, default) = match child.kind() {
                "typed_parameter" => {
                    let annotation = child.child_by_field_name("type");
                    let target = (0..child.named_child_count())
                        .filter_map(|i| child.named_child(i))
                        .find(|c| {
                            Some(c.id()) != annotation.map(|a| a.id()) && c.kind() != "comment"
                        });
                    (target, annotation, None)
                }
                "default_parameter" | "typed_default_parameter" => (
                    child.child_by_field_name("name"),
                    child.child_by_field_name("type"),
                    child.child_by_field_name("value"),
                ),
                "keyword_separator" => {
                    keyword_only = true;
                    continue;
                }
                "positional_separator" => {
                    for p in &mut out {
                        if p.kind == ParamKind::PositionalOrKeyword {
                            p.kind = ParamKind::PositionalOnly;
                        }
                    }
                    continue;
                }
                "comment" => continue,
                _ => (Some(child), None, None),
            };
            let Some(target) = target else { continue };
            let (name, kind) = match target.kind() {
                "list_splat_pattern" => {
                    keyword_only = true;
                    (self.splat_name(target), ParamKind::VarPositional)
                }
                "dictionary_splat_pattern" => (self.splat_name(target), ParamKind::VarKeyword),
                _ if keyword_only => (self.clipped(target), ParamKind::KeywordOnly),
                _ => (self.clipped(target), ParamKind::PositionalOrKeyword),
            };
            out.push(Parameter {
                name,
                kind,
                annotation: annotation.map(|a| self.clipped(a)),
                default: default.map(|d| self.clipped(d)),
            });
        }
        out
    }

    fn splat_name(&self, node: Node<'_>) -> String {
        match node.named_child(0) {
            Some(inner) => self.clipped(inner),
            None => self.clipped(node).trim_start_matches('*').to_string(),
        }
    }

    fn import(&mut self, node: Node<'_>, scope: usize) {
        let (kind, mut level, mut module) = match node.kind() {
            "import_statement" => (ImportKind::Import, 0, None),
            "future_import_statement" => (ImportKind::From, 0, Some("__future__".to_string())),
            _ => (ImportKind::From, 0, None),
        };
        if let Some(source) = node.child_by_field_name("module_name") {
            if source.kind() == "relative_import" {
                let mut cursor = source.walk();
                for part in source.named_children(&mut cursor) {
                    match part.kind() {
                        "import_prefix" => {
                            level = u32::try_from(
                                self.text(part).bytes().filter(|&b| b == b'.').count(),
                            )
                            .unwrap_or(u32::MAX);
                        }
                        "dotted_name" => module = Some(self.dotted_name(part)),
                        _ => {}
                    }
                }
            } else {
                module = Some(self.dotted_name(source));
            }
        }
        let mut names = Vec::new();
        let mut star = false;
        let mut cursor = node.walk();
        for child in node.named_children(&mut cursor) {
            if child.kind() == "wildcard_import" {
                star = true;
            }
        }
        let mut cursor = node.walk();
        for name in node.children_by_field_name("name", &mut cursor) {
            match name.kind() {
                "aliased_import" => names.push(ImportedName {
                    name: name
                        .child_by_field_name("name")
                        .map(|n| self.dotted_name(n))
                        .unwrap_or_default(),
                    asname: name
                        .child_by_field_name("alias")
                        .map(|a| self.text(a).to_string()),
                }),
                _ => names.push(ImportedName {
                    name: self.dotted_name(name),
                    asname: None,
                }),
            }
        }
        self.out.imports.push(Import {
            kind,
            level,
            module,
            names,
            star,
            scope: self.scopes[scope].qualname.clone(),
            span: span(node),
        });
    }

    /// `a . b` as `a.b`.
    fn dotted_name(&self, node: Node<'_>) -> String {
        if node.kind() != "dotted_name" {
            return self.clipped(node);
        }
        let mut cursor = node.walk();
        let parts: Vec<&str> = node
            .named_children(&mut cursor)
            .filter(|c| c.kind() == "identifier")
            .map(|c| self.text(c))
            .collect();
        parts.join(".")
    }

    /// Names bound by `a = b = …`, `a: T = …`, `a, *b = …` in a module or class body.
    fn assignment_targets(&mut self, statement: Node<'_>, scope: usize) {
        let mut found = Vec::new();
        let mut cursor = statement.walk();
        for child in statement.named_children(&mut cursor) {
            let mut assignment = Some(child);
            while let Some(node) = assignment.filter(|n| n.kind() == "assignment") {
                let annotation = node.child_by_field_name("type").map(|t| self.clipped(t));
                if let Some(left) = node.child_by_field_name("left") {
                    self.pattern_names(left, annotation, &mut found);
                }
                assignment = node.child_by_field_name("right");
            }
        }
        match self.scopes[scope].kind {
            ScopeKind::Module => self.out.variables.extend(found),
            ScopeKind::Class(owner) => self.out.classes[owner].attributes.extend(found),
            ScopeKind::Function(_) => {}
        }
    }

    fn pattern_names(&self, left: Node<'_>, annotation: Option<String>, found: &mut Vec<Variable>) {
        if left.kind() == "identifier" {
            found.push(Variable {
                name: self.text(left).to_string(),
                annotation,
                span: span(left),
            });
            return;
        }
        let mut stack = vec![left];
        let mut names = Vec::new();
        while let Some(node) = stack.pop() {
            match node.kind() {
                "identifier" => names.push(node),
                "pattern_list"
                | "tuple_pattern"
                | "list_pattern"
                | "list_splat_pattern"
                | "parenthesized_expression"
                | "expression_list"
                | "tuple"
                | "list" => {
                    let mut cursor = node.walk();
                    let mut kids: Vec<Node<'_>> = node.named_children(&mut cursor).collect();
                    kids.reverse();
                    stack.extend(kids);
                }
                _ => {}
            }
        }
        found.extend(names.into_iter().map(|n| Variable {
            name: self.text(n).to_string(),
            annotation: None,
            span: span(n),
        }));
    }

    fn call(&mut self, node: Node<'_>, scope: usize) {
        let Some(function) = node.child_by_field_name("function") else {
            return;
        };
        let site = CallSite {
            callee: self.clipped(function),
            dotted: self.dotted(function),
            pos: pos(node.start_position()),
        };
        match self.scopes[scope].kind {
            ScopeKind::Module => self.out.calls.push(site),
            ScopeKind::Class(i) => self.out.classes[i].calls.push(site),
            ScopeKind::Function(i) => self.out.functions[i].calls.push(site),
        }
    }

    /// `a.b.c` for a name or a chain of attributes on a name.
    fn dotted(&self, mut node: Node<'_>) -> Option<String> {
        const MAX_PARTS: usize = 64;
        let mut parts = Vec::new();
        loop {
            let kind = node.kind_id();
            if kind == self.ids.identifier {
                parts.push(self.text(node));
                break;
            } else if kind == self.ids.attribute {
                parts.push(self.text(node.child_by_field_name("attribute")?));
                node = node.child_by_field_name("object")?;
            } else {
                return None;
            }
            if parts.len() > MAX_PARTS {
                return None;
            }
        }
        parts.reverse();
        Some(parts.join("."))
    }

    /// The docstring of a module (the root node) or of a def/class body.
    fn docstring_of_block(&self, block: Node<'_>) -> Option<String> {
        let mut cursor = block.walk();
        let first = block
            .named_children(&mut cursor)
            .find(|c| c.kind() != "comment")?;
        if first.kind() != "expression_statement" || first.named_child_count() != 1 {
            return None;
        }
        let literal = first.named_child(0)?;
        let parts: Vec<Node<'_>> = match literal.kind() {
            "string" => vec![literal],
            "concatenated_string" => {
                let mut cursor = literal.walk();
                literal
                    .named_children(&mut cursor)
                    .filter(|c| c.kind() == "string")
                    .collect()
            }
            _ => return None,
        };
        let mut value = String::new();
        for part in parts {
            value.push_str(&self.string_value(part)?);
        }
        Some(value)
    }

    /// The value of a plain (not bytes, not f-) string literal.
    fn string_value(&self, string: Node<'_>) -> Option<String> {
        let start = string.child(0).filter(|c| c.kind() == "string_start")?;
        let count = string.child_count();
        let end = string
            .child(count.checked_sub(1)?)
            .filter(|c| c.kind() == "string_end")?;
        let opener = self.text(start);
        let prefix: String = opener
            .chars()
            .take_while(|c| c.is_ascii_alphabetic())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if prefix.contains('b') || prefix.contains('f') {
            return None;
        }
        let body = self.src.get(start.end_byte()..end.start_byte())?;
        let body = body.replace("\r\n", "\n");
        if prefix.contains('r') {
            Some(body)
        } else {
            Some(unescape(&body))
        }
    }

    fn text(&self, node: Node<'_>) -> &'s str {
        self.src.get(node.byte_range()).unwrap_or_default()
    }

    fn clipped(&self, node: Node<'_>) -> String {
        clip(self.text(node), MAX_TEXT_BYTES)
    }
}

fn pos(point: Point) -> Pos {
    Pos {
        line: u32::try_from(point.row)
            .unwrap_or(u32::MAX)
            .saturating_add(1),
        column: u32::try_from(point.column).unwrap_or(u32::MAX),
    }
}

fn span(node: Node<'_>) -> Span {
    Span {
        start: pos(node.start_position()),
        end: pos(node.end_position()),
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

/// Python's escape sequences in a non-raw string literal. `\N{…}` is kept as
/// written (this crate carries no Unicode name table).
fn unescape(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(e) = chars.next() else {
            out.push('\\');
            break;
        };
        match e {
            '\n' => {}
            '\\' => out.push('\\'),
            '\'' => out.push('\''),
            '"' => out.push('"'),
            'a' => out.push('\x07'),
            'b' => out.push('\x08'),
            'f' => out.push('\x0c'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\x0b'),
            '0'..='7' => {
                let mut value = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match chars.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            chars.next();
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(value).unwrap_or('\u{FFFD}'));
            }
            'x' | 'u' | 'U' => {
                let digits = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = chars.clone().take(digits).collect();
                let complete = hex.len() == digits && hex.chars().all(|h| h.is_ascii_hexdigit());
                match complete
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                {
                    Some(value) => {
                        for _ in 0..digits {
                            chars.next();
                        }
                        out.push(char::from_u32(value).unwrap_or('\u{FFFD}'));
                    }
                    None => {
                        out.push('\\');
                        out.push(e);
                    }
                }
            }
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    out
}
