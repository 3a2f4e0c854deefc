"""Every weight problem the refit wrapper catches before TensorRT sees it (CPU tier)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from refit_core.errors import WeightValidationError
from refit_core.refit.validation import (WeightSpec, incomplete_groups, specs_from_arrays, validate_weight,
                                         validate_weights)

SPECS = {
    "conv1.weight": WeightSpec("conv1.weight", (20, 1, 5, 5), group="conv1"),
    "conv1.bias": WeightSpec("conv1.bias", (20,), group="conv1"),
    "fc2.weight": WeightSpec("fc2.weight", (10, 500), group="fc2"),
}


def good(name: str) -> np.ndarray:
    return np.ones(SPECS[name].shape, np.float32)


def test_a_good_weight_is_returned_unchanged():
    w = good("conv1.weight")
    assert validate_weight(SPECS, "conv1.weight", w) is w


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


BAD_INPUTS = [
    # (id, name, array, fragment of the message)
    ("unknown name", "conv1.wieght", good("conv1.weight"), "did you mean 'conv1.weight'"),
    ("non-string name", 7, good("conv1.bias"), "weight names are strings"),
    ("None", "conv1.bias", None, "got None"),
    ("list", "conv1.bias", [0.0] * 20, "expected a numpy.ndarray, got list"),
    ("float64", "conv1.bias", np.ones(20, np.float64), "dtype is float64"),
    ("float16", "conv1.bias", np.ones(20, np.float16), "dtype is float16"),
    ("int32", "conv1.bias", np.ones(20, np.int32), "dtype is int32"),
    ("empty", "conv1.bias", np.ones(0, np.float32), "empty array"),
    ("wrong count", "conv1.bias", np.ones(19, np.float32), "has 19 elements"),
    ("right count wrong shape", "fc2.weight", np.ones((500, 10), np.float32), "differs from the engine's (10, 500)"),
    ("non-contiguous", "fc2.weight", np.ones((500, 10), np.float32).T, "not C-contiguous"),
    ("read-only", "conv1.bias", _readonly(np.ones(20, np.float32)), "read-only"),
    ("NaN", "conv1.bias", np.array([np.nan] + [0.0] * 19, np.float32), "1 NaN and 0 Inf"),
    ("Inf", "conv1.bias", np.array([np.inf, -np.inf] + [0.0] * 18, np.float32), "0 NaN and 2 Inf"),
]


@pytest.mark.parametrize("name,array,fragment", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_refused_with_the_weight_and_the_problem(name, array, fragment):
    with pytest.raises(WeightValidationError) as info:
        validate_weight(SPECS, name, array)
    assert fragment in str(info.value)
    if isinstance(name, str):
        assert info.value.weight_name == name
        assert repr(name) in str(info.value)


def test_nonfinite_values_pass_when_explicitly_allowed():
    w = np.full(20, np.nan, np.float32)
    assert validate_weight(SPECS, "conv1.bias", w, allow_nonfinite=True) is w


def test_validate_weights_is_all_or_nothing():
    with pytest.raises(WeightValidationError, match="conv1.bias"):
        validate_weights(SPECS, {"conv1.weight": good("conv1.weight"), "conv1.bias": np.ones(3, np.float32)})


def test_groups_report_the_members_left_out():
    assert incomplete_groups(SPECS, ["conv1.weight"]) == {"conv1": ["conv1.bias"]}
    assert incomplete_groups(SPECS, ["conv1.weight", "conv1.bias"]) == {}
    assert incomplete_groups(SPECS, ["fc2.weight"]) == {}


def test_specs_from_arrays_keeps_shape_and_dtype():
    specs = specs_from_arrays({"W_0": np.zeros((3, 4), np.float32)})
    assert specs["W_0"].shape == (3, 4) and specs["W_0"].dtype == "float32" and specs["W_0"].count == 12


@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                  elements=st.floats(width=32, allow_nan=False, allow_infinity=False)))
def test_any_finite_float32_array_of_the_right_shape_passes(array):
    specs = {"w": WeightSpec("w", array.shape)}
    assert validate_weight(specs, "w", array) is array


@given(hnp.arrays(st.sampled_from([np.float32, np.float64, np.int32]),
                  hnp.array_shapes(min_dims=1, max_dims=2, max_side=5)))
def test_a_mismatch_is_never_accepted(array):
    specs = {"w": WeightSpec("w", (5, 5))}
    if array.dtype == np.float32 and array.shape == (5, 5) and np.isfinite(array).all():
        assert validate_weight(specs, "w", array) is array
    else:
        with pytest.raises(WeightValidationError):
            validate_weight(specs, "w", array)


# ---- masked and unaligned arrays (TensorRT reads the raw, aligned buffer) -------------------

def test_a_masked_array_is_refused_even_with_nan_under_the_mask():
    data = good("conv1.bias")
    data[3] = np.nan
    masked = np.ma.MaskedArray(data, mask=np.isnan(data))
    assert np.isfinite(masked).all()  # what a check through the mask would see
    with pytest.raises(WeightValidationError, match="'conv1.bias'.*masked array") as info:
        validate_weight(SPECS, "conv1.bias", masked)
    print(info.value)
    clean = np.ma.MaskedArray(good("conv1.bias"), mask=False)
    with pytest.raises(WeightValidationError, match="masked array"):
        validate_weight(SPECS, "conv1.bias", clean)


def test_an_unaligned_array_is_refused_with_its_name():
    raw = bytearray(20 * 4 + 1)
    unaligned = np.frombuffer(raw, dtype=np.float32, count=20, offset=1)
    assert not unaligned.flags.aligned and unaligned.flags.writeable and unaligned.flags.c_contiguous
    with pytest.raises(WeightValidationError, match="'conv1.bias'.*not aligned") as info:
        validate_weight(SPECS, "conv1.bias", unaligned)
    print(info.value)
