"""The results record: round trip, schema checks and weight-name normalisation."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refit_core.errors import DataError
from refit_core.reporting.results import (SCHEMA_VERSION, UNNAMED_WEIGHT, ResultsFileError,
                                          ResultsRecorder, decode_digits, derive_ratios,
                                          encode_digits, load_results, normalize_weight_names,
                                          primary_timing, split_timing_name, unnamed_weight_count)

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


def test_recorder_round_trip(tmp_path: Path) -> None:
    rec = _full_recorder()
    path = rec.write(tmp_path / "sub" / "results.json")
    loaded = load_results(path)
    assert loaded == rec.to_dict()
    assert loaded["schema_version"] == SCHEMA_VERSION
    assert loaded["created"] == "2024-06-03"
    assert loaded["note"] == "unit test"
    assert loaded["environment"]["tactic_sources"] == ["CUBLAS", "CUDNN"]
    mnist = loaded["mnist"]
    assert mnist["accuracy_before"] == pytest.approx(0.1135)
    assert mnist["predicted_class_before"] == 3
    fingerprint = mnist["fingerprint"]
    assert fingerprint["logits_decimals"] == 3
    assert len(fingerprint["logits_fixed_batch"]) == 4
    assert all(len(row) == 10 for row in fingerprint["logits_fixed_batch"])
    assert all(round(v, 3) == v for row in fingerprint["logits_fixed_batch"] for v in row)
    assert len(fingerprint["argmax_all"]) == 10000 and fingerprint["argmax_all"].isdigit()
    assert mnist["refittable_weights"] == ["conv1.weight", None]  # stored as reported
    assert loaded["bidaf"]["standin"]["answers"] == {"q1": "savanna", "q2": "1879"}
    timing = loaded["timings"]["mnist.refit.conv1"]
    assert timing == {"median_s": 0.002, "min_s": 0.001, "max_s": 0.003, "rounds": 3,
                      "first_s": 0.02, "samples_s": [0.003, 0.001, 0.002]}
    assert "first_s" not in loaded["timings"]["mnist.rebuild.cold_cache"]
    assert loaded["ratios"]["mnist"] == pytest.approx(2.2 / 0.002)
    assert loaded["tests"]["tests/a.py::test_fail"] == {"outcome": "failed"}
    assert loaded["tests"]["tests/a.py::test_error"] == {"outcome": "failed"}
    assert loaded["test_counts"] == {"passed": 1, "failed": 2, "skipped": 1}
    assert not list(path.parent.glob("*.tmp")), "temporary file left behind"


def test_written_file_is_plain_json_with_compact_lists(tmp_path: Path) -> None:
    path = _full_recorder().write(tmp_path / "r.json")
    text = path.read_text(encoding="utf-8")
    assert json.loads(text)["schema_version"] == SCHEMA_VERSION
    assert '"refittable_weights": ["conv1.weight", null]' in text
    assert "hostname" not in text


def test_every_section_is_optional(tmp_path: Path) -> None:
    rec = ResultsRecorder()
    data = rec.to_dict()
    assert set(data) == {"schema_version", "created"}
    assert len(data["created"]) == 10 and data["created"][4] == "-"
    assert load_results(rec.write(tmp_path / "empty.json")) == data
    rec.record_mnist(accuracy_after=0.99)
    assert set(rec.to_dict()) == {"schema_version", "created", "mnist"}


def test_generic_set_and_get() -> None:
    rec = ResultsRecorder()
    rec.set(("bidaf", "original", "answer_after_refit"), "savanna")
    rec.set(("extra", "value"), np.float64(1.5))
    assert rec.get(("bidaf", "original", "answer_after_refit")) == "savanna"
    assert rec.to_dict()["extra"] == {"value": 1.5}
    assert rec.get(("nope",), "default") == "default"
    with pytest.raises(ValueError):
        rec.set(("schema_version",), 2)
    with pytest.raises(ValueError):
        rec.set(("bidaf", "original", "answer_after_refit", "deeper"), 1)


def test_recorder_refuses_bad_values() -> None:
    rec = ResultsRecorder()
    with pytest.raises(ValueError, match="machine"):
        rec.record_environment(hostname="gpu-box-7")
    with pytest.raises(ValueError, match="fraction"):
        rec.record_mnist(accuracy_after=99.12)  # a percentage, not a fraction
    with pytest.raises(ValueError, match="fraction"):
        rec.record_bidaf("standin", heldout_exact_match_trt=83.3)
    with pytest.raises(ValueError):
        rec.record_bidaf("bad.key", answer_fake="x")
    with pytest.raises(ValueError, match="no samples"):
        rec.record_timing("mnist.refit.conv1", [])
    with pytest.raises(ValueError):
        rec.record_timing("mnist.refit.conv1", [float("nan")])
    with pytest.raises(ValueError):
        rec.record_test("tests/a.py::t", "xpassed")
    with pytest.raises(ValueError):
        rec.record_mnist(argmax_all=[1, 2, 12])
    with pytest.raises(ValueError):
        rec.set(("mnist", "x"), float("inf"))
    with pytest.raises(TypeError):
        rec.set(("mnist", "x"), object())


def test_explicit_ratio_overrides_derived() -> None:
    rec = ResultsRecorder()
    rec.record_timing("mnist.refit.all", [0.004])
    rec.record_timing("mnist.refit.conv1", [0.001])
    rec.record_timing("mnist.rebuild.cold_cache", [2.0])
    assert rec.to_dict()["ratios"] == {"mnist": pytest.approx(500.0)}  # primary = refit.all
    assert rec.record_ratio("mnist", refit_name="mnist.refit.conv1") == pytest.approx(2000.0)
    assert rec.to_dict()["ratios"]["mnist"] == pytest.approx(2000.0)
    with pytest.raises(ValueError, match="not been recorded"):
        rec.record_ratio("bidaf.standin")


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

@pytest.mark.parametrize("content, message", [
    ({"created": "2024-06-03"}, "schema_version: is missing"),
    ({"schema_version": 3}, "schema_version 3 is not supported"),
    ({"schema_version": 0}, "schema_version 0 is not supported"),
    ({"schema_version": "1"}, "must be an integer"),
    ([1, 2, 3], "JSON object"),
    ({"schema_version": 1, "mnist": []}, "mnist: must be a JSON object"),
    ({"schema_version": 1, "timings": {"mnist.refit": {"min_s": 1}}}, "median_s"),
])
def test_load_results_rejects_wrong_schema(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "bad_results.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(ResultsFileError, match=message) as info:
        load_results(path)
    assert "bad_results.json" in str(info.value)


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


def test_sample_files_load_and_their_weight_sets_match_after_normalisation() -> None:
    old, new = load_results(SAMPLE_85), load_results(SAMPLE_86)
    for data in (old, new):
        assert "TEST FIXTURE" in data["note"] and "not a measurement" in data["note"].lower()
        assert len(data["mnist"]["fingerprint"]["argmax_all"]) == 10000
    assert None in old["mnist"]["refittable_weights"]
    assert any(str(n).startswith("(Unnamed Layer*") for n in new["mnist"]["refittable_weights"])
    assert old["mnist"]["refittable_weights"] != new["mnist"]["refittable_weights"]
    assert (normalize_weight_names(old["mnist"]["refittable_weights"])
            == normalize_weight_names(new["mnist"]["refittable_weights"]))


def test_recorder_v2_api_round_trips_and_validates(tmp_path: Path) -> None:
    from refit_core.reporting.results import validate_results
    rec = _full_recorder()
    rec.record_provenance(suite_version="0.1.0", git_commit=None, git_dirty=None,
                          source_sha256="0" * 64, command_line=["pytest", "-m", "gpu"],
                          hypothesis_profile="ci", tensorrt_build={"version": "8.6.0"},
                          tactic_setting="default", started="2024-06-03T10:00:00+00:00")
    rec.record_hypothesis_examples("proj/tests/refit/test_p.py::test_q", 8)
    rec.record_provenance(suite_version="0.1.0", git_commit=None, git_dirty=None,
                          source_sha256="0" * 64, command_line=["pytest"], hypothesis_profile="ci",
                          tensorrt_build={}, tactic_setting="default",
                          started="2024-06-03T10:00:00+00:00", finished="2024-06-03T10:30:00Z")
    rec.record_test("proj/tests/a.py::test_skip2", "skipped", reason="no GPU")
    rec.record_ratio_basis("mnist", "mnist.rebuild.cold_cache", "mnist.refit.conv1")
    rec.record_note("mnist.rebuild.warm_cache", "cache rejected")
    rec.record_bad_input("wrong count", "WeightValidationError: ...")
    rec.record_property_test("mnist", {"examples": 8, "max_abs_diff": 1e-6, "ok": True})
    rec.record_case_check("mnist", "refit_vs_reference", max_abs=1e-5, tolerance=1e-3, examples=8)
    rec.record_case_weights("mnist", ["conv1.weight", None])
    data = rec.to_dict()
    assert validate_results(data) is data and data["schema_version"] == 2
    assert data["provenance"]["hypothesis_examples"] == {"tests/refit/test_p.py::test_q": 8}
    assert data["provenance"]["finished"] == "2024-06-03T10:30:00Z"
    assert data["tests"]["tests/a.py::test_skip2"] == {"outcome": "skipped", "reason": "no GPU"}
    assert data["cases"]["mnist"]["refittable_weights"] == ["conv1.weight", None]
    assert load_results(rec.write(tmp_path / "v2.json")) == data


@pytest.mark.parametrize("call", [
    lambda r: r.record_timing("mnist.refit.conv1", [0.0]),
    lambda r: r.record_case_check("mnist", "x", value=float("nan")),
    lambda r: r.record_case_check("mnist", "x", value={"nested": 1}),
    lambda r: r.record_property_test("mnist", {"examples": [1, 2]}),
    lambda r: r.record_provenance("0.1", None, None, "not-hex", [], "ci", {}, "d", "yesterday"),
    lambda r: r.set(("surprise", "x"), 1),
    lambda r: r.set(("mnist", "accuracy_after"), 99.29),
])
def test_recorder_refuses_invalid_values_where_they_are_made(call) -> None:
    rec = ResultsRecorder()
    with pytest.raises(ValueError):
        call(rec)
    assert rec.to_dict() == {"schema_version": 2, "created": rec.created}


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
