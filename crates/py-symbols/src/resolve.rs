//! Cross-file facts: the import graph and project-internal call targets,
//! recomputed per module only when something it read changed.
//!
//! A module's resolution reads two things: its own [`FileSymbols`], and the
//! [`Interface`]s of the modules it consults (the modules it imports, and the
//! ones those re-export from, by `from x import y` or `import *`). It also asks
//! whether some module names exist (is `pkg.util` a module or a name in `pkg`?).
//! Every such question is recorded in [`ResolvedModule::deps`] with the answer's
//! digest (`None` for "no such module"), so [`resolve_incremental`] can reuse a
//! module's previous result when its content and every recorded answer are
//! unchanged.
//!
//! Limits, by design of a static, per-module pass:
//! - names are bound flow-insensitively: within a scope the last binding in
//!   source order wins (`try: import json` / `except: json = None` leaves
//!   `json` a variable);
//! - attribute calls resolve through modules and through class members defined
//!   in the class body, not through base classes or instances, except that in
//!   a method (not a `@staticmethod`) the first parameter (`self`, `cls`) stands
//!   for the enclosing class;
//! - inside a function, only parameters, nested defs/classes and local imports
//!   shadow outer names (local assignments are not extracted);
//! - a call resolves only to a function or a class (a constructor call); calls
//!   through variables, builtins and other projects are left out.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::FastMap;
use crate::schema::{FileSymbols, ImportKind, ParamKind, Pos};

/// How many re-exports a lookup follows before giving up (cycles are cut too).
const MAX_HOPS: usize = 16;

/// SHA-256 (hex) of a file's symbols: the "own content" of a module for
/// [`resolve_incremental`].
pub fn symbols_digest(symbols: &FileSymbols) -> String {
    digest_json(symbols)
}

/// SHA-256 (hex) of a module's interface.
pub fn interface_digest(interface: &Interface) -> String {
    digest_json(interface)
}

fn digest_json<T: Serialize>(value: &T) -> String {
    // Serializing plain data with string keys cannot fail; an empty document
    // would still be a stable (if useless) digest.
    sha256_hex(&serde_json::to_vec(value).unwrap_or_default())
}

/// SHA-256 of `bytes`, in lowercase hex: how this crate names a content
/// ([`symbols_digest`], [`interface_digest`]) and how a cache of per-file
/// results can name a file's.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(64);
    for byte in Sha256::digest(bytes) {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// What other modules can see of a module: everything it binds at top level
/// (including inside top-level `if`/`try` blocks), with imports already made
/// absolute, and the members of its top-level classes. Positions, bodies,
/// docstrings and call sites are not part of it, so editing them leaves the
/// interface (and its digest) unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub module: String,
    pub is_package: bool,
    /// Top-level name → what it is bound to (the last binding in source order).
    pub names: BTreeMap<String, Binding>,
    /// Modules of top-level `from m import *`, absolute, in source order.
    pub star_imports: Vec<String>,
    /// Class qualified name (top-level classes and classes nested in them) →
    /// member name → kind.
    pub classes: BTreeMap<String, BTreeMap<String, DefKind>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefKind {
    Function,
    Class,
    Variable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Binding {
    /// A def, class or variable of this module, by qualified name.
    Def { def: DefKind, qualname: String },
    /// `import a.b as c` binds `c` to `a.b`; `import a.b` binds `a` to `a`.
    Module { module: String },
    /// `from m import n`: attribute or submodule `n` of absolute module `m`.
    From { module: String, name: String },
    /// A relative import that climbs above the top-level package.
    Unresolvable,
}

impl Interface {
    pub fn new(module: &str, is_package: bool, symbols: &FileSymbols) -> Self {
        let mut bound: Vec<(Pos, String, Binding)> = Vec::new();
        for class in symbols.classes.iter().filter(|c| c.parent.is_none()) {
            bound.push((
                class.span.start,
                class.name.clone(),
                Binding::Def {
                    def: DefKind::Class,
                    qualname: class.qualname.clone(),
                },
            ));
        }
        for function in symbols.functions.iter().filter(|f| f.parent.is_none()) {
            bound.push((
                function.span.start,
                function.name.clone(),
                Binding::Def {
                    def: DefKind::Function,
                    qualname: function.qualname.clone(),
                },
            ));
        }
        for variable in &symbols.variables {
            bound.push((
                variable.span.start,
                variable.name.clone(),
                Binding::Def {
                    def: DefKind::Variable,
                    qualname: variable.name.clone(),
                },
            ));
        }
        let mut star_imports = Vec::new();
        for import in symbols.imports.iter().filter(|i| i.scope.is_none()) {
            import_bindings(module, is_package, import, &mut bound, &mut star_imports);
        }
        bound.sort_by_key(|(at, _, _)| *at);
        let names = bound
            .into_iter()
            .map(|(_, name, binding)| (name, binding))
            .collect();

        // Classes whose members other modules can reach: those at top level and
        // those nested in them (not classes local to a function).
        let mut reachable: HashSet<&str> = HashSet::new();
        let mut classes = BTreeMap::new();
        for class in &symbols.classes {
            let visible = match &class.parent {
                None => true,
                Some(parent) => {
                    reachable.contains(parent.as_str())
                        && class.qualname == format!("{parent}.{}", class.name)
                }
            };
            if !visible {
                continue;
            }
            reachable.insert(&class.qualname);
            let mut members = BTreeMap::new();
            for attribute in &class.attributes {
                members.insert(attribute.name.clone(), DefKind::Variable);
            }
            for method in &class.methods {
                members.insert(method.clone(), DefKind::Function);
            }
            for nested in &class.classes {
                members.insert(nested.clone(), DefKind::Class);
            }
            classes.insert(class.qualname.clone(), members);
        }
        Self {
            module: module.to_string(),
            is_package,
            names,
            star_imports,
            classes,
        }
    }
}

fn import_bindings(
    module: &str,
    is_package: bool,
    import: &crate::schema::Import,
    bound: &mut Vec<(Pos, String, Binding)>,
    star_imports: &mut Vec<String>,
) {
    let at = import.span.start;
    match import.kind {
        ImportKind::Import => {
            for name in &import.names {
                let target = match &name.asname {
                    Some(_) => name.name.clone(),
                    None => name.name.split('.').next().unwrap_or_default().to_string(),
                };
                bound.push((
                    at,
                    name.bound_name(import.kind).to_string(),
                    Binding::Module { module: target },
                ));
            }
        }
        ImportKind::From => {
            let base = absolute(module, is_package, import.level, import.module.as_deref());
            if import.star {
                if let Some(base) = &base {
                    star_imports.push(base.clone());
                }
            }
            for name in &import.names {
                let binding = match &base {
                    Some(base) => Binding::From {
                        module: base.clone(),
                        name: name.name.clone(),
                    },
                    None => Binding::Unresolvable,
                };
                bound.push((at, name.bound_name(import.kind).to_string(), binding));
            }
        }
    }
}

/// The absolute module of `from <dots><module> import …` in `module`.
pub(crate) fn absolute(
    module: &str,
    is_package: bool,
    level: u32,
    target: Option<&str>,
) -> Option<String> {
    if level == 0 {
        return target.map(str::to_string);
    }
    let mut package: Vec<&str> = module.split('.').collect();
    if !is_package {
        package.pop();
    }
    for _ in 1..level {
        package.pop()?;
    }
    if package.is_empty() {
        return None;
    }
    let mut name = package.join(".");
    if let Some(target) = target.filter(|t| !t.is_empty()) {
        name.push('.');
        name.push_str(target);
    }
    Some(name)
}

/// A module as the others see it: its interface and the interface's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    pub interface: Interface,
    pub digest: String,
}

impl ModuleInfo {
    pub fn new(interface: Interface) -> Self {
        let digest = interface_digest(&interface);
        ModuleInfo { interface, digest }
    }
}

/// What a resolution may ask about the project's modules. A resolution reads
/// nothing else of other files, so an implementation can hold interfaces
/// only, and load them as they are asked for.
pub trait Modules: Sync {
    /// The module of that name, if the project has one.
    fn get(&self, module: &str) -> Option<&ModuleInfo>;
    /// Whether a project module is named `module.<something>`: what makes
    /// `module` a namespace package when it has no file of its own.
    fn has_submodules(&self, module: &str) -> bool;
}

/// One file to resolve: its module name and symbols.
#[derive(Debug, Clone, Copy)]
pub struct FileToResolve<'a> {
    pub module: &'a str,
    pub is_package: bool,
    pub symbols: &'a FileSymbols,
    /// Recorded as [`ResolvedModule::symbols_digest`]: [`symbols_digest`], or
    /// any digest that identifies the symbols as well (a content digest, with
    /// the extractor version in the cache key).
    pub symbols_digest: &'a str,
    /// The file's own interface, when the caller has it already (it is
    /// computed from the symbols otherwise).
    pub interface: Option<&'a Interface>,
}

/// Resolves one file's imports and calls against `modules`. The result
/// records every question asked of `modules` with its answer, so it stays
/// valid as long as those answers do.
pub fn resolve_file(modules: &dyn Modules, file: FileToResolve<'_>) -> ResolvedModule {
    let computed;
    let interface = match file.interface {
        Some(interface) => interface,
        None => {
            computed = Interface::new(file.module, file.is_package, file.symbols);
            &computed
        }
    };
    let mut cx = Resolver {
        world: modules,
        file,
        interface,
        consulted: FastMap::default(),
        evaluated: FastMap::default(),
    };
    let imports = cx.imports();
    let calls = cx.calls();
    let deps = cx
        .consulted
        .into_iter()
        .map(|(module, info)| (module, info.map(|i| i.digest.clone())))
        .collect();
    ResolvedModule {
        module: file.module.to_string(),
        symbols_digest: file.symbols_digest.to_string(),
        deps,
        imports,
        calls,
    }
}

/// The value of the first key of `modules` that is `prefix.<something>`, if
/// any: whether `prefix` is a package of those modules (a namespace package
/// too), in one lookup of the ordered map.
pub fn first_under<'m, V>(modules: &'m BTreeMap<&str, V>, prefix: &str) -> Option<&'m V> {
    modules
        .range::<str, _>((
            std::ops::Bound::Excluded(prefix),
            std::ops::Bound::Unbounded,
        ))
        .next()
        .filter(|(m, _)| {
            m.len() > prefix.len() && m.starts_with(prefix) && m.as_bytes()[prefix.len()] == b'.'
        })
        .map(|(_, v)| v)
}

/// The project's files as the resolver sees them: path → module name and
/// symbols, with digests computed once on insert.
#[derive(Debug, Clone, Default)]
pub struct ProjectState {
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    module: String,
    is_package: bool,
    symbols: Arc<FileSymbols>,
    symbols_digest: String,
    info: ModuleInfo,
}

impl ProjectState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Names every file with [`module_name`](crate::module_name) (files
    /// without a module name are left out).
    pub fn from_files(files: impl IntoIterator<Item = (String, FileSymbols)>) -> Self {
        let files: Vec<(String, FileSymbols)> = files.into_iter().collect();
        let paths: HashSet<String> = files.iter().map(|(p, _)| p.clone()).collect();
        let mut state = Self::new();
        for (path, symbols) in files {
            if let Some(module) = crate::module_name(&path, &paths) {
                state.insert(path, module, symbols);
            }
        }
        state
    }

    /// Adds or replaces the file at `rel_path`.
    pub fn insert(
        &mut self,
        rel_path: impl Into<String>,
        module: impl Into<String>,
        symbols: impl Into<Arc<FileSymbols>>,
    ) {
        let rel_path = rel_path.into();
        let module = module.into();
        let symbols = symbols.into();
        let is_package = rel_path == "__init__.py" || rel_path.ends_with("/__init__.py");
        let interface = Interface::new(&module, is_package, &symbols);
        let entry = Entry {
            symbols_digest: symbols_digest(&symbols),
            info: ModuleInfo::new(interface),
            module,
            is_package,
            symbols,
        };
        self.entries.insert(rel_path, entry);
    }

    pub fn remove(&mut self, rel_path: &str) -> bool {
        self.entries.remove(rel_path).is_some()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The interface of the file at `rel_path`.
    pub fn interface(&self, rel_path: &str) -> Option<&Interface> {
        self.entries.get(rel_path).map(|e| &e.info.interface)
    }

    /// Module name → path; when two paths claim one module, the first path in
    /// sorted order wins.
    fn module_index(&self) -> BTreeMap<&str, &str> {
        let mut index = BTreeMap::new();
        for (path, entry) in &self.entries {
            index.entry(entry.module.as_str()).or_insert(path.as_str());
        }
        index
    }
}

/// A [`ProjectState`] as [`Modules`].
struct StateModules<'a> {
    state: &'a ProjectState,
    index: BTreeMap<&'a str, &'a str>,
}

impl Modules for StateModules<'_> {
    fn get(&self, module: &str) -> Option<&ModuleInfo> {
        let path = self.index.get(module)?;
        self.state.entries.get(*path).map(|e| &e.info)
    }

    fn has_submodules(&self, module: &str) -> bool {
        first_under(&self.index, module).is_some()
    }
}

/// Where a call goes: a definition in a project module.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Target {
    pub module: String,
    pub qualname: String,
    pub kind: DefKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedImport {
    /// The project module the import loads (the most specific one that
    /// exists: `pkg.sub` for `from pkg import sub` when `pkg/sub.py` exists,
    /// else `pkg`).
    pub module: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedCall {
    /// Qualified name of the calling def or class, `None` for module code.
    pub scope: Option<String>,
    /// The callee as a dotted name.
    pub callee: String,
    pub pos: Pos,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedModule {
    pub module: String,
    pub symbols_digest: String,
    /// Every module this resolution asked about → its interface digest then
    /// (`None`: no such module). The module is redone when one differs.
    pub deps: BTreeMap<String, Option<String>>,
    /// Project-internal imports, in source order.
    pub imports: Vec<ResolvedImport>,
    /// Calls resolved to project definitions, in source order per scope.
    pub calls: Vec<ResolvedCall>,
}

/// The cross-file facts of one project state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedGraph {
    /// Path → resolution of the file there.
    pub files: BTreeMap<String, ResolvedModule>,
    /// Module name → the path that provides it.
    pub modules: BTreeMap<String, String>,
}

impl ResolvedGraph {
    /// Module → the project modules it imports.
    pub fn import_graph(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        self.files
            .values()
            .map(|m| {
                (
                    m.module.as_str(),
                    m.imports.iter().map(|i| i.module.as_str()).collect(),
                )
            })
            .collect()
    }

    /// The resolution of the module named `module`.
    pub fn module(&self, module: &str) -> Option<&ResolvedModule> {
        self.files.get(self.modules.get(module)?)
    }
}

/// How much of a resolution was redone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveStats {
    pub resolved: usize,
    pub reused: usize,
}

/// Resolves every file of `state`, reusing from `prev` each module whose own
/// symbols and every recorded dependency are unchanged.
pub fn resolve_incremental(
    prev: Option<&ResolvedGraph>,
    state: &ProjectState,
) -> (ResolvedGraph, ResolveStats) {
    let world = StateModules {
        state,
        index: state.module_index(),
    };
    let mut stats = ResolveStats::default();
    let mut files = BTreeMap::new();
    for (path, entry) in &state.entries {
        let reusable = prev.and_then(|g| g.files.get(path)).filter(|old| {
            old.module == entry.module
                && old.symbols_digest == entry.symbols_digest
                && old.deps.iter().all(|(module, digest)| {
                    world.get(module).map(|m| m.digest.as_str()) == digest.as_deref()
                })
        });
        let resolved = match reusable {
            Some(old) => {
                stats.reused += 1;
                old.clone()
            }
            None => {
                stats.resolved += 1;
                resolve_file(
                    &world,
                    FileToResolve {
                        module: &entry.module,
                        is_package: entry.is_package,
                        symbols: &entry.symbols,
                        symbols_digest: &entry.symbols_digest,
                        interface: Some(&entry.info.interface),
                    },
                )
            }
        };
        files.insert(path.clone(), resolved);
    }
    let modules = world
        .index
        .iter()
        .map(|(module, path)| (module.to_string(), path.to_string()))
        .collect();
    (ResolvedGraph { files, modules }, stats)
}

/// What a name or attribute chain evaluates to, statically.
#[derive(Debug, Clone)]
enum Value {
    /// A project module, or a namespace package of project modules.
    Module(String),
    Def {
        module: String,
        qualname: String,
        kind: DefKind,
    },
    Unknown,
}

struct Resolver<'a> {
    world: &'a dyn Modules,
    file: FileToResolve<'a>,
    /// The file's own interface.
    interface: &'a Interface,
    /// Every module asked about, with the answer: the resolution's `deps`.
    consulted: FastMap<String, Option<&'a ModuleInfo>>,
    /// Dotted callees whose head is a module-level name, evaluated: the same
    /// callee gives the same value anywhere in the file where no local name
    /// shadows its head, and asks the same questions.
    evaluated: FastMap<String, Value>,
}

impl<'a> Resolver<'a> {
    /// The module `module`, recording the question and its answer. The file's
    /// own module name is recorded too: another path may provide it (`m.py`
    /// beside `m/__init__.py`), and then its answer is that file's.
    fn consult(&mut self, module: &str) -> Option<&'a ModuleInfo> {
        if let Some(&info) = self.consulted.get(module) {
            return info;
        }
        let info = self.world.get(module);
        self.consulted.insert(module.to_string(), info);
        info
    }

    fn is_module(&mut self, module: &str) -> bool {
        self.consult(module).is_some()
    }

    fn imports(&mut self) -> Vec<ResolvedImport> {
        let this = self.file;
        let mut out = Vec::new();
        for import in &this.symbols.imports {
            let pos = import.span.start;
            let mut found = |cx: &mut Self, candidates: Vec<String>| {
                if let Some(module) = candidates.into_iter().find(|m| cx.is_module(m)) {
                    out.push(ResolvedImport { module, pos });
                }
            };
            match import.kind {
                ImportKind::Import => {
                    for name in &import.names {
                        found(self, prefixes(&name.name));
                    }
                }
                ImportKind::From => {
                    let Some(base) = absolute(
                        this.module,
                        this.is_package,
                        import.level,
                        import.module.as_deref(),
                    ) else {
                        continue;
                    };
                    if import.star {
                        found(self, prefixes(&base));
                    }
                    for name in &import.names {
                        let mut candidates = vec![dotted(&base, &name.name)];
                        candidates.extend(prefixes(&base));
                        found(self, candidates);
                    }
                }
            }
        }
        out
    }

    fn calls(&mut self) -> Vec<ResolvedCall> {
        let this = self.file;
        let symbols = this.symbols;
        let scopes = Scopes::new(this);
        let mut out = Vec::new();
        let mut resolve_sites = |cx: &mut Self, scope: Option<&str>, sites: &[crate::CallSite]| {
            for site in sites {
                let Some(dotted) = &site.dotted else { continue };
                if let Value::Def {
                    module,
                    qualname,
                    kind,
                } = cx.eval(&scopes, scope, dotted)
                {
                    if kind != DefKind::Variable {
                        out.push(ResolvedCall {
                            scope: scope.map(str::to_string),
                            callee: dotted.clone(),
                            pos: site.pos,
                            target: Target {
                                module,
                                qualname,
                                kind,
                            },
                        });
                    }
                }
            }
        };
        resolve_sites(self, None, &symbols.calls);
        for class in &symbols.classes {
            resolve_sites(self, Some(&class.qualname), &class.calls);
        }
        for function in &symbols.functions {
            resolve_sites(self, Some(&function.qualname), &function.calls);
        }
        out.sort_by_key(|c| c.pos);
        out
    }

    /// Evaluates a dotted callee seen in `scope`.
    fn eval(&mut self, scopes: &Scopes<'_>, scope: Option<&str>, dotted: &str) -> Value {
        let mut parts = dotted.split('.');
        let Some(head) = parts.next() else {
            return Value::Unknown;
        };
        let (module, interface) = (self.file.module, self.interface);
        let value = match scopes.lookup(scope, head) {
            Some(Found::Receiver(class)) => Value::Def {
                module: module.to_string(),
                qualname: class.to_string(),
                kind: DefKind::Class,
            },
            Some(Found::Local(&Local::Def { qualname, kind })) => Value::Def {
                module: module.to_string(),
                qualname: qualname.to_string(),
                kind,
            },
            Some(Found::Local(Local::Binding(b))) => self.binding_value(module, b, 0),
            Some(Found::Local(Local::Opaque)) => Value::Unknown,
            None => {
                if let Some(value) = self.evaluated.get(dotted) {
                    return value.clone();
                }
                let head = match interface.names.get(head) {
                    Some(b) => self.binding_value(module, b, 0),
                    None => self.star_lookup(&interface.star_imports, head, 0),
                };
                let value = self.members(head, parts);
                self.evaluated.insert(dotted.to_string(), value.clone());
                return value;
            }
        };
        self.members(value, parts)
    }

    /// `value.a.b…` for the `parts` a, b, …
    fn members<'p>(&mut self, mut value: Value, parts: impl Iterator<Item = &'p str>) -> Value {
        for part in parts {
            value = self.member(value, part, 0);
            if matches!(value, Value::Unknown) {
                break;
            }
        }
        value
    }

    /// The value of a top-level binding of `module`.
    fn binding_value(&mut self, module: &str, binding: &Binding, hops: usize) -> Value {
        match binding {
            Binding::Def { def, qualname } => Value::Def {
                module: module.to_string(),
                qualname: qualname.clone(),
                kind: *def,
            },
            Binding::Module { module } => self.module_value(module),
            Binding::From { module, name } => {
                let submodule = dotted(module, name);
                if self.is_module(&submodule) {
                    Value::Module(submodule)
                } else {
                    self.member(Value::Module(module.clone()), name, hops + 1)
                }
            }
            Binding::Unresolvable => Value::Unknown,
        }
    }

    /// A module name as a value: a project module, a namespace package that
    /// holds project modules, or unknown (another project's module).
    fn module_value(&mut self, module: &str) -> Value {
        if self.is_module(module) {
            return Value::Module(module.to_string());
        }
        let namespace = self.world.has_submodules(module);
        if namespace {
            Value::Module(module.to_string())
        } else {
            Value::Unknown
        }
    }

    /// `value.name`.
    fn member(&mut self, value: Value, name: &str, hops: usize) -> Value {
        if hops > MAX_HOPS {
            return Value::Unknown;
        }
        match value {
            Value::Module(module) => {
                let submodule = dotted(&module, name);
                if self.is_module(&submodule) {
                    return Value::Module(submodule);
                }
                let Some(entry) = self.consult(&module) else {
                    // A namespace package has no attributes but its submodules.
                    return Value::Unknown;
                };
                match entry.interface.names.get(name) {
                    Some(binding) => self.binding_value(&module, binding, hops + 1),
                    None => self.star_lookup(&entry.interface.star_imports, name, hops + 1),
                }
            }
            Value::Def {
                module,
                qualname,
                kind: DefKind::Class,
            } => {
                let interface = if module == self.file.module {
                    Some(self.interface)
                } else {
                    self.consult(&module).map(|e| &e.interface)
                };
                let members = interface.and_then(|i| i.classes.get(&qualname));
                match members.and_then(|m| m.get(name)) {
                    Some(kind) => Value::Def {
                        qualname: dotted(&qualname, name),
                        module,
                        kind: *kind,
                    },
                    None => Value::Unknown,
                }
            }
            _ => Value::Unknown,
        }
    }

    /// `name` as brought in by `from m import *` from any of `modules`.
    fn star_lookup(&mut self, modules: &[String], name: &str, hops: usize) -> Value {
        if name.starts_with('_') || hops > MAX_HOPS {
            return Value::Unknown;
        }
        for module in modules {
            let Some(entry) = self.consult(module) else {
                continue;
            };
            let found = match entry.interface.names.get(name) {
                Some(binding) => self.binding_value(module, binding, hops + 1),
                None => self.star_lookup(&entry.interface.star_imports, name, hops + 1),
            };
            if !matches!(found, Value::Unknown) {
                return found;
            }
        }
        Value::Unknown
    }
}

/// The function and class scopes of one file, for name lookup, borrowed from
/// its symbols.
struct Scopes<'s> {
    /// Qualified name → names bound in that def or class body.
    locals: FastMap<&'s str, FastMap<Cow<'s, str>, Local<'s>>>,
    /// Qualified name → (is a class, parent qualified name).
    tree: FastMap<&'s str, (bool, Option<&'s str>)>,
    /// Qualified name of a method → (its first parameter, its class).
    receivers: FastMap<&'s str, (&'s str, &'s str)>,
}

/// A name bound in a function or class scope.
enum Local<'s> {
    /// A def or class of this file, by qualified name.
    Def {
        qualname: &'s str,
        kind: DefKind,
    },
    Binding(Binding),
    /// Bound to something this pass cannot follow (a parameter).
    Opaque,
}

/// A name bound in a scope, where it is bound and to what.
type Bound<'s> = (Pos, Cow<'s, str>, Local<'s>);

/// What a name is bound to in a def or class scope.
enum Found<'s> {
    /// The receiver parameter of a method: the class, by qualified name.
    Receiver(&'s str),
    Local(&'s Local<'s>),
}

impl<'s> Scopes<'s> {
    fn new(this: FileToResolve<'s>) -> Self {
        let symbols = this.symbols;
        let scopes = symbols.functions.len() + symbols.classes.len();
        let mut bound: FastMap<&'s str, Vec<Bound<'s>>> =
            FastMap::with_capacity_and_hasher(scopes, Default::default());
        let mut tree = FastMap::with_capacity_and_hasher(scopes, Default::default());
        let mut receivers =
            FastMap::with_capacity_and_hasher(symbols.functions.len(), Default::default());
        for function in &symbols.functions {
            let qualname = function.qualname.as_str();
            tree.insert(qualname, (false, function.parent.as_deref()));
            let params = bound.entry(qualname).or_default();
            for p in &function.parameters {
                params.push((
                    function.span.start,
                    Cow::from(p.name.as_str()),
                    Local::Opaque,
                ));
            }
            let is_static = function.decorators.iter().any(|d| d == "staticmethod");
            if let (true, false, Some(first), Some(class)) = (
                function.is_method,
                is_static,
                function.parameters.first(),
                &function.parent,
            ) {
                if matches!(
                    first.kind,
                    ParamKind::PositionalOnly | ParamKind::PositionalOrKeyword
                ) {
                    receivers.insert(qualname, (first.name.as_str(), class.as_str()));
                }
            }
            if let Some(parent) = &function.parent {
                bound.entry(parent.as_str()).or_default().push((
                    function.span.start,
                    Cow::from(function.name.as_str()),
                    Local::Def {
                        qualname,
                        kind: DefKind::Function,
                    },
                ));
            }
        }
        for class in &symbols.classes {
            let qualname = class.qualname.as_str();
            tree.insert(qualname, (true, class.parent.as_deref()));
            if let Some(parent) = &class.parent {
                bound.entry(parent.as_str()).or_default().push((
                    class.span.start,
                    Cow::from(class.name.as_str()),
                    Local::Def {
                        qualname,
                        kind: DefKind::Class,
                    },
                ));
            }
            let own = bound.entry(qualname).or_default();
            for attribute in &class.attributes {
                own.push((
                    attribute.span.start,
                    Cow::from(attribute.name.as_str()),
                    Local::Opaque,
                ));
            }
        }
        for import in symbols.imports.iter() {
            let Some(scope) = &import.scope else { continue };
            let mut found = Vec::new();
            let mut stars = Vec::new();
            import_bindings(this.module, this.is_package, import, &mut found, &mut stars);
            let scope_bound = bound.entry(scope.as_str()).or_default();
            scope_bound.extend(
                found
                    .into_iter()
                    .map(|(at, name, b)| (at, Cow::from(name), Local::Binding(b))),
            );
        }
        let locals = bound
            .into_iter()
            .map(|(scope, mut names)| {
                names.sort_by_key(|(at, _, _)| *at);
                (scope, names.into_iter().map(|(_, n, l)| (n, l)).collect())
            })
            .collect();
        Self {
            locals,
            tree,
            receivers,
        }
    }

    /// `name` as seen from `scope`: its own names, then those of enclosing
    /// defs (class bodies are skipped, as in Python, except the class's own
    /// body), or `None` for "look at module level". In a method, the receiver
    /// parameter stands for the class.
    fn lookup(&self, scope: Option<&str>, name: &str) -> Option<Found<'_>> {
        let mut current = scope;
        let mut first = true;
        while let Some(qualname) = current {
            let (is_class, parent) = match self.tree.get(qualname) {
                Some(&(is_class, parent)) => (is_class, parent),
                None => (false, None),
            };
            if !is_class || first {
                if let Some((_, class)) = self.receivers.get(qualname).filter(|(r, _)| *r == name) {
                    return Some(Found::Receiver(class));
                }
                if let Some(local) = self.locals.get(qualname).and_then(|l| l.get(name)) {
                    return Some(Found::Local(local));
                }
            }
            first = false;
            current = parent;
        }
        None
    }
}

/// `a` and `b` joined as `a.b`.
fn dotted(a: &str, b: &str) -> String {
    let mut name = String::with_capacity(a.len() + 1 + b.len());
    name.push_str(a);
    name.push('.');
    name.push_str(b);
    name
}

/// `a.b.c` → `["a.b.c", "a.b", "a"]`.
fn prefixes(module: &str) -> Vec<String> {
    let mut out = vec![module.to_string()];
    let mut rest = module;
    while let Some((head, _)) = rest.rsplit_once('.') {
        out.push(head.to_string());
        rest = head;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_imports_are_made_absolute() {
        assert_eq!(
            absolute("a.b.c", false, 1, Some("d")).as_deref(),
            Some("a.b.d")
        );
        assert_eq!(absolute("a.b", true, 1, None).as_deref(), Some("a.b"));
        assert_eq!(
            absolute("a.b.c", false, 2, Some("x.y")).as_deref(),
            Some("a.x.y")
        );
        assert_eq!(absolute("top", false, 1, Some("x")), None);
        assert_eq!(
            absolute("m", false, 0, Some("os.path")).as_deref(),
            Some("os.path")
        );
    }

    #[test]
    fn a_name_with_modules_under_it_is_a_namespace() {
        let modules: BTreeMap<&str, usize> = [
            ("a", 0),
            ("a.b", 1),
            ("ab", 2),
            ("c0", 3),
            ("c_d", 4),
            ("d.e.f", 5),
        ]
        .into_iter()
        .collect();
        assert_eq!(first_under(&modules, "a"), Some(&1));
        assert_eq!(
            first_under(&modules, "c"),
            None,
            "`c0` and `c_d` are not under `c`"
        );
        assert_eq!(first_under(&modules, "d"), Some(&5));
        assert_eq!(first_under(&modules, "d.e"), Some(&5));
        assert_eq!(first_under(&modules, "a.b"), None);
        assert_eq!(first_under(&modules, "e"), None);
    }
}
