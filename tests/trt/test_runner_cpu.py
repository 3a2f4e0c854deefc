"""Input checks of the runner that need no GPU (CPU tier)."""
from __future__ import annotations

import numpy as np
import pytest

from refit_core.trt.runner import InputShapeError, as_input_dtype, check_input_shape

PROFILE = ((1, 1, 28, 28), (1000, 1, 28, 28), (1000, 1, 28, 28))


def test_shapes_inside_the_profile_pass():
    check_input_shape("input", (1, 1, 28, 28), (-1, 1, 28, 28), PROFILE)
    check_input_shape("input", (1000, 1, 28, 28), (-1, 1, 28, 28), PROFILE)


@pytest.mark.parametrize("shape,fragment", [
    ((1001, 1, 28, 28), r"dimension 0 is 1001, outside the engine's optimization profile \[1, 1000\]"),
    ((0, 1, 28, 28), r"dimension 0 is 0, outside"),
    ((4, 3, 28, 28), "dimension 1 is 3; the engine fixes it to 1"),
    ((4, 28, 28), "has rank 3"),
])
def test_shapes_outside_get_a_clear_error(shape, fragment):
    with pytest.raises(InputShapeError, match=fragment):
        check_input_shape("input", shape, (-1, 1, 28, 28), PROFILE)


def test_dtypes_convert_within_their_kind_only():
    assert as_input_dtype("x", np.arange(3, dtype=np.int64), np.int32).dtype == np.int32
    assert as_input_dtype("x", np.ones(3, np.float64), np.float32).dtype == np.float32
    with pytest.raises(ValueError, match="outside int32 range"):
        as_input_dtype("x", np.array([2**40]), np.int32)
    with pytest.raises(TypeError, match="is float32; the engine takes int32"):
        as_input_dtype("x", np.ones(2, np.float32), np.int32)
    out = as_input_dtype("x", np.ones((3, 2), np.float32).T, np.float32)
    assert out.flags.c_contiguous


def test_outputs_of_data_dependent_shape_are_named_in_one_sentence():
    """An NMS or NonZero output is -1 even with every input's shape set: the runner says so
    instead of failing to allocate a buffer of negative size."""
    from refit_core.trt.runner import data_dependent_outputs
    assert data_dependent_outputs({"boxes": (1, 100, 4), "scores": (1, 100)}) is None
    said = data_dependent_outputs({"logits": (1, 10), "selected_indices": (-1, 3)})
    assert "output 'selected_indices' (-1, 3) of this engine has a shape" in said and "logits" not in said
    assert "NonMaxSuppression" in said and "\n" not in said
    two = data_dependent_outputs({"a": (-1,), "b": (2, -1)})
    assert two.startswith("outputs 'a' (-1,), 'b' (2, -1) of this engine have")
