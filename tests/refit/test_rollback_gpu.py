"""TensorRT itself refuses a refit after Python validation passed (GPU tier, real engines).

Python validation stops every bad input the suite can think of before TensorRT sees it, so
the paths that run when TensorRT says no need refusals Python cannot predict:

- a weight Python knows but the engine does not (a spec TensorRT has no weight for): the
  set call fails, alone or in the middle of a refit whose earlier weights were already handed
  over. `discard` must hand those back (8.x has no unset_named_weights), or the next refit
  takes them along;
- refit_cuda_engine returning False after every set call succeeded. Through the wrapper this
  cannot happen on 8.5/8.6 as far as we know: refit() asks get_missing_weights first, and a
  missing weight is the documented reason for False. So the test makes the wrapper blind to
  missing weights for one call (as a TensorRT that under-reports them would) and lets TensorRT
  refuse for real: `_roll_back` must refit the previous values;
- a spec whose element count disagrees with the engine: TensorRT's set call refuses it. Some
  versions abort the process on a wrong count (NVIDIA/TensorRT#639), so that one runs in a
  subprocess.

Each asserts RefitError with TensorRT's own message, outputs bit-identical to before, and a
next refit that takes nothing of the refused one along and works.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from refit_core.errors import RefitError
from refit_core.samples.mnist import LENET_LAYERS, LENET_SHAPES
from refit_core.refit.validation import WeightSpec

from .children import LENET_FROM_PLAN_CACHE

pytestmark = pytest.mark.gpu

NAMES = tuple(LENET_SHAPES)
CONV1 = ("conv1.weight", "conv1.bias")
GHOST = "ghost.weight"


def known_state(engine):
    """All eight weights as built, conv1 trained: the refused refits below try zeros there."""
    weights = {n: engine.start_weights[n] for n in NAMES}
    weights.update({n: engine.trained[n] for n in CONV1})
    return weights


def refit_layer_unchanged(refitter, layer):
    """A real refit that changes nothing by itself: one layer with its current values."""
    return refitter.refit_with({n: np.array(refitter.current[n], copy=True)
                                for n in (f"{layer}.weight", f"{layer}.bias")})


@pytest.mark.parametrize("where", ["alone", "middle"])
def test_tensorrt_refuses_a_weight_it_does_not_have(mnist_engine, monkeypatch, results, where):
    r = mnist_engine.refitter
    mnist_engine.refit_to(known_state(mnist_engine))
    before = mnist_engine.probe()
    monkeypatch.setitem(r.specs, GHOST, WeightSpec(GHOST, (4,)))  # Python's checks pass, TensorRT's fail
    ghost = np.ones(4, np.float32)
    if where == "alone":
        attempt = {GHOST: ghost}
    else:  # conv1 handed to TensorRT first, then the refused weight, then fc2 never reached
        attempt = {"conv1.weight": np.zeros(LENET_SHAPES["conv1.weight"], np.float32),
                   "conv1.bias": np.zeros(LENET_SHAPES["conv1.bias"], np.float32), GHOST: ghost,
                   "fc2.weight": np.zeros(LENET_SHAPES["fc2.weight"], np.float32),
                   "fc2.bias": np.zeros(LENET_SHAPES["fc2.bias"], np.float32)}
    with pytest.raises(RefitError) as info:
        r.refit_with(attempt)
    err = info.value
    print(f"{where}: {err}")
    results.record_bad_input(f"TensorRT refuses an unknown weight ({where})", str(err))
    assert f"TensorRT refused weight {GHOST!r}" in str(err)
    assert err.trt_messages, "RefitError carries no message from TensorRT"
    np.testing.assert_array_equal(mnist_engine.probe(), before)
    # nothing of the refused refit is still set in TensorRT: a refit of conv2 alone keeps conv1
    refit_layer_unchanged(r, "conv2")
    np.testing.assert_array_equal(mnist_engine.probe(), before)
    # and a good refit of what was refused works: conv1 back to zero is the engine as built
    mnist_engine.refit_to({n: mnist_engine.start_weights[n] for n in CONV1})
    np.testing.assert_array_equal(mnist_engine.probe(), mnist_engine.built_outputs)


def _weight_tensorrt_refits_with_a_partner(r):
    """A LeNet weight that, set alone, leaves TensorRT missing another one (a convolution's
    kernel needs its bias), with what TensorRT then misses."""
    for name in NAMES:
        r.set(name, np.array(r.current[name], copy=True))
        raw = [str(n) for n in r.refitter.get_missing_weights()]
        r.discard()
        if raw:
            return name, raw
    pytest.skip("setting each LeNet weight alone, kernels before biases, left TensorRT missing nothing "
                "(a bias set before its kernel does leave the kernel missing, as the missing-view check "
                "records), so refit_cuda_engine is not made to refuse this way here; the wrong-count test "
                "reaches the rollback instead")


def test_tensorrt_refuses_refit_cuda_engine_and_the_previous_weights_are_refitted_back(mnist_engine, monkeypatch,
                                                                                        results):
    """The wrapper's missing-weights check is blinded once and its layer groups lifted, so
    refit_cuda_engine itself runs with a weight missing and returns False; `_roll_back`
    must refit the previous values (with what TensorRT misses), leaving nothing set."""
    r = mnist_engine.refitter
    mnist_engine.refit_to(known_state(mnist_engine))
    before = mnist_engine.probe()
    name, partners = _weight_tensorrt_refits_with_a_partner(r)
    # discard handed the current values back (8.x): they are still set in TensorRT, and the
    # partner would not be missing below; a refit with the same values clears that
    mnist_engine.refit_to(known_state(mnist_engine))
    assert not r.refitter.get_missing_weights()
    for n in [name] + partners:
        if n in r.specs:
            monkeypatch.setitem(r.specs, n, dataclasses.replace(r.specs[n], group=None))
    real_missing = r.missing
    calls = []

    def blind_once():
        calls.append(1)
        return [] if len(calls) == 1 else real_missing()
    current = r.current[name]
    new = np.zeros_like(current) if np.any(current) else np.ones_like(current)
    r.missing = blind_once  # on this instance only, removed below
    try:
        with pytest.raises(RefitError) as info:
            r.refit_with({name: new})
    finally:
        del r.missing
    err = info.value
    print(f"{name} set without {partners}: {err}")
    results.record_bad_input("TensorRT refuses refit_cuda_engine (a weight missing)", str(err))
    assert "refit_cuda_engine failed for a refit of" in str(err), str(err)
    assert "the previous weights were restored" in str(err), str(err)
    assert err.trt_messages, "RefitError carries no message from TensorRT"
    monkeypatch.undo()
    assert not r.missing(), f"after the rollback TensorRT still misses {r.missing()}"
    np.testing.assert_array_equal(mnist_engine.probe(), before)
    # nothing of the refused refit is still set: a refit of another layer keeps `name` as it was
    other = next(layer for layer in LENET_LAYERS if not {f"{layer}.weight", f"{layer}.bias"} & set([name] + partners))
    refit_layer_unchanged(r, other)
    np.testing.assert_array_equal(mnist_engine.probe(), before)
    mnist_engine.refit_to({n: mnist_engine.start_weights[n] for n in CONV1})
    np.testing.assert_array_equal(mnist_engine.probe(), mnist_engine.built_outputs)


WRONG_COUNT_CHILD = textwrap.dedent("""
    from refit_core.faults import apply_from_environment
    apply_from_environment()  # under selfcheck, the parent's fault applies here too
""") + LENET_FROM_PLAN_CACHE + textwrap.dedent("""
    from refit_core.errors import RefitError
    from refit_core.refit.refitter import EngineRefitter
    from refit_core.refit.validation import WeightSpec
    from refit_core.trt.runner import TrtRunner
    runner = TrtRunner(h)  # closed with the engine handle
    images = rng.standard_normal((8, 1, 28, 28)).astype(np.float32)
    before = flow.run_lenet(runner, images)
    specs = flow.weight_specs()
    specs["conv1.bias"] = WeightSpec("conv1.bias", (21,), group="conv1")  # the engine's has 20
    r = EngineRefitter(h, specs, w, s.synchronize)
    kernel = np.zeros((20, 1, 5, 5), np.float32)
    try:
        r.refit_with({"conv1.weight": kernel, "conv1.bias": np.zeros(21, np.float32)})
        print("WRAPPER_ACCEPTED", flush=True)
    except RefitError as exc:
        print("WRAPPER_REFUSED", "TRT_MESSAGES" if exc.trt_messages else "NO_TRT_MESSAGES", repr(str(exc)),
              flush=True)
    print("OUTPUTS_UNCHANGED", bool(np.array_equal(flow.run_lenet(runner, images), before)), flush=True)
    # nothing of the refused refit may still be set in TensorRT: another layer refits on its own
    try:
        r.refit_with({"conv2.weight": w["conv2.weight"].copy(), "conv2.bias": w["conv2.bias"].copy()})
        print("OTHER_LAYER_REFIT", bool(np.array_equal(flow.run_lenet(runner, images), before)), flush=True)
    except RefitError as exc:
        print("OTHER_LAYER_REFIT", "REFUSED", repr(str(exc))[:300], flush=True)
    r.specs["conv1.bias"] = WeightSpec("conv1.bias", (20,), group="conv1")
    r.refit_with({"conv1.weight": kernel, "conv1.bias": np.zeros(20, np.float32)})
    print("NEXT_REFIT_CHANGED_OUTPUTS", bool(not np.array_equal(flow.run_lenet(runner, images), before)),
          flush=True)
    h.close()
    s.close()
""")


def test_tensorrt_refuses_a_wrong_element_count_in_a_subprocess(mnist_engine, results):
    """A spec saying 21 where the engine has 20: Python passes 21 elements, TensorRT's set
    call refuses them. In a subprocess: a TensorRT that aborts on a wrong count
    (NVIDIA/TensorRT#639) must not take the suite down with it."""
    proc = subprocess.run([sys.executable, "-c", WRONG_COUNT_CHILD], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))
    said = {line.split(" ", 1)[0]: line for line in proc.stdout.splitlines()
            if line.split(" ", 1)[0] in ("WRAPPER_ACCEPTED", "WRAPPER_REFUSED", "OUTPUTS_UNCHANGED",
                                         "OTHER_LAYER_REFIT", "NEXT_REFIT_CHANGED_OUTPUTS")}
    print(proc.stdout[-2000:], proc.stderr[-2000:])
    outcome = "; ".join(said.values()) + (f"; exit code {proc.returncode}" if proc.returncode else "")
    results.record_bad_input("TensorRT refuses a wrong element count (wrapper, subprocess)", outcome)
    if not said and proc.returncode != 0:
        pytest.skip(f"TensorRT ended the process on a wrong element count (exit {proc.returncode}): only "
                    f"Python's count check protects the engine here; stderr: {proc.stderr[-300:]!r}")
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-1000:]}"
    assert "WRAPPER_REFUSED TRT_MESSAGES" in said.get("WRAPPER_REFUSED", ""), outcome
    assert "'conv1.bias'" in said["WRAPPER_REFUSED"], outcome
    assert said.get("OUTPUTS_UNCHANGED") == "OUTPUTS_UNCHANGED True", outcome
    assert said.get("OTHER_LAYER_REFIT") == "OTHER_LAYER_REFIT True", outcome
    assert said.get("NEXT_REFIT_CHANGED_OUTPUTS") == "NEXT_REFIT_CHANGED_OUTPUTS True", outcome
