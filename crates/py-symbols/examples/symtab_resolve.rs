//! Timing of the cross-file pass on a real tree: `symtab_resolve DIR`.
//!
//! Extracts every `.py` file under DIR (paths relative to DIR name the
//! modules), resolves the whole project, then re-resolves after touching one
//! module's body (same interface) and after adding a definition to it.

use std::path::{Path, PathBuf};
use std::time::Instant;

use py_symbols::{extract, extract_files, resolve_incremental, ExtractOptions, ProjectState};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, out),
            Ok(t) if t.is_file() && path.extension().is_some_and(|e| e == "py") => out.push(path),
            _ => {}
        }
    }
}

fn main() {
    let Some(root) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: symtab_resolve DIR");
        std::process::exit(2);
    };
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    paths.sort();

    let started = Instant::now();
    let symbols = extract_files(&paths, &ExtractOptions::default(), |_, r| r.ok());
    let extracted = started.elapsed();

    let started = Instant::now();
    let files: Vec<(String, _)> = paths
        .iter()
        .zip(symbols)
        .filter_map(|(p, s)| {
            let rel = p.strip_prefix(&root).ok()?.to_str()?.replace('\\', "/");
            Some((rel, s?))
        })
        .collect();
    let mut state = ProjectState::from_files(files);
    let stated = started.elapsed();

    let started = Instant::now();
    let (graph, stats) = resolve_incremental(None, &state);
    let resolved = started.elapsed();
    let edges: usize = graph.files.values().map(|m| m.imports.len()).sum();
    let calls: usize = graph.files.values().map(|m| m.calls.len()).sum();
    println!(
        "{} files, {} modules: extract {:.2} s, state {:.2} s, resolve {:.2} s ({:?}); {edges} internal imports, {calls} resolved calls",
        paths.len(),
        graph.modules.len(),
        extracted.as_secs_f64(),
        stated.as_secs_f64(),
        resolved.as_secs_f64(),
        stats,
    );

    // The module with the most importers, edited twice.
    let mut importers: std::collections::HashMap<&str, usize> = Default::default();
    for module in graph.files.values() {
        for import in &module.imports {
            *importers.entry(import.module.as_str()).or_default() += 1;
        }
    }
    let Some((&hub, &count)) = importers.iter().max_by_key(|(m, n)| (**n, *m)) else {
        return;
    };
    let path = graph.modules[hub].clone();
    let source = std::fs::read(root.join(&path)).unwrap_or_default();
    for (what, suffix) in [
        ("a body edit", "\n\nprint(\"edited\")\n"),
        ("a new definition", "\n\ndef __symtab_bench_new__(): pass\n"),
    ] {
        let mut edited = source.clone();
        edited.extend_from_slice(suffix.as_bytes());
        let mut next = state.clone();
        next.insert(path.clone(), hub, extract(&edited));
        let started = Instant::now();
        let (_, stats) = resolve_incremental(Some(&graph), &next);
        println!(
            "{what} to {hub} ({count} import statements name it): re-resolve {:.3} s ({stats:?})",
            started.elapsed().as_secs_f64()
        );
    }
    state.remove(&path);
}
