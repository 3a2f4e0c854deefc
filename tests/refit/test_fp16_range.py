"""FP16 weight-range refusal (CPU tier, numpy only): weights an FP16 engine cannot hold are
refused naming the weight and the count of affected values, unless explicitly allowed."""
from __future__ import annotations

import numpy as np
import pytest

from refit_core.errors import WeightValidationError
from refit_core.refit.validation import (FP16_MAX, FP16_MAX_UNDERFLOW_FRACTION, FP16_MIN_SUBNORMAL, WeightSpec,
                                         validate_fp16_range, validate_weight)


def _weights(n=1000, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def test_the_thresholds_are_fp16s_own():
    assert FP16_MAX == float(np.finfo(np.float16).max)
    assert FP16_MIN_SUBNORMAL == float(np.finfo(np.float16).smallest_subnormal)
    assert np.float16(np.float32(FP16_MAX)) == FP16_MAX          # the largest value survives
    with np.errstate(over="ignore"):
        assert np.isinf(np.float16(np.float32(70000.0)))          # a larger one does not
    assert np.float16(np.float32(FP16_MIN_SUBNORMAL / 2)) == 0    # below the smallest: zero


def test_ordinary_weights_pass_and_are_returned_unchanged():
    w = _weights()
    assert validate_fp16_range("conv.weight", w) is w


def test_values_beyond_65504_are_refused_with_their_count():
    w = _weights()
    w[[3, 7, 11]] = [70000.0, -1e6, 65505.0]
    with pytest.raises(WeightValidationError) as info:
        validate_fp16_range("fc.weight", w)
    assert info.value.weight_name == "fc.weight"
    assert "3 of 1000 values exceed FP16's largest value 65504" in str(info.value)
    assert "1e+06" in str(info.value)  # the largest magnitude is shown


def test_exactly_65504_is_representable_and_passes():
    w = _weights()
    w[0], w[1] = FP16_MAX, -FP16_MAX
    validate_fp16_range("w", w)


def test_a_mass_of_values_that_flush_to_zero_is_refused():
    w = _weights()
    w[:20] = 1e-9  # 2% of the nonzero values: below 2**-24
    with pytest.raises(WeightValidationError) as info:
        validate_fp16_range("lora.up", w)
    text = str(info.value)
    assert "lora.up" in text and "20 of its 1000 nonzero values (2.0%, more than 1%)" in text and "flush to zero" in text


def test_a_few_tiny_values_and_exact_zeros_pass():
    w = _weights()
    w[:10] = 1e-9                   # 10 of 1000 nonzero values: exactly 1%, not more
    w[10:20] = FP16_MIN_SUBNORMAL   # 2**-24 itself is representable
    validate_fp16_range("w", w)
    w[20:520] = 0.0                 # zeros are not flushed values, and the share is of nonzero ones:
    with pytest.raises(WeightValidationError, match=r"(?<!\d)10 of its 500 nonzero values \(2\.0%"):
        validate_fp16_range("w", w)  # the same 10 are now 2% and refused
    assert FP16_MAX_UNDERFLOW_FRACTION == 0.01


def test_a_mostly_zero_weight_passes():
    w = np.zeros(1000, np.float32)
    w[:3] = [0.5, -0.25, 1e-9]  # 1 of 3 nonzero values is tiny, but zeros are not flushed values
    with pytest.raises(WeightValidationError, match=r"(?<!\d)1 of its 3 nonzero"):
        validate_fp16_range("mask", w)
    w[2] = 0.125
    validate_fp16_range("mask", w)


def test_allow_lets_everything_through():
    w = _weights()
    w[0] = 1e9
    w[1:100] = 1e-12
    assert validate_fp16_range("w", w, allow=True) is w


def test_float16_arrays_and_non_finite_values_are_not_counted_here():
    validate_fp16_range("h", np.ones(4, np.float16))
    w = _weights()
    w[0], w[1] = np.inf, np.nan  # validate_weight's non-finite rule reports these
    validate_fp16_range("w", w)


def test_validate_weight_checks_fp16_specs_only_and_honours_the_flag():
    w = _weights().reshape(10, 100)
    w[0, 0] = 1e5
    plain = {"w": WeightSpec("w", (10, 100))}
    half = {"w": WeightSpec("w", (10, 100), fp16=True)}
    assert validate_weight(plain, "w", w) is w  # default: current behaviour, no range rule
    with pytest.raises(WeightValidationError, match="does not fit the FP16 engine: 1 of 1000 values"):
        validate_weight(half, "w", w)
    assert validate_weight(half, "w", w, allow_fp16_range=True) is w
