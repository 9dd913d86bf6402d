"""Writes the wheels the example installs offline: `tiny-analyzer` from the sources
beside this file, and two versions of `greeting`, the sample project's dependency.
A wheel is a zip with METADATA, WHEEL and RECORD; no build tool or index is needed."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def write_wheel(outdir: Path, name: str, version: str, files: dict[str, bytes]) -> Path:
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    files = dict(files)
    files[f"{dist}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files[f"{dist}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: tiers-example\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    lines = [_record_line(p, d) for p, d in files.items()] + [f"{dist}/RECORD,,"]
    files[f"{dist}/RECORD"] = ("\n".join(lines) + "\n").encode()
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, d in files.items():
            z.writestr(zipfile.ZipInfo(p, date_time=(2020, 1, 1, 0, 0, 0)), d)
    return path


def write_wheels(outdir: Path) -> list[Path]:
    analyzer = {
        f"tiny_analyzer/{f.name}": f.read_bytes() for f in sorted((HERE / "tiny_analyzer").glob("*.py"))
    }
    written = [write_wheel(outdir, "tiny-analyzer", "0.1.0", analyzer)]
    for version in ("1.0", "2.0"):
        greeting = (
            f'VERSION = "{version}"\n\n\ndef greet(name):\n    return "hello, " + name\n'
        ).encode()
        written.append(write_wheel(outdir, "greeting", version, {"greeting/__init__.py": greeting}))
    return written


if __name__ == "__main__":
    import sys

    for path in write_wheels(Path(sys.argv[1] if len(sys.argv) > 1 else "wheels")):
        print(path)
