"""The gate's coverage rule: an initializer refittable by its ONNX name in the baseline and
not in the candidate fails the gate; newly refittable ones are information (CPU tier)."""
from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any, Dict

import pytest

from refit_core.refit.coverage import Initializer, classify
from refit_core.reporting.cli import add_gate_arguments, run_gate
from refit_core.reporting.results import ResultsRecorder
from refit_core.reporting.rules import compare
from refit_core.reporting.verdicts import CHANGED, INFO, MISSING, OK, REGRESSION

CASE = "model-mobilenet-fp16"
INITS = [Initializer(n, "float32", (4,)) for n in ("conv1.weight", "conv1.bias", "se.fc1.weight", "bn.var")]


def _record(trt_names, with_coverage: bool = True) -> Dict[str, Any]:
    rec = ResultsRecorder(created="2026-11-23")
    rec.record_environment(gpu_name="NVIDIA H200", compute_capability="9.0", cuda_driver_version="580.1")
    rec.record_case_inputs(CASE, "a" * 64)
    if with_coverage:
        rec.record_case_coverage(CASE, classify(INITS, trt_names).to_record())
    rec.record_test(f"check::{CASE}::refit_perturbed_vs_reference", "passed")
    return rec.to_dict()


BASE = ["conv1.weight", "conv1.bias", "se.fc1.weight", None]


def test_same_coverage_is_ok():
    result = compare(_record(BASE), _record(BASE))
    assert result.row(f"cases.{CASE}.coverage.by_name").verdict == OK
    assert result.row(f"cases.{CASE}.coverage").verdict == OK
    assert result.passed


def test_a_weight_no_longer_refittable_by_name_is_a_regression():
    result = compare(_record(BASE), _record(["conv1.weight", "conv1.bias", None, None]))
    row = result.row(f"cases.{CASE}.coverage.by_name")
    assert row.verdict == REGRESSION and "lost: se.fc1.weight" in row.candidate, row
    assert result.row(f"cases.{CASE}.coverage").verdict == CHANGED
    assert not result.passed and f"cases.{CASE}.coverage.by_name" in result.verdict_line()


def test_a_newly_refittable_weight_is_information():
    result = compare(_record(BASE), _record(BASE[:3] + ["bn.var"]))
    row = result.row(f"cases.{CASE}.coverage.by_name")
    assert row.verdict == INFO and "new: bn.var" in row.candidate
    assert result.passed


def test_coverage_missing_from_the_candidate_is_missing_evidence():
    result = compare(_record(BASE), _record(BASE, with_coverage=False))
    assert result.row(f"cases.{CASE}.coverage").verdict == MISSING
    assert not result.passed




