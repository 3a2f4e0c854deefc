"""The parts of the TensorRT glue that need no TensorRT (CPU tier)."""
from __future__ import annotations

import pytest

from refit_core.trt import compat
from refit_core.trt.engine import BuildOptions, plan_cache_key


@pytest.mark.parametrize("value,expected", [(None, "default"), ("no-cudnn", "no-cudnn"), ("MINIMAL", "minimal"),
                                            (" default ", "default")])
def test_tactic_setting_from_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("REFIT_TRT_TACTICS", raising=False)
    else:
        monkeypatch.setenv("REFIT_TRT_TACTICS", value)
    assert compat.tactic_setting() == expected


def test_unknown_tactic_setting_lists_the_choices(monkeypatch):
    monkeypatch.setenv("REFIT_TRT_TACTICS", "fast")
    with pytest.raises(ValueError, match="default, no-cudnn, minimal"):
        compat.tactic_setting()


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


def test_every_gated_feature_names_the_version_that_has_it():
    for feature in compat.FEATURES.values():
        assert feature.since.startswith("10.")
        assert feature.description


@pytest.mark.parametrize("name,unnamed", [(None, True), ("(Unnamed Layer* 42) [Constant] CONSTANT", True),
                                          ("conv1.weight", False), ("W_0", False)])
def test_unnamed_weights_in_both_spellings(name, unnamed):
    assert compat.is_unnamed_weight(name) is unnamed
