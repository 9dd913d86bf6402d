#!/usr/bin/env python3
"""Oracle check of the symtab extractor against CPython's `ast` (stdlib only).

For every `.py` file under the interpreter's stdlib and site-packages
(`sysconfig.get_paths()["stdlib"]` and `["purelib"]`, deduplicated by real
path) that `ast` parses, compare per-file counts:

  classes     ClassDef at any depth
  functions   FunctionDef + AsyncFunctionDef at any depth
  imports     Import + ImportFrom at any depth

with those of the Rust extractor (`crates/py-symbols/examples/symtab_counts.rs`),
then print the agreement, the first disagreements, and the Rust side's time
(reading + extraction on every core) and peak RSS.

Usage (from the workspace root):
  cargo build --release -p py-symbols --example symtab_counts
  python3 bench/symtab/oracle.py [--bin PATH] [--keep] [--show N] [--roots DIR...]
"""

import argparse
import ast
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import sysconfig
import tempfile
import time
import warnings


def python_files(roots):
    seen = set()
    files = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                real = os.path.realpath(path)
                if real in seen or not os.path.isfile(real):
                    continue
                seen.add(real)
                files.append(path)
    return files


def ast_counts(path):
    try:
        with open(path, "rb") as f:
            source = f.read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError, RecursionError, MemoryError, OSError):
        return path, None
    classes = functions = imports = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            classes += 1
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions += 1
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imports += 1
    return path, {"classes": classes, "functions": functions, "imports": imports}


def default_bin():
    here = os.path.dirname(os.path.abspath(__file__))
    workspace = os.path.dirname(os.path.dirname(here))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(workspace, "target"))
    return os.path.join(target, "release", "examples", "symtab_counts")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=default_bin(), help="the symtab_counts binary")
    parser.add_argument("--keep", action="store_true", help="hold every FileSymbols until the end")
    parser.add_argument("--show", type=int, default=10, help="disagreements to print")
    parser.add_argument("--roots", nargs="*", help="directories to scan instead of stdlib + purelib")
    args = parser.parse_args()

    paths = sysconfig.get_paths()
    roots = args.roots or [paths["stdlib"], paths["purelib"]]
    files = python_files(roots)
    total_bytes = sum(os.path.getsize(p) for p in files)
    print(f"corpus: {len(files)} files, {total_bytes / 1e6:.1f} MB under {', '.join(roots)}")

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as listing:
        listing.write("\n".join(files) + "\n")
    try:
        command = [args.bin] + (["--keep"] if args.keep else []) + [listing.name]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        run = subprocess.run(command, capture_output=True, text=True)
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    finally:
        os.unlink(listing.name)
    if run.returncode != 0:
        sys.exit(f"{args.bin} failed ({run.returncode}):\n{run.stderr}")
    rust = {}
    for line in run.stdout.splitlines():
        record = json.loads(line)
        rust[record["path"]] = record
    summary = json.loads(run.stderr.strip().splitlines()[-1])

    started = time.monotonic()
    with multiprocessing.Pool() as pool:
        oracle = dict(pool.imap_unordered(ast_counts, files, chunksize=16))
    ast_seconds = time.monotonic() - started

    keys = ("classes", "functions", "imports")
    compared = agreed = 0
    disagreements = []
    for path in files:
        expected = oracle.get(path)
        if expected is None:
            continue
        compared += 1
        got = rust.get(path, {})
        if all(got.get(k) == expected[k] for k in keys):
            agreed += 1
        else:
            disagreements.append((path, expected, got))

    skipped = len(files) - compared
    print(f"compared: {compared} files that ast parses ({skipped} it rejects were extracted but not compared)")
    print(f"agreement: {agreed}/{compared} = {100.0 * agreed / max(compared, 1):.3f}%")
    for path, expected, got in disagreements[: args.show]:
        diff = ", ".join(f"{k} ast={expected[k]} symtab={got.get(k)}" for k in keys if got.get(k) != expected[k])
        errors = "; ".join(got.get("errors", [])) or got.get("read_error", "")
        print(f"  {path}: {diff}" + (f"  [{errors}]" if errors else ""))
    rss = summary.get("peak_rss_kb")
    print(
        f"symtab: {summary['files']} files, {summary['bytes'] / 1e6:.1f} MB read and extracted in "
        f"{summary['seconds']:.2f} s on {summary['threads']} threads "
        f"(process wall {wall:.2f} s, CPU {cpu:.2f} s), peak RSS {rss / 1024 if rss else float('nan'):.0f} MiB"
        + (" holding every result" if args.keep else "")
    )
    print(f"ast: {ast_seconds:.2f} s on {os.cpu_count()} processes")


if __name__ == "__main__":
    main()
