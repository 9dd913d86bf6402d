#!/usr/bin/env python3
"""Benchmark of the input layer: `tiers status` against `sha256sum` and `git status`.

Corpora (generated once under --work, reused while their recipe is unchanged):

  synthetic-1k, -10k, -100k   generated Python packages (25 modules a directory,
                              sizes log-normal around 3 KB)
  pylib                       a copy of the `.py` files of this interpreter's library
                              directory, `sysconfig.get_paths()["stdlib"]` (standard
                              library and installed packages, plus `purelib` when it
                              lies elsewhere): only `.py` files are copied, so tiers,
                              git and sha256sum all see the same files

Each corpus has one `command` tier (`inputs = ["**/*.py"]`, `run = ["true"]`), is
committed to a git repository and built once. Then, each measured `--runs` times
(medians reported, with the ratios):

  cold   `tiers status` with the stat cache deleted, against `sha256sum` over the same
         files (listed beforehand, fed through `xargs -0`); both read from the page
         cache, so this compares hashing and walking, not the disk
  warm   no-op `tiers status` against `git status --porcelain`, both warmed up first
  edit   `tiers status` after one file's content changed (git status alongside)
  rss    peak resident memory of the warm and edit tiers runs (from wait4)

The two sides of each comparison run alternately, so load that comes and goes on a
shared machine hits both alike; CPU times (user+sys) are printed as well.

Usage (from the workspace root; builds the release binary first):
  python3 bench/inputs/bench.py [--runs 10] [--work DIR] [--only pylib,synthetic-10k]
  python3 bench/inputs/bench.py --tiers target/release/tiers   # skip the build
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

RECIPE = "2"  # bump when generation changes: corpora are then regenerated
SYNTHETIC = {"synthetic-1k": 1_000, "synthetic-10k": 10_000, "synthetic-100k": 100_000}
TIERS_TOML = """[tiers.src]
kind = "command"
inputs = ["**/*.py"]
run = ["true"]
"""
# Settle time after writing files: tiers' stat cache vouches only for files older than
# 2 s at the previous write (its racy guard); git has a similar rule.
SETTLE = 2.5


def sh(args, cwd=None, **kw):
    return subprocess.run(args, cwd=cwd, check=True, **kw)


def timed(args, cwd=None, stdin=None):
    """(wall seconds, peak RSS in MB, CPU seconds) of one run; output discarded,
    failure fatal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERS_")}
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            args, cwd=cwd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=err, env=env
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            msg = err.read().decode(errors="replace")
            sys.exit(f"`{' '.join(map(str, args))}` failed ({proc.returncode}): {msg}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def pair(runs, a, b):
    """Run `a` and `b` alternately (who goes first alternates too), so load that comes
    and goes on a shared machine hits both alike. Medians of wall and CPU time, and
    the peak RSS of `a`."""
    res = {"a": [], "b": []}
    for k in range(runs):
        order = [("a", a), ("b", b)] if k % 2 == 0 else [("b", b), ("a", a)]
        for name, fn in order:
            res[name].append(fn())
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    return {
        "a": med(res["a"], 0),
        "b": med(res["b"], 0),
        "a_cpu": med(res["a"], 2),
        "b_cpu": med(res["b"], 2),
        "a_rss": max(x[1] for x in res["a"]),
    }


# ---------------------------------------------------------------------- corpora


def module_text(rng, size):
    parts = [f'"""Module {rng.randrange(1 << 30):x}."""\n\nimport os\nimport sys\n\n']
    n = 0
    while sum(map(len, parts)) < size:
        n += 1
        parts.append(
            f"def function_{n}(value, scale={rng.randrange(100)}):\n"
            f'    """Scale and shift {n}."""\n'
            f"    result = value * scale + {rng.randrange(1 << 20)}\n"
            f"    if result > {rng.randrange(1000)}:\n"
            f"        return os.path.join(str(result), {str(rng.random())!r})\n"
            f"    return sys.intern(str(result))\n\n\n"
        )
    return "".join(parts)


def generate_synthetic(root, count):
    rng = random.Random(count)
    per_dir = 25
    for i in range(count):
        d, k = divmod(i, per_dir)
        rel = os.path.join("src", f"pkg{d // 50:03d}", f"sub{d % 50:02d}")
        name = "__init__.py" if k == 0 else f"mod{k:02d}.py"
        size = min(64 * 1024, int(rng.lognormvariate(8.0, 0.8)))  # median ~3 KB
        path = os.path.join(root, rel, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(module_text(rng, size))
    with open(os.path.join(root, "README.md"), "w") as f:
        f.write(f"A synthetic project of {count} Python files.\n")


def library_roots():
    paths = sysconfig.get_paths()
    roots = [paths["stdlib"]]
    pure = paths["purelib"]
    if not os.path.realpath(pure).startswith(os.path.realpath(paths["stdlib"]) + os.sep):
        roots.append(pure)
    return roots


def copy_library(root):
    for i, src in enumerate(library_roots()):
        dest_root = os.path.join(root, f"lib{i}")
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in filenames:
                if not name.endswith(".py"):
                    continue
                s = os.path.join(dirpath, name)
                if not os.path.isfile(s):
                    continue
                d = os.path.join(dest_root, os.path.relpath(s, src))
                os.makedirs(os.path.dirname(d), exist_ok=True)
                shutil.copyfile(s, d)


def prepare(work, name, tiers):
    """The corpus `name`, generated, committed and built; reused when ready."""
    root = os.path.join(work, name)
    ready = os.path.join(work, f"{name}.ready")
    recipe = f"{RECIPE} {' '.join(library_roots()) if name == 'pylib' else SYNTHETIC[name]}"
    if os.path.exists(ready) and open(ready).read() == recipe:
        return root
    print(f"[{name}] generating under {root} ...", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    if name == "pylib":
        copy_library(root)
    else:
        generate_synthetic(root, SYNTHETIC[name])
    with open(os.path.join(root, "tiers.toml"), "w") as f:
        f.write(TIERS_TOML)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    sh(git + ["init", "-q"], cwd=root)
    sh(git + ["add", "-A"], cwd=root)
    sh(git + ["commit", "-q", "-m", "corpus"], cwd=root)
    sh([tiers, "-q", "build"], cwd=root, stdout=subprocess.DEVNULL)
    with open(ready, "w") as f:
        f.write(recipe)
    return root


def input_files(root):
    """The files tiers hashes (`**/*.py` outside `.git` and the cache dir)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", ".tiers", "__pycache__"))
        out.extend(os.path.join(dirpath, n) for n in sorted(filenames) if n.endswith(".py"))
    return out


# ---------------------------------------------------------------------- measuring


def measure(root, tiers, runs):
    files = input_files(root)
    mb = sum(os.path.getsize(f) for f in files) / 1e6
    listing = os.path.join(root, ".git", "bench-files")
    with open(listing, "wb") as f:
        f.write(b"\0".join(os.path.relpath(p, root).encode() for p in files) + b"\0")
    state = os.path.join(root, ".tiers", ".state")
    status = [tiers, "-q", "status"]

    def cold_tiers():
        shutil.rmtree(state, ignore_errors=True)
        return timed(status, cwd=root)

    def sha256sum():
        with open(listing, "rb") as stdin:
            return timed(["xargs", "-0", "sha256sum"], cwd=root, stdin=stdin)

    git_status = ["git", "status", "--porcelain"]
    # One untimed round of each, so both sides start from the page cache.
    sha256sum()
    cold_tiers()
    r = {"files": len(files), "mb": mb}
    p = pair(runs, cold_tiers, sha256sum)
    r["cold"], r["sha256sum"], r["cold_cpu"], r["sha256sum_cpu"], r["cold_rss"] = (
        p["a"], p["b"], p["a_cpu"], p["b_cpu"], p["a_rss"])

    time.sleep(SETTLE)
    for _ in range(3):  # racy records re-verified, git's index refreshed
        timed(status, cwd=root)
        timed(git_status, cwd=root)
    p = pair(runs, lambda: timed(status, cwd=root), lambda: timed(git_status, cwd=root))
    r["warm"], r["git"], r["warm_cpu"], r["git_cpu"], r["warm_rss"] = (
        p["a"], p["b"], p["a_cpu"], p["b_cpu"], p["a_rss"])
    r["warm_reads"] = warm_reads(tiers, root)

    victim = files[len(files) // 2]
    original = open(victim, "rb").read()
    edits = iter(range(10**9))

    def edit_then(cmd):
        def run():
            with open(victim, "wb") as f:
                f.write(original + f"# edit {next(edits)}\n".encode())
            return timed(cmd, cwd=root)
        return run

    try:
        p = pair(runs, edit_then(status), edit_then(git_status))
    finally:
        with open(victim, "wb") as f:
            f.write(original)
        timed(status, cwd=root)
        timed(git_status, cwd=root)
    r["edit"], r["edit_git"], r["edit_rss"] = p["a"], p["b"], p["a_rss"]
    return r


def warm_reads(tiers, root):
    """The stats line of a warm `tiers -v status`: how many files it read."""
    out = subprocess.run(
        [tiers, "-v", "status"], cwd=root, capture_output=True, text=True, check=True
    )
    for line in out.stderr.splitlines():
        if "files walked" in line:
            return line.split("inputs: ", 1)[-1].strip()
    return "(no stats line: build with the stat-cache input layer)"


def ms(s):
    return f"{s * 1000:8.1f} ms"


def report(results):
    print()
    head = (
        f"{'corpus':<15} {'files':>7} {'MB':>5} | {'cold tiers':>10} {'sha256sum':>10} {'ratio':>5} |"
        f" {'warm tiers':>10} {'git status':>10} {'ratio':>5} | {'1-edit':>10} {'git':>10} |"
        f" {'peak RSS':>8} | {'warm/file':>9}"
    )
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        print(
            f"{name:<15} {r['files']:>7} {r['mb']:>5.0f} | {ms(r['cold']):>10} {ms(r['sha256sum']):>10}"
            f" {r['cold'] / r['sha256sum']:>5.2f} | {ms(r['warm']):>10} {ms(r['git']):>10}"
            f" {r['warm'] / r['git']:>5.2f} | {ms(r['edit']):>10} {ms(r['edit_git']):>10} |"
            f" {max(r['warm_rss'], r['edit_rss']):>6.0f}MB | {r['warm'] / r['files'] * 1e6:>7.2f}us"
        )
    print()
    print("CPU time (user+sys), medians:")
    for name, r in results.items():
        print(
            f"{name:<15} cold {ms(r['cold_cpu'])} vs sha256sum {ms(r['sha256sum_cpu'])};"
            f" warm {ms(r['warm_cpu'])} vs git {ms(r['git_cpu'])};"
            f" cold peak RSS {r['cold_rss']:.0f}MB"
        )
    print()
    for name, r in results.items():
        print(f"{name}: warm run: {r['warm_reads']}")
    print()
    checks = []
    if "pylib" in results:
        p = results["pylib"]
        checks.append(("pylib: warm <= 1.5 x git status", p["warm"] / p["git"], 1.5))
        checks.append(("pylib: cold <= 0.5 x sha256sum", p["cold"] / p["sha256sum"], 0.5))
    if "synthetic-10k" in results and "synthetic-100k" in results:
        a, b = results["synthetic-10k"], results["synthetic-100k"]
        per = (b["warm"] / b["files"]) / (a["warm"] / a["files"])
        checks.append(("100k warm time per file <= 1.5 x 10k's", per, 1.5))
    if "synthetic-100k" in results:
        r = results["synthetic-100k"]
        checks.append(("100k warm peak RSS <= 200 MB", max(r["warm_rss"], r["edit_rss"]), 200))
    for what, value, limit in checks:
        print(f"{'ok  ' if value <= limit else 'FAIL'} {what}: {value:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="timed runs per measurement (median)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "tiers-bench-inputs"))
    ap.add_argument("--only", help="comma-separated corpora (default: all)")
    ap.add_argument("--tiers", help="the tiers binary (default: build the release binary)")
    args = ap.parse_args()

    tiers = args.tiers
    if not tiers:
        sh(["cargo", "build", "--release", "--bin", "tiers"])
        target = os.environ.get("CARGO_TARGET_DIR", "target")
        tiers = os.path.join(target, "release", "tiers")
    tiers = os.path.abspath(tiers)
    for tool in ("git", "sha256sum", "xargs"):
        if not shutil.which(tool):
            sys.exit(f"`{tool}` is needed on PATH")

    names = ["pylib", *SYNTHETIC]
    if args.only:
        names = [n for n in args.only.split(",") if n]
        for n in names:
            if n != "pylib" and n not in SYNTHETIC:
                sys.exit(f"unknown corpus `{n}` (known: pylib, {', '.join(SYNTHETIC)})")
    os.makedirs(args.work, exist_ok=True)
    print(f"tiers: {tiers}\ncpus: {os.cpu_count()}\nruns: {args.runs} (medians)")
    results = {}
    for name in names:
        root = prepare(args.work, name, tiers)
        print(f"[{name}] measuring ...", flush=True)
        results[name] = measure(root, tiers, args.runs)
    report(results)


if __name__ == "__main__":
    main()
