"""Refit is as good as a rebuild, for any weights (Hypothesis, GPU tier).

Tolerances (FP32 with TF32 cleared; stated in the README): MNIST logits agree with the
float64 numpy reference and with a fresh build within 1e-3 + 1e-5 * max|reference logit|
(large-magnitude weights scale the logits, and FP32 error with them). BiDAF answers (arg-max
spans) agree with ONNX Runtime on at least 95% of the probed questions: near-ties in the
pointer logits may flip under a different summation order.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refit_core.errors import RefitError
from tests.refit.strategies import perturb_all, weight_perturbations

pytestmark = pytest.mark.gpu

LENET_NAMES = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
               "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")
PROBE = 256
MAX_FRESH_BUILDS = {"ci": 2, "thorough": 8}
_fresh_builds = {"count": 0}
_largest = {"refit_vs_reference": 0.0, "refit_vs_reference_relative": 0.0, "refit_vs_rebuild": 0.0,
            "refit_vs_rebuild_relative": 0.0, "examples": 0}
BIDAF_EXAMPLES = 20 if settings.default.max_examples >= 100 else 4  # each example runs 20 questions


def tolerance(reference: np.ndarray) -> float:
    return 1e-3 + 1e-5 * float(np.abs(reference).max())


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


@given(plan=weight_perturbations(LENET_NAMES))
def test_refit_equals_reference_and_fresh_build(plan, mnist_engine, probe_images, cuda_session, trt_logger,
                                                results, count_example):
    count_example()
    from refit_core.models.lenet_reference import lenet_forward
    from refit_core.trt.engine import BuildOptions
    from refit_core.trt.runner import TrtRunner
    weights = perturb_all(mnist_engine.trained, plan)
    mnist_engine.refit_to(weights)
    got = mnist_engine.logits(probe_images)
    ref = lenet_forward(weights, probe_images)
    diff = float(np.abs(got - ref).max())
    scale = max(1.0, float(np.abs(ref).max()))  # large-magnitude weights scale the logits
    _largest["refit_vs_reference"] = max(_largest["refit_vs_reference"], diff)
    _largest["refit_vs_reference_relative"] = max(_largest["refit_vs_reference_relative"], diff / scale)
    _largest["examples"] += 1
    assert diff <= tolerance(ref), f"refit vs reference {diff:.3g} for {plan}"
    profile = "thorough" if settings.default.max_examples >= 100 else "ci"
    if _fresh_builds["count"] < MAX_FRESH_BUILDS[profile]:
        _fresh_builds["count"] += 1
        handle, _ = mnist_engine.flow.build_lenet_engine(weights, BuildOptions(), trt_logger, None,
                                                         cuda_session.gpu_name, progress=lambda s: None)
        try:
            fresh = mnist_engine.flow.run_lenet(TrtRunner(handle), probe_images)
        finally:
            handle.close()
        d2 = float(np.abs(got - fresh).max())
        _largest["refit_vs_rebuild"] = max(_largest["refit_vs_rebuild"], d2)
        _largest["refit_vs_rebuild_relative"] = max(_largest["refit_vs_rebuild_relative"], d2 / scale)
        assert d2 <= tolerance(ref), f"refit vs fresh build {d2:.3g} for {plan}"
    results.record_property_test("mnist", dict(_largest, fresh_builds=_fresh_builds["count"]))


@given(plan=weight_perturbations(LENET_NAMES))
def test_round_trip_and_idempotence_are_bit_exact(plan, mnist_engine, probe_images, count_example):
    count_example()
    original = {k: mnist_engine.trained[k] for k in LENET_NAMES}
    mnist_engine.refit_to(original)
    first = mnist_engine.logits(probe_images)
    changed = perturb_all(original, plan)
    mnist_engine.refit_to(changed)
    once = mnist_engine.logits(probe_images)
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
def _ort_with(prepared, weights):
    from refit_core.cases.onnx_model import with_initializers
    from refit_core.models.ort_session import ort_session
    return ort_session(with_initializers(prepared.model_path, weights))


@settings(max_examples=BIDAF_EXAMPLES)
@given(data=st.data())
def test_bidaf_refit_matches_onnx_runtime(data, bidaf_engine, results, count_example):
    count_example()
    from refit_core.data.reading_comprehension import heldout_examples
    from refit_core.text.preprocess import encode_text, feeds_for_prepared
    names = sorted(bidaf_engine.specs)
    chosen = data.draw(st.sets(st.sampled_from(names), min_size=1, max_size=min(6, len(names))))
    plan = data.draw(weight_perturbations(sorted(chosen)))
    for p in plan.values():  # keep the model recognisable: mild changes only
        p["kind"] = p["kind"] if p["kind"] in ("scale", "noise", "sign_flip") else "noise"
        p["scale"] = min(max(p["scale"], 0.5), 2.0)
    weights = perturb_all(bidaf_engine.initial, plan)
    session = _ort_with(bidaf_engine.prepared, weights)
    # TensorRT refits fused/shared weights together (on 8.5, char_conv_W needs char_conv_B):
    # what it needs besides the drawn weights keeps its current value
    bidaf_engine.refitter.refit_with(weights, fill_missing=True)
    try:
        agree = 0
        examples = heldout_examples()[:20]
        for ex in examples:
            ctx = encode_text(ex.context, bidaf_engine.prepared.maps, "context")
            qry = encode_text(ex.query, bidaf_engine.prepared.maps, "query")
            outs = session.run(["start_pos", "end_pos"],
                               feeds_for_prepared(ctx, qry, bidaf_engine.prepared.input_names))
            ref = (int(np.ravel(outs[0])[0]), int(np.ravel(outs[1])[0]))
            agree += bidaf_engine.answer(ex.context, ex.query)[:2] == ref
        assert agree >= 0.95 * len(examples), f"{agree}/{len(examples)} spans agree for {plan}"
    finally:
        bidaf_engine.refitter.refit_with({n: bidaf_engine.initial[n] for n in chosen}, fill_missing=True)
    assert bidaf_engine.answer(*_sample())[2] == "brown"


def _sample():
    from refit_core.data.reading_comprehension import SAMPLE_CONTEXT, SAMPLE_QUERY
    return SAMPLE_CONTEXT, SAMPLE_QUERY
