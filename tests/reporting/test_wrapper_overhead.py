"""wrapper_overhead: the typed recorder method and its strict schema (CPU tier)."""
from __future__ import annotations

import json

import pytest

from refit_core.reporting.results import ResultsFileError, ResultsRecorder, load_results


def test_recorded_overhead_is_the_ratio_of_the_medians_and_reads_back(tmp_path):
    rec = ResultsRecorder()
    ratio = rec.record_wrapper_overhead("bidaf.standin.refit.all_weights", [0.010, 0.011, 0.009],
                                        [0.0105, 0.0112, 0.0099])
    entry = rec.get(("wrapper_overhead", "bidaf.standin.refit.all_weights"))
    assert entry["trt_median_s"] == 0.010 and entry["total_median_s"] == 0.0105 and entry["rounds"] == 3
    assert ratio == pytest.approx(0.05) and entry["overhead_ratio"] == ratio
    path = rec.write(tmp_path / "r.json")
    assert load_results(path)["wrapper_overhead"]["bidaf.standin.refit.all_weights"]["overhead_ratio"] == ratio


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


@pytest.mark.parametrize("change,fragment", [
    ({"overhead_ratio": 0.5}, "overhead_ratio: must be (total_median_s - trt_median_s) / trt_median_s"),
    ({"total_median_s": 0.009, "overhead_ratio": -0.1}, "must be a ratio >= 0"),
    ({"total_median_s": 0.009, "overhead_ratio": 0.0}, "total_median_s: must be >= trt_median_s"),
    ({"rounds": 3}, "trt_samples_s: must hold `rounds` (3) samples"),
    ({"trt_median_s": -1.0}, "trt_median_s: must be a duration in seconds > 0"),
    ({"surprise": 1}, "surprise: unknown field"),
    ({"overhead_ratio": None}, "overhead_ratio: must be a ratio >= 0"),
])
def test_schema_refuses_inconsistent_overhead_entries(tmp_path, change, fragment):
    entry = dict(GOOD, **change)
    data = {"schema_version": 2, "created": "2026-11-23", "wrapper_overhead": {"mnist.refit.conv1": entry}}
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultsFileError) as info:
        load_results(path)
    assert f"wrapper_overhead.mnist.refit.conv1.{fragment}" in str(info.value) or fragment in str(info.value), \
        str(info.value)


def test_schema_requires_the_medians_and_the_ratio(tmp_path):
    for key in ("trt_median_s", "total_median_s", "overhead_ratio", "rounds"):
        entry = {k: v for k, v in GOOD.items() if k != key}
        data = {"schema_version": 2, "created": "2026-11-23", "wrapper_overhead": {"x": entry}}
        path = tmp_path / f"r-{key}.json"
        path.write_text(json.dumps(data))
        with pytest.raises(ResultsFileError, match=f"wrapper_overhead.x.{key}: is required"):
            load_results(path)
