#!/usr/bin/env python3
"""Benchmark of the shared cache (issue 8): restoring a tier from a remote against
building it locally.

Corpus: the `.py` files of this interpreter's library directory
(`sysconfig.get_paths()["stdlib"]`, plus `purelib` when it lies elsewhere) — the
corpus of the input-hashing and symbol-table benchmarks — copied into a project.

The tier: the symbol table of that corpus, built by the `symtab` kind (default), or
with `--kind command` by a stand-in: `extract.py` parses every file with CPython's
`ast` on every core and writes one JSON file of its classes, functions (with
parameters and line numbers) and imports per source file.

Remotes, each started by this script on 127.0.0.1 in a temp dir: a directory
(`file://`), nginx with WebDAV (`webdav+http://`) and redis-server (`redis://`).

Measured (medians reported):

  build     `tiers build --no-remote` from an empty cache dir: the local full build
            (`--build-runs`, default 3)
  upload    `tiers build` from an empty cache dir with a read-write remote that lacks
            the entry: the build plus packing and uploading it (`--upload-runs`,
            default 1, per remote)
  restore   `tiers build` in a second checkout (another path) from an empty cache
            dir with the remote holding the entry: hashing the inputs (no stat cache
            yet), download, verify, unpack, publish (`--runs`, default 5, per remote)

Usage (from the workspace root; builds the release binary first):
  python3 bench/remote/bench.py [--runs 5] [--build-runs 3] [--upload-runs 1]
                                [--only file,webdav,redis] [--kind symtab|command]
                                [--tiers target/release/tiers]   # skip the build
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

EXTRACT = r'''"""Stand-in symbol table: per source file, its classes, functions and imports."""
import ast, json, os, sys
from concurrent.futures import ProcessPoolExecutor

def table(rel):
    src = os.path.join(os.environ["TIERS_PROJECT"], rel)
    try:
        with open(src, "rb") as f:
            tree = ast.parse(f.read())
    except (SyntaxError, ValueError) as e:
        return rel, {"error": str(e)}
    out = {"classes": [], "functions": [], "imports": []}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            out["classes"].append({"name": node.name, "line": node.lineno,
                                   "bases": [ast.unparse(b) for b in node.bases]})
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out["functions"].append({"name": node.name, "line": node.lineno,
                                     "params": [a.arg for a in node.args.args],
                                     "decorators": len(node.decorator_list)})
        elif isinstance(node, ast.Import):
            out["imports"].extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            out["imports"].append("." * node.level + (node.module or ""))
    return rel, out

def main():
    root = os.environ["TIERS_PROJECT"]
    rels = []
    for d, dirs, files in os.walk(os.path.join(root, "lib")):
        dirs.sort()
        rels.extend(os.path.relpath(os.path.join(d, f), root) for f in sorted(files) if f.endswith(".py"))
    out_root = os.environ["TIERS_OUT"]
    with ProcessPoolExecutor() as pool:
        for rel, t in pool.map(table, rels, chunksize=64):
            dest = os.path.join(out_root, rel + ".json")
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "w") as f:
                json.dump(t, f, separators=(",", ":"))
    print(f"{len(rels)} files", file=sys.stderr)

if __name__ == "__main__":
    main()
'''


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc):
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def start_nginx(work):
    d = os.path.join(work, "nginx")
    os.makedirs(os.path.join(d, "dav"))
    os.makedirs(os.path.join(d, "tmp"))
    port = free_port()
    conf = f"""daemon off; master_process off; worker_processes 1;
pid {d}/nginx.pid; error_log {d}/error.log warn;
events {{ worker_connections 64; }}
http {{ access_log off; client_body_temp_path {d}/tmp/body; proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi; uwsgi_temp_path {d}/tmp/uwsgi; scgi_temp_path {d}/tmp/scgi;
  client_max_body_size 0;
  server {{ listen 127.0.0.1:{port};
    location / {{ root {d}/dav; dav_methods PUT DELETE MKCOL COPY MOVE; create_full_put_path on; }} }} }}
"""
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    p = subprocess.Popen([nginx, "-p", d, "-c", os.path.join(d, "nginx.conf"), "-e",
                          os.path.join(d, "error.log")], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_port(port, p)
    return p, f"webdav+http://127.0.0.1:{port}/bench", os.path.join(d, "dav", "bench")


def start_redis(work):
    d = os.path.join(work, "redis")
    os.makedirs(d)
    port = free_port()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", d],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, p)
    return p, f"redis://127.0.0.1:{port}/0", d


def library_dirs():
    paths = sysconfig.get_paths()
    roots = [paths["stdlib"]]
    pure = paths["purelib"]
    if not os.path.realpath(pure).startswith(os.path.realpath(paths["stdlib"]) + os.sep):
        roots.append(pure)
    return roots


def make_project(dest, corpus, kind):
    os.makedirs(dest)
    shutil.copytree(corpus, os.path.join(dest, "lib"))
    with open(os.path.join(dest, "extract.py"), "w") as f:
        f.write(EXTRACT)
    if kind == "symtab":
        tier = '[tiers.symbols]\nkind = "symtab"\ninputs = ["lib/**/*.py"]\n'
    else:
        tier = ('[tiers.symbols]\nkind = "command"\ninputs = ["lib/**/*.py"]\n'
                'run = ["python3", "extract.py"]\n')
    with open(os.path.join(dest, "tiers.toml"), "w") as f:
        f.write("[remote]\ntimeout = 60\n\n" + tier)


def copy_corpus(work):
    corpus = os.path.join(work, "corpus")
    n = 0
    size = 0
    for root in library_dirs():
        for d, dirs, files in os.walk(root):
            dirs.sort()
            for name in files:
                if not name.endswith(".py"):
                    continue
                src = os.path.join(d, name)
                if not os.path.isfile(src):
                    continue
                rel = os.path.relpath(src, root)
                dst = os.path.join(corpus, os.path.basename(root), rel)
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copyfile(src, dst)
                n += 1
                size += os.path.getsize(dst)
    return corpus, n, size


def run_tiers(tiers, project, args, env):
    started = time.perf_counter()
    out = subprocess.run([tiers, "-C", project, *args, "--json"], env=env,
                         capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"tiers {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    report = json.loads(out.stdout)
    warnings = [l for l in out.stderr.splitlines() if "shared cache" in l]
    if warnings:
        sys.exit("unexpected warnings:\n" + "\n".join(warnings))
    return elapsed, report["tiers"][0]


def clear_cache(project):
    shutil.rmtree(os.path.join(project, ".tiers"), ignore_errors=True)


def store_size(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(d, f))
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="restores per remote")
    ap.add_argument("--build-runs", type=int, default=3, help="local builds")
    ap.add_argument("--upload-runs", type=int, default=1, help="builds with upload, per remote")
    ap.add_argument("--only", default="file,webdav,redis")
    ap.add_argument("--tiers", help="the tiers binary (default: build the release binary)")
    ap.add_argument("--kind", choices=["symtab", "command"], default="symtab")
    ap.add_argument("--work", help="keep the work dir here (default: a temp dir, removed)")
    args = ap.parse_args()

    workspace = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    tiers = args.tiers
    if not tiers:
        sh(["cargo", "build", "--release", "--bin", "tiers"], cwd=workspace)
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(workspace, "target"))
        tiers = os.path.join(target, "release", "tiers")

    work = args.work or tempfile.mkdtemp(prefix="tiers-bench-remote-")
    servers = []
    try:
        corpus, n, size = copy_corpus(work)
        print(f"corpus: {n} .py files, {size / 1e6:.1f} MB ({', '.join(library_dirs())})")
        first = os.path.join(work, "checkout-1")
        second = os.path.join(work, "elsewhere", "checkout-2")
        make_project(first, corpus, args.kind)
        make_project(second, corpus, args.kind)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIERS_")}

        builds = []
        for _ in range(args.build_runs):
            clear_cache(first)
            t, tier = run_tiers(tiers, first, ["build", "--no-remote"], env)
            assert tier["status"] == "built", tier
            builds.append(t)
        entry = tier["path"]
        files = sum(len(f) for _, _, f in os.walk(entry))
        print(f"entry: {files} files, {store_size(entry) / 1e6:.1f} MB")
        rows = [("local build (--no-remote)", statistics.median(builds), None)]

        remotes = {}
        only = args.only.split(",")
        if "file" in only:
            d = os.path.join(work, "store")
            os.makedirs(d)
            remotes["file"] = (f"file://{d}", d)
        if "webdav" in only:
            p, url, d = start_nginx(work)
            servers.append(p)
            remotes["webdav"] = (url, d)
        if "redis" in only:
            p, url, d = start_redis(work)
            servers.append(p)
            remotes["redis"] = (url, None)

        for name, (url, data_dir) in remotes.items():
            renv = dict(env, TIERS_REMOTE_URL=url)
            uploads = []
            for _ in range(args.upload_runs):
                if name == "redis":
                    sh(["redis-cli", "-p", url.split(":")[2].split("/")[0], "FLUSHALL"],
                       stdout=subprocess.DEVNULL)
                elif data_dir and os.path.isdir(data_dir):
                    for item in os.listdir(data_dir):
                        shutil.rmtree(os.path.join(data_dir, item))
                clear_cache(first)
                t, tier = run_tiers(tiers, first, ["build"], renv)
                assert tier["status"] == "built", tier
                uploads.append(t)
            packed = store_size(os.path.join(data_dir, "blobs")) if data_dir else None
            restores = []
            for _ in range(args.runs):
                clear_cache(second)
                t, tier = run_tiers(tiers, second, ["build"], renv)
                assert tier["status"] == "restored", tier
                restores.append(t)
            rows.append((f"{name}: build + upload", statistics.median(uploads), None))
            rows.append((f"{name}: restore", statistics.median(restores), packed))

        base = rows[0][1]
        print(f"\nmedians ({args.build_runs} local builds, {args.upload_runs} uploads and "
              f"{args.runs} restores per remote; {args.kind} tier over {n} source files):")
        for label, t, packed in rows:
            extra = ""
            if label.endswith("restore"):
                extra = f"   {base / t:5.1f}x faster than the local build"
            if packed:
                extra += f"  ({packed / 1e6:.1f} MB of blobs)"
            print(f"  {label:<28} {t:8.2f} s{extra}")
    finally:
        for p in servers:
            p.kill()
            p.wait()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
