"""Errors name the thing that is wrong (CPU tier)."""
from __future__ import annotations

from refit_core.errors import RefitCoreError, RefitError, WeightValidationError


def test_weight_errors_carry_name_and_problem():
    exc = WeightValidationError("conv1.weight", "has 7 elements")
    assert str(exc) == "weight 'conv1.weight': has 7 elements"
    assert (exc.weight_name, exc.problem) == ("conv1.weight", "has 7 elements")
    assert str(WeightValidationError(None, "names are strings")) == "weight: names are strings"
    assert isinstance(exc, RefitCoreError)


def test_refit_errors_quote_tensorrt():
    exc = RefitError("refit failed", ["Assertion newWeights.count() == original.count() failed"], ["conv1.bias"])
    assert str(exc) == "refit failed; TensorRT said: Assertion newWeights.count() == original.count() failed"
    assert exc.missing == ["conv1.bias"]
    assert str(RefitError("plain")) == "plain"
