"""wrapper_overhead: the typed recorder method and its strict schema (CPU tier)."""
from __future__ import annotations

import json

import pytest

from refit_core.reporting.results import ResultsRecorder




@pytest.mark.parametrize("trt,total,fragment", [
    ([], [], "at least one"),
    ([0.01], [0.01, 0.02], "as many raw as total"),
    ([0.02], [0.01], "0 < raw <= total"),
    ([0.0], [0.01], "0 < raw <= total"),
    ([float("nan")], [0.01], "0 < raw <= total"),
])
def test_bad_overhead_samples_are_refused_naming_the_benchmark(trt, total, fragment):
    rec = ResultsRecorder()
    with pytest.raises(ValueError, match=fragment) as info:
        rec.record_wrapper_overhead("mnist.refit.conv1", trt, total)
    assert "mnist.refit.conv1" in str(info.value)
    assert rec.get(("wrapper_overhead",)) is None


GOOD = {"trt_median_s": 0.01, "total_median_s": 0.011, "overhead_ratio": 0.1, "rounds": 2,
        "trt_samples_s": [0.01, 0.01], "total_samples_s": [0.011, 0.011]}




