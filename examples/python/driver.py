"""An analyzer driver on tiers, as an embedder such as codeanalyzer-python would write it.

The driver declares two tiers for the project it analyzes:

- `venv`: the project's virtualenv, keyed on its requirement files and interpreter,
  with the analyzer installed in it (from `requirements-dev.txt`);
- `analysis`: `tiny_analyzer` run by that venv's interpreter, keyed on the
  project's `.py` files and on the venv's key (`after = ["venv"]`).

It keeps its configuration and cache in a state dir of its own, so the analyzed
project gets no files. Every decision (what to rebuild, which entry to reuse) is
tiers'; the driver reads the outcome from `tiers.Project`.

`python driver.py [WORKDIR]` copies the sample project into WORKDIR (default: a temp
dir), writes the wheels it installs offline, and shows from Python that a `.py` edit
rebuilds the analysis and reuses the venv, that returning to an earlier source state
reuses its entry, that `eager` rebuilds the analysis only, that a dependency edit
rebuilds the venv, and that the venv and analysis paths come from `Project.paths()`.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import tiers

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from wheels import write_wheels  # noqa: E402

CONFIG = """\
# Written by the example's analyzer driver.
[tiers.venv]
kind = "{venv_kind}"
install_project = false
no_index = true
find_links = [{wheels}]

[tiers.analysis]
kind = "command"
after = ["venv"]
inputs = ["**/*.py"]
run = ["sh", "-c", "exec \\"$TIERS_PATH_VENV/bin/python\\" -m tiny_analyzer --project . --out \\"$TIERS_OUT\\""]
"""


@dataclass(frozen=True)
class Analysis:
    """One run of the driver: tiers' report, the resolved paths, the analyzer's output."""

    report: tiers.Report
    venv: Path
    output: Path
    data: dict[str, Any]

    @property
    def venv_python(self) -> Path:
        return self.venv / "bin" / "python"


class Driver:
    def __init__(self, project: Path, state: Path, *, wheels: Path) -> None:
        state.mkdir(parents=True, exist_ok=True)
        config = state / "tiers.toml"
        # uv when it is installed (as codeanalyzer-python uses it), else pip.
        venv_kind = "venv-uv" if shutil.which("uv") else "venv-pip"
        config.write_text(CONFIG.format(venv_kind=venv_kind, wheels=json.dumps(str(wheels))))
        self.tiers = tiers.Project(project, config=config, cache_dir=state / "cache")

    def analyze(self, *, eager: bool = False, rebuild: Iterable[str] = ()) -> Analysis:
        report = self.tiers.build(eager=eager, rebuild=rebuild)
        paths = self.tiers.paths()
        venv, output = paths["venv"].path, paths["analysis"].path
        assert venv is not None and output is not None, "both tiers were just built"
        data = json.loads((output / "analysis.json").read_text())
        return Analysis(report, venv, output, data)


def walkthrough(workdir: Path, say: Callable[[str], None] = print) -> dict[str, Analysis]:
    """Each acceptance criterion of the original request, checked from Python.
    Returns every step's analysis, by step name."""
    project = workdir / "project"
    shutil.copytree(HERE / "sample", project)
    write_wheels(workdir / "wheels")
    driver = Driver(project, workdir / "state", wheels=workdir / "wheels")
    steps: dict[str, Analysis] = {}
    main_py = project / "app" / "main.py"
    original = main_py.read_text()

    def step(name: str, analysis: Analysis) -> Analysis:
        steps[name] = analysis
        line = ", ".join(
            f"{t.name} {t.status}" + (f" ({'; '.join(map(str, t.reasons))})" if t.reasons else "")
            for t in analysis.report.tiers
        )
        say(f"{name}: {line}")
        return analysis

    def check(ok: bool, claim: str) -> None:
        if not ok:
            raise AssertionError(f"does not hold: {claim}")
        say(f"  ok: {claim}")

    first = step("first build", driver.analyze())
    check(first.data["imports"]["greeting"]["version"] == "1.0", "the analyzer sees greeting 1.0 in the venv")
    check(first.data["prefix"] == str(first.venv), "the analyzer ran with the venv's interpreter")

    main_py.write_text(original + "\n\ndef farewell():\n    return 'bye'\n")
    edited = step("a .py edit", driver.analyze())
    check(_status(edited, "analysis") == tiers.Status.REBUILT, "the analysis is rebuilt")
    check(_status(edited, "venv") == tiers.Status.FRESH and edited.venv == first.venv, "the venv is reused")
    check("farewell" in edited.data["modules"]["app/main.py"]["functions"], "the analysis sees the edit")

    main_py.write_text(original)
    back = step("back to the first source state", driver.analyze())
    check(
        _status(back, "analysis") == tiers.Status.FRESH and back.output == first.output,
        "the first build's analysis entry is reused",
    )

    eager = step("eager", driver.analyze(eager=True))
    check(_status(eager, "analysis") == tiers.Status.REBUILT, "eager rebuilds the analysis")
    check(_status(eager, "venv") == tiers.Status.FRESH, "eager reuses the venv")

    (project / "requirements.txt").write_text("greeting==2.0\n")
    upgraded = step("a dependency edit", driver.analyze())
    check(_status(upgraded, "venv") == tiers.Status.REBUILT, "the venv is rebuilt")
    check(_status(upgraded, "analysis") == tiers.Status.REBUILT, "the analysis, keyed on the venv, too")
    check(upgraded.data["imports"]["greeting"]["version"] == "2.0", "the analyzer sees greeting 2.0")

    paths = driver.tiers.paths()
    say(f"paths: venv {paths['venv'].path}, analysis {paths['analysis'].path}")
    check(
        paths["venv"].path == upgraded.report["venv"].path and paths["venv"].path is not None
        and (paths["venv"].path / "bin" / "python").exists(),
        "Project.paths() gives the venv (its bin/python runs the analyzer)",
    )
    check(
        paths["analysis"].path == upgraded.report["analysis"].path and paths["analysis"].path is not None
        and (paths["analysis"].path / "analysis.json").exists(),
        "Project.paths() gives the analysis (its analysis.json is the output)",
    )
    return steps


def _status(analysis: Analysis, tier: str) -> tiers.Status:
    return analysis.report[tier].status


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        walkthrough(Path(argv[1]).resolve())
        return 0
    with tempfile.TemporaryDirectory(prefix="tiers-example-") as tmp:
        walkthrough(Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
