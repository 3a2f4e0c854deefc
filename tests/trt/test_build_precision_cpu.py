"""BuildOptions.precision and OnnxParseError (CPU tier: no TensorRT is called)."""
from __future__ import annotations

import pytest

from refit_core.errors import RefitCoreError
from refit_core.trt.engine import PRECISIONS, BuildOptions, OnnxParseError
from refit_core.trt.plan_cache import plan_cache_key


def test_fp32_keys_are_the_keys_plans_were_cached_under_before():
    parts = BuildOptions().key_parts()
    assert "precision" not in parts and set(parts) == {"refit", "tf32", "workspace_bytes", "tactics"}


def test_fp16_gets_its_own_plan_cache_key():
    fp32, fp16 = BuildOptions().key_parts(), BuildOptions(precision="fp16").key_parts()
    assert fp16 == {**fp32, "precision": "fp16"}
    assert plan_cache_key({"options": fp32}) != plan_cache_key({"options": fp16})


def test_an_unknown_precision_is_refused_by_name():
    assert PRECISIONS == ("fp32", "tf32", "fp16")
    with pytest.raises(ValueError, match="precision 'int8': choose one of fp32, tf32, fp16"):
        BuildOptions(precision="int8")


def test_a_parser_rejection_is_a_refit_core_error_and_still_a_runtime_error():
    """`check` turns it into one sentence; callers that caught RuntimeError still catch it."""
    assert issubclass(OnnxParseError, RefitCoreError) and issubclass(OnnxParseError, RuntimeError)


@pytest.mark.parametrize("precision, tf32_cleared, fp16_set", [("fp32", True, False), ("tf32", False, False),
                                                                ("fp16", True, True)])
def test_each_precision_sets_the_builder_flags_it_names(monkeypatch, precision, tf32_cleared, fp16_set):
    """_configure against a recording config: TF32 stays on only for "tf32", FP16 only for "fp16"."""
    from types import SimpleNamespace
    from refit_core.trt import compat, engine
    flags = SimpleNamespace(REFIT="REFIT", FP16="FP16", TF32="TF32")
    fake = SimpleNamespace(BuilderFlag=flags, MemoryPoolType=SimpleNamespace(WORKSPACE="WS"))
    monkeypatch.setattr(compat, "import_tensorrt", lambda: fake)
    monkeypatch.setattr(compat, "apply_tactic_sources", lambda config, setting: None)
    calls = []

    class Config:
        def set_memory_pool_limit(self, *a): pass
        def set_flag(self, f): calls.append(("set", f))
        def clear_flag(self, f): calls.append(("clear", f))

    builder = SimpleNamespace(create_builder_config=Config)
    engine._configure(builder, BuildOptions(precision=precision), [])
    assert (("clear", "TF32") in calls) is tf32_cleared
    assert (("set", "FP16") in calls) is fp16_set
    assert ("set", "REFIT") in calls
