"""Benchmark of the venv tiers (issue 3). Not a test: it prints medians and ratios.

1. The warm check: `tiers status venv-uv` on a built venv tier, against the process
   start of `tiers --version`. The difference is the check's own work (target: under
   10 ms): walking the project, hashing the manifests through the stat cache, reading
   the probed identities of the interpreter and of uv, and the venv's health check.
2. A rebuild (`tiers build --rebuild T`) of the same requirements with uv and with pip.

The project has a few real dependencies. Their wheels are downloaded once into a
wheelhouse (the only network use), and both backends install from it with
`--no-index --find-links`, so the rebuild figures compare installers, not the network.

    bench/venv/run.sh              # builds tiers --release, then runs this
    python3 bench/venv/bench.py --tiers target/release/tiers [--runs 21]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REQUIREMENTS = """\
attrs==25.3.0
packaging==25.0
idna==3.10
six==1.17.0
typing_extensions==4.14.1
"""

TIERS_TOML = """\
[tiers.venv-uv]
kind = "venv-uv"
find_links = ["wheels"]
no_index = true

[tiers.venv-pip]
kind = "venv-pip"
find_links = ["wheels"]
no_index = true
"""


def timed(cmd, cwd, check=True):
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if check and done.returncode != 0:
        sys.exit("failed: %s\n%s%s" % (" ".join(cmd), done.stdout.decode(), done.stderr.decode()))
    return elapsed, done


def median_of(runs, cmd, cwd):
    return statistics.median(timed(cmd, cwd)[0] for _ in range(runs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiers", required=True, help="the tiers binary (a release build)")
    ap.add_argument("--runs", type=int, default=21, help="runs of each fast command")
    ap.add_argument("--rebuilds", type=int, default=5, help="runs of each rebuild")
    ap.add_argument("--keep", action="store_true", help="keep the project dir")
    args = ap.parse_args()
    tiers = os.path.abspath(args.tiers)
    for tool in ("uv", "python3"):
        if shutil.which(tool) is None:
            sys.exit("%s is not on PATH (source scripts/ensure-tools)" % tool)

    root = tempfile.mkdtemp(prefix="tiers-venv-bench-")
    try:
        with open(os.path.join(root, "requirements.txt"), "w") as f:
            f.write(REQUIREMENTS)
        with open(os.path.join(root, "tiers.toml"), "w") as f:
            f.write(TIERS_TOML)
        os.makedirs(os.path.join(root, "src"))
        for i in range(50):
            with open(os.path.join(root, "src", "m%02d.py" % i), "w") as f:
                f.write("def f%d():\n    return %d\n" % (i, i))
        print("downloading the wheels of %d requirements once..." % len(REQUIREMENTS.splitlines()))
        timed([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:",
               "-d", "wheels", "-r", "requirements.txt"], root)

        first, _ = timed([tiers, "build", "--json"], root)
        print("first build of both tiers: %.2f s" % first)

        base = median_of(args.runs, [tiers, "--version"], root)
        warm = median_of(args.runs, [tiers, "status", "venv-uv"], root)
        print()
        print("warm check, median of %d runs:" % args.runs)
        print("  tiers --version          %7.2f ms  (process start)" % (base * 1e3))
        print("  tiers status venv-uv     %7.2f ms" % (warm * 1e3))
        print("  work beyond start        %7.2f ms  (target: under 10 ms)" % ((warm - base) * 1e3))

        uv = median_of(args.rebuilds, [tiers, "build", "venv-uv", "--rebuild", "venv-uv"], root)
        pip = median_of(args.rebuilds, [tiers, "build", "venv-pip", "--rebuild", "venv-pip"], root)
        print()
        print("rebuild of the same requirements, median of %d runs:" % args.rebuilds)
        print("  uv                       %7.2f s" % uv)
        print("  pip                      %7.2f s" % pip)
        print("  pip / uv                 %7.1f x" % (pip / uv))
    finally:
        if args.keep:
            print("project kept at", root)
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
