"""The parts of the TensorRT glue that need no TensorRT (CPU tier)."""
from __future__ import annotations

import pytest

from refit_core.trt import compat


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


def test_every_gated_feature_names_the_version_that_has_it():
    for feature in compat.FEATURES.values():
        assert compat.parse_version(feature.since) > (8, 5), feature  # the oldest version supported is 8.5
        assert feature.description


@pytest.mark.parametrize("name,unnamed", [(None, True), ("(Unnamed Layer* 42) [Constant] CONSTANT", True),
                                          ("conv1.weight", False), ("W_0", False)])
def test_unnamed_weights_in_both_spellings(name, unnamed):
    assert compat.is_unnamed_weight(name) is unnamed


@pytest.mark.parametrize("text,expected", [("8.5.3.1", (8, 5, 3, 1)), ("10.0.0b6", (10, 0, 0)),
                                           ("8.6.1.post1", (8, 6, 1)), ("10.3.0+cuda12", (10, 3, 0)),
                                           ("11", (11,))])
def test_versions_parse_with_suffixes(text, expected):
    assert compat.parse_version(text) == expected


def test_a_non_version_is_refused():
    with pytest.raises(ValueError, match="not a TensorRT version"):
        compat.parse_version("latest")


def test_each_feature_probe_looks_at_its_own_attribute():
    """Probes take the tensorrt module; a namespace with the attributes of 8.5 and one with
    those of 10.x show every probe flips on its own attribute and nothing else."""
    from types import SimpleNamespace as NS
    old = NS(Refitter=NS(), BuilderFlag=NS(REFIT=1), IBuilderConfig=NS())
    new = NS(TensorLocation=NS(), OnnxParserRefitter=object, IBuilderConfig=NS(builder_optimization_level=3),
             Refitter=NS(get_weights_location=1, refit_cuda_engine_async=1, get_weights_prototype=1,
                         unset_named_weights=1),
             BuilderFlag=NS(REFIT=1, STRIP_PLAN=1, REFIT_IDENTICAL=1))
    for feature in compat.FEATURES.values():
        assert feature.probe(old) is False, feature.name
        assert feature.probe(new) is True, feature.name


def test_unknown_feature_names_the_known_ones():
    with pytest.raises(KeyError, match="known: async_refit, builder_optimization_level, device_weights"):
        compat.has_feature("warp_drive")


def test_timing_cache_rejection_is_recognised():
    assert compat.timing_cache_rejected(["The timing cache will not be used!"])
    assert not compat.timing_cache_rejected(["something else"])
