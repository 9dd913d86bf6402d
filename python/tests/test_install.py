"""The installed wheel: the `tiers` command, `python -m tiers`, `import tiers`, and
where `find_tiers_bin` looks (issue 17). `scripts/test-python` runs these in a fresh
venv with a PATH that holds no Rust toolchain, and names the wheel in `TIERS_WHEEL`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import tiers

WHEEL = os.environ.get("TIERS_WHEEL")
needs_wheel = pytest.mark.skipif(not WHEEL, reason="TIERS_WHEEL names no wheel (run scripts/test-python)")


def base_python() -> str:
    """The interpreter this venv was made from: its scripts dir holds no `tiers`."""
    return os.path.join(sys.base_prefix, "bin", f"python{sys.version_info[0]}.{sys.version_info[1]}")


def where_from(python: str, pythonpath: Path, path: str = "/usr/bin:/bin") -> subprocess.CompletedProcess[str]:
    """`tiers.find_tiers_bin()` in a fresh interpreter that imports `tiers` from `pythonpath`."""
    env = {"PYTHONPATH": str(pythonpath), "PATH": path, "HOME": os.environ.get("HOME", "/")}
    return subprocess.run(
        [python, "-s", "-c", "import tiers; print(tiers.__file__); print(tiers.find_tiers_bin())"],
        env=env,
        capture_output=True,
        text=True,
    )


def test_the_package_and_the_command_come_from_the_wheel():
    # Imported from this venv's site-packages, not from the checkout's python/ dir.
    site = Path(sysconfig.get_path("purelib"))
    assert Path(tiers.__file__).parent == site / "tiers"
    assert (site / "tiers" / "py.typed").is_file()
    exe = tiers.find_tiers_bin()
    assert exe == os.path.join(sysconfig.get_path("scripts"), "tiers")
    assert shutil.which("tiers") == exe
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("tiers ")


def test_python_dash_m_tiers_runs_the_binary(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tiers", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("tiers ")
    # Arguments and the exit code pass through: no tiers.toml is exit 2.
    out = subprocess.run([sys.executable, "-m", "tiers", "-C", str(tmp_path), "status"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "no tiers are configured" in out.stderr


@pytest.mark.skipif(os.environ.get("TIERS_TEST_NO_RUST") != "1", reason="scripts/test-python sets a PATH without cargo")
def test_the_wheel_works_without_a_rust_toolchain_on_path():
    for tool in ("cargo", "rustc", "rustup"):
        assert shutil.which(tool) is None, f"{tool} is on PATH: {os.environ['PATH']}"
    out = subprocess.run(["tiers", "--help"], capture_output=True, text=True, check=True)
    assert "content-addressed cache" in out.stdout


@needs_wheel
def test_find_tiers_bin_in_a_target_install(tmp_path):
    target = tmp_path / "target"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--target", str(target), WHEEL],
        check=True,
    )
    out = where_from(base_python(), target)
    assert out.returncode == 0, out.stderr
    package, exe = out.stdout.splitlines()
    assert Path(package).parent == target / "tiers"
    assert exe == str(target / "bin" / "tiers")


@needs_wheel
def test_find_tiers_bin_in_a_prefix_install(tmp_path):
    prefix = tmp_path / "prefix"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--ignore-installed", "--prefix", str(prefix), WHEEL],
        check=True,
    )
    site = prefix / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    out = where_from(base_python(), site)
    assert out.returncode == 0, out.stderr
    package, exe = out.stdout.splitlines()
    assert Path(package).parent == site / "tiers"
    assert exe == str(prefix / "bin" / "tiers")


def test_find_tiers_bin_falls_back_to_path_then_names_where_it_looked(tmp_path):
    # The package alone, without the binary a wheel installs beside it.
    lib = tmp_path / "lib"
    shutil.copytree(Path(tiers.__file__).parent, lib / "tiers")
    bindir = tmp_path / "bin-on-path"
    bindir.mkdir()
    (bindir / "tiers").symlink_to(tiers.find_tiers_bin())

    found = where_from(base_python(), lib, path=f"{bindir}:/usr/bin:/bin")
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines()[1] == str(bindir / "tiers")

    missing = where_from(base_python(), lib)
    assert missing.returncode == 1
    assert "TiersNotFound: cannot find the `tiers` executable; looked in:" in missing.stderr
    assert f"  - {lib / 'bin'}\n" in missing.stderr
    assert "  - PATH" in missing.stderr
