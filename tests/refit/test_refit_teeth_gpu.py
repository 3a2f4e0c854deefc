"""Checks with teeth on the MNIST engine: each one fails under a class of refit bug (GPU tier).

They are cheap and deterministic, and the self-check runs them first
(refit_core/faults.py, FIRST_FILES) so that an injected fault is killed in seconds:

- refitting the build weights reproduces the built engine bit for bit (a value that reaches
  TensorRT scaled, permuted or stale would not), after a refit that changed the outputs
  (a refit that does nothing would not);
- a second and a third refit with different weights, every weight changed, each match the
  float64 reference (only-the-first-refit-works, stale biases, scaled values would not);
- the wrapper's view of missing weights is TensorRT's, for every single weight set alone.

Every test first refits all eight LeNet weights to a known state: other tests (Hypothesis)
leave the shared engine with whatever they drew.
"""
from __future__ import annotations

import numpy as np
import pytest

from refit_core.cases.base import compare_outputs
from refit_core.samples.mnist import LENET_SHAPES

pytestmark = pytest.mark.gpu

NAMES = tuple(LENET_SHAPES)
CONV1 = ("conv1.weight", "conv1.bias")


def known_state(engine, conv1: str = "trained"):
    """All eight weights: the build weights, with conv1 trained (or zero, as built)."""
    weights = {n: engine.start_weights[n] for n in NAMES}
    if conv1 == "trained":
        weights.update({n: engine.trained[n] for n in CONV1})
    return weights


def variant(engine, seed: int):
    """Every weight changed: kernels scaled elementwise by 1 + 0.3 N(0,1), biases moved by
    0.2 N(0,1) (so a stale bias, even fc2's alone, moves the logits far beyond tolerance)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in NAMES:
        w = engine.trained[name].astype(np.float64)
        if name.endswith(".bias"):
            w = w + 0.2 * rng.standard_normal(w.shape)
        else:
            w = w * (1.0 + 0.3 * rng.standard_normal(w.shape))
        out[name] = np.ascontiguousarray(w, dtype=np.float32)
    return out


def test_refitting_the_build_weights_reproduces_the_built_engine_bit_exactly(mnist_engine):
    mnist_engine.refit_to(known_state(mnist_engine))
    changed = mnist_engine.probe()
    assert not np.array_equal(changed, mnist_engine.built_outputs), "refitting the trained conv1 changed nothing"
    mnist_engine.refit_to(known_state(mnist_engine, conv1="zero"))  # every weight as built
    np.testing.assert_array_equal(mnist_engine.probe(), mnist_engine.built_outputs)


def test_second_and_third_refits_with_different_weights_match_the_reference(mnist_engine, results):
    tol = mnist_engine.case.tolerance
    mnist_engine.refit_to(known_state(mnist_engine))
    for step, seed in (("second", 1), ("third", 2)):
        weights = variant(mnist_engine, seed)
        before = mnist_engine.probe()
        ref = mnist_engine.reference(weights)
        no_op = compare_outputs(before, ref, tol)
        assert not no_op.ok, f"{step} refit: the new weights do not change the outputs beyond tolerance: {no_op}"
        mnist_engine.refit_to(weights)
        cmp = compare_outputs(mnist_engine.probe(), ref, tol)
        print(f"{step} refit (all weights, seed {seed}) vs float64 reference: {cmp}")
        results.record_case_check("mnist", f"{step}_refit_all_weights_vs_reference", tolerance=tol.describe(),
                                  **cmp.summary())
        assert cmp.ok, f"{step} refit vs reference outside {tol.describe()}: {cmp}"


def test_a_bias_alone_refits(mnist_engine):
    """Only fc2's bias changes: the logits move by exactly that bias change (up to FP32)."""
    state = known_state(mnist_engine)
    mnist_engine.refit_to(state)
    before = mnist_engine.probe()
    delta = np.linspace(-1.0, 1.0, LENET_SHAPES["fc2.bias"][0]).astype(np.float32)
    bias = np.ascontiguousarray(state["fc2.bias"] + delta)
    mnist_engine.refit_to({"fc2.weight": state["fc2.weight"], "fc2.bias": bias})
    moved = mnist_engine.probe() - before
    np.testing.assert_allclose(moved, np.broadcast_to(delta.astype(np.float64), moved.shape), atol=1e-4)


def test_the_wrappers_missing_view_is_tensorrts_after_every_single_set(case_engine, results):
    """For every case: set each named weight alone (with its current value), compare the
    wrapper's missing() with TensorRT's get_missing_weights, forget it. Where TensorRT refits
    weights together (on 8.5 the BiDAF character convolution's kernel needs its bias) a list is
    not empty, and a wrapper that reports nothing missing, or drops a name, fails here; where a
    case has no such pairs both lists are empty and the case says so in the record."""
    r = case_engine.refitter
    case_engine.refit_to(case_engine.all_build_weights())
    # Where TensorRT cannot unset a weight (before 10.0) discard() hands its current value back,
    # so the refit after the loop refits every named weight: refit them all here too. An FP16
    # engine refitted with its own build values differs from the build (BiDAF stand-in FP16,
    # 8.5.3.1, H100: max|diff| 7.2e-3 when `before` was taken after its 2 target weights alone).
    case_engine.refit_to(dict(r.current))
    before = case_engine.probe()
    seen = {}
    for name in sorted(n for n, spec in r.specs.items() if spec.layer is None):
        r.set(name, np.array(r.current[name], copy=True))
        raw = sorted(str(n) for n in r.refitter.get_missing_weights())
        wrapper = sorted(r.missing())
        r.discard()
        if raw:
            seen[name] = raw
        assert wrapper == raw, f"after setting {name!r} alone: wrapper says {wrapper}, TensorRT {raw}"
    print(f"{case_engine.case.name}: TensorRT's missing weights after setting each weight alone: "
          f"{seen or 'none for any weight'}")
    results.record_case_check(case_engine.case.name, "missing_after_single_set",
                              weights_with_partners=len(seen), partners={k: list(v) for k, v in list(seen.items())[:20]})
    case_engine.refit_to(case_engine.all_build_weights())
    np.testing.assert_array_equal(case_engine.probe(), before)
