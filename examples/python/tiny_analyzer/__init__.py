"""A tiny Python analyzer, run inside the analyzed project's venv.

For each module of the project: its functions, classes and imports; for each
imported top-level module, whether it resolves in the interpreter running the
analyzer (the project's venv) and which distribution version provides it. That
last part is why an analyzer like this needs the project's venv, and why its
output changes when the dependencies do.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import os
import sys
from pathlib import Path

VERSION = "0.1.0"
SKIP_DIRS = {".git", "__pycache__", ".tiers"}


def modules(project: Path):
    for dirpath, dirnames, filenames in os.walk(project):
        here = Path(dirpath)
        # Never descend into a venv or a hidden or cache directory.
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in SKIP_DIRS and not d.startswith(".") and not (here / d / "pyvenv.cfg").exists()
        )
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield here / name


def analyze_module(path: Path) -> dict:
    tree = ast.parse(path.read_bytes(), filename=str(path))
    functions, classes, imports = [], [], []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions.append(node.name)
        elif isinstance(node, ast.ClassDef):
            classes.append(node.name)
        elif isinstance(node, ast.Import):
            imports.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imports.append(node.module)
    return {"functions": sorted(functions), "classes": sorted(classes), "imports": sorted(set(imports))}


def resolve(module: str, local: set[str]) -> dict:
    top = module.split(".")[0]
    if top in local:
        return {"resolved": True, "where": "project"}
    if top in getattr(sys, "stdlib_module_names", ()):
        return {"resolved": True, "where": "stdlib"}
    spec = importlib.util.find_spec(top)
    if spec is None:
        return {"resolved": False}
    try:
        version = importlib.metadata.version(top)
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"resolved": True, "where": "site-packages", "version": version, "origin": spec.origin}


def analyze(project: Path) -> dict:
    result = {
        "analyzer": f"tiny-analyzer {VERSION}",
        "python": sys.executable,
        "prefix": sys.prefix,
        "modules": {},
        "imports": {},
    }
    for path in modules(project):
        rel = path.relative_to(project).as_posix()
        result["modules"][rel] = analyze_module(path)
    # The project's own top-level modules and packages.
    local = {rel.split("/")[0] if "/" in rel else Path(rel).stem for rel in result["modules"]}
    wanted = sorted({m for mod in result["modules"].values() for m in mod["imports"]})
    result["imports"] = {m: resolve(m, local) for m in wanted}
    return result


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="tiny-analyzer")
    parser.add_argument("--project", default=".")
    parser.add_argument("--out", required=True, help="directory to write analysis.json into")
    args = parser.parse_args(argv)
    result = analyze(Path(args.project).resolve())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "analysis.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"analyzed {len(result['modules'])} modules", file=sys.stderr)
    return 0
