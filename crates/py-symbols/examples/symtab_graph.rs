//! The library's cross-file graph of a tree, as JSON: `symtab_graph DIR [-]`.
//!
//! The reference side of `bench/symtab/equivalence.sh`: the `symtab` tier's
//! graph (`tiers export`, `graph`) must equal what the library resolves from
//! scratch, with no store, no previous entry and no laziness.
//!
//! With `-`, the project-relative `.py` paths are read from stdin, one a line.
//! Otherwise DIR is walked for `**/*.py` as the engine walks inputs: `.git`,
//! `.tiers` and `__pycache__` are not entered, nor any directory holding a
//! `pyvenv.cfg`, nor a symbolic link to a directory; a symbolic link to a file
//! counts; a name that is not UTF-8 is skipped.
//!
//! Every file is extracted with the default options, named with
//! [`module_name`] against the whole path set, put in a [`ProjectState`] and
//! resolved with `resolve_incremental(None, ..)`. The [`ResolvedGraph`] is
//! printed with `symbols_digest` blanked to `""` in every module: the tier
//! stores the content's digest there, the library the symbols' digest.
//! A file that cannot be read is left out with a warning, as the tier does.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use py_symbols::{
    extract_files, module_name, resolve_incremental, ExtractOptions, ProjectState, ResolvedGraph,
};

/// Project-relative, `/`-separated `.py` paths under `root`, as the engine
/// walks inputs.
fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("symtab_graph: cannot list `{}`", dir.display());
        return;
    };
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            eprintln!("symtab_graph: skipping a name that is not UTF-8 in `{rel}`");
            continue;
        };
        if !rel.is_empty() && name == "pyvenv.cfg" {
            return;
        }
        let child = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            if name != ".git" && name != "__pycache__" && child != ".tiers" {
                dirs.push(child);
            }
        } else if name.ends_with(".py")
            && (ft.is_file() || (ft.is_symlink() && entry.path().is_file()))
        {
            files.push(child);
        }
    }
    out.extend(files);
    for d in dirs {
        walk(root, &d, out);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (root, from_stdin) = match args.as_slice() {
        [dir] => (PathBuf::from(dir), false),
        [dir, dash] if dash == "-" => (PathBuf::from(dir), true),
        _ => {
            eprintln!("usage: symtab_graph DIR [-]   (with `-`, relative .py paths on stdin)");
            std::process::exit(2);
        }
    };
    let mut rels: Vec<String> = if from_stdin {
        std::io::stdin()
            .lock()
            .lines()
            .map_while(Result::ok)
            .map(|l| l.trim_end_matches('\r').to_owned())
            .filter(|l| !l.is_empty())
            .map(|l| l.strip_prefix("./").unwrap_or(&l).to_owned())
            .collect()
    } else {
        let mut out = Vec::new();
        walk(&root, "", &mut out);
        out
    };
    rels.sort();
    rels.dedup();

    let started = Instant::now();
    let abs: Vec<PathBuf> = rels.iter().map(|r| root.join(r)).collect();
    let symbols = extract_files(&abs, &ExtractOptions::default(), |path, r| match r {
        Ok(s) => Some(s),
        Err(e) => {
            eprintln!("symtab_graph: skipping `{}`: {e}", path.display());
            None
        }
    });
    let extracted = started.elapsed();

    let read: Vec<(String, py_symbols::FileSymbols)> = rels
        .into_iter()
        .zip(symbols)
        .filter_map(|(rel, s)| Some((rel, s?)))
        .collect();
    let all_paths: HashSet<String> = read.iter().map(|(p, _)| p.clone()).collect();
    let mut state = ProjectState::new();
    let mut named = 0usize;
    for (rel, symbols) in read {
        if let Some(module) = module_name(&rel, &all_paths) {
            state.insert(rel, module, symbols);
            named += 1;
        }
    }

    let started = Instant::now();
    let (mut graph, _) = resolve_incremental(None, &state);
    let resolved = started.elapsed();
    for m in graph.files.values_mut() {
        m.symbols_digest.clear();
    }
    eprintln!(
        "symtab_graph: {} files, {named} named, {} modules; extract {:.2} s, resolve {:.2} s",
        all_paths.len(),
        graph.modules.len(),
        extracted.as_secs_f64(),
        resolved.as_secs_f64(),
    );
    if let Err(e) = print(&graph) {
        eprintln!("symtab_graph: cannot write the graph: {e}");
        std::process::exit(1);
    }
}

fn print(graph: &ResolvedGraph) -> std::io::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    serde_json::to_writer(&mut out, graph).map_err(std::io::Error::other)?;
    out.write_all(b"\n")?;
    out.flush()
}
