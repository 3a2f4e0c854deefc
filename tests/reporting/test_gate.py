"""The upgrade gate: verdicts, tolerances, table and exit codes, on doctored sample records."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

from refit_core.reporting.cli import add_gate_arguments, run_gate
from refit_core.reporting.formatting import format_table
from refit_core.reporting.rules import (ALLOWED_MISSING, CHANGED, INFO, MISSING, OK, REGRESSION,
                                        GateResult, Tolerances, compare)

from .conftest import SAMPLE_85, SAMPLE_86

REPO = Path(__file__).resolve().parents[2]

Record = Dict[str, Any]


def _gate(paths: Tuple[Path, Path], *options: str,
          capsys: pytest.CaptureFixture) -> Tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    add_gate_arguments(parser)
    code = run_gate(parser.parse_args([str(paths[0]), str(paths[1]), *options]))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def gate_files(baseline: Record, candidate: Record,
               write_json: Callable[[str, Any], Path]) -> Callable[..., Tuple[Path, Path]]:
    """Write the baseline and a doctored candidate (default: the baseline itself)."""
    def make(doctored: Record = None) -> Tuple[Path, Path]:
        return (write_json("baseline.json", baseline),
                write_json("candidate.json", baseline if doctored is None else doctored))
    return make


def _verdict(result: GateResult, metric: str) -> str:
    row = result.row(metric)
    assert row is not None, f"no row {metric!r}; rows: {[r.metric for r in result.rows]}"
    return row.verdict


# -- passing comparisons -----------------------------------------------------------------

def test_identical_files_pass(gate_files: Callable[..., Tuple[Path, Path]],
                              capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _gate(gate_files(), capsys=capsys)
    assert code == 0
    assert "REGRESSION" not in out
    assert out.strip().splitlines()[-1].startswith("GATE PASSED")


def test_identical_records_have_only_ok_rows(baseline: Record) -> None:
    result = compare(baseline, baseline, Tolerances())
    assert result.passed
    assert {row.verdict for row in result.rows} == {OK}


def test_sample_upgrade_passes_and_weight_names_normalise(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _gate((SAMPLE_85, SAMPLE_86), capsys=capsys)
    assert code == 0, out
    result = compare(_load(SAMPLE_85), _load(SAMPLE_86))
    # None (8.5) vs "(Unnamed Layer* N) ..." (8.6) is not a difference once normalised
    assert _verdict(result, "mnist.refittable_weights") == OK
    assert _verdict(result, "bidaf.standin.refittable_weights") == OK
    assert _verdict(result, "environment.tensorrt_version") == CHANGED
    assert _verdict(result, "mnist.argmax_all") == OK  # 2 changed of 10,000
    assert result.row("mnist.argmax_all").candidate == "2 changed"


def _load(path: Path) -> Record:
    from refit_core.reporting.results import load_results
    return load_results(path)


# -- regressions, each with the option that lets it pass ---------------------------------

def _doctor_bidaf_sample_answer(data: Record) -> None:
    data["bidaf"]["standin"]["answer_after_refit"] = "the savanna"


def _doctor_heldout_answer(data: Record) -> None:
    data["bidaf"]["original"]["answers"]["heldout-003"] = "Normandy"


def _doctor_slow_refit(data: Record) -> None:
    timing = data["timings"]["mnist.refit.conv1"]
    for key in ("median_s", "min_s", "max_s"):
        timing[key] *= 3.0


def _doctor_accuracy(data: Record) -> None:
    data["mnist"]["accuracy_after"] -= 0.0025  # 0.25 percentage points


def _doctor_predictions(data: Record, count: int = 6) -> None:
    digits = list(data["mnist"]["fingerprint"]["argmax_all"])
    for i in range(count):
        pos = 100 + 37 * i
        digits[pos] = "0" if digits[pos] != "0" else "1"
    data["mnist"]["fingerprint"]["argmax_all"] = "".join(digits)


def _doctor_failing_test(data: Record) -> None:
    data["tests"]["tests/flows/test_mnist_refit.py::test_refit_all_weights"] = "failed"
    data["test_counts"] = {"passed": 7, "failed": 1, "skipped": 1}


def _doctor_logits(data: Record) -> None:
    data["mnist"]["fingerprint"]["logits_fixed_batch"][2][5] += 0.05


def _doctor_exact_match(data: Record) -> None:
    data["bidaf"]["standin"]["heldout_exact_match_trt"] = 0.6667


REGRESSIONS: List[Tuple[str, Callable[[Record], None], str, List[str]]] = [
    ("bidaf sample answer", _doctor_bidaf_sample_answer, "bidaf.standin.answer_after_refit", []),
    ("bidaf held-out answer", _doctor_heldout_answer, "bidaf.original.answers",
     ["--max-changed-answers", "1"]),
    ("3x slower refit", _doctor_slow_refit, "timing.mnist.refit.conv1",
     ["--max-refit-slowdown", "3.5"]),
    ("accuracy drop", _doctor_accuracy, "mnist.accuracy_after", ["--accuracy-drop", "0.3"]),
    ("changed predictions", _doctor_predictions, "mnist.argmax_all",
     ["--max-changed-predictions", "6"]),
    ("newly failing test", _doctor_failing_test,
     "test tests/flows/test_mnist_refit.py::test_refit_all_weights", []),
    ("logit drift", _doctor_logits, "mnist.logits_fixed_batch", ["--max-logit-drift", "0.1"]),
    ("exact match drop", _doctor_exact_match, "bidaf.standin.heldout_exact_match_trt",
     ["--exact-match-drop", "20"]),
]


@pytest.mark.parametrize("label, doctor, metric, relaxing",
                         REGRESSIONS, ids=[r[0] for r in REGRESSIONS])
def test_doctored_candidate_fails_the_gate(label: str, doctor: Callable[[Record], None],
                                           metric: str, relaxing: List[str],
                                           baseline: Record, candidate: Record,
                                           gate_files: Callable[..., Tuple[Path, Path]],
                                           capsys: pytest.CaptureFixture) -> None:
    doctored = _load(SAMPLE_85)
    doctor(doctored)
    result = compare(baseline, doctored)
    assert _verdict(result, metric) == REGRESSION
    assert [row.metric for row in result.regressions] == [metric], label

    paths = gate_files(doctored)
    code, out, _ = _gate(paths, capsys=capsys)
    assert code == 1
    last = out.strip().splitlines()[-1]
    assert last.startswith("GATE FAILED") and metric in last
    if relaxing:  # the matching option turns the verdict around
        code, out, _ = _gate(paths, *relaxing, capsys=capsys)
        assert code == 0, out


def test_thresholds_are_inclusive(baseline: Record) -> None:
    doctored = _load(SAMPLE_85)
    _doctor_predictions(doctored, count=5)  # exactly the default limit
    doctored["mnist"]["accuracy_after"] -= 0.001  # exactly 0.1 pp
    doctored["timings"]["mnist.refit.conv1"]["median_s"] *= 2.0  # exactly 2x
    result = compare(baseline, doctored, Tolerances())
    assert result.passed, format_table(result)
    assert _verdict(result, "mnist.argmax_all") == OK
    assert _verdict(result, "mnist.accuracy_after") == OK
    assert _verdict(result, "timing.mnist.refit.conv1") == OK


def test_tolerances_dataclass_changes_the_verdict(baseline: Record) -> None:
    doctored = _load(SAMPLE_85)
    _doctor_slow_refit(doctored)
    assert not compare(baseline, doctored, Tolerances()).passed
    assert compare(baseline, doctored, Tolerances(max_refit_slowdown=4.0)).passed
    tight = Tolerances(max_refit_slowdown=1.01)
    assert not compare(baseline, _load(SAMPLE_86), Tolerances(accuracy_drop_pp=0.0,
                                                               max_changed_predictions=1)).passed
    assert compare(baseline, baseline, tight).passed


def test_slower_rebuild_is_information_only(baseline: Record) -> None:
    doctored = _load(SAMPLE_85)
    doctored["timings"]["mnist.rebuild.cold_cache"]["median_s"] *= 10
    doctored["ratios"]["mnist"] *= 10
    result = compare(baseline, doctored)
    assert result.passed
    assert _verdict(result, "timing.mnist.rebuild.cold_cache") == OK
    assert "info" in result.row("ratio.mnist.rebuild/refit").allowed


# -- changed and missing do not fail -----------------------------------------------------

def test_changed_weight_sets_are_reported_not_failed(
        baseline: Record, gate_files: Callable[..., Tuple[Path, Path]],
        capsys: pytest.CaptureFixture) -> None:
    doctored = _load(SAMPLE_85)
    doctored["mnist"]["refittable_weights"].append("fc3.weight")
    doctored["bidaf"]["standin"]["refittable_weights"].remove(None)
    result = compare(baseline, doctored)
    assert _verdict(result, "mnist.refittable_weights") == CHANGED
    assert "+fc3.weight" in result.row("mnist.refittable_weights").candidate
    assert _verdict(result, "bidaf.standin.refittable_weights") == CHANGED
    assert "-<unnamed>" in result.row("bidaf.standin.refittable_weights").candidate
    assert result.passed
    code, out, _ = _gate(gate_files(doctored), capsys=capsys)
    assert code == 0 and "changed" in out


def test_missing_test_and_section_fail_unless_allowed(
        baseline: Record, gate_files: Callable[..., Tuple[Path, Path]],
        capsys: pytest.CaptureFixture) -> None:
    doctored = _load(SAMPLE_85)
    del doctored["tests"]["tests/trt/test_refit_api.py::test_weight_names_listed"]
    doctored["test_counts"]["passed"] -= 1
    del doctored["bidaf"]
    del doctored["timings"]["mnist.refit.conv1"]
    result = compare(baseline, doctored)
    assert _verdict(result, "test tests/trt/test_refit_api.py::test_weight_names_listed") == MISSING
    assert _verdict(result, "bidaf.standin.answers") == MISSING
    assert _verdict(result, "timing.mnist.refit.conv1") == MISSING
    assert not result.passed
    paths = gate_files(doctored)
    code, out, _ = _gate(paths, capsys=capsys)
    assert code == 1 and "GATE FAILED" in out
    allowed = ["--allow-missing", "bidaf.*", "--allow-missing", "timing.mnist.refit.conv1",
               "--allow-missing", "test tests/trt/*"]
    code, out, _ = _gate(paths, *allowed, capsys=capsys)
    assert code == 0 and ALLOWED_MISSING in out
    with pytest.raises(SystemExit) as refused:  # the former no-op option is gone: a usage error
        _gate(paths, "--strict-missing", capsys=capsys)
    assert refused.value.code == 2 and "unrecognized arguments: --strict-missing" in capsys.readouterr().err


def test_skipped_to_passed_is_changed(baseline: Record, candidate: Record) -> None:
    result = compare(baseline, candidate)
    assert _verdict(result, "test tests/flows/test_bidaf_refit.py::test_answer_restored[original]") \
        == CHANGED


def test_new_failing_test_in_candidate_is_shown(baseline: Record) -> None:
    doctored = _load(SAMPLE_85)
    doctored["tests"]["tests/new.py::test_new"] = "failed"
    doctored["tests"]["tests/new.py::test_new_ok"] = "passed"
    result = compare(baseline, doctored)
    assert _verdict(result, "test tests/new.py::test_new") == REGRESSION
    assert result.row("test tests/new.py::test_new_ok") is None


def test_a_candidate_without_tests_never_passes() -> None:
    minimal = {"schema_version": 1, "created": "2024-06-03"}
    result = compare(minimal, minimal)
    assert not result.passed and _verdict(result, "tests.passed") == REGRESSION
    assert "(no rows)" in format_table(result, differences_only=True) or result.failing


# -- table and command line --------------------------------------------------------------

def test_table_has_the_columns_and_aligned_verdicts(baseline: Record) -> None:
    doctored = _load(SAMPLE_85)
    _doctor_bidaf_sample_answer(doctored)
    result = compare(baseline, doctored)
    table = format_table(result)
    lines = table.splitlines()
    header = lines[0]
    for column in ("metric", "baseline", "candidate", "allowed", "verdict"):
        assert column in header
    verdict_col = header.index("verdict")
    assert len(lines) == 2 + len(result.rows)
    for line, row in zip(lines[2:], result.rows):
        assert line[verdict_col:] == row.verdict
    assert any(line.endswith("REGRESSION") and "answer_after_refit" in line for line in lines)
    short = format_table(result, differences_only=True).splitlines()
    assert 2 < len(short) < len(lines)
    assert all(not line.endswith(" ok") for line in short[2:])


def test_unreadable_input_exits_2(baseline: Record, write_json: Callable[[str, Any], Path],
                                  tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = write_json("good.json", baseline)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    wrong = write_json("wrong_version.json", dict(baseline, schema_version=99))
    for bad in (broken, wrong, tmp_path / "absent.json"):
        code, _, err = _gate((good, bad), capsys=capsys)
        assert code == 2
        assert bad.name in err


def test_negative_tolerance_is_refused(capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    add_gate_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["a.json", "b.json", "--max-refit-slowdown", "-1"])
    args = parser.parse_args(["a.json", "b.json"])
    assert args.accuracy_drop == Tolerances().accuracy_drop_pp
    assert args.max_changed_predictions == 5


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_no_standalone_module_entry_point() -> None:
    """The CLI is `python -m refit_core gate`; the reporting modules have no main() of their own."""
    import importlib
    for name in ("cli", "rules", "formatting", "report", "results", "schema"):
        module = importlib.import_module(f"refit_core.reporting.{name}")
        assert not hasattr(module, "main"), name


@pytest.mark.skipif(not (REPO / "refit_core" / "__main__.py").exists(),
                    reason="refit_core/__main__.py (the package CLI) does not exist yet")
def test_package_cli_gate(gate_files: Callable[..., Tuple[Path, Path]]) -> None:
    a, b = gate_files()
    ok = subprocess.run([sys.executable, "-m", "refit_core", "gate", str(a), str(b)],
                        cwd=str(REPO), env=_env(), capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "GATE PASSED" in ok.stdout
    doctored = _load(SAMPLE_85)
    _doctor_bidaf_sample_answer(doctored)
    a, b = gate_files(doctored)
    bad = subprocess.run([sys.executable, "-m", "refit_core", "gate", str(a), str(b)],
                         cwd=str(REPO), env=_env(), capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1, bad.stdout + bad.stderr


# ---- the committed measurements (results/), not hand-made fixtures ----------------------
RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"
MEASURED = [RESULTS_DIR / "trt8.5.3.1-H200.json", RESULTS_DIR / "trt8.6.0-H200.json"]
CHAIN = MEASURED  # records of one suite, in version order
PREVIOUS_SUITE = RESULTS_DIR / "trt8.5.2.2-H200.json"  # the suite before the BiDAF stand-in was replaced
V1_MEASURED = [Path(__file__).resolve().parent / "data" / f"measured_v1_trt{v}.json" for v in ("8.5.3.1", "8.6.0")]


@pytest.mark.skipif(not all(p.exists() for p in CHAIN), reason="measured results files not in results/")
def test_measured_chain_passes_with_no_missing_evidence() -> None:
    from refit_core.reporting.rules import compare
    from refit_core.reporting.results import load_results
    for base, cand in zip(CHAIN, CHAIN[1:]):
        result = compare(load_results(base), load_results(cand))
        assert result.passed and result.counts()["missing"] == 0, result.verdict_line()


@pytest.mark.skipif(not (PREVIOUS_SUITE.exists() and MEASURED[0].exists()), reason="measured results files not in results/")
def test_a_record_of_the_previous_suite_does_not_pass_for_this_one() -> None:
    """Across a changed BiDAF stand-in the answers and exact match differ: the gate says so
    rather than passing records of two different suites as an upgrade."""
    from refit_core.reporting.rules import compare
    from refit_core.reporting.results import load_results
    result = compare(load_results(PREVIOUS_SUITE), load_results(MEASURED[0]))
    assert not result.passed
    assert {"bidaf.standin.answer_fake", "bidaf.standin.heldout_exact_match_trt"} <= {r.metric for r in result.regressions}


def test_old_v1_records_still_load_and_compare() -> None:
    from refit_core.reporting.rules import compare
    from refit_core.reporting.results import load_results
    result = compare(load_results(V1_MEASURED[0]), load_results(V1_MEASURED[1]))
    assert result.passed, result.verdict_line()


@pytest.mark.skipif(not all(p.exists() for p in MEASURED), reason="measured results files not in results/")
def test_measured_upgrade_8_5_to_8_6_passes_the_gate() -> None:
    from refit_core.reporting.rules import compare
    from refit_core.reporting.results import load_results
    result = compare(load_results(MEASURED[0]), load_results(MEASURED[1]))
    assert result.passed, [r for r in result.rows if r.verdict == "REGRESSION"]


@pytest.mark.skipif(not all(p.exists() for p in MEASURED), reason="measured results files not in results/")
@pytest.mark.parametrize("doctor", ["changed sample answer", "slower refit", "changed predictions"])
def test_doctored_copy_of_the_measured_8_6_record_fails(doctor: str, tmp_path: Path) -> None:
    import copy
    import subprocess
    import sys
    from refit_core.reporting.results import load_results
    candidate = copy.deepcopy(load_results(MEASURED[1]))
    if doctor == "changed sample answer":
        candidate["bidaf"]["standin"]["answer_after_refit"] = "quick"
    elif doctor == "slower refit":
        for key in ("median_s", "min_s", "max_s"):
            candidate["timings"]["mnist.refit.conv1"][key] *= 3.0
    else:
        digits = list(candidate["mnist"]["fingerprint"]["argmax_all"])
        for i in range(6):
            digits[i] = str((int(digits[i]) + 1) % 10)
        candidate["mnist"]["fingerprint"]["argmax_all"] = "".join(digits)
    path = tmp_path / "doctored.json"
    path.write_text(json.dumps(candidate))
    proc = subprocess.run([sys.executable, "-m", "refit_core", "gate", str(MEASURED[0]), str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "REGRESSION" in proc.stdout


def test_a_heldout_split_that_drops_fails_the_gate_and_the_schema_checks_split_entries(baseline: Record) -> None:
    """Per-split exact match (the stand-in's splits a-c) is gated like the overall figure, so a
    drop on the held-out templates cannot hide behind the other splits."""
    from refit_core.reporting.results import ResultsFileError, validate_results
    entry = {"questions": 400, "exact_match_trt": 0.81, "exact_match_ort": 0.81, "scores_max_abs": 2e-5,
             "scores_max_rel": 1e-6}
    base = json.loads(json.dumps(baseline))
    base["bidaf"]["standin"]["heldout_splits"] = {"a": dict(entry, exact_match_trt=1.0, exact_match_ort=1.0),
                                                  "b": dict(entry)}
    base["bidaf"]["standin"]["heldout_answers_differing"] = 0
    validate_results(base)
    cand = json.loads(json.dumps(base))
    cand["bidaf"]["standin"]["heldout_splits"]["b"]["exact_match_trt"] = 0.70
    result = compare(base, cand)
    assert _verdict(result, "bidaf.standin.heldout_splits.b.exact_match_trt") == REGRESSION
    assert _verdict(result, "bidaf.standin.heldout_splits.a.exact_match_trt") == OK
    assert _verdict(compare(base, json.loads(json.dumps(base))), "bidaf.standin.heldout_splits.b.exact_match_trt") == OK
    cand["bidaf"]["standin"]["heldout_splits"]["b"]["questions"] = 0
    with pytest.raises(ResultsFileError, match="heldout_splits.b.questions"):
        validate_results(cand)
