"""Projects for the tests of the `tiers` package: real files in a temp dir, built
by the `tiers` executable that the wheel installed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, Mapping

import pytest


def toml_str(value: str) -> str:
    """A TOML basic string (a JSON string is one, for the characters used here)."""
    return json.dumps(value)


def py(code: str) -> str:
    """A `run = [...]` running `code` with this interpreter."""
    return f"[{toml_str(sys.executable)}, \"-c\", {toml_str(code)}]"


# Copies a.txt into the entry and records each run in runs.log (outside the inputs).
COPY = py(
    "import os, shutil\n"
    "shutil.copy('a.txt', os.environ['TIERS_OUT'])\n"
    "open('runs.log', 'a').write(os.environ['TIERS_TIER'] + '\\n')\n"
)
# Reads a.txt only, and says so in $TIERS_DEPFILE: a change of b.txt restores its entry.
DEPFILE = py(
    "import os, shutil\n"
    "shutil.copy('a.txt', os.environ['TIERS_OUT'])\n"
    "open(os.environ['TIERS_DEPFILE'], 'w').write('a.txt\\n')\n"
)
FAIL = py("import sys\nsys.stderr.write('the analyzer crashed\\n')\nsys.exit(3)")

BASIC = f"""
[tiers.first]
kind = "command"
inputs = ["a.txt"]
run = {COPY}

[tiers.second]
kind = "command"
inputs = ["b.txt"]
run = {COPY}
after = ["first"]
"""

# A tier whose command fails, and one after it.
FAILING = f"""
[tiers.bad]
kind = "command"
inputs = ["a.txt"]
run = {FAIL}

[tiers.after-bad]
kind = "command"
inputs = ["a.txt"]
run = ["true"]
after = ["bad"]
"""


def write(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Callable[..., Path]:
    """`project(toml, **files)`: a project dir with `tiers.toml` and the files."""

    def make(toml: str = BASIC, **files: str) -> Path:
        root = tmp_path / "project"
        root.mkdir()
        files = {"a.txt": "a\n", "b.txt": "b\n", **files}
        return write(root, {"tiers.toml": toml, **files})

    return make


def runs(root: Path) -> list[str]:
    """The tiers whose command ran, in order."""
    log = root / "runs.log"
    return log.read_text().split() if log.exists() else []
