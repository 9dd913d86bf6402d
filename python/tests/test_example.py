"""The embedders' example (examples/python) end to end: a venv tier with the analyzer
installed from local wheels, an analysis tier after it, driven from Python."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from tiers import Status

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "python"


def load_driver():
    spec = importlib.util.spec_from_file_location("example_driver", EXAMPLE / "driver.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def statuses(analysis):
    return {t.name: t.status for t in analysis.report.tiers}


def test_the_example_driver_meets_each_criterion(tmp_path):
    said = []
    steps = load_driver().walkthrough(tmp_path, say=said.append)
    first = steps["first build"]
    assert statuses(first) == {"venv": Status.BUILT, "analysis": Status.BUILT}
    assert first.data["imports"]["greeting"] == {
        "resolved": True,
        "where": "site-packages",
        "version": "1.0",
        "origin": str(first.venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
                      / "site-packages" / "greeting" / "__init__.py"),
    }
    assert first.data["modules"]["app/util.py"]["functions"] == ["title"]
    # The analyzer ran from the venv tiers built, not from this test's interpreter.
    assert first.data["python"] == str(first.venv_python)

    edited = steps["a .py edit"]
    assert statuses(edited) == {"venv": Status.FRESH, "analysis": Status.REBUILT}
    assert [(r.kind, dict(r.fields)) for r in edited.report["analysis"].reasons] == [
        ("input-changed", {"path": "app/main.py"})
    ]
    assert edited.venv == first.venv and edited.output != first.output

    back = steps["back to the first source state"]
    assert statuses(back) == {"venv": Status.FRESH, "analysis": Status.FRESH}
    assert back.report["analysis"].key == first.report["analysis"].key
    assert back.output == first.output

    eager = steps["eager"]
    assert statuses(eager) == {"venv": Status.FRESH, "analysis": Status.REBUILT}
    assert [r.kind for r in eager.report["analysis"].reasons] == ["forced"]

    upgraded = steps["a dependency edit"]
    assert statuses(upgraded) == {"venv": Status.REBUILT, "analysis": Status.REBUILT}
    assert [(r.kind, dict(r.fields)) for r in upgraded.report["venv"].reasons] == [
        (
            "option-changed",
            {"name": "requirements.txt: requirements", "old": ["greeting==1.0"], "new": ["greeting==2.0"]},
        ),
        ("input-changed", {"path": "requirements.txt"}),
    ]
    assert [(r.kind, dict(r.fields)) for r in upgraded.report["analysis"].reasons] == [
        ("upstream-changed", {"tier": "venv"})
    ]
    assert upgraded.venv != first.venv
    assert upgraded.data["imports"]["greeting"]["version"] == "2.0"
    assert upgraded.data["prefix"] == str(upgraded.venv)
    assert sum(line.startswith("  ok: ") for line in said) == 13

    # The analyzed project got no files from the driver: its state is elsewhere.
    project = tmp_path / "project"
    assert not (project / ".tiers").exists() and not (project / "tiers.toml").exists()


def test_the_example_runs_as_a_script(tmp_path):
    out = subprocess.run(
        [sys.executable, str(EXAMPLE / "driver.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert out.returncode == 0, out.stderr
    assert (
        "a dependency edit: venv rebuilt (the option `requirements.txt: requirements` changed"
        ' from ["greeting==1.0"] to ["greeting==2.0"]; the input `requirements.txt` changed)'
    ) in out.stdout
    assert "does not hold" not in out.stdout
