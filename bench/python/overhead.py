"""What the Python API costs per call: `Project.status()` against running
`tiers status --json` directly (the same binary, from the same interpreter), on a
small project with one `command` tier that is fresh. Medians of alternating runs.

    python bench/python/overhead.py [--runs 20] [--wheel tiers-….whl]

Run it with the interpreter of a venv where the wheel is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tiers
from tiers._api import _parse_report


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--wheel", type=Path, help="also print this wheel's size")
    args = parser.parse_args()

    exe = tiers.find_tiers_bin()
    with tempfile.TemporaryDirectory(prefix="tiers-bench-") as tmp:
        root = Path(tmp)
        for i in range(20):
            (root / "src" / f"m{i}.py").parent.mkdir(exist_ok=True)
            (root / "src" / f"m{i}.py").write_text(f"def f{i}():\n    return {i}\n")
        (root / "tiers.toml").write_text(
            '[tiers.lint]\nkind = "command"\ninputs = ["src/**/*.py"]\nrun = ["true"]\n'
        )
        project = tiers.Project(root)
        project.build()
        direct, api = [], []
        argv = [exe, "-C", str(root), "status", "--json"]
        subprocess.run(argv, capture_output=True, check=True)  # warm-up, not timed
        project.status()
        def run_direct() -> None:
            t = time.perf_counter()
            out = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=True)
            direct.append(time.perf_counter() - t)
            assert b'"fresh"' in out.stdout

        def run_api() -> None:
            t = time.perf_counter()
            report = project.status()
            api.append(time.perf_counter() - t)
            assert report["lint"].status is tiers.Status.FRESH

        # Alternating, each first in every other pair, so neither gains from order.
        for i in range(args.runs):
            for run in (run_direct, run_api) if i % 2 == 0 else (run_api, run_direct):
                run()
        # The package's own work, without the process: parse the JSON into dataclasses.
        stdout = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        parse = []
        for _ in range(args.runs):
            t = time.perf_counter()
            _parse_report(json.loads(stdout))
            parse.append(time.perf_counter() - t)

    d, a = statistics.median(direct), statistics.median(api)
    print(f"binary: {exe} ({os.path.getsize(exe) / 1e6:.1f} MB)")
    if args.wheel:
        print(f"wheel: {args.wheel.name} {args.wheel.stat().st_size / 1e6:.1f} MB")
    print(f"python {sys.version.split()[0]}, median of {args.runs} alternating runs")
    print(f"tiers status --json (subprocess.run): {d * 1e3:.2f} ms")
    print(f"Project.status():                     {a * 1e3:.2f} ms")
    print(f"overhead per call:                    {(a - d) * 1e3:.2f} ms ({a / d:.2f}x)")
    print(f"parsing the report (in-process):      {statistics.median(parse) * 1e6:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
