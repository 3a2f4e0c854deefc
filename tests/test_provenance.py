"""What a results record says about the code that made it (CPU tier)."""
from __future__ import annotations

import datetime

from refit_core import provenance


def test_source_hash_changes_with_any_source_file(tmp_path):
    (tmp_path / "refit_core").mkdir()
    (tmp_path / "refit_core" / "a.py").write_text("x = 1\n")
    (tmp_path / "conftest.py").write_text("")
    first = provenance.source_sha256(tmp_path)
    assert provenance.source_sha256(tmp_path) == first
    (tmp_path / "refit_core" / "a.py").write_text("x = 2\n")
    assert provenance.source_sha256(tmp_path) != first


def test_git_state_from_the_environment_wins(tmp_path, monkeypatch):
    """A copied tree can carry a .git of another commit (seen on the GPU machine, whose copy
    held the session's starting .git): the commit named in the environment wins."""
    monkeypatch.setenv(provenance.COMMIT_ENV, "abc123")
    monkeypatch.setenv(provenance.DIRTY_ENV, "false")
    assert provenance.git_state(tmp_path) == ("abc123", False)
    assert provenance.git_state() == ("abc123", False)  # this checkout has a .git
    monkeypatch.delenv(provenance.COMMIT_ENV)
    monkeypatch.delenv(provenance.DIRTY_ENV)
    assert provenance.git_state(tmp_path) == (None, None)


def test_this_checkout_reports_its_commit():
    commit, dirty = provenance.git_state()
    if (provenance.PROJECT_ROOT / ".git").exists():
        assert commit and len(commit) == 40 and dirty in (True, False)


def test_timestamps_are_iso_8601_with_offset():
    stamp = provenance.now_iso()
    assert datetime.datetime.fromisoformat(stamp).utcoffset() == datetime.timedelta(0)


def test_the_one_provenance_builder_fills_a_valid_record_provenance(monkeypatch):
    """run_provenance is what the GPU tier (pytest_session.provenance_of) and `check` record;
    the record model accepts it as it is (a renamed or missing field fails here)."""
    from refit_core.reporting.record import Provenance
    monkeypatch.setenv(provenance.COMMIT_ENV, "abc123")
    monkeypatch.setenv(provenance.DIRTY_ENV, "false")
    built = provenance.run_provenance(["pytest", "-m", "gpu"], "default", provenance.now_iso(),
                                      {"module": "8.6.0"}, "default")
    record = Provenance(**built)
    assert record.git_commit == "abc123" and record.command_line == ["pytest", "-m", "gpu"]
    assert record.source_sha256 == provenance.source_sha256()


def test_the_source_hash_covers_the_tools_the_tests_import(tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "t.py").write_text("A = 1\n")
    before = provenance.source_sha256(tmp_path)
    (tmp_path / "tools" / "t.py").write_text("A = 2\n")
    assert provenance.source_sha256(tmp_path) != before
