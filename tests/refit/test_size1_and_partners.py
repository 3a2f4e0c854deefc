"""The refit path's own rules must not raise false alarms (CPU tier, numpy only):

* a weight whose shape differs from the engine's only by size-1 dims ((1,) for (), (1, 64)
  for (64,)) is the same weight on every path (real, perturbed, restored): accepted, and
  handed on in the engine's shape, as a view of the caller's buffer;
* the seeded perturbation of OnnxModelCase keeps every weight's shape and dtype, so it never
  produces a weight the refit path refuses (hypothesis, 0-d and size-1 shapes included);
* blocked_weights finds the weights TensorRT refits only together with weights of its own
  (BatchNorm folded into tmp_weight_N on 8.x); the lists it is fed here imitate what a
  refitter's get_missing_weights() says, they are not a TensorRT result.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refit_core.cases.onnx_model import OnnxModelCase
from refit_core.errors import WeightValidationError
from refit_core.refit.refitter import blocked_reason, blocked_weights
from refit_core.refit.validation import WeightSpec, same_but_size1, specs_from_arrays, validate_weight


@pytest.mark.parametrize("given_shape, engine_shape", [((1,), ()), ((), (1,)), ((1, 64), (64,)),
                                                       ((64, 1, 1), (1, 64)), ((3, 1, 4), (3, 4))])
def test_size1_dims_are_the_same_weight_and_come_back_in_the_engines_shape(given_shape, engine_shape):
    n = int(np.prod(engine_shape))
    array = np.arange(n, dtype=np.float32).reshape(given_shape)
    out = validate_weight({"w": WeightSpec("w", engine_shape)}, "w", array)
    assert out.shape == engine_shape and np.shares_memory(out, array)
    np.testing.assert_array_equal(out.reshape(-1), array.reshape(-1))


@pytest.mark.parametrize("given_shape, engine_shape", [((4, 3), (3, 4)), ((12,), (3, 4)), ((2, 1, 6), (6, 2))])
def test_a_layout_change_is_still_refused(given_shape, engine_shape):
    with pytest.raises(WeightValidationError, match="differs from the engine's"):
        validate_weight({"w": WeightSpec("w", engine_shape)}, "w", np.zeros(given_shape, np.float32))


def test_size1_rule_does_not_hide_other_problems():
    spec = {"w": WeightSpec("w", ())}
    with pytest.raises(WeightValidationError, match="dtype is float64"):
        validate_weight(spec, "w", np.zeros((1,), np.float64))
    with pytest.raises(WeightValidationError, match="1 NaN"):
        validate_weight(spec, "w", np.full((1,), np.nan, np.float32))
    assert same_but_size1((1, 5, 1), (5,)) and not same_but_size1((5, 2), (2, 5))


weights_st = st.dictionaries(
    st.text("abcdefgh", min_size=1, max_size=4),
    hnp.arrays(np.float32, hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4),
               elements=st.floats(-4, 4, width=32)),
    min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(weights=weights_st, seed=st.integers(0, 2 ** 16))
def test_the_perturbation_keeps_every_weight_acceptable_to_the_refit_path(weights, seed):
    """Real, perturbed and restored weights all pass the same validation against specs taken
    from the real ones (what EngineRefitter derives), 0-d weights included."""
    case = OnnxModelCase("c", lambda d: d, {}, seed=seed)
    target = case.target_weights(weights)
    specs = specs_from_arrays(weights)
    for name, w in weights.items():
        assert target[name].shape == w.shape and target[name].dtype == w.dtype
        for values in (w.copy(), target[name], w.copy()):  # real, perturbed, restored
            validate_weight(specs, name, values, allow_nonfinite=True)


def _fake_missing(groups):
    """missing_after for layers whose weights TensorRT refits together: `groups` lists each
    layer's weights; setting any asks for the rest that are not set yet."""
    def missing_after(names):
        out = []
        for group in groups:
            if set(names) & set(group):
                out += [w for w in group if w not in names]
        return out
    return missing_after


def test_no_partner_outside_the_settable_names_means_nothing_is_blocked():
    calls = []
    missing = _fake_missing([["conv.w", "conv.b"], ["fc.w"]])
    blocked = blocked_weights(["conv.w", "conv.b", "fc.w"], {"conv.w", "conv.b", "fc.w"},
                              lambda names: calls.append(list(names)) or missing(names))
    assert blocked == {} and len(calls) == 1  # one probe with everything set


def test_weights_folded_with_a_tensorrt_only_weight_are_blocked_the_others_are_not():
    groups = [["conv1.w", "tmp_weight_38"], ["conv2.w", "conv2.b"], ["conv3.w", "conv3.b", "tmp_weight_40"], ["fc.w"]]
    names = ["conv1.w", "conv2.w", "conv2.b", "conv3.w", "conv3.b", "fc.w"]
    blocked = blocked_weights(names, set(names), _fake_missing(groups))
    assert blocked == {"conv1.w": ["tmp_weight_38"], "conv3.w": ["tmp_weight_40"], "conv3.b": ["tmp_weight_40"]}


def test_a_partner_reached_through_another_settable_weight_blocks_too():
    # setting a asks for b (settable); b's layer also needs an unnamed weight ('None' on 8.5)
    def missing_after(names):
        out = []
        if "a" in names and "b" not in names:
            out.append("b")
        if "b" in names:
            out.append("None")
        return out
    assert blocked_weights(["a", "b", "c"], {"a", "b", "c"}, missing_after) == {"a": ["None"], "b": ["None"]}


def test_the_blocked_reason_says_what_to_change():
    text = blocked_reason(["tmp_weight_38", "tmp_weight_39"])
    assert "'tmp_weight_38'" in text and "do_constant_folding=False" in text and "OnnxParserRefitter" in text
    assert "TensorRT" in text
