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
from refit_core.reporting.rules import compare
from refit_core.reporting.tolerances import Tolerances
from refit_core.reporting.verdicts import CHANGED, MISSING, OK, REGRESSION, GateResult

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
    from refit_core.reporting.schema import load_results
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
    data["tests"]["tests/flows/test_mnist_refit.py::test_refit_all_weights"]["outcome"] = "failed"
    outcomes = [t["outcome"] for t in data["tests"].values()]
    data["test_counts"] = {o: outcomes.count(o) for o in ("passed", "failed", "skipped")}


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


@pytest.mark.parametrize("name, doctor, metric, options", REGRESSIONS, ids=[r[0] for r in REGRESSIONS])
def test_each_regression_fails_and_its_tolerance_lets_it_pass(
        name: str, doctor: Callable[[Record], None], metric: str, options: List[str], baseline: Record,
        gate_files: Callable[..., Tuple[Path, Path]], capsys: pytest.CaptureFixture) -> None:
    doctored = json.loads(json.dumps(baseline))
    doctor(doctored)
    paths = gate_files(doctored)
    code, out, _ = _gate(paths, "--json", capsys=capsys)
    rows = {row["key"]: row["status"] for row in json.loads(out)["rows"]}
    assert code == 1 and rows.get(metric) == REGRESSION, (name, rows.get(metric))
    assert [k for k, v in rows.items() if v in (REGRESSION, MISSING)] == [metric]
    if options:
        code, out, _ = _gate(paths, *options, capsys=capsys)
        assert code == 0, out[-1500:]











# -- changed and missing do not fail -----------------------------------------------------





def test_skipped_to_passed_is_changed(baseline: Record, candidate: Record) -> None:
    result = compare(baseline, candidate)
    assert _verdict(result, "test tests/flows/test_bidaf_refit.py::test_answer_restored[original]") \
        == CHANGED






# -- table and command line --------------------------------------------------------------



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




# ---- the committed measurements (results/), not hand-made fixtures ----------------------
# (the H200 records of earlier suites in results/archive/ are schema 2: the gate refuses them)
RESULTS_DIR = Path(__file__).resolve().parents[2] / "results"
MEASURED = [RESULTS_DIR / "trt8.6.0-H100.json", RESULTS_DIR / "trt8.6.0-H100-warm.json"]


def test_measured_cold_to_warm_passes_with_no_missing_evidence() -> None:
    result = compare(_load(MEASURED[0]), _load(MEASURED[1]))
    assert result.passed and result.counts()["missing"] == 0, result.verdict_line()


@pytest.mark.parametrize("doctor", ["changed sample answer", "slower refit", "changed predictions"])
def test_doctored_copy_of_a_measured_record_fails(doctor: str, tmp_path: Path) -> None:
    candidate = json.loads(MEASURED[1].read_text(encoding="utf-8"))
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
                          capture_output=True, text=True, timeout=120, env=_env())
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("GATE FAILED: 1 regression")
