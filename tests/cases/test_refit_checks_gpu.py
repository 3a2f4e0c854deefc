"""The generic refit checks, run for every registered case (GPU tier).

The checks themselves live in refit_core.cases.checks, shared with `python -m refit_core
check`; each test here is one of them. `case_engine` is parametrized over
`refit_core.cases.registry` by the plugin; each case's engine is built once per session with
the case's build weights. Every check puts the weights it needs in place first, so order
does not matter. The tests after them (coverage map, bad weights, FP16 range) are the
pytest tier's own.
"""
from __future__ import annotations

import numpy as np
import pytest

from refit_core.cases import checks
from refit_core.errors import RefitError, WeightValidationError

pytestmark = pytest.mark.gpu


def _first_target(engine):
    return sorted(engine.target_weights)[0]


def _front_end(outcome, case_engine, results):
    """Print, record and assert one check of refit_core.cases.checks (the other front end is
    `python -m refit_core check`)."""
    name = case_engine.case.name
    print(f"{name}: {outcome.name}: {outcome.status}: {outcome.line}")
    if outcome.record:
        results.record_case_check(name, outcome.name, **outcome.record)
    for check, fields in outcome.more_records:
        results.record_case_check(name, check, **fields)
    if outcome.ok is None:
        pytest.skip(outcome.line)
    assert outcome.ok, outcome.line


def test_refittable_weights_cover_the_case_specs(case_engine, results):
    results.record_case_weights(case_engine.case.name, case_engine.refitter.trt_weight_names())
    _front_end(checks.refittable_weights(case_engine), case_engine, results)


def test_engine_as_built_matches_the_reference(case_engine, results):
    _front_end(checks.built_vs_reference(case_engine), case_engine, results)


def test_the_target_weights_change_the_reference(case_engine, results):
    """A check that cannot fail proves nothing: the references for the build and the target
    weights differ beyond NO_OP_MARGIN x the tolerance (BiDAF: the start/end scores)."""
    _front_end(checks.perturbation_changes_reference(case_engine), case_engine, results)


def test_refit_to_target_matches_the_reference(case_engine, results):
    """Refit to the target weights; the engine agrees with the reference for them, and not
    with the build reference (a refit that did nothing fails)."""
    _front_end(checks.refit_to_target_matches_reference(case_engine), case_engine, results)


_restored = checks.restore


def test_refit_back_restores_the_built_outputs(case_engine, results):
    """Bit for bit in FP32 and TF32; in FP16 within the tolerance and deterministic (how many
    values differ is recorded: cases.<case>.checks.refit_back_vs_built)."""
    _front_end(checks.refit_back_restores_built_outputs(case_engine), case_engine, results)


def test_refitting_the_same_weights_twice_is_bit_identical(case_engine, results):
    _front_end(checks.refit_twice_is_bit_identical(case_engine), case_engine, results)


def test_refit_equals_a_fresh_build_with_the_same_weights(case_engine, results):
    """Against the model built afresh WITHOUT REFIT (what a user gets by rebuilding; the refit
    tax benchmark times the same engine), which must itself agree with the reference."""
    _front_end(checks.refit_equals_fresh_build(case_engine), case_engine, results)


def test_weight_coverage_map(case_engine, results):
    """Which ONNX initializers a refit by name reaches; printed, recorded (the gate compares it)."""
    from refit_core.refit.coverage import BY_NAME, format_table
    coverage = case_engine.coverage()
    if coverage is None:
        pytest.skip(f"{case_engine.case.name} is built with the network API: its weights are named by the "
                    "code that builds it, there are no ONNX initializers to map")
    print(f"\n{case_engine.case.name}: weight coverage\n{format_table(coverage)}")
    results.record_case_coverage(case_engine.case.name, coverage.to_record())
    by_name = set(coverage.names(BY_NAME))
    assert set(case_engine.target_weights) <= by_name, \
        f"weights the checks refit by name that the map does not call refittable: {sorted(set(case_engine.target_weights) - by_name)}"
    unreachable = sorted(coverage.explanations())
    if unreachable:  # asking for one is refused before TensorRT, saying why and what to do
        from refit_core.onnx_prep.generic import onnx_float_initializers
        name = unreachable[0]
        array = onnx_float_initializers(case_engine.onnx_model_path())[name]
        before = _restored(case_engine)
        with pytest.raises(WeightValidationError) as info:
            case_engine.refit_to({name: array})
        message = str(info.value)
        assert name in message and "TensorRT" in message and "do_constant_folding" in message, message
        np.testing.assert_array_equal(case_engine.probe(), before)


BAD_KINDS = ("unknown name", "wrong shape", "wrong count", "float64", "NaN", "not contiguous")


def _layout_changing_shape(shape):
    """A shape with the same element count whose layout differs (not only by size-1 dims, which
    the refit path takes as the same weight), or None when there is none (a prime-sized vector)."""
    big = [d for d in shape if d > 1]
    if len(big) >= 2:
        return (int(np.prod(big)),)
    n = big[0] if big else 1
    factor = next((f for f in range(2, int(n ** 0.5) + 1) if n % f == 0), None)
    return None if factor is None else (factor, n // factor)


def _bad(engine, kind):
    name = _first_target(engine)
    if kind == "wrong shape":
        name = next((n for n in sorted(engine.target_weights)
                     if _layout_changing_shape(engine.target_weights[n].shape) is not None), None)
        if name is None:
            pytest.skip(f"{engine.case.name}: no weight has a shape that another layout of its values could take")
    w = np.array(engine.target_weights[name], dtype=np.float32, copy=True)
    weights = dict(engine.target_weights)
    if kind == "unknown name":
        weights[name + "_typo"] = weights.pop(name)
        return weights, name + "_typo", "not a refittable weight"
    if kind == "wrong shape":
        weights[name] = w.reshape(_layout_changing_shape(w.shape)).copy()
        return weights, name, "differs from the engine's"
    if kind == "wrong count":
        weights[name] = np.concatenate([w.reshape(-1), np.zeros(1, np.float32)]).copy()
        return weights, name, "elements"
    if kind == "float64":
        weights[name] = w.astype(np.float64)
        return weights, name, "dtype is float64"
    if kind == "NaN":
        w.reshape(-1)[0] = np.nan
        weights[name] = w
        return weights, name, "1 NaN"
    if kind == "not contiguous":  # same shape and values, every other element of a doubled array
        weights[name] = np.repeat(w, 2, axis=-1)[..., ::2]
        return weights, name, "not C-contiguous"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_weights_are_refused_and_the_engine_keeps_its_outputs(case_engine, kind):
    before = _restored(case_engine)
    weights, name, fragment = _bad(case_engine, kind)
    with pytest.raises((WeightValidationError, RefitError)) as info:
        case_engine.refit_to(weights)
    assert name in str(info.value) and fragment in str(info.value), str(info.value)
    np.testing.assert_array_equal(case_engine.probe(), before)
    case_engine.refit_to(case_engine.target_weights)  # and the next good refit still works
    assert not np.array_equal(case_engine.probe(), before)


FP16_OVERFLOW_VALUES = 3


def test_fp16_engines_refuse_weights_fp16_cannot_hold_unless_allowed(case_engine, results):
    """An FP16 engine: a weight with values beyond 65504 is refused, naming the weight and the
    count, and the engine keeps its outputs; allowed explicitly, TensorRT takes it, and what
    that does to the outputs is recorded (cases.<case>.fp16_out_of_range_allowed)."""
    if case_engine.case.precision != "fp16":
        pytest.skip(f"{case_engine.case.name} is built in {case_engine.case.precision}: FP16's range does not apply")
    name = _first_target(case_engine)
    before = _restored(case_engine)
    weights = case_engine.all_build_weights()
    big = np.array(weights[name], dtype=np.float32, copy=True)
    big.reshape(-1)[:FP16_OVERFLOW_VALUES] = 1e6
    weights[name] = big
    with pytest.raises(WeightValidationError) as info:
        case_engine.refit_to(weights)
    message = str(info.value)
    assert name in message and f"{FP16_OVERFLOW_VALUES} of {big.size} values exceed" in message, message
    np.testing.assert_array_equal(case_engine.probe(), before)
    case_engine.refitter.refit_with(weights, fill_missing=True, allow_fp16_range=True)
    out = case_engine.probe()
    finite = np.isfinite(out)
    shown = float(np.abs(out[finite]).max()) if finite.any() else float("nan")
    results.record_case_check(case_engine.case.name, "fp16_out_of_range_allowed", weight=name,
                              values_set_to_1e6=FP16_OVERFLOW_VALUES, outputs=int(out.size),
                              outputs_nonfinite=int((~finite).sum()),
                              max_abs_finite_output=shown if np.isfinite(shown) else "none finite",
                              changed=bool(not np.array_equal(out, before)))
    print(f"{case_engine.case.name}: allowed {FP16_OVERFLOW_VALUES} values of 1e6 in {name!r}: "
          f"{int((~finite).sum())}/{out.size} outputs non-finite, max finite |out| {shown:.4g}")
    np.testing.assert_array_equal(_restored(case_engine), before)
