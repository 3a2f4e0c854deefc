"""The refit tax and refit floor in records and in the gate (CPU tier): the tax may grow by at
most Tolerances.refit_tax_growth on the same GPU; missing in the candidate fails; the floor is
information; a case's median refit may slow down by at most Tolerances.max_refit_slowdown
(same GPU)."""
from __future__ import annotations

import math

import pytest

from refit_core.reporting.results import ResultsRecorder
from refit_core.reporting.rules import compare
from refit_core.reporting.tolerances import Tolerances
from refit_core.reporting.verdicts import INFO, MISSING, OK, REGRESSION

CASE = "mobilenet-v3-small-fp16"
ENV = dict(tensorrt_version="8.6.0", gpu_name="NVIDIA H200", cuda_driver_version="580.159.04",
           cuda_runtime_version="12.1", python_version="3.9.20", numpy_version="1.26.4", tactic_sources="no-cudnn")


def _record(tax=None, floor=True, gpu="NVIDIA H200", refit_ms=3.0):
    rec = ResultsRecorder(created="2026-11-23")
    rec.record_environment(**dict(ENV, gpu_name=gpu), compute_capability="9.0")
    rec.record_case_inputs(CASE, "a" * 64)
    if tax is not None:
        rec.record_refit_tax(CASE, [tax * 1e-3] * 5, [1e-3] * 5, "fp16")
    if floor:
        rec.record_refit_floor(CASE, [(refit_ms - 1) * 1e-3, refit_ms * 1e-3, (refit_ms + 1) * 1e-3], 4_000_000,
                               4e10, 12, "fp16")
    rec.record_test(f"tests/cases/test_refit_checks_gpu.py::test_refit_to_target[{CASE}]", "passed", cases=[CASE])
    return rec.to_dict()


def test_the_tax_is_the_ratio_of_medians_and_the_floor_is_bytes_over_bandwidth():
    rec = ResultsRecorder(created="2026-11-23")
    assert rec.record_refit_tax(CASE, [3e-3, 1e-3, 2e-3], [1e-3, 1e-3, 4e-3], "fp16") == pytest.approx(2.0)
    ratio = rec.record_refit_floor(CASE, [2e-3, 3e-3, 4e-3], 4_000_000, 4e10, 12, "fp16")
    entry = rec.get(("cases", CASE, "refit_floor"))
    assert entry["floor_s"] == pytest.approx(1e-4) and ratio == pytest.approx(30.0) and entry["h2d_gb_per_s"] == 40.0
    assert rec.get(("cases", CASE, "refit_tax"))["precision"] == "fp16"


@pytest.mark.parametrize("bad", [[], [0.0], [-1e-3], [math.nan], [math.inf]])
def test_samples_that_are_not_durations_are_refused(bad):
    rec = ResultsRecorder(created="2026-11-23")
    with pytest.raises(ValueError, match="refit tax"):
        rec.record_refit_tax(CASE, bad, [1e-3], "fp32")
    with pytest.raises(ValueError, match="refit floor"):
        rec.record_refit_floor(CASE, bad, 10, 1e9, 1, "fp32")


def test_a_floor_needs_bytes_and_a_bandwidth():
    rec = ResultsRecorder(created="2026-11-23")
    with pytest.raises(ValueError, match="weight_bytes"):
        rec.record_refit_floor(CASE, [1e-3], 0, 1e9, 1, "fp32")
    with pytest.raises(ValueError, match="bandwidth"):
        rec.record_refit_floor(CASE, [1e-3], 10, 0.0, 1, "fp32")


@pytest.mark.parametrize("before, after, verdict", [(1.2, 1.2, OK), (1.2, 1.38, OK), (1.2, 1.39, REGRESSION),
                                                    (1.3, 1.0, OK)])
def test_the_gate_fails_a_tax_that_grew_beyond_the_margin(before, after, verdict):
    assert Tolerances().refit_tax_growth == 0.15
    row = compare(_record(before), _record(after)).row(f"cases.{CASE}.refit_tax")
    assert row.verdict == verdict, row


def test_the_margin_is_a_tolerance_the_user_can_set():
    row = compare(_record(1.2), _record(1.39), Tolerances(refit_tax_growth=0.2)).row(f"cases.{CASE}.refit_tax")
    assert row.verdict == OK




def test_on_another_gpu_the_tax_and_the_refit_time_are_information():
    result = compare(_record(1.0), _record(3.0, gpu="NVIDIA H100 80GB HBM3", refit_ms=30.0))
    assert result.row(f"cases.{CASE}.refit_tax").verdict == INFO
    assert result.row(f"cases.{CASE}.refit_floor").verdict == INFO


@pytest.mark.parametrize("after_ms, verdict", [(3.0, OK), (6.0, OK), (6.2, REGRESSION), (1.5, OK)])
def test_a_case_refit_that_slowed_down_beyond_the_allowed_factor_fails(after_ms, verdict):
    """Measured: the transformer encoder's refit went from 21 ms (8.5.3.1) to 154 ms (8.6.0) on the H200."""
    assert Tolerances().max_refit_slowdown == 2.0
    row = compare(_record(1.0, refit_ms=3.0), _record(1.0, refit_ms=after_ms)).row(f"cases.{CASE}.refit_floor")
    assert row.verdict == verdict, row


def test_a_refit_time_missing_from_the_candidate_fails():
    result = compare(_record(1.0), _record(1.0, floor=False))
    assert result.row(f"cases.{CASE}.refit_floor").verdict == MISSING and not result.passed
