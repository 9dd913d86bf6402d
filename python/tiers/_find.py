"""Where the `tiers` executable that came with this package is."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig


class TiersNotFound(FileNotFoundError):
    """No `tiers` executable in any place a wheel installs it, nor on `PATH`."""


def find_tiers_bin() -> str:
    """Return the path of the `tiers` executable installed with this package.

    Looks where pip puts a wheel's scripts: this interpreter's scripts dir (a venv
    or a system install), its base interpreter's, the prefix this package sits in
    (`pip install --prefix`), a `bin` beside the package (`pip install --target`),
    the user scripts dir (`pip install --user`); then `PATH`.
    """
    exe = "tiers" + (sysconfig.get_config_var("EXE") or "")
    package = os.path.dirname(os.path.abspath(__file__))
    targets = [
        sysconfig.get_path("scripts"),
        sysconfig.get_path("scripts", vars={"base": sys.base_prefix}),
        _prefix_scripts(package),
        # `--target DIR` puts the package in DIR/tiers and the scripts in DIR/bin.
        os.path.join(os.path.dirname(package), "bin"),
        _user_scripts(),
    ]
    seen: list[str] = []
    for target in targets:
        if not target or target in seen:
            continue
        seen.append(target)
        path = os.path.join(target, exe)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    on_path = shutil.which(exe)
    if on_path:
        return on_path
    places = "\n".join(f"  - {t}" for t in seen + ["PATH"])
    raise TiersNotFound(
        f"cannot find the `{exe}` executable; looked in:\n{places}\n"
        "hint: install the wheel (`pip install tiers`), or put `tiers` on PATH"
    )


def _prefix_scripts(package: str) -> str | None:
    """`--prefix P` installs the package in P/lib/pythonX.Y/site-packages/tiers
    (P/Lib/site-packages/tiers on Windows) and the scripts in P/bin (P/Scripts)."""
    site = os.path.dirname(package)
    if os.path.basename(site) != "site-packages":
        return None
    parent = os.path.dirname(site)
    if sys.platform == "win32":
        if os.path.basename(parent).lower() != "lib":
            return None
        return os.path.join(os.path.dirname(parent), "Scripts")
    lib = os.path.dirname(parent)
    if not os.path.basename(parent).startswith("python") or os.path.basename(lib) not in ("lib", "lib64"):
        return None
    return os.path.join(os.path.dirname(lib), "bin")


def _user_scripts() -> str | None:
    if sys.version_info >= (3, 10):
        scheme = sysconfig.get_preferred_scheme("user")
    elif os.name == "nt":
        scheme = "nt_user"
    elif sys.platform == "darwin" and getattr(sys, "_framework", None):
        scheme = "osx_framework_user"
    else:
        scheme = "posix_user"
    try:
        return sysconfig.get_path("scripts", scheme=scheme)
    except KeyError:
        return None
