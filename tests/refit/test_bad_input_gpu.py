"""Every bad input against a real engine: a clear error naming the weight and the problem,
the engine keeps running with its previous weights, and the process survives (GPU tier)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from refit_core.errors import EngineCacheWarning, RefitError, WeightValidationError

from .children import LENET_FROM_PLAN_CACHE

pytestmark = pytest.mark.gpu

CONV1 = ("conv1.weight", "conv1.bias")


def _readonly(a):
    a.flags.writeable = False
    return a


def bad_weight_sets(trained):
    w, b = trained["conv1.weight"], trained["conv1.bias"]
    return {
        "unknown name": ({"conv1.wieght": w, "conv1.bias": b}, "conv1.wieght", "not a refittable weight"),
        "right count, wrong shape": ({"conv1.weight": w.reshape(20, 25).copy(), "conv1.bias": b}, "conv1.weight",
                                     "differs from the engine's"),
        "wrong count": ({"conv1.weight": w[:10].copy(), "conv1.bias": b}, "conv1.weight", "has 250 elements"),
        "float64": ({"conv1.weight": w.astype(np.float64), "conv1.bias": b}, "conv1.weight", "dtype is float64"),
        "float16": ({"conv1.weight": w.astype(np.float16), "conv1.bias": b}, "conv1.weight", "dtype is float16"),
        "int32": ({"conv1.weight": w.astype(np.int32), "conv1.bias": b}, "conv1.weight", "dtype is int32"),
        "non-contiguous": ({"conv1.weight": np.asfortranarray(w), "conv1.bias": b}, "conv1.weight",
                           "not C-contiguous"),
        "read-only": ({"conv1.weight": _readonly(w.copy()), "conv1.bias": b}, "conv1.weight", "read-only"),
        "NaN": ({"conv1.weight": w, "conv1.bias": np.full_like(b, np.nan)}, "conv1.bias", "20 NaN"),
        "Inf": ({"conv1.weight": w, "conv1.bias": np.full_like(b, np.inf)}, "conv1.bias", "20 Inf"),
        "empty": ({"conv1.weight": np.zeros((0,), np.float32), "conv1.bias": b}, "conv1.weight", "empty array"),
        "None": ({"conv1.weight": None, "conv1.bias": b}, "conv1.weight", "got None"),
        "bias left out": ({"conv1.weight": w}, "conv1.bias", "not supplied"),
    }


CASES = list(bad_weight_sets({"conv1.weight": np.zeros((20, 1, 5, 5), np.float32),
                              "conv1.bias": np.zeros(20, np.float32)}))


@pytest.mark.parametrize("case", CASES)
def test_bad_weights_are_refused_and_the_engine_keeps_its_weights(case, mnist_engine, mnist_test_set, results):
    images = mnist_test_set["images"][:1000]
    mnist_engine.refit_to({k: mnist_engine.trained[k] for k in CONV1})
    before = mnist_engine.logits(images)
    weights, name, fragment = bad_weight_sets(mnist_engine.trained)[case]
    with pytest.raises((WeightValidationError, RefitError)) as info:
        mnist_engine.refit_to(weights)
    message = str(info.value)
    print(f"{case}: {type(info.value).__name__}: {message}")
    results.record_bad_input(case, f"{type(info.value).__name__}: {message}")
    assert name in message and fragment in message
    np.testing.assert_array_equal(mnist_engine.logits(images), before)
    # and the next good refit still works
    mnist_engine.refit_to({k: mnist_engine.start_weights[k] for k in CONV1})
    np.testing.assert_array_equal(mnist_engine.logits(mnist_test_set["images"]), mnist_engine.fresh_logits)


def test_nonfinite_weights_go_through_when_explicitly_allowed(mnist_engine, mnist_test_set):
    bias = np.full(20, np.nan, np.float32)
    mnist_engine.refitter.refit_with({"conv1.weight": mnist_engine.trained["conv1.weight"], "conv1.bias": bias},
                                     allow_nonfinite=True)
    assert np.isnan(mnist_engine.logits(mnist_test_set["images"][:100])).all()
    mnist_engine.refit_to({k: mnist_engine.start_weights[k] for k in CONV1})
    np.testing.assert_array_equal(mnist_engine.logits(mnist_test_set["images"]), mnist_engine.fresh_logits)


def test_nonfinite_values_go_through_only_in_the_weights_named(mnist_engine, mnist_test_set):
    weights = {"conv1.weight": mnist_engine.trained["conv1.weight"], "conv1.bias": np.full(20, np.nan, np.float32)}
    before = mnist_engine.logits(mnist_test_set["images"][:100])
    with pytest.raises(WeightValidationError, match="conv1.bias.*20 NaN"):
        mnist_engine.refitter.refit_with(weights, allow_nonfinite={"conv1.weight"})
    np.testing.assert_array_equal(mnist_engine.logits(mnist_test_set["images"][:100]), before)
    mnist_engine.refitter.refit_with(weights, allow_nonfinite={"conv1.bias"})
    assert np.isnan(mnist_engine.logits(mnist_test_set["images"][:100])).all()
    mnist_engine.refit_to({k: mnist_engine.start_weights[k] for k in CONV1})
    np.testing.assert_array_equal(mnist_engine.logits(mnist_test_set["images"]), mnist_engine.fresh_logits)


def test_engine_built_without_refit_gets_a_clear_error(cuda_session, trt_logger, mnist_engine, plan_cache, results):
    from refit_core.refit.refitter import EngineRefitter
    from refit_core.trt.engine import BuildOptions
    handle, _ = mnist_engine.flow.build_lenet_engine(mnist_engine.start_weights, BuildOptions(refit=False),
                                                     trt_logger, plan_cache, cuda_session.gpu_name)
    try:
        assert not handle.refittable
        with pytest.raises(RefitError, match="built without BuilderFlag.REFIT") as info:
            EngineRefitter(handle, mnist_engine.flow.weight_specs(), mnist_engine.start_weights)
        results.record_bad_input("engine without REFIT", str(info.value))
    finally:
        handle.close()


def test_refit_waits_for_inference_in_flight_on_another_stream(mnist_engine, mnist_test_set):
    """Three batches are queued on the runner's stream; the refit (issued from the host, off
    that stream) follows at once. The wrapper waits for the context first, so the queued
    batches see only the old weights, never a mix, and the next batch only the new ones.
    (One context: on TensorRT 8.5 a second context needs a second optimization profile, and
    refitting a two-profile engine fails there: "duplicate layer names and role".)"""
    images = np.ascontiguousarray(mnist_test_set["images"][:1000])
    mnist_engine.refit_to({k: mnist_engine.trained[k] for k in CONV1})
    old = mnist_engine.logits(images)
    pending = [mnist_engine.runner.launch({"input": images}) for _ in range(3)]
    mnist_engine.refit_to({k: mnist_engine.start_weights[k] for k in CONV1})
    for p in pending:
        np.testing.assert_array_equal(p.wait()["logits"], old)
    np.testing.assert_array_equal(mnist_engine.logits(images), mnist_engine.fresh_logits[:1000])
    assert not np.array_equal(old, mnist_engine.fresh_logits[:1000])


@pytest.mark.parametrize("damage", ["truncated", "corrupt", "other TensorRT version", "metadata missing"])
def test_damaged_plan_in_the_cache_is_rebuilt_with_a_warning(damage, tmp_path, cuda_session, trt_logger,
                                                             mnist_engine, results):
    import json
    from refit_core.trt.engine import BuildOptions
    from refit_core.trt.plan_cache import PlanCache
    cache = PlanCache(tmp_path / "plans")
    args = (mnist_engine.start_weights, BuildOptions(), trt_logger, cache, cuda_session.gpu_name)
    handle, built = mnist_engine.flow.build_lenet_engine(*args)
    handle.close()
    assert built is not None
    plan_path = next((tmp_path / "plans").glob("*.plan"))
    meta_path = plan_path.with_suffix(".json")
    data = plan_path.read_bytes()
    if damage == "truncated":
        plan_path.write_bytes(data[: len(data) // 3])
    elif damage == "corrupt":
        plan_path.write_bytes(data[:100] + bytes(b ^ 0xFF for b in data[100:200]) + data[200:])
    elif damage == "other TensorRT version":
        meta = json.loads(meta_path.read_text())
        meta["tensorrt_version"] = "7.2.3.4"
        meta_path.write_text(json.dumps(meta))
    else:
        meta_path.unlink()
    with pytest.warns(EngineCacheWarning) as caught:
        handle, built = mnist_engine.flow.build_lenet_engine(*args)
    try:
        message = str(caught[0].message)
        print(f"{damage}: {message}")
        results.record_bad_input(f"plan cache: {damage}", message)
        assert str(plan_path) in message and built is not None and handle.source == "built"
    finally:
        handle.close()
    # the rebuilt plan was cached again and now loads without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", EngineCacheWarning)
        handle, built = mnist_engine.flow.build_lenet_engine(*args)
    assert built is None and handle.source == "cache"
    handle.close()


RAW_WRONG_COUNT = LENET_FROM_PLAN_CACHE + textwrap.dedent("""
    import tensorrt as trt
    r = trt.Refitter(h.engine, logger)
    bad = np.zeros(7, np.float32)
    print("RAW_SET_RETURNED", r.set_named_weights("conv1.weight", trt.Weights(bad)), flush=True)
    print("RAW_SET_BIAS", r.set_named_weights("conv1.bias", trt.Weights(np.zeros(20, np.float32))), flush=True)
    print("RAW_REFIT_RETURNED", r.refit_cuda_engine(), flush=True)
    del r; h.close(); s.close()
""")


def test_raw_tensorrt_wrong_count_is_recorded_and_the_wrapper_refuses_it(mnist_engine, results):
    """What does TensorRT itself do with 7 of 500 elements? Some versions abort the process,
    so it runs in a subprocess: this suite survives and records the answer. Whatever TensorRT
    does, the wrapper must refuse the same input before TensorRT sees it."""
    proc = subprocess.run([sys.executable, "-c", RAW_WRONG_COUNT], capture_output=True, text=True, timeout=300)
    said = [line for line in proc.stdout.splitlines() if line.startswith("RAW_")]
    errors = [line for line in proc.stdout.splitlines() if "[E]" in line][:3]
    outcome = "; ".join(said) + (f"; process exit code {proc.returncode}" if proc.returncode else "")
    print(f"raw TensorRT with 7 of 500 elements for conv1.weight: {outcome}; errors: {errors}; "
          f"stderr tail: {proc.stderr[-300:]!r}")
    results.record_bad_input("raw TensorRT, wrong count", f"{outcome}; {' | '.join(errors)}")
    assert said, f"the subprocess printed nothing (exit {proc.returncode}): {proc.stderr[-500:]}"
    with pytest.raises(WeightValidationError, match="has 7 elements"):
        mnist_engine.refitter.set("conv1.weight", np.zeros(7, np.float32))
