"""Summarize the `count` tier's output (found through TIERS_PATH_COUNT)."""
import json
import os
import pathlib

counts = json.loads((pathlib.Path(os.environ["TIERS_PATH_COUNT"]) / "counts.json").read_text())
out = pathlib.Path(os.environ["TIERS_OUT"])
lines = sum(c["lines"] for c in counts.values())
defs = sum(c["defs"] for c in counts.values())
(out / "report.txt").write_text(f"{len(counts)} files, {lines} lines, {defs} definitions\n")
