"""What changes an engine, and so its plan-cache key (CPU tier); builds run in the GPU tier."""
from __future__ import annotations

from refit_core.trt.engine import BuildOptions
from refit_core.trt.plan_cache import plan_cache_key


def test_build_options_take_the_tactic_setting(monkeypatch):
    monkeypatch.setenv("REFIT_TRT_TACTICS", "no-cudnn")
    assert BuildOptions().tactics == "no-cudnn"
    assert BuildOptions().key_parts()["tactics"] == "no-cudnn"


def test_plan_cache_key_changes_with_every_part():
    base = {"model": "m", "tensorrt": "8.5.3.1", "gpu": "H200", "options": {"tactics": "default"}}
    keys = {plan_cache_key(base)}
    for change in ({"tensorrt": "8.6.0"}, {"gpu": "H100"}, {"options": {"tactics": "no-cudnn"}}, {"model": "n"}):
        keys.add(plan_cache_key({**base, **change}))
    assert len(keys) == 5
    assert plan_cache_key(dict(reversed(list(base.items())))) == plan_cache_key(base)


def test_extra_build_flags_change_the_cache_key_only_when_set():
    assert "extra_flags" not in BuildOptions().key_parts()
    assert BuildOptions(extra_flags=("STRIP_PLAN",)).key_parts()["extra_flags"] == ("STRIP_PLAN",)
