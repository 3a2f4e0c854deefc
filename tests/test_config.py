"""Where data and caches live (CPU tier)."""
from __future__ import annotations

import pytest

from refit_core.config import cache_dir, resolve_data_dir
from refit_core.errors import DataError


def test_explicit_directory_wins_over_the_environment(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.setenv("REFIT_DATA_DIR", str(tmp_path / "b"))
    assert resolve_data_dir(tmp_path / "a") == tmp_path / "a"
    assert resolve_data_dir() == tmp_path / "b"


def test_no_directory_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv("REFIT_DATA_DIR", raising=False)
    with pytest.raises(DataError, match="pass --data-dir DIR or set REFIT_DATA_DIR"):
        resolve_data_dir()


def test_a_missing_directory_is_named(tmp_path):
    with pytest.raises(DataError, match="nope.*does not exist"):
        resolve_data_dir(tmp_path / "nope")


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("REFIT_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
