//! Per-file counts for the oracle check against CPython's `ast`
//! (`bench/symtab/oracle.py`), and the timing of a full extraction.
//!
//! Usage: `symtab_counts [--keep] LIST` where LIST holds one path per line.
//! Prints one JSON object per file on stdout, in LIST order:
//! `{"path": …, "classes": n, "functions": n, "imports": n, "errors": [...]}`,
//! then a summary object on stderr: files, bytes, seconds (reading and
//! extraction, on every core), peak RSS. With `--keep`, every `FileSymbols`
//! is held until the end, as a caller collecting them all would.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use py_symbols::{extract_files, ExtractOptions, FileSymbols};

fn main() {
    let mut keep = false;
    let mut profile = false;
    let mut list = None;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--keep" => keep = true,
            "--profile" => profile = true,
            _ => list = Some(arg),
        }
    }
    let Some(list) = list else {
        eprintln!("usage: symtab_counts [--keep] LIST");
        std::process::exit(2);
    };
    let paths: Vec<PathBuf> = match std::fs::read_to_string(&list) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect(),
        Err(e) => {
            eprintln!("cannot read `{list}`: {e}");
            std::process::exit(2);
        }
    };

    if profile {
        return slowest(&paths);
    }
    let started = Instant::now();
    let results = extract_files(&paths, &ExtractOptions::default(), |_, result| {
        result.map(|symbols| {
            let counts = counts(&symbols);
            (counts, keep.then_some(symbols))
        })
    });
    let seconds = started.elapsed().as_secs_f64();

    let bytes: u64 = paths
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut kept = 0usize;
    for (path, result) in paths.iter().zip(&results) {
        let line = match result {
            Ok((counts, symbols)) => {
                kept += usize::from(symbols.is_some());
                let mut c = counts.clone();
                c["path"] = path.display().to_string().into();
                c
            }
            Err(e) => {
                serde_json::json!({"path": path.display().to_string(), "read_error": e.to_string()})
            }
        };
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
    eprintln!(
        "{}",
        serde_json::json!({
            "files": paths.len(),
            "bytes": bytes,
            "seconds": seconds,
            "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "kept": kept,
            "peak_rss_kb": peak_rss_kb(),
        })
    );
}

fn counts(symbols: &FileSymbols) -> serde_json::Value {
    serde_json::json!({
        "classes": symbols.classes.len(),
        "functions": symbols.functions.len(),
        "imports": symbols.imports.len(),
        "errors": symbols.errors.iter().take(3).map(|e| e.to_string()).collect::<Vec<_>>(),
    })
}

/// VmHWM from /proc/self/status, in kB (Linux only).
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `--profile`: extract one file at a time and print the slowest on stderr.
fn slowest(paths: &[PathBuf]) {
    let mut extractor = py_symbols::Extractor::default();
    let mut times = Vec::new();
    for path in paths {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let started = Instant::now();
        let symbols = extractor.extract(&bytes);
        times.push((
            started.elapsed().as_secs_f64(),
            bytes.len(),
            symbols.errors.len(),
            path,
        ));
    }
    let total: f64 = times.iter().map(|t| t.0).sum();
    times.sort_by(|a, b| b.0.total_cmp(&a.0));
    eprintln!("total {total:.2} s on one thread");
    for (seconds, bytes, errors, path) in times.iter().take(25) {
        eprintln!(
            "{seconds:8.3} s {bytes:9} B {errors:3} errors {}",
            path.display()
        );
    }
}
