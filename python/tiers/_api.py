"""The typed layer over the `tiers` command's JSON: every decision stays in the binary.

`Project.build()` runs `tiers build --json` and parses what it prints; `status`,
`paths` and `explain` likewise. Exit code 2 (usage or configuration error) raises
`ConfigError`, exit code 1 with a report raises `BuildFailed` carrying it.
"""

from __future__ import annotations

import enum
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

from tiers._find import find_tiers_bin

PathLike = Union[str, "os.PathLike[str]"]


class Status(str, enum.Enum):
    """What a run did with a tier (`build`), or would do (`status`)."""

    FRESH = "fresh"
    """The entry for the current key was there and healthy."""
    BUILT = "built"
    """Built; the tier had no entry before."""
    REBUILT = "rebuilt"
    """Built; an entry existed but was stale, or the rebuild was forced."""
    RESTORED = "restored"
    """Reused an entry built for other inputs (discovered inputs, a shared cache)."""
    STALE = "stale"
    """`status` only: a build would rebuild it."""
    MISSING = "missing"
    """`status` only: a build would build it for the first time."""
    SKIPPED = "skipped"
    """Did not run (a tool not installed, an upstream that failed, `rebuild = "never"`)."""
    FAILED = "failed"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Reason:
    """Why a tier is not fresh: a kind (`input-changed`, `upstream-changed`, …),
    its fields (`{"path": "a.py"}`) and the sentence tiers renders from them."""

    kind: str
    fields: Mapping[str, Any]
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class TierReport:
    """One tier of a `build` or `status` run."""

    name: str
    kind: str
    key: str | None
    """The SHA-256 of the tier's key document (64 hex digits); None when it could not be computed."""
    path: Path | None
    """Where a consumer finds the artifact (the entry this run resolved to)."""
    status: Status
    reasons: list[Reason]
    seconds: float
    error: str | None = None
    """Why a `failed` tier failed."""
    summary: str | None = None
    """What the build did, in the kind's words."""
    available_remotely: bool | None = None
    """`status` with a shared cache: whether a stale tier's entry is there."""


@dataclass(frozen=True)
class Report:
    """What `tiers build --json` or `tiers status --json` printed."""

    project: Path
    cache_dir: Path
    tiers: list[TierReport]

    @property
    def failed(self) -> bool:
        return any(t.status is Status.FAILED for t in self.tiers)

    def __getitem__(self, name: str) -> TierReport:
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(t.name == name for t in self.tiers)


@dataclass(frozen=True)
class TierPath:
    """One tier of `tiers paths --json`: the entry its last successful build resolved to."""

    name: str
    kind: str
    key: str | None
    path: Path | None
    exists: bool


class TiersError(Exception):
    """`tiers` failed without a report to show for it (or printed one this package cannot read)."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.returncode = returncode
        self.stderr = stderr


class ConfigError(TiersError):
    """Exit code 2: a usage or configuration error (a malformed `tiers.toml`, an
    unknown tier). The message is tiers' own, naming the file, key or tier; the
    cache was not touched."""


class BuildFailed(TiersError):
    """Exit code 1: a tier failed. `report` holds every tier's outcome, so the
    ones that succeeded can still be used."""

    def __init__(self, report: Report, *, returncode: int, stderr: str) -> None:
        failed = [t for t in report.tiers if t.status is Status.FAILED]
        lines = [f"tier `{t.name}` failed: {t.error or 'no error message'}" for t in failed]
        super().__init__("\n".join(lines) or "a tier failed", returncode=returncode, stderr=stderr)
        self.report = report

    @property
    def failed(self) -> list[TierReport]:
        return [t for t in self.report.tiers if t.status is Status.FAILED]


class Project:
    """A project directory and how to run `tiers` on it.

    `config` is the configuration file (default `<path>/tiers.toml`), `cache_dir`
    the cache dir (default from the configuration, else `<path>/.tiers`), `env`
    variables set for the `tiers` process over this process's environment
    (`TIERS_CACHE_DIR`, an installer's index variables…). The executable is
    found once, here (`find_tiers_bin`; `TiersNotFound` when there is none).
    """

    def __init__(
        self,
        path: PathLike,
        *,
        config: PathLike | None = None,
        cache_dir: PathLike | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.config = Path(config) if config is not None else None
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.env = dict(env) if env is not None else None
        self.bin = find_tiers_bin()

    def __repr__(self) -> str:
        return f"Project({str(self.path)!r})"

    def build(
        self,
        tiers: Iterable[str] | None = None,
        *,
        rebuild: str | Iterable[str] = (),
        eager: bool = False,
    ) -> Report:
        """Build the tiers that are not fresh: all, or `tiers` and their upstreams.

        `rebuild` forces tiers (names, or `"all"`); `eager` forces every tier whose
        `eager` policy is true (not venvs, by default). Raises `BuildFailed` when a
        tier failed, `ConfigError` on a configuration or usage error.
        """
        return self._report(_request("build", tiers, rebuild, eager))

    def status(
        self,
        tiers: Iterable[str] | None = None,
        *,
        rebuild: str | Iterable[str] = (),
        eager: bool = False,
    ) -> Report:
        """What `build` with the same arguments would do, and why (statuses `stale`,
        `missing`…; `available_remotely` when the shared cache would restore it).
        Builds nothing."""
        return self._report(_request("status", tiers, rebuild, eager))

    def paths(self) -> dict[str, TierPath]:
        """The entry each tier last resolved to, by tier name. Computes no key."""
        data = _parse_json(self._run(["paths", "--json"]))
        try:
            return {
                name: TierPath(
                    name=name,
                    kind=t["kind"],
                    key=t["key"],
                    path=_path(t["path"]),
                    exists=bool(t["exists"]),
                )
                for name, t in data["tiers"].items()
            }
        except (KeyError, TypeError, AttributeError) as e:
            raise TiersError(f"`tiers paths --json` printed a document this package cannot read: {e!r}") from e

    def explain(self, tier: str) -> str:
        """`tiers explain TIER`: the key document against the last entry's, as text."""
        return self._run(["explain", "--", tier]).stdout

    def _argv(self, args: Sequence[str]) -> list[str]:
        argv = [self.bin, "-C", os.fspath(self.path)]
        if self.config is not None:
            argv += ["--config", os.fspath(self.config)]
        if self.cache_dir is not None:
            argv += ["--cache-dir", os.fspath(self.cache_dir)]
        return [*argv, *args]

    def _run(self, args: Sequence[str], *, report_on_failure: bool = False) -> subprocess.CompletedProcess[str]:
        env = None
        if self.env is not None:
            env = {**os.environ, **self.env}
        proc = subprocess.run(
            self._argv(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            check=False,
        )
        if proc.returncode == 0 or (proc.returncode == 1 and report_on_failure):
            return proc
        message = _error_message(proc.stderr) or f"`tiers {' '.join(args)}` exited with code {proc.returncode}"
        if proc.returncode == 2:
            raise ConfigError(message, returncode=2, stderr=proc.stderr)
        raise TiersError(message, returncode=proc.returncode, stderr=proc.stderr)

    def _report(self, args: Sequence[str]) -> Report:
        proc = self._run(args, report_on_failure=True)
        if proc.returncode == 1:
            # Exit 1 without a report: an error before any tier ran.
            try:
                data = json.loads(proc.stdout)
            except ValueError:
                message = _error_message(proc.stderr) or f"`tiers {' '.join(args)}` exited with code 1"
                raise TiersError(message, returncode=1, stderr=proc.stderr) from None
            raise BuildFailed(_parse_report(data), returncode=1, stderr=proc.stderr)
        return _parse_report(_parse_json(proc))


def _request(
    command: str,
    tiers: Iterable[str] | None,
    rebuild: str | Iterable[str],
    eager: bool,
) -> list[str]:
    args = [command, "--json"]
    forced = _names(rebuild)
    if forced:
        args += ["--rebuild", ",".join(forced)]
    if eager:
        args.append("--eager")
    return [*args, "--", *_names(tiers)]


def _names(names: str | Iterable[str] | None) -> list[str]:
    if names is None:
        return []
    if isinstance(names, str):
        return [names]
    return list(names)


def _path(value: str | None) -> Path | None:
    return None if value is None else Path(value)


def _error_message(stderr: str) -> str:
    """tiers' own message: the stderr lines from the first `error:` on, without the prefix."""
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("error: "):
            return "\n".join([line[len("error: "):], *lines[i + 1:]]).strip()
    return stderr.strip()


def _parse_json(proc: subprocess.CompletedProcess[str]) -> Any:
    try:
        return json.loads(proc.stdout)
    except ValueError as e:
        raise TiersError(
            f"tiers printed no JSON on stdout ({e})", returncode=proc.returncode, stderr=proc.stderr
        ) from e


def _parse_report(data: Any) -> Report:
    try:
        return Report(
            project=Path(data["project"]),
            cache_dir=Path(data["cache_dir"]),
            tiers=[_parse_tier(t) for t in data["tiers"]],
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise TiersError(f"tiers printed a report this package cannot read: {e!r}") from e


def _parse_tier(t: Mapping[str, Any]) -> TierReport:
    return TierReport(
        name=t["name"],
        kind=t["kind"],
        key=t["key"],
        path=_path(t["path"]),
        status=Status(t["status"]),
        reasons=[_parse_reason(r) for r in t["reasons"]],
        seconds=float(t["seconds"]),
        error=t.get("error"),
        summary=t.get("summary"),
        available_remotely=t.get("available_remotely"),
    )


def _parse_reason(r: Mapping[str, Any]) -> Reason:
    fields = {k: v for k, v in r.items() if k not in ("reason", "message")}
    return Reason(kind=r["reason"], fields=fields, message=r["message"])
