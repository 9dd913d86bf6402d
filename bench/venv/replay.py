"""Replay of a project's history (issue 18): venv builds under `key = "bytes"` and
under the dependency key, for the same commits. Not a test: it prints counts.

The history is generated, offline: a uv project (`pyproject.toml` + `uv.lock`, the
project installed editable by an in-tree build backend) and a few dozen commits of
the edits a real project's manifests see — linter, formatter and test-runner
settings, comments, metadata, version bumps (re-locked, so `uv.lock`'s root entry
changes too), and dependency changes (re-locked). Wheels are made locally; uv
installs from them with `--no-index --find-links`.

Each commit is checked out and `tiers build --json` runs two venv-uv tiers that
differ only in `key`. A build is `built` or `rebuilt`; with the dependency key, a
rebuild whose only reason is the project's own metadata (`[project] version`) is
counted apart: the engine turns it into a project-alone re-install
(`Tier::update_in_place`). The seconds each tier took are summed.

    python3 bench/venv/replay.py --tiers target/release/tiers [--keep]
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
WHEELS_RS = os.path.join(HERE, "..", "..", "tests", "support", "wheels.rs")

TIERS_TOML = """\
[tiers.bytes]
kind = "venv-uv"
key = "bytes"
find_links = ["../wheels"]
no_index = true

[tiers.deps]
kind = "venv-uv"
find_links = ["../wheels"]
no_index = true
"""

PYPROJECT = """\
[build-system]
requires = []
build-backend = "tiny_backend"
backend-path = ["_backend"]

[project]
name = "replayed"
version = "0.1.0"
description = "A project whose history is replayed"
requires-python = ">=3.8"
dependencies = [
    "tinya>=1",
]

[dependency-groups]
dev = ["tinyb"]

[tool.ruff]
line-length = 88

[tool.ruff.lint]
select = ["E", "F"]

[tool.pytest.ini_options]
addopts = "-q"
testpaths = ["tests"]

[tool.coverage.run]
branch = true
"""

WHEELS = [
    ("tinya", "1.0", []),
    ("tinya", "1.1", []),
    ("tinya", "2.0", []),
    ("tinyb", "1.0", ["tinya>=1"]),
    ("tinyc", "1.0", []),
    ("tinyd", "1.0", []),
    ("tinye", "1.0", []),
]


def sub(old, new, count=1):
    """An edit replacing `old` by `new` in pyproject.toml."""

    def edit(text):
        if old not in text:
            sys.exit("the replay's edit does not apply: %r" % old)
        return text.replace(old, new, count)

    return edit


def bump(text):
    """The next patch version."""
    m = re.search(r'^version = "(\d+)\.(\d+)\.(\d+)"$', text, re.M)
    new = '%s.%s.%d' % (m.group(1), m.group(2), int(m.group(3)) + 1)
    return text[: m.start()] + 'version = "%s"' % new + text[m.end():]


def append(block):
    return lambda text: text + block


# (subject, edit of pyproject.toml, re-lock?) — the mix of a library's manifest
# history: mostly tool settings and metadata, some releases, few dependency changes.
EDITS = [
    ("ruff: longer lines", sub("line-length = 88", "line-length = 100"), False),
    ("ruff: select isort", sub('select = ["E", "F"]', 'select = ["E", "F", "I"]'), False),
    ("pytest: strict markers", sub('addopts = "-q"', 'addopts = "-q --strict-markers"'), False),
    ("release 0.1.1", bump, True),
    ("comment the dependencies", sub("dependencies = [", "# keep this list short\ndependencies = ["), False),
    ("coverage: omit tests", append('omit = ["tests/*"]\n'), False),
    ("add tinyc", sub('    "tinya>=1",\n', '    "tinya>=1",\n    "tinyc",\n'), True),
    ("ruff: per-file ignores", append('\n[tool.ruff.lint.per-file-ignores]\n"tests/*" = ["E501"]\n'), False),
    ("describe it better", sub("A project whose history is replayed", "A replayed project"), False),
    ("release 0.1.2", bump, True),
    ("mypy settings", append("\n[tool.mypy]\nstrict = true\n"), False),
    ("pytest: filterwarnings", sub('testpaths = ["tests"]', 'testpaths = ["tests"]\nfilterwarnings = ["error"]'), False),
    ("require tinya>=1.1", sub('"tinya>=1"', '"tinya>=1.1"'), True),
    ("classifiers", sub('requires-python = ">=3.8"', 'requires-python = ">=3.8"\nclassifiers = ["Programming Language :: Python :: 3"]'), False),
    ("release 0.1.3", bump, True),
    ("ruff: target py38", sub("line-length = 100", 'line-length = 100\ntarget-version = "py38"'), False),
    ("dev group: tinyd", sub('dev = ["tinyb"]', 'dev = ["tinyb", "tinyd"]'), True),
    ("coverage: show missing", append("\n[tool.coverage.report]\nshow_missing = true\n"), False),
    ("comment the tool tables", sub("[tool.ruff]\n", "# linters\n[tool.ruff]\n"), False),
    ("release 0.2.0", lambda t: re.sub(r'^version = ".*"$', 'version = "0.2.0"', t, flags=re.M), True),
    ("mypy: warn unused", sub("strict = true", "strict = true\nwarn_unused_ignores = true"), False),
    ("pytest: xfail strict", sub('addopts = "-q --strict-markers"', 'addopts = "-q --strict-markers"\nxfail_strict = true'), False),
    ("an extra: speed", sub("[dependency-groups]", '[project.optional-dependencies]\nspeed = ["tinye"]\n\n[dependency-groups]'), True),
    ("ruff: quote style", append('\n[tool.ruff.format]\nquote-style = "double"\n'), False),
    ("release 0.2.1", bump, True),
    ("urls", sub("[dependency-groups]", '[project.urls]\nSource = "https://example.test/replayed"\n\n[dependency-groups]'), False),
    ("tinya 2", sub('"tinya>=1.1"', '"tinya>=2"'), True),
    ("coverage: parallel", sub("branch = true", "branch = true\nparallel = true"), False),
    ("ruff: ignore E731", sub('select = ["E", "F", "I"]', 'select = ["E", "F", "I"]\nignore = ["E731"]'), False),
    ("release 0.2.2", bump, True),
    ("keywords", sub('requires-python = ">=3.8"', 'requires-python = ">=3.8"\nkeywords = ["replay"]'), False),
    ("drop tinyc", sub('    "tinyc",\n', ""), True),
    ("pytest: minversion", sub('addopts = "-q --strict-markers"', 'minversion = "8.0"\naddopts = "-q --strict-markers"'), False),
    ("release 0.3.0", lambda t: re.sub(r'^version = ".*"$', 'version = "0.3.0"', t, flags=re.M), True),
    ("mypy: python 3.8", sub("strict = true", 'strict = true\npython_version = "3.8"'), False),
    ("comment on the release", sub('version = "0.3.0"', 'version = "0.3.0"  # the big one'), False),
    ("requires-python 3.9", sub('requires-python = ">=3.8"', 'requires-python = ">=3.9"'), True),
    ("ruff: line length back", sub("line-length = 100", "line-length = 88"), False),
    ("release 0.3.1", lambda t: re.sub(r'^version = "0.3.0".*$', 'version = "0.3.1"', t, flags=re.M), True),
    ("coverage: fail under", sub("show_missing = true", "show_missing = true\nfail_under = 90"), False),
]


def rust_raw_string(name):
    """The text of `const NAME: &str = r#"…"#;` in tests/support/wheels.rs."""
    with open(WHEELS_RS) as f:
        text = f.read()
    m = re.search(r'const %s: &str = r#"(.*?)"#;' % name, text, re.S)
    if not m:
        sys.exit("no %s in %s" % (name, WHEELS_RS))
    return m.group(1)


def run(cmd, cwd, env=None, check=True):
    done = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and done.returncode != 0:
        sys.exit("failed: %s\n%s%s" % (" ".join(cmd), done.stdout, done.stderr))
    return done


def generate(root, uv, env):
    """A git history of EDITS in `root/project`; the wheels in `root/wheels`."""
    wheels = os.path.join(root, "wheels")
    run([sys.executable, "-c", rust_raw_string("WHEEL_SCRIPT"), wheels, json.dumps(WHEELS)], root)
    repo = os.path.join(root, "project")
    os.makedirs(os.path.join(repo, "_backend"))
    os.makedirs(os.path.join(repo, "replayed"))
    files = {
        "_backend/tiny_backend.py": rust_raw_string("TINY_BACKEND"),
        "replayed/__init__.py": "X = 1\n",
        "tiers.toml": TIERS_TOML,
        "pyproject.toml": PYPROJECT,
    }
    for rel, text in files.items():
        with open(os.path.join(repo, rel), "w") as f:
            f.write(text)
    git = ["git", "-c", "user.name=replay", "-c", "user.email=replay@example.test"]
    lock = [uv, "lock", "--offline", "--no-index", "--find-links", wheels]
    run(["git", "init", "-q"], repo)
    run(lock, repo, env)
    run(["git", "add", "-A"], repo)
    run(git + ["commit", "-q", "-m", "initial"], repo)
    for subject, edit, relock in EDITS:
        path = os.path.join(repo, "pyproject.toml")
        with open(path) as f:
            text = edit(f.read())
        with open(path, "w") as f:
            f.write(text)
        if relock:
            run(lock, repo, env)
        run(git + ["commit", "-q", "-am", subject], repo)
    return repo


@contextlib.contextmanager
def workdir(keep):
    """A temporary directory, removed at the end unless `keep`."""
    root = tempfile.mkdtemp(prefix="tiers-venv-replay-")
    try:
        yield root
    finally:
        if keep:
            print("project kept at", root)
        else:
            shutil.rmtree(root, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiers", required=True, help="the tiers binary")
    ap.add_argument("--keep", action="store_true", help="keep the generated project")
    args = ap.parse_args()
    tiers = os.path.abspath(args.tiers)
    uv = shutil.which("uv")
    if uv is None:
        sys.exit("uv is not on PATH (source scripts/ensure-tools)")
    env = dict(os.environ, UV_OFFLINE="1")
    env.pop("VIRTUAL_ENV", None)

    with workdir(args.keep) as root:
        repo = generate(root, uv, env)
        commits = run(["git", "rev-list", "--reverse", "HEAD"], repo).stdout.split()
        byte_states, keys = set(), {"bytes": set(), "deps": set()}
        builds = {"bytes": 0, "deps": 0}
        seconds = {"bytes": 0.0, "deps": 0.0}
        project_only, project_only_seconds = 0, 0.0
        print("%-26s %-8s %-8s  %s" % ("commit", "bytes", "deps", "why the dependency key rebuilt"))
        for c in commits:
            run(["git", "checkout", "-q", c], repo)
            subject = run(["git", "log", "-1", "--format=%s", c], repo).stdout.strip()
            with open(os.path.join(repo, "pyproject.toml"), "rb") as f:
                pyproject = f.read()
            with open(os.path.join(repo, "uv.lock"), "rb") as f:
                lock = f.read()
            byte_states.add((pyproject, lock))
            done = run([tiers, "build", "--json"], repo, env, check=False)
            report = json.loads(done.stdout)
            by_name = {t["name"]: t for t in report["tiers"]}
            for name, t in by_name.items():
                if t["status"] == "failed":
                    sys.exit("%s failed at %s: %s" % (name, subject, t.get("error")))
                keys[name].add(t["key"])
                if t["status"] in ("built", "rebuilt"):
                    builds[name] += 1
                seconds[name] += t["seconds"]
            deps = by_name["deps"]
            why = "; ".join(r["message"] for r in deps["reasons"])
            if deps["status"] == "rebuilt" and all(
                "[project] version" in r["message"] for r in deps["reasons"]
            ):
                project_only += 1
                project_only_seconds += deps["seconds"]
                why = "project only: " + why
            print("%-26s %-8s %-8s  %s" % (subject[:26], by_name["bytes"]["status"], deps["status"], why[:90]))
        print()
        print("commits replayed                      %3d" % len(commits))
        print("manifest byte states                  %3d" % len(byte_states))
        print("keys under key = \"bytes\"              %3d" % len(keys["bytes"]))
        print("keys under the dependency key         %3d" % len(keys["deps"]))
        print("venv builds, key = \"bytes\"            %3d" % builds["bytes"])
        print("venv builds, dependency key           %3d" % builds["deps"])
        print("  of which the project's own metadata %3d  (a project-alone re-install with update_in_place)" % project_only)
        print("  full builds                         %3d" % (builds["deps"] - project_only))
        print("seconds in the venv tier, key = \"bytes\"   %6.2f" % seconds["bytes"])
        print("seconds in the venv tier, dependency key  %6.2f" % seconds["deps"])
        if project_only:
            print("  per project-alone re-install            %6.2f" % (project_only_seconds / project_only))


if __name__ == "__main__":
    main()
