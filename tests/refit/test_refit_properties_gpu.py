"""Refit is as good as a rebuild, for any weights (Hypothesis, GPU tier).

MNIST: every example refits all eight LeNet weights to perturbed values (tests/refit/
strategies.py: no kind leaves a weight as it was, at most one zeroed kernel in 1 plan of 16)
and compares, per image row, the engine's logits with the float64 numpy reference and with
a FRESH BUILD with the same weights, within cases.mnist.PROPERTY_TOLERANCE
(1e-3 + 1e-4 * max|reference logit of the row|). Examples whose reference logits are the
same for every image (degenerate) are checked against the reference, then rejected
(`assume`) and counted; every other example gets a fresh build (>= 8 under `ci`, checked by
test_every_mnist_example_was_compared_with_a_fresh_build). The results record
(property_tests.mnist) has the counts and the largest absolute/relative row differences.

BiDAF: every example refits 1..6 weights (mild perturbations) and compares the engine's
start/end scores with ONNX Runtime's within cases.bidaf.SCORE_TOLERANCE per question and
the spans within SPAN_TOLERANCE; examples whose weights do not move ONNX Runtime's scores
beyond twice the tolerance are rejected and counted, so a refit that does nothing fails
(tests/refit/test_bidaf_property_cpu.py shows it on ONNX Runtime).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from refit_core.cases.base import compare_outputs
from refit_core.cases.mnist import PROPERTY_TOLERANCE
from refit_core.errors import RefitError
from refit_core.samples.mnist import LENET_SHAPES, LENET_WEIGHT_NAMES
from tests.refit.bidaf_property import bidaf_plans, check_example, held_out_pairs, new_stats, summary
from tests.refit.strategies import degenerate, perturb_all, weight_perturbations

pytestmark = pytest.mark.gpu

LENET_NAMES = LENET_WEIGHT_NAMES
PROBE = 256
#: every non-degenerate example gets a fresh build (~2 s on 8.5): ci 8, thorough capped at 40
MNIST_EXAMPLES = min(settings.default.max_examples, 40)
MIN_FRESH_BUILDS = min(8, MNIST_EXAMPLES)
BIDAF_EXAMPLES = min(settings.default.max_examples, 20)  # each example asks 20 questions twice

_mnist = {"examples": 0, "fresh_builds": 0, "degenerate_rejected": 0, "failures": 0,
          "refit_vs_reference_max_abs": 0.0, "refit_vs_reference_max_rel": 0.0,
          "refit_vs_fresh_build_max_abs": 0.0, "refit_vs_fresh_build_max_rel": 0.0,
          "tolerance": PROPERTY_TOLERANCE.describe()}


@pytest.fixture(scope="module")
def probe_images(mnist_test_set):
    return np.ascontiguousarray(mnist_test_set["images"][:PROBE])


_examples = {}


@pytest.fixture
def count_example(request, results):
    """Call once per Hypothesis example: the record's provenance gets the examples run per test."""
    def count():
        _examples[request.node.nodeid] = _examples.get(request.node.nodeid, 0) + 1
        results.record_hypothesis_examples(request.node.nodeid, _examples[request.node.nodeid])
    return count


def _finite(x: float) -> float:
    return x if np.isfinite(x) else float(np.finfo(np.float64).max)


def _note(check: str, cmp) -> None:
    _mnist[f"{check}_max_abs"] = max(_mnist[f"{check}_max_abs"], _finite(cmp.max_abs))
    _mnist[f"{check}_max_rel"] = max(_mnist[f"{check}_max_rel"], _finite(cmp.max_rel))
    if not cmp.ok:
        _mnist["failures"] += 1


@settings(max_examples=MNIST_EXAMPLES)
@given(plan=weight_perturbations(LENET_SHAPES))
def test_refit_equals_reference_and_fresh_build(plan, mnist_engine, results, count_example):
    count_example()
    weights = perturb_all(mnist_engine.trained, plan)
    ref = mnist_engine.reference(weights)
    mnist_engine.refit_to(weights)
    got = mnist_engine.probe()
    cmp = compare_outputs(got, ref, PROPERTY_TOLERANCE)
    _mnist["examples"] += 1
    _note("refit_vs_reference", cmp)
    results.record_property_test("mnist", dict(_mnist))
    assert cmp.ok, f"refit vs reference outside {PROPERTY_TOLERANCE.describe()}: {cmp} for {plan}"
    if degenerate(ref):  # the same logits for every image: a fresh build would prove little
        _mnist["degenerate_rejected"] += 1
        results.record_property_test("mnist", dict(_mnist))
        assume(False)
    fresh = mnist_engine.fresh_probe(weights)
    _mnist["fresh_builds"] += 1
    cmp = compare_outputs(got, fresh, PROPERTY_TOLERANCE)
    _note("refit_vs_fresh_build", cmp)
    results.record_property_test("mnist", dict(_mnist))
    assert cmp.ok, f"refit vs fresh build outside {PROPERTY_TOLERANCE.describe()}: {cmp} for {plan}"


def test_every_mnist_example_was_compared_with_a_fresh_build():
    """Runs after the property test (file order): it made at least MIN_FRESH_BUILDS fresh
    builds, one per non-degenerate example."""
    if _mnist["examples"] == 0:
        pytest.skip("test_refit_equals_reference_and_fresh_build did not run in this session")
    if _mnist["failures"]:
        pytest.skip("test_refit_equals_reference_and_fresh_build failed; its counts prove nothing")
    assert _mnist["fresh_builds"] == _mnist["examples"] - _mnist["degenerate_rejected"], _mnist
    assert _mnist["fresh_builds"] >= MIN_FRESH_BUILDS, _mnist


@given(plan=weight_perturbations(LENET_SHAPES))
def test_round_trip_and_idempotence_are_bit_exact(plan, mnist_engine, probe_images, count_example):
    count_example()
    original = {k: mnist_engine.trained[k] for k in LENET_NAMES}
    mnist_engine.refit_to(original)
    first = mnist_engine.logits(probe_images)
    changed = perturb_all(original, plan)
    mnist_engine.refit_to(changed)
    once = mnist_engine.logits(probe_images)
    assert not np.array_equal(once, first), f"the refit to {plan} changed no logit: the round trip proves nothing"
    mnist_engine.refit_to(changed)
    np.testing.assert_array_equal(mnist_engine.logits(probe_images), once)
    mnist_engine.refit_to(original)
    np.testing.assert_array_equal(mnist_engine.logits(probe_images), first)


@given(subset=st.sets(st.sampled_from(LENET_NAMES), min_size=1, max_size=len(LENET_NAMES) - 1))
def test_partial_refit_reports_exactly_what_tensorrt_misses(subset, mnist_engine, probe_images, count_example):
    count_example()
    r = mnist_engine.refitter
    before = mnist_engine.logits(probe_images)
    for name in sorted(subset):
        r.set(name, mnist_engine.trained[name])
    assert sorted(r.missing()) == sorted(str(n) for n in r.refitter.get_missing_weights())
    groups_complete = all((f"{layer}.weight" in subset) == (f"{layer}.bias" in subset)
                          for layer in ("conv1", "conv2", "fc1", "fc2"))
    if not groups_complete or r.missing():
        with pytest.raises(RefitError) as info:
            r.refit()
        assert info.value.missing
        for name in info.value.missing:
            assert name not in subset
        r.discard()
        np.testing.assert_array_equal(mnist_engine.logits(probe_images), before)
    else:
        r.refit()
    mnist_engine.refit_to(dict(mnist_engine.start_weights))
    np.testing.assert_array_equal(mnist_engine.logits(probe_images), mnist_engine.fresh_logits[:PROBE])


# ---- BiDAF ------------------------------------------------------------------------------
_bidaf_stats = {}
_before = {}


@settings(max_examples=BIDAF_EXAMPLES)
@given(data=st.data())
def test_bidaf_refit_matches_onnx_runtime(data, bidaf_engine, bidaf_model, results, count_example):
    count_example()
    key = bidaf_model[0]
    stats = _bidaf_stats.setdefault(key, new_stats())
    pairs = held_out_pairs()
    if key not in _before:  # the engine is shared: start from the model's own weights
        bidaf_engine.refitter.refit_with(dict(bidaf_engine.initial), fill_missing=True)
        _before[key] = bidaf_engine.reference_outputs(bidaf_engine.initial, pairs)
    plan = data.draw(bidaf_plans(sorted(bidaf_engine.specs)))
    weights = perturb_all(bidaf_engine.initial, plan)
    refitted = []

    def refit(w):
        refitted.append(True)
        # TensorRT refits fused/shared weights together (on 8.5, char_conv_W needs char_conv_B):
        # what it needs besides the drawn weights keeps its current (initial) value
        bidaf_engine.refitter.refit_with(w, fill_missing=True)

    try:
        check = check_example(refit, lambda: bidaf_engine.outputs(pairs), _before[key],
                              bidaf_engine.reference_outputs(weights, pairs), weights, stats)
        assert check.ok, f"{key}: refit vs ONNX Runtime: {check} for {plan}"
    finally:
        results.record_property_test(f"bidaf_{key}", summary(stats))
        if refitted:
            bidaf_engine.refitter.refit_with({n: bidaf_engine.initial[n] for n in plan}, fill_missing=True)
    assert bidaf_engine.answer(*_sample())[2] == "brown"


def _sample():
    from refit_core.samples.bidaf.data import SAMPLE_CONTEXT, SAMPLE_QUERY
    return SAMPLE_CONTEXT, SAMPLE_QUERY
