"""The results record: round trip, schema checks and weight-name normalisation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refit_core.errors import DataError
from refit_core.reporting.jsonable import decode_digits, encode_digits
from refit_core.reporting.results import ResultsRecorder
from refit_core.reporting.schema import ResultsFileError, load_results
from refit_core.reporting.timings import derive_ratios, primary_timing, split_timing_name
from refit_core.reporting.weights import UNNAMED_WEIGHT, normalize_weight_names, unnamed_weight_count

from .conftest import SAMPLE_85, SAMPLE_86


def _full_recorder() -> ResultsRecorder:
    rng = np.random.default_rng(0)
    rec = ResultsRecorder(created="2024-06-03", note="unit test")
    rec.record_environment(tensorrt_version="8.6.0", cuda_driver_version="12.2",
                           cuda_runtime_version="12.0", gpu_name="NVIDIA H100 80GB HBM3",
                           python_version="3.9.18", numpy_version=np.__version__,
                           tactic_sources=("CUBLAS", "CUDNN"))
    rec.record_mnist(accuracy_before=np.float32(0.1135), accuracy_after=0.9912,
                     accuracy_reference=0.9913, predicted_class_before=np.int64(3),
                     logits_fixed_batch=rng.normal(size=(4, 10)).astype(np.float32),
                     logits_decimals=3, argmax_all=rng.integers(0, 10, size=10000),
                     refittable_weights=["conv1.weight", None])
    rec.record_bidaf("standin", answer_before_refit="Garry", answer_fake="lion",
                     answer_after_refit="savanna", heldout_exact_match_trt=0.5,
                     heldout_exact_match_ort=0.5, answers={"q1": "savanna", "q2": "1879"},
                     refittable_weights=["W_0", "(Unnamed Layer* 3) [Constant] CONSTANT"])
    rec.record_timing("mnist.refit.conv1", [0.003, 0.001, 0.002], first_s=0.02)
    rec.record_timing("mnist.rebuild.cold_cache", np.array([2.0, 2.4, 2.2]))
    rec.record_test("tests/a.py::test_pass", "passed")
    rec.record_test("tests/a.py::test_skip", "skipped")
    rec.record_test("tests/a.py::test_fail", "passed")   # setup passed ...
    rec.record_test("tests/a.py::test_fail", "failed")   # ... call failed
    rec.record_test("tests/a.py::test_fail", "passed")   # ... teardown passed: still failed
    rec.record_test("tests/a.py::test_error", "error")
    return rec














def test_timing_names() -> None:
    assert split_timing_name("mnist.refit.conv1") == ("mnist", "refit", "conv1")
    assert split_timing_name("bidaf.standin.rebuild") == ("bidaf.standin", "rebuild", "")
    assert split_timing_name("mnist.inference") is None
    timings = {"mnist.refit.b": {"median_s": 1}, "mnist.refit.a": {"median_s": 2},
               "mnist.rebuild.x": {"median_s": 10}}
    assert primary_timing(timings, "mnist", "refit") == "mnist.refit.a"
    timings["mnist.refit"] = {"median_s": 5}
    assert primary_timing(timings, "mnist", "refit") == "mnist.refit"
    assert primary_timing(timings, "bidaf.standin", "refit") is None
    assert derive_ratios(timings) == {"mnist": 2.0}


def test_digit_fingerprint_round_trip() -> None:
    preds = np.array([7, 2, 1, 0, 4], dtype=np.int64)
    assert encode_digits(preds) == "72104"
    assert encode_digits("72104") == "72104"
    assert decode_digits("72104") == [7, 2, 1, 0, 4]
    with pytest.raises(ValueError):
        encode_digits("72a04")


# -- schema version and malformed files -------------------------------------------------



def test_load_results_rejects_malformed_json(tmp_path: Path) -> None:
    path = tmp_path / "truncated.json"
    path.write_text('{"schema_version": 1, "mnist": {', encoding="utf-8")
    with pytest.raises(ResultsFileError, match="malformed JSON") as info:
        load_results(path)
    assert "truncated.json" in str(info.value)


def test_load_results_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere.json"):
        load_results(tmp_path / "nowhere.json")


# -- weight-name normalisation -----------------------------------------------------------

def test_unnamed_weights_normalise_alike_across_versions() -> None:
    trt85 = ["conv1.weight", None, "fc1.bias", None]
    trt86 = ["(Unnamed Layer* 42) [Constant] CONSTANT", "fc1.bias",
             "(Unnamed Layer* 7) [Convolution] KERNEL", "conv1.weight"]
    assert normalize_weight_names(trt85) == normalize_weight_names(trt86) == [
        "conv1.weight", "fc1.bias", UNNAMED_WEIGHT, UNNAMED_WEIGHT]
    assert unnamed_weight_count(trt85) == unnamed_weight_count(trt86) == 2


def test_normalisation_keeps_the_count_and_named_weights() -> None:
    one = normalize_weight_names(["a", None])
    two = normalize_weight_names(["a", None, "(Unnamed Layer* 1) [Constant] CONSTANT"])
    assert one != two
    assert two.count(UNNAMED_WEIGHT) == 2
    assert normalize_weight_names(["Unnamed Layer is a real name", ""]) == [
        "Unnamed Layer is a real name", UNNAMED_WEIGHT]
    assert normalize_weight_names(None) == []
    assert normalize_weight_names(["b", "a", "a"]) == ["a", "a", "b"]








@pytest.mark.filterwarnings("ignore::pytest.PytestDeprecationWarning")
def test_tolerance_options_for_argparse_and_pytest() -> None:
    import argparse
    from _pytest.config.argparsing import Parser
    from refit_core.reporting.tolerances import (Tolerances, add_tolerance_options,
                                                 tolerances_from_options)
    parser = argparse.ArgumentParser()
    add_tolerance_options(parser.add_argument, prefix="refit-gate-")
    args = parser.parse_args(["--refit-gate-max-changed-predictions", "7"])
    tol = tolerances_from_options(lambda n: getattr(args, n, None), prefix="refit-gate-")
    assert tol == Tolerances(max_changed_predictions=7)
    pytest_parser = Parser()
    add_tolerance_options(pytest_parser.getgroup("refit_core").addoption, prefix="refit-gate-")
    ns = pytest_parser.parse_known_args(["--refit-gate-accuracy-drop", "0.5"])
    assert tolerances_from_options(lambda n: getattr(ns, n), "refit-gate-").accuracy_drop_pp == 0.5
    with pytest.raises(ValueError, match="whole number"):
        Tolerances(max_changed_predictions=1.5)
