//! End-to-end tests of the `symtab` kind (issue 5), through the `tiers` binary: what
//! an entry holds, what a build re-parses and re-resolves, bad input, `tiers export`.
//! The facts of one file are pinned by the library's own tests
//! (`crates/py-symbols/tests/extract.rs`); these spot-check them through the tier.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::Value;
use support::{entry_dir, project, Project, Run};

const TIER: &str = "[tiers.sym]\nkind = \"symtab\"\n";

/// A small project: a package with relative imports, a `src/` layout, a file with a
/// syntax error, unicode names, nested and async definitions.
fn sample() -> Project {
    sample_with(TIER)
}

fn sample_with(config: &str) -> Project {
    project()
        .file("tiers.toml", config)
        .file("pkg/__init__.py", "from .core import Engine\n")
        .file(
            "pkg/core.py",
            r#""""The core."""
import os
from . import util
from .util import helper as h


class Engine(Base, metaclass=Meta):
    """Runs things."""

    speed: int = 3

    @property
    def name(self):
        return h(self)

    async def run(self, *args, key=None, **kw):
        util.helper(1)

        def inner():
            return os.path.join("a", "b")

        return inner()
"#,
        )
        .file("pkg/util.py", "def helper(x):\n    return x\n")
        .file("pkg/sub/deep.py", "from ..core import Engine\n\nEngine()\n")
        .file("src/app/__init__.py", "")
        .file(
            "src/app/main.py",
            "from pkg.util import helper\n\nhelper(2)\n",
        )
        .file("broken.py", "def ok():\n    pass\n\ndef bad(:\n    pass\n")
        .file(
            "pkg/ünï.py",
            "class Größe:\n    pass\n\ndef grüße(名前):\n    return Größe()\n",
        )
        .build()
}

/// The marker's `data` of `tier`'s entry: the counts of the build that made it.
fn data(run: &Run, tier: &str) -> Value {
    let marker = entry_dir(run, tier).join("entry.json");
    let text = std::fs::read_to_string(&marker)
        .unwrap_or_else(|e| panic!("cannot read `{}`: {e}", marker.display()));
    serde_json::from_str::<Value>(&text).expect("marker JSON")["data"].clone()
}

/// The index of the entry: path → {digest, module, interface, errors}.
fn index_files(run: &Run) -> BTreeMap<String, Value> {
    let table =
        tiers_symtab::load_table(&entry_dir(run, "sym"), &run_blobs(run)).expect("load_table");
    table
        .files
        .into_iter()
        .map(|f| {
            let row = serde_json::json!({
                "digest": f.digest, "module": f.module,
                "interface": f.interface, "errors": f.errors,
            });
            (f.path, row)
        })
        .collect()
}

/// One edit of a project, for tests that walk through several.
type Step = Box<dyn Fn(&Project)>;

fn count(data: &Value, what: &str) -> u64 {
    data[what]
        .as_u64()
        .unwrap_or_else(|| panic!("no count `{what}` in {data}"))
}

/// `tiers export sym` to stdout, parsed.
fn export(p: &Project) -> Value {
    p.tiers(&["export", "sym"]).expect_code(0).json()
}

/// The exported file at `path`.
fn file<'a>(table: &'a Value, path: &str) -> &'a Value {
    table["files"]
        .as_array()
        .expect("files")
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("no file `{path}` in the export"))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|x| x["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Module → the project modules it imports, from an export's graph.
fn import_graph(table: &Value) -> BTreeMap<String, BTreeSet<String>> {
    table["graph"]["files"]
        .as_object()
        .expect("graph files")
        .values()
        .map(|m| {
            let imports = m["imports"]
                .as_array()
                .expect("imports")
                .iter()
                .map(|i| i["module"].as_str().unwrap_or_default().to_owned())
                .collect();
            (m["module"].as_str().unwrap_or_default().to_owned(), imports)
        })
        .collect()
}

/// `(scope, callee) → target module.qualname` of a module's resolved calls.
fn calls(table: &Value, module: &str) -> BTreeSet<(String, String, String)> {
    let path = table["graph"]["modules"][module]
        .as_str()
        .unwrap_or_else(|| panic!("no module `{module}` in the graph"));
    table["graph"]["files"][path]["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| {
            (
                c["scope"].as_str().unwrap_or("").to_owned(),
                c["callee"].as_str().unwrap_or_default().to_owned(),
                format!(
                    "{}.{}",
                    c["target"]["module"].as_str().unwrap_or_default(),
                    c["target"]["qualname"].as_str().unwrap_or_default()
                ),
            )
        })
        .collect()
}

/// The same project built from scratch in another cache dir, with the default
/// options (one batch): its export.
fn from_scratch(p: &Project) -> Value {
    let other = tempfile::tempdir().expect("temp dir");
    let config = other.path().join("tiers.toml");
    std::fs::write(&config, TIER).expect("write config");
    let config = config.to_str().expect("utf-8 path");
    let cache = other.path().join("cache");
    let cache = cache.to_str().expect("utf-8 path");
    let run = p
        .tiers(&["--config", config, "--cache-dir", cache, "build", "--json"])
        .expect_code(0);
    assert_eq!(run.status("sym"), "built", "{}", run.stdout);
    p.tiers(&["--config", config, "--cache-dir", cache, "export", "sym"])
        .expect_code(0)
        .json()
}

/// Panics naming the files and graph modules in which two exports differ.
fn assert_same_table(incremental: &Value, scratch: &Value, when: &str) {
    if incremental == scratch {
        return;
    }
    let mut diffs = Vec::new();
    for part in ["files", "modules"] {
        let (a, b) = (&incremental["graph"][part], &scratch["graph"][part]);
        for key in a
            .as_object()
            .unwrap()
            .keys()
            .chain(b.as_object().unwrap().keys())
        {
            if a.get(key) != b.get(key) {
                diffs.push(format!(
                    "graph.{part}[{key}]:\n  incremental {}\n  scratch     {}",
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null)
                ));
            }
        }
    }
    if incremental["files"] != scratch["files"] {
        diffs.push("the per-file symbols differ".into());
    }
    panic!(
        "{when}: the incremental build differs from a full one:\n{}",
        diffs.join("\n")
    );
}

/// The blob store of the cache dir a run's entry is in (`<cache>/sym/<key>`).
fn run_blobs(run: &Run) -> tiers_core::Blobs {
    let entry = entry_dir(run, "sym");
    tiers_core::Blobs::of_cache_dir(entry.parent().unwrap().parent().unwrap())
}

/// The blobs of the project's cache whose bytes start with `magic`.
fn stored(p: &Project, magic: &[u8; 4]) -> Vec<PathBuf> {
    let dir = p.cache_dir().join("blobs");
    support::snapshot(&dir)
        .into_iter()
        .filter(|(path, _)| path.len() > 3 && path.as_bytes()[2] == b'/')
        .map(|(path, _)| dir.join(path))
        .filter(|path| std::fs::read(path).is_ok_and(|b| b.starts_with(magic)))
        .collect()
}

/// Graph buckets in the store.
fn stored_buckets(p: &Project) -> Vec<PathBuf> {
    stored(p, b"TGRB")
}

/// Per-file entries in the store's packs (shared by all entries): each is
/// encoded with the codec's `TSYM` magic first, and the tests' sources never
/// hold those four bytes.
fn stored_files(p: &Project) -> usize {
    stored(p, b"TSYM")
        .iter()
        .map(|pack| {
            let bytes = std::fs::read(pack).unwrap();
            bytes.windows(4).filter(|w| *w == b"TSYM").count()
        })
        .sum()
}

#[test]
fn a_build_exports_the_facts_of_every_file_and_the_resolved_graph() {
    let p = sample();
    let run = p.build(&[]);
    assert_eq!(run.status("sym"), "built");
    let d = data(&run, "sym");
    assert_eq!(count(&d, "files"), 8);
    assert_eq!(count(&d, "parsed"), 8);
    assert_eq!(count(&d, "files_with_errors"), 1, "{d}");
    assert_eq!(
        run.tier("sym")["summary"],
        "parsed 8 files, reused 0; resolved 8 modules, reused 0; 1 file with errors"
    );

    let table = export(&p);
    assert_eq!(table["schema_version"], 2);
    let bad = file(&table, "broken.py");
    assert_eq!(
        bad["errors"],
        bad["symbols"]["errors"].as_array().unwrap().len()
    );
    assert!(
        bad["interface"].as_str().is_some_and(|d| d.len() == 64),
        "{bad}"
    );
    let modules: BTreeMap<&str, &str> = table["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap(),
                f["module"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        modules,
        BTreeMap::from([
            ("broken.py", "broken"),
            ("pkg/__init__.py", "pkg"),
            ("pkg/core.py", "pkg.core"),
            ("pkg/sub/deep.py", "pkg.sub.deep"),
            ("pkg/util.py", "pkg.util"),
            ("pkg/ünï.py", "pkg.ünï"),
            ("src/app/__init__.py", "app"),
            ("src/app/main.py", "app.main"),
        ])
    );

    let core = &file(&table, "pkg/core.py")["symbols"];
    assert_eq!(core["docstring"], "The core.");
    let engine = &core["classes"][0];
    assert_eq!(engine["name"], "Engine");
    assert_eq!(engine["bases"], serde_json::json!(["Base"]));
    assert_eq!(engine["keywords"], serde_json::json!(["metaclass=Meta"]));
    assert_eq!(engine["methods"], serde_json::json!(["name", "run"]));
    assert_eq!(names(&engine["attributes"]), ["speed"]);
    let functions: BTreeMap<&str, &Value> = core["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["qualname"].as_str().unwrap(), f))
        .collect();
    assert_eq!(
        functions.keys().copied().collect::<Vec<_>>(),
        ["Engine.name", "Engine.run", "Engine.run.<locals>.inner"]
    );
    assert_eq!(
        functions["Engine.name"]["decorators"],
        serde_json::json!(["property"])
    );
    let run_fn = functions["Engine.run"];
    assert_eq!(run_fn["is_async"], true);
    let kinds: Vec<(&str, &str)> = run_fn["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("self", "positional-or-keyword"),
            ("args", "var-positional"),
            ("key", "keyword-only"),
            ("kw", "var-keyword")
        ]
    );
    let imports: Vec<(u64, Value)> = core["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["level"].as_u64().unwrap(), i["module"].clone()))
        .collect();
    assert_eq!(
        imports,
        [
            (0, Value::Null),
            (1, Value::Null),
            (1, Value::String("util".into()))
        ]
    );

    let unicode = &file(&table, "pkg/ünï.py")["symbols"];
    assert_eq!(unicode["classes"][0]["name"], "Größe");
    assert_eq!(unicode["functions"][0]["name"], "grüße");
    assert_eq!(unicode["functions"][0]["parameters"][0]["name"], "名前");

    let broken = &file(&table, "broken.py")["symbols"];
    assert_eq!(
        broken["functions"][0]["name"], "ok",
        "what could be read is kept"
    );
    let error = &broken["errors"][0];
    assert_eq!(error["kind"], "syntax");
    assert_eq!(error["line"], 4, "{error}");

    // Cross-file facts: relative imports and calls resolved to project definitions.
    let graph = import_graph(&table);
    assert_eq!(
        graph["pkg.core"],
        BTreeSet::from(["pkg.util".to_owned()]),
        "`import os` is not a project module"
    );
    assert_eq!(
        graph["pkg.sub.deep"],
        BTreeSet::from(["pkg.core".to_owned()])
    );
    assert_eq!(graph["app.main"], BTreeSet::from(["pkg.util".to_owned()]));
    assert_eq!(graph["pkg"], BTreeSet::from(["pkg.core".to_owned()]));
    let core_calls = calls(&table, "pkg.core");
    assert!(
        core_calls.contains(&("Engine.name".into(), "h".into(), "pkg.util.helper".into())),
        "{core_calls:?}"
    );
    assert!(core_calls.contains(&(
        "Engine.run".into(),
        "util.helper".into(),
        "pkg.util.helper".into()
    )));
    assert!(calls(&table, "pkg.sub.deep").contains(&(
        String::new(),
        "Engine".into(),
        "pkg.core.Engine".into()
    )));
    assert!(calls(&table, "pkg.ünï").contains(&(
        "grüße".into(),
        "Größe".into(),
        "pkg.ünï.Größe".into()
    )));

    // The library reads the same table back as typed structs.
    let typed =
        tiers_symtab::load_table(&entry_dir(&run, "sym"), &run_blobs(&run)).expect("load_table");
    assert_eq!(typed.files.len(), 8);
    assert_eq!(serde_json::to_value(&typed).unwrap(), table);
}

#[test]
fn export_writes_the_same_document_to_a_file_and_to_stdout() {
    let p = sample();
    p.build(&[]);
    let out = p.path("out/table.json");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    p.tiers(&["export", "sym", "-o", out.to_str().unwrap()])
        .expect_code(0);
    let written = std::fs::read_to_string(&out).expect("export file");
    let stdout = p.tiers(&["export", "sym"]).expect_code(0).stdout;
    assert_eq!(written, stdout);
    let table: Value = serde_json::from_str(&written).expect("one JSON document");
    assert_eq!(table["files"].as_array().unwrap().len(), 8);
}

#[test]
fn export_before_any_build_says_to_build_first() {
    let p = sample();
    let run = p.tiers(&["export", "sym"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("tiers build sym"), "{}", run.stderr);
}

#[test]
fn a_one_file_edit_parses_that_file_only_and_changes_its_index_row_only() {
    let p = sample();
    let first = p.build(&[]);
    let before = index_files(&first);

    // A body edit: the interface of pkg.util is unchanged, nothing else is redone.
    p.write("pkg/util.py", "def helper(x):\n    return x + 1\n");
    let run = p.build(&[]);
    assert_eq!(run.status("sym"), "rebuilt");
    assert_eq!(run.reasons("sym"), ["the input `pkg/util.py` changed"]);
    let d = data(&run, "sym");
    assert_eq!((count(&d, "parsed"), count(&d, "reused")), (1, 7), "{d}");
    assert_eq!(
        (count(&d, "resolved"), count(&d, "resolve_reused")),
        (1, 7),
        "{d}"
    );
    assert_eq!(
        run.tier("sym")["summary"],
        "parsed 1 file, reused 7; resolved 1 module, reused 7; 1 file with errors"
    );
    let after = index_files(&run);
    let changed: Vec<&String> = after
        .iter()
        .filter(|(path, row)| before.get(*path) != Some(*row))
        .map(|(path, _)| path)
        .collect();
    assert_eq!(changed, ["pkg/util.py"]);
    assert_eq!(
        after["pkg/util.py"]["interface"], before["pkg/util.py"]["interface"],
        "a body edit keeps the interface"
    );
    assert_ne!(
        after["pkg/util.py"]["digest"],
        before["pkg/util.py"]["digest"]
    );

    // An interface edit: the modules that consulted pkg.util are redone too.
    p.write(
        "pkg/util.py",
        "def helper(x):\n    return x + 1\n\ndef extra():\n    pass\n",
    );
    let run = p.build(&[]);
    let d = data(&run, "sym");
    assert_eq!(count(&d, "parsed"), 1, "{d}");
    // pkg.util itself, pkg.core and app.main import it.
    assert_eq!(count(&d, "resolved"), 3, "{d}");
    assert_same_table(&export(&p), &from_scratch(&p), "after the interface edit");
}

#[test]
fn per_file_entries_lost_from_the_store_are_parsed_again() {
    let p = sample();
    let first = p.build(&[]);
    // Damage: every stored per-file entry goes (the last entry's index still
    // names them).
    for path in stored(&p, b"TSYM") {
        std::fs::remove_file(path).unwrap();
    }
    assert!(
        !entry_dir(&first, "sym").join("files").exists(),
        "an entry names its per-file entries in the store, it holds none"
    );

    p.write("pkg/util.py", "def helper(x):\n    return x + 2\n");
    let run = p.build(&[]);
    assert_eq!(run.status("sym"), "rebuilt", "{}", run.stdout);
    let d = data(&run, "sym");
    // The edited file, and every other content again.
    assert_eq!((count(&d, "parsed"), count(&d, "reused")), (8, 0), "{d}");
    assert_same_table(&export(&p), &from_scratch(&p), "after the damage");
    assert_eq!(stored_files(&p), 8, "the store holds them again");
}

#[test]
fn a_module_provided_by_another_path_is_a_dependency_of_the_shadowed_file() {
    // `m.py` provides `m` (first in path order); `m/__init__.py` resolves its
    // `from . import x` against it.
    let p = project()
        .file("tiers.toml", TIER)
        .file("m.py", "def x():\n    pass\n")
        .file("m/__init__.py", "from . import x\nx()\n")
        .build();
    p.build(&[]);
    let table = export(&p);
    let shadowed = &table["graph"]["files"]["m/__init__.py"];
    assert_eq!(
        shadowed["calls"][0]["target"]["qualname"], "x",
        "{shadowed}"
    );
    assert_eq!(table["graph"]["modules"]["m"], "m.py");
    p.write("m.py", "def y():\n    pass\n");
    let run = p.build(&[]);
    assert_eq!(count(&data(&run, "sym"), "resolved"), 2, "{}", run.stdout);
    assert_same_table(&export(&p), &from_scratch(&p), "after renaming x");
    p.remove("m.py");
    p.build(&[]);
    assert_same_table(&export(&p), &from_scratch(&p), "after removing m.py");
}

#[test]
fn a_previous_entry_whose_graph_is_damaged_is_built_without() {
    let p = sample();
    let first = p.build(&[]);
    assert!(
        !entry_dir(&first, "sym").join("graph").exists(),
        "an entry names its graph buckets in the store, it holds none"
    );
    // Every stored bucket is damaged: the previous entry names them all.
    let buckets = stored_buckets(&p);
    assert!(!buckets.is_empty());
    for path in &buckets {
        std::fs::write(path, b"not a bucket").unwrap();
    }
    p.write("pkg/util.py", "def helper(x):\n    return x + 3\n");
    let run = p.build(&[]);
    assert_eq!(run.status("sym"), "rebuilt", "{}", run.stdout);
    assert!(run.stderr.contains("not usable"), "{}", run.stderr);
    let d = data(&run, "sym");
    assert_eq!(count(&d, "resolved"), 8, "every module again: {d}");
    // The attempt without the previous entry still uses its per-file entries.
    assert_eq!((count(&d, "parsed"), count(&d, "reused")), (1, 7), "{d}");
    assert_same_table(&export(&p), &from_scratch(&p), "after the damaged graph");
}

#[test]
fn a_graph_bucket_gone_from_the_store_is_not_named_again() {
    let p = sample();
    p.build(&[]);
    let buckets = stored_buckets(&p);
    assert!(buckets.len() > 1, "{buckets:?}");
    // Every bucket goes but the one the edit rewrites (it holds the edited
    // path): the edit's build reads that one, and must not name the others.
    let edited = b"pkg/util.py";
    let mut kept = 0;
    for path in &buckets {
        let bytes = std::fs::read(path).unwrap();
        if bytes.windows(edited.len()).any(|w| w == edited) {
            kept += 1;
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }
    assert_eq!(kept, 1, "one bucket holds the edited path");
    p.write("pkg/util.py", "def helper(x):\n    return x + 5\n");
    let run = p.build(&[]);
    assert_eq!(run.status("sym"), "rebuilt", "{}", run.stdout);
    assert!(run.stderr.contains("not usable"), "{}", run.stderr);
    assert_eq!(
        count(&data(&run, "sym"), "resolved"),
        8,
        "every module again"
    );
    assert_same_table(&export(&p), &from_scratch(&p), "after the buckets went");
}

#[test]
fn a_damaged_stored_entry_shared_by_many_paths_is_parsed_again_once() {
    let mut builder = project().file("tiers.toml", TIER).file("main.py", "");
    for i in 0..200 {
        builder = builder.file(&format!("p{i}/m.py"), "def f():\n    pass\n");
    }
    let p = builder.build();
    p.build(&[]);
    assert_eq!(stored_files(&p), 2, "two contents");
    let packs = stored(&p, b"TSYM");
    assert_eq!(packs.len(), 1, "one pack holds both");
    // Damaged in place: its digest no longer matches.
    std::fs::write(&packs[0], b"garbage").unwrap();
    // `main.py` now consults all 200 modules, whose symbols are that entry.
    let imports: String = (0..200)
        .map(|i| format!("from p{i}.m import f\n"))
        .collect();
    p.write("main.py", imports);
    let run = p.tiers(&["build", "--json"]).expect_code(0);
    assert!(
        run.stderr.contains("does not match its digest"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.matches("parsing `").count(), 1, "{}", run.stderr);
    assert_same_table(&export(&p), &from_scratch(&p), "after the repair");
}

#[test]
fn deleting_and_adding_files_update_the_index_and_the_graph() {
    let p = sample();
    p.build(&[]);
    p.remove("pkg/util.py");
    p.write(
        "pkg/extra.py",
        "from .core import Engine\n\ndef make():\n    return Engine()\n",
    );
    let run = p.build(&[]);
    assert_eq!(run.status("sym"), "rebuilt");
    let d = data(&run, "sym");
    assert_eq!(count(&d, "parsed"), 1, "only the new file: {d}");
    assert_eq!(count(&d, "files"), 8);
    let files = index_files(&run);
    assert!(!files.contains_key("pkg/util.py"));
    assert_eq!(files["pkg/extra.py"]["module"], "pkg.extra");

    let table = export(&p);
    let graph = import_graph(&table);
    assert!(!graph.contains_key("pkg.util"));
    assert_eq!(
        graph["pkg.core"],
        BTreeSet::from(["pkg".to_owned()]),
        "`from . import util` now loads only the package: pkg.util is gone"
    );
    assert_eq!(graph["pkg.extra"], BTreeSet::from(["pkg.core".to_owned()]));
    let core_calls = calls(&table, "pkg.core");
    assert!(
        core_calls
            .iter()
            .all(|(_, _, target)| !target.starts_with("pkg.util.")),
        "{core_calls:?}"
    );
    assert_same_table(&table, &from_scratch(&p), "after the deletion");
}

#[test]
fn identical_content_at_two_paths_is_parsed_once() {
    let same = "def twin():\n    return 2\n";
    let p = project()
        .file("tiers.toml", TIER)
        .file("a/twin.py", same)
        .file("b/twin.py", same)
        .file("c.py", "x = 1\n")
        .build();
    let run = p.build(&[]);
    let d = data(&run, "sym");
    assert_eq!((count(&d, "files"), count(&d, "parsed")), (3, 2), "{d}");
    assert_eq!(stored_files(&p), 2, "one per-file entry per content");
    let table = export(&p);
    assert_eq!(
        file(&table, "a/twin.py")["symbols"],
        file(&table, "b/twin.py")["symbols"]
    );
    assert_eq!(file(&table, "b/twin.py")["module"], "b.twin");

    // A third copy later costs no parse either.
    p.write("d/twin.py", same);
    let d = data(&p.build(&[]), "sym");
    assert_eq!((count(&d, "parsed"), count(&d, "reused")), (0, 4), "{d}");
}

#[test]
fn going_back_to_an_earlier_state_is_fresh_and_parses_nothing() {
    let p = sample();
    let first = p.build(&[]);
    let original = p.read("pkg/util.py");
    p.write("pkg/util.py", "def helper(x):\n    return -x\n");
    assert_eq!(p.build(&[]).status("sym"), "rebuilt");
    let stored = stored_files(&p);

    p.write("pkg/util.py", &original);
    let back = p.build(&[]);
    assert_eq!(back.status("sym"), "fresh");
    assert_eq!(back.tier("sym")["key"], first.tier("sym")["key"]);
    assert_eq!(stored_files(&p), stored, "nothing was parsed");

    // A mix of both states is a new state, but every content is known.
    p.write("pkg/core.py", "from .util import helper\n");
    let mixed = p.build(&[]);
    let d = data(&mixed, "sym");
    assert_eq!(count(&d, "parsed"), 1, "{d}");
    p.write("pkg/core.py", "from .util import helper\n\nhelper(0)\n");
    p.write("pkg/util.py", "def helper(x):\n    return -x\n");
    let d = data(&p.build(&[]), "sym");
    assert_eq!(count(&d, "parsed"), 1, "only the new core.py: {d}");
}

#[test]
fn a_forced_rebuild_parses_every_file_again() {
    let p = sample();
    p.build(&[]);
    let run = p.build(&["--rebuild", "sym"]);
    assert_eq!(run.status("sym"), "rebuilt");
    let d = data(&run, "sym");
    assert_eq!((count(&d, "parsed"), count(&d, "resolved")), (8, 8), "{d}");
}

#[test]
fn bad_input_gives_per_file_errors_and_the_build_succeeds() {
    let mut huge = String::with_capacity(50 << 20);
    while huge.len() < 50 << 20 {
        huge.push_str("value_0123456789 = [1, 2, 3]  # generated\n");
    }
    let nested = format!("x = {}1{}\n", "(".repeat(100_000), ")".repeat(100_000));
    let p = project()
        .file("tiers.toml", TIER)
        .file("ok.py", "def fine():\n    pass\n")
        .file("binary.py", b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00junk")
        .file("latin.py", b"name = '\xe9t\xe9'\n")
        .file("huge.py", huge.as_bytes())
        .file("nested.py", nested.as_bytes())
        .build();
    drop(huge);
    // A directory link back to the project, and a file link to itself.
    std::os::unix::fs::symlink(".", p.path("loop")).unwrap();
    std::os::unix::fs::symlink("self.py", p.path("self.py")).unwrap();

    let run = p.build(&[]);
    assert_eq!(run.status("sym"), "built", "{}", run.stderr);
    // A link in a loop leads to no file, like a dangling link: not an input.
    assert!(!run.stderr.contains("self.py"), "{}", run.stderr);
    let table = export(&p);
    let errors = |path: &str| -> Vec<String> {
        file(&table, path)["symbols"]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(errors("binary.py"), ["binary"]);
    assert_eq!(errors("latin.py"), ["invalid-encoding"]);
    assert_eq!(errors("huge.py"), ["too-large"]);
    assert!(errors("ok.py").is_empty());
    // Deep nesting is read (or abandoned as a per-file error), never a crash.
    let nested = file(&table, "nested.py");
    assert!(
        nested["symbols"]["variables"][0]["name"] == "x" || !errors("nested.py").is_empty(),
        "{nested}"
    );
    let paths: Vec<&str> = table["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["binary.py", "huge.py", "latin.py", "nested.py", "ok.py"],
        "nothing is read through `loop/`, `self.py` is skipped"
    );
    // The second run reads nothing again.
    assert_eq!(p.build(&[]).status("sym"), "fresh");
}

#[test]
fn the_incremental_graph_equals_a_full_build_through_renames_and_moves() {
    let p = project()
        .file("tiers.toml", TIER)
        .file("lib/__init__.py", "from .impl import run as go\n")
        .file("lib/impl.py", "def run():\n    pass\n\nclass Job:\n    def start(self):\n        pass\n")
        .file(
            "app.py",
            "import lib\nfrom lib import impl\nfrom ns.tool import work\n\nlib.go()\nimpl.Job().start()\nwork()\n",
        )
        .file("user.py", "from lib.impl import Job\n\ndef f(j: Job):\n    Job()\n")
        .file("spaced.py", "import space\n\nspace.tool.work()\n")
        .build();
    p.build(&[]);
    let steps: Vec<Step> = vec![
        // Rename the re-exported function: app's call through `lib.go` breaks.
        Box::new(|p| {
            p.write(
                "lib/impl.py",
                "def walk():\n    pass\n\nclass Job:\n    def start(self):\n        pass\n",
            )
        }),
        // A namespace package appears with the module app imports.
        Box::new(|p| p.write("ns/tool.py", "def work():\n    pass\n")),
        // Fix the re-export.
        Box::new(|p| p.write("lib/__init__.py", "from .impl import walk as go\n")),
        // Move the class to another module, re-exported from the old one.
        Box::new(|p| {
            p.write(
                "lib/jobs.py",
                "class Job:\n    def start(self):\n        pass\n",
            );
            p.write(
                "lib/impl.py",
                "from .jobs import Job\n\ndef walk():\n    pass\n",
            );
        }),
        // A namespace package appears under a name a file asked about, without
        // asking about the module in it.
        Box::new(|p| p.write("space/tool.py", "def work():\n    pass\n")),
        // A new file reaches a module only through a namespace package.
        Box::new(|p| p.write("late.py", "import space\n\nspace.tool.work()\n")),
        // The namespace package goes away.
        Box::new(|p| p.remove("ns/tool.py")),
        // A second file claims an existing module name (src layout): the first wins.
        Box::new(|p| p.write("src/user.py", "def other():\n    pass\n")),
    ];
    for (i, step) in steps.iter().enumerate() {
        step(&p);
        let run = p.build(&[]);
        assert_eq!(run.status("sym"), "rebuilt", "step {i}");
        let d = data(&run, "sym");
        assert!(
            count(&d, "resolve_reused") > 0 || i == 0 || count(&d, "modules") <= 2,
            "step {i} reused nothing: {d}"
        );
        assert_same_table(&export(&p), &from_scratch(&p), &format!("step {i}"));
    }
    let table = export(&p);
    assert!(calls(&table, "app").contains(&(
        String::new(),
        "lib.go".into(),
        "lib.impl.walk".into()
    )));
    assert!(calls(&table, "app").contains(&(
        String::new(),
        "impl.Job".into(),
        "lib.jobs.Job".into()
    )));
    assert!(calls(&table, "late").contains(&(
        String::new(),
        "space.tool.work".into(),
        "space.tool.work".into()
    )));
}

#[test]
fn blobs_no_entry_names_are_swept_by_gc_and_after_retention() {
    let p = project()
        .file("tiers.toml", format!("{TIER}keep = 1\n"))
        .file("a.py", "A1 = 1\n")
        .file("b.py", "B = 1\n")
        .build();
    p.build(&[]);
    assert_eq!(stored_files(&p), 2);
    let mut counts = Vec::new();
    for i in 2..=6 {
        p.write("a.py", format!("A{i} = 1\n"));
        p.build(&[]);
        counts.push(stored_files(&p));
    }
    // Retention removes an entry after each build; the fourth removal makes the
    // build sweep: left are the packs the last entry names, the first build's
    // (`B`, and `A1` beside it: a pack goes with its last entry) and its own.
    assert_eq!(counts, [3, 4, 5, 3, 4], "per-file entries after each build");
    p.write("a.py", "A7 = 1\n");
    p.build(&[]);
    let gc = p.tiers(&["gc"]).expect_code(0);
    assert!(gc.stdout.contains("swept "), "{}", gc.stdout);
    assert_eq!(stored_files(&p), 3, "`A6` and `A5` went");
    let table = export(&p);
    assert_eq!(
        file(&table, "a.py")["symbols"]["variables"][0]["name"],
        "A7"
    );
    assert_same_table(&table, &from_scratch(&p), "after the sweeps");
}

#[test]
fn options_choose_the_inputs() {
    let p = project()
        .file(
            "tiers.toml",
            format!(
                "{TIER}inputs = [\"src/**/*.py\", \"tools/*.py\"]\nexclude = [\"src/gen/**\"]\n"
            ),
        )
        .file("src/pkg/a.py", "")
        .file("src/gen/b.py", "")
        .file("tools/c.py", "")
        .file("other.py", "")
        .build();
    let run = p.build(&[]);
    let files: Vec<String> = index_files(&run).into_keys().collect();
    assert_eq!(files, ["src/pkg/a.py", "tools/c.py"]);
    let bad = project()
        .file("tiers.toml", format!("{TIER}inputz = [\"*.py\"]\n"))
        .build();
    let run = bad.tiers(&["build"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("inputz"), "{}", run.stderr);
}

#[test]
fn an_entry_from_the_shared_cache_seeds_the_next_incremental_build() {
    let shared = tempfile::tempdir().unwrap();
    let config = format!(
        "[remote]\nurl = \"file://{}\"\n\n{TIER}",
        shared.path().display()
    );
    let first = sample_with(&config);
    assert_eq!(first.build(&[]).status("sym"), "built");
    let second = sample_with(&config);
    let run = second.build(&[]);
    assert_eq!(run.status("sym"), "restored", "{}", run.stderr);
    assert_eq!(
        stored_files(&second),
        8,
        "the entry carried the per-file entries it names"
    );
    assert_same_table(&export(&second), &from_scratch(&second), "restored");

    // The next build starts from the restored entry instead of parsing.
    second.write("pkg/util.py", "def helper(x):\n    return 2 * x\n");
    let run = second.build(&[]);
    assert_eq!(run.status("sym"), "rebuilt");
    let d = data(&run, "sym");
    assert_eq!((count(&d, "parsed"), count(&d, "reused")), (1, 7), "{d}");
    assert_eq!(count(&d, "resolved"), 1, "{d}");
    assert_eq!(
        stored_files(&second),
        9,
        "the carried eight and the edited file's"
    );
    assert_same_table(
        &export(&second),
        &from_scratch(&second),
        "after the restore",
    );
}
