"""The Python API against real builds of the installed `tiers` executable (issue 17)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import BASIC, DEPFILE, FAILING, runs

import tiers
from tiers import BuildFailed, ConfigError, Project, Reason, Status, TierPath


def test_build_returns_the_report_as_typed_data(project):
    root = project()
    report = Project(root).build()
    assert report.project == root.resolve()
    assert report.cache_dir == root.resolve() / ".tiers"
    assert [t.name for t in report.tiers] == ["first", "second"]
    first = report["first"]
    assert first.kind == "command"
    assert first.status is Status.BUILT
    assert re.fullmatch(r"[0-9a-f]{64}", first.key)
    assert isinstance(first.path, Path)
    assert first.path == root.resolve() / ".tiers" / "first" / first.key
    assert (first.path / "a.txt").read_text() == "a\n"
    assert isinstance(first.seconds, float) and first.seconds >= 0
    assert first.reasons == [] and first.error is None
    assert not report.failed
    assert runs(root) == ["first", "second"]

    again = Project(root).build()
    assert [t.status for t in again.tiers] == [Status.FRESH, Status.FRESH]
    assert again["first"].key == first.key and again["first"].path == first.path
    assert runs(root) == ["first", "second"]


def test_build_named_tiers_builds_them_and_their_upstreams_only(project):
    root = project(BASIC + '\n[tiers.other]\nkind = "command"\ninputs = ["a.txt"]\nrun = ["true"]\n')
    report = Project(root).build(["second"])
    assert [t.name for t in report.tiers] == ["first", "second"]
    assert "other" not in report


def test_status_predicts_and_builds_nothing(project):
    root = project()
    p = Project(root)
    before = p.status()
    assert [t.status for t in before.tiers] == [Status.MISSING, Status.MISSING]
    assert not before["first"].path.exists()
    assert runs(root) == []

    p.build()
    (root / "a.txt").write_text("changed\n")
    status = p.status()
    first, second = status["first"], status["second"]
    assert first.status is Status.STALE and second.status is Status.STALE
    assert first.reasons == [Reason("input-changed", {"path": "a.txt"}, "the input `a.txt` changed")]
    assert [(r.kind, dict(r.fields)) for r in second.reasons] == [("upstream-changed", {"tier": "first"})]
    assert str(second.reasons[0]) == "the upstream tier `first` changed"
    assert runs(root) == ["first", "second"]
    only = p.status(["first"]).tiers
    assert [(t.name, t.status, t.key) for t in only] == [("first", Status.STALE, first.key)]


def test_rebuild_and_eager_force_tiers_with_a_reason(project):
    root = project()
    p = Project(root)
    p.build()
    forced = p.build(rebuild=["first"])
    assert forced["first"].status is Status.REBUILT
    assert [r.kind for r in forced["first"].reasons] == ["forced"]
    assert forced["first"].reasons[0].fields["by"].startswith("--rebuild")
    # `second` is keyed on `first`'s key, which did not change.
    assert forced["second"].status is Status.FRESH

    everything = p.build(rebuild="all")
    assert [t.status for t in everything.tiers] == [Status.REBUILT, Status.REBUILT]
    eager = p.build(eager=True)
    assert [t.status for t in eager.tiers] == [Status.REBUILT, Status.REBUILT]
    assert "eager" in eager["first"].reasons[0].message
    assert runs(root) == ["first", "second", "first"] + ["first", "second"] * 2


def test_every_status_word_comes_through_as_the_enum(project):
    depfile = f'\n[tiers.depfile]\nkind = "command"\ninputs = ["a.txt", "b.txt"]\nrun = {DEPFILE}\n'
    root = project(BASIC + depfile + FAILING)
    p = Project(root)
    seen = set()

    def note(report):
        seen.update(t.status for t in report.tiers)
        return report

    assert note(p.status(["first"]))["first"].status is Status.MISSING
    assert note(p.build(["first"]))["first"].status is Status.BUILT
    assert note(p.build(["first"]))["first"].status is Status.FRESH
    (root / "a.txt").write_text("edited\n")
    assert note(p.status(["first"]))["first"].status is Status.STALE
    assert note(p.build(["first"]))["first"].status is Status.REBUILT
    # status takes build's arguments and says what that build would do.
    forced = p.status(["first"], rebuild=["first"])["first"]
    assert forced.status is Status.STALE
    assert [r.kind for r in forced.reasons] == ["forced"]
    assert p.status(["first"])["first"].status is Status.FRESH
    note(p.build(["depfile"]))
    (root / "b.txt").write_text("edited\n")
    restored = note(p.build(["depfile"]))["depfile"]
    assert restored.status is Status.RESTORED
    assert [(r.kind, dict(r.fields)) for r in restored.reasons] == [("unused-input-changed", {"path": "b.txt"})]
    with pytest.raises(BuildFailed) as failed:
        p.build(["after-bad"])
    report = note(failed.value.report)
    assert report["bad"].status is Status.FAILED
    assert report["after-bad"].status is Status.SKIPPED
    assert report["after-bad"].reasons[0].kind == "skipped"
    assert seen == set(Status)


def test_a_failed_command_raises_build_failed_with_every_tier_reported(project):
    root = project(BASIC + FAILING)
    with pytest.raises(BuildFailed) as caught:
        Project(root).build()
    err = caught.value
    assert err.returncode == 1
    assert isinstance(err, tiers.TiersError)
    report = err.report
    assert report.failed
    assert [t.name for t in err.failed] == ["bad"]
    assert "the analyzer crashed" in report["bad"].error
    assert "the analyzer crashed" in str(err)
    assert report["bad"].path is None
    assert report["after-bad"].status is Status.SKIPPED
    # The tiers that do not depend on `bad` were built and can be used.
    assert report["first"].status is Status.BUILT
    assert report["second"].status is Status.BUILT
    assert (report["second"].path / "a.txt").exists()
    assert Project(root).paths()["second"].path == report["second"].path


def test_a_malformed_tiers_toml_raises_config_error_and_touches_no_cache(project):
    root = project('[tiers.venv]\nkind = 3\n')
    with pytest.raises(ConfigError) as caught:
        Project(root).build()
    err = caught.value
    assert err.returncode == 2
    assert "tiers.toml" in err.message and "kind" in err.message
    assert not err.message.startswith("error:")
    assert not (root / ".tiers").exists()

    (root / "tiers.toml").write_text('[tiers.venv\nkind = "command"\n')
    with pytest.raises(ConfigError, match="tiers.toml"):
        Project(root).status()


def test_an_unknown_tier_is_a_config_error(project):
    root = project()
    with pytest.raises(ConfigError, match="no tier named `nope`"):
        Project(root).build(["nope"])
    with pytest.raises(ConfigError, match="no tier named `nope`"):
        Project(root).explain("nope")


def test_paths_name_the_entries_of_the_last_builds(project):
    root = project()
    p = Project(root)
    before = p.paths()
    assert set(before) == {"first", "second"}
    assert before["first"] == TierPath("first", "command", None, None, False)

    report = p.build()
    paths = p.paths()
    for name in ("first", "second"):
        assert paths[name].name == name
        assert paths[name].kind == "command"
        assert paths[name].key == report[name].key
        assert paths[name].path == report[name].path
        assert paths[name].exists is True

    # paths computes no key: after an edit it still names the last build's entry.
    (root / "a.txt").write_text("edited\n")
    assert p.paths()["first"].path == report["first"].path


def test_explain_is_the_commands_text(project):
    root = project()
    p = Project(root)
    p.build()
    (root / "a.txt").write_text("edited\n")
    text = p.explain("first")
    assert text.startswith("tier first (kind command)\n")
    assert "stale:\n  - the input `a.txt` changed\n" in text
    assert p.status(["first"])["first"].key in text


def test_config_cache_dir_and_env_reach_the_command(project, tmp_path):
    root = project(toml="")
    config = tmp_path / "elsewhere.toml"
    config.write_text(BASIC)
    cache = tmp_path / "cache"
    report = Project(root, config=config, cache_dir=cache).build()
    assert report.cache_dir == cache.resolve()
    assert report["first"].path.parent.parent == cache.resolve()

    by_env = tmp_path / "cache-from-env"
    report = Project(root, config=config, env={"TIERS_CACHE_DIR": str(by_env)}).status()
    assert report.cache_dir == by_env.resolve()
    assert [t.status for t in report.tiers] == [Status.MISSING, Status.MISSING]


def test_an_empty_project_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no tiers are configured"):
        Project(tmp_path).status()
