"""Count lines and definitions of the project's Python files into $TIERS_OUT."""
import json
import os
import pathlib

project = pathlib.Path(os.environ["TIERS_PROJECT"])
out = pathlib.Path(os.environ["TIERS_OUT"])
counts = {}
for path in sorted(project.glob("src/**/*.py")):
    text = path.read_text()
    counts[path.relative_to(project).as_posix()] = {
        "lines": text.count("\n"),
        "defs": sum(1 for line in text.splitlines() if line.lstrip().startswith(("def ", "class "))),
    }
(out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
print(f"counted {len(counts)} files")
