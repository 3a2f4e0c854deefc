"""Doctored baselines and candidates (issue 19): every kind gets the right verdict and exit code.

Exit 2 and one line naming the file and the field for a record the gate cannot use; exit 1 only
for a regression or missing evidence; never a traceback.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

from refit_core.reporting.rules import compare
from refit_core.reporting.schema import load_results, validate_results

ROOT = Path(__file__).resolve().parents[2]


def gate(*args: str) -> subprocess.CompletedProcess:
    """`python -m refit_core gate ARGS` in a subprocess (exit code and output as a user sees them)."""
    return subprocess.run([sys.executable, "-m", "refit_core", "gate", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def one_line_error(run: subprocess.CompletedProcess, *needles: str) -> None:
    assert run.returncode == 2, (run.returncode, run.stdout[-2000:], run.stderr[-2000:])
    assert "Traceback" not in run.stderr + run.stdout
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def pair(baseline: Dict[str, Any], candidate: Dict[str, Any], write_json: Callable[[str, Any], Path]):
    """Write a (doctored) baseline/candidate pair; returns a function (b, c) -> (path_b, path_c)."""
    def write(b: Any = None, c: Any = None):
        return (write_json("base.json", baseline if b is None else b),
                write_json("cand.json", candidate if c is None else c))
    return write


def test_the_samples_pass_the_gate(pair) -> None:
    run = gate(*pair())
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert "GATE PASSED" in run.stdout


# ---- evidence -------------------------------------------------------------------------------
@pytest.mark.parametrize("side", ["baseline", "candidate"])
@pytest.mark.parametrize("doctor", ["schema_only", "all_skipped", "no_tests"])
def test_a_record_without_gpu_evidence_is_refused_on_either_side(pair, baseline, candidate, side, doctor) -> None:
    bad = copy.deepcopy(baseline if side == "baseline" else candidate)
    if doctor == "schema_only":
        bad = {"schema_version": 3}
    elif doctor == "all_skipped":
        for entry in bad["tests"].values():
            entry["outcome"] = "skipped"
        bad["test_counts"] = {"passed": 0, "failed": 0, "skipped": len(bad["tests"])}
    else:
        bad["tests"] = {}
        bad["test_counts"] = {"passed": 0, "failed": 0, "skipped": 0}
        for key in ("mnist", "bidaf"):
            bad.pop(key, None)
    b, c = pair(bad, None) if side == "baseline" else pair(None, bad)
    one_line_error(gate(b, c), (b if side == "baseline" else c).name)


def test_a_bad_candidate_against_an_empty_baseline_does_not_pass(pair, candidate) -> None:
    worse = copy.deepcopy(candidate)
    worse["mnist"]["accuracy_after"] = 0.5
    run = gate(*pair({"schema_version": 3}, worse))
    assert run.returncode == 2 and "GATE PASSED" not in run.stdout


# ---- GPU identity ---------------------------------------------------------------------------
def _slower(record: Dict[str, Any], factor: float) -> Dict[str, Any]:
    out = copy.deepcopy(record)
    for entry in out["timings"].values():
        for key in ("median_s", "min_s", "max_s", "first_s"):
            if key in entry:
                entry[key] *= factor
        if "samples_s" in entry:
            entry["samples_s"] = [s * factor for s in entry["samples_s"]]
    return out


@pytest.mark.parametrize("spelling", [lambda n: n + " ", str.lower, lambda n: "  " + n.upper()])
def test_gpu_name_is_normalised_so_a_10x_slower_refit_still_fails(pair, baseline, candidate, spelling) -> None:
    slow = _slower(candidate, 10.0)
    slow["environment"]["gpu_name"] = spelling(baseline["environment"]["gpu_name"])
    run = gate(*pair(baseline, slow))
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr
    assert "REGRESSION" in run.stdout and "timing.mnist.refit" in run.stdout


@pytest.mark.parametrize("side", ["baseline", "candidate"])
@pytest.mark.parametrize("field,value", [("cuda_driver_version", ""), ("cuda_driver_version", None),
                                         ("gpu_name", " "), ("gpu_name", None), ("compute_capability", None)])
def test_a_missing_or_empty_gpu_identity_is_an_error(pair, baseline, candidate, side, field, value) -> None:
    bad = copy.deepcopy(baseline if side == "baseline" else candidate)
    if value is None:
        bad["environment"].pop(field, None)
    else:
        bad["environment"][field] = value
    b, c = pair(bad, None) if side == "baseline" else pair(None, bad)
    one_line_error(gate(b, c), (b if side == "baseline" else c).name, field)


# ---- refit median and refit tax ---------------------------------------------------------------
def _with_tax(record: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(record)
    out["cases"]["mnist"]["refit_tax"] = {"ratio": 1.2, "refit_engine_median_s": 1.2e-3,
                                          "plain_engine_median_s": 1e-3, "rounds": 5, "precision": "fp32"}
    out["cases"]["mnist"]["refit_floor"] = {"refit_median_s": 2e-3, "weight_bytes": 4_000_000, "weights": 8,
                                            "h2d_gb_per_s": 40.0, "floor_s": 1e-4, "ratio": 20.0, "rounds": 5,
                                            "precision": "fp32"}
    return out


@pytest.mark.parametrize("side", ["baseline", "candidate"])
@pytest.mark.parametrize("entry,field,value", [
    ("refit_floor", "refit_median_s", "delete"), ("refit_floor", "refit_median_s", False),
    ("refit_floor", "refit_median_s", -0.002), ("refit_floor", "refit_median_s", "0.002"),
    ("refit_tax", "ratio", "delete"), ("refit_tax", "ratio", False), ("refit_tax", "ratio", -1.2),
    ("refit_tax", "ratio", "1.2"), ("refit_floor", "refit_median_s", 10 ** 400),
])
def test_a_doctored_refit_median_or_tax_is_never_a_pass(pair, baseline, candidate, side, entry, field, value) -> None:
    b, c = _with_tax(baseline), _with_tax(candidate)
    bad = b if side == "baseline" else c
    if value == "delete":
        del bad["cases"]["mnist"][entry][field]
    else:
        bad["cases"]["mnist"][entry][field] = value
    pb, pc = pair(b, c)
    one_line_error(gate(pb, pc), (pb if side == "baseline" else pc).name, f"cases.mnist.{entry}")


@pytest.mark.parametrize("side", ["baseline", "candidate"])
def test_a_tax_only_one_side_has_fails(baseline, candidate, side) -> None:
    b, c = _with_tax(baseline), _with_tax(candidate)
    del (b if side == "baseline" else c)["cases"]["mnist"]["refit_tax"]
    result = compare(b, c)
    assert not result.passed
    assert result.row("cases.mnist.refit_tax").verdict == "missing"


def test_a_grown_tax_fails_and_the_same_tax_passes(baseline, candidate) -> None:
    b, c = _with_tax(baseline), _with_tax(candidate)
    assert compare(b, c).passed
    c["cases"]["mnist"]["refit_tax"].update(ratio=2.4, refit_engine_median_s=2.4e-3)
    assert compare(b, c).row("cases.mnist.refit_tax").verdict == "REGRESSION"


# ---- values inside cases.* and elsewhere ----------------------------------------------------------
@pytest.mark.parametrize("where,value", [
    (("cases", "bidaf-standin", "checks", "refit_vs_reference", "rows_agreeing"), "40"),
    (("cases", "bidaf-standin", "checks", "refit_vs_reference", "rows_agreeing"), False),
    (("cases", "bidaf-standin", "checks", "refit_vs_reference", "rows_agreeing"), -1),
    (("cases", "bidaf-standin", "checks", "refit_vs_reference", "rows_agreeing"), 1e300),
    (("cases", "bidaf-standin", "checks", "refit_vs_reference", "rows_agreeing"), 41),
    (("cases", "bidaf-standin", "checks", "refit_vs_reference", "max_abs"), -1.0),
    (("cases", "bidaf-standin", "checks", "refit_vs_reference", "max_abs"), 1e300),
    (("cases", "bidaf-standin", "checks", "refit_vs_reference", "surprise"), 1),
    (("cases", "bidaf-standin", "inputs_sha256"), "abc"),
    (("timings", "mnist.refit.conv1", "median_s"), 10 ** 400),
    (("timings", "mnist.refit.conv1", "median_s"), "0.001"),
    (("ratios", "mnist"), "363"),
    (("mnist", "accuracy_after"), 99.1),
    (("tests", "tests/flows/test_mnist_gpu.py::test_accuracy_before_refit", "reason"), "\ud800"),
    (("environment", "hostname"), "gpu-box-7"),
])
def test_wrong_values_anywhere_are_refused_naming_the_field(pair, candidate, where, value) -> None:
    bad = copy.deepcopy(candidate)
    bad["cases"]["bidaf-standin"]["checks"] = {"refit_vs_reference": {
        "tolerance": "per row max|diff| <= 0.001", "rows": 40, "rows_agreeing": 40, "max_abs": 9e-6, "max_rel": 7e-7}}
    validate_results(copy.deepcopy(bad), "the doctoring starts from a valid record")
    node = bad
    for key in where[:-1]:
        node = node.setdefault(key, {}) if key not in node else node[key]
    node[where[-1]] = value
    b, c = pair(None, bad)
    one_line_error(gate(b, c), c.name, ".".join(where[:2]))


def test_inconsistent_test_counts_are_refused(pair, candidate) -> None:
    bad = copy.deepcopy(candidate)
    bad["test_counts"]["passed"] += 1
    b, c = pair(None, bad)
    one_line_error(gate(b, c), c.name, "test_counts")


def test_duplicate_keys_are_refused(pair, candidate, tmp_path) -> None:
    """A failed test hidden behind a passed one with the same key."""
    text = json.dumps(candidate, indent=1)
    test_id = next(iter(candidate["tests"]))
    hidden = text.replace(f'"{test_id}": {{', f'"{test_id}": {{"outcome": "failed"}},\n "{test_id}": {{', 1)
    path = tmp_path / "dup.json"
    path.write_text(hidden, encoding="utf-8")
    b, _ = pair()
    one_line_error(gate(b, path), "dup.json", "duplicate key")


def test_lone_surrogate_in_a_reason_is_exit_2_not_a_traceback(pair, candidate, tmp_path) -> None:
    text = json.dumps(candidate)
    path = tmp_path / "surrogate.json"
    doctored = text.replace('"outcome": "passed"', '"outcome": "passed", "reason": "x\\udc80y"', 1)
    assert doctored != text
    path.write_text(doctored, encoding="utf-8")
    b, _ = pair()
    one_line_error(gate(b, path), "surrogate.json", "surrogate")


def test_huge_integer_literal_is_exit_2(pair, tmp_path, candidate) -> None:
    text = json.dumps(candidate)
    name = "mnist.refit.conv1"
    start = text.index(f'"{name}": {{"median_s": ') + len(f'"{name}": {{"median_s": ')
    end = text.index(",", start)
    path = tmp_path / "huge.json"
    path.write_text(text[:start] + "1" + "0" * 400 + text[end:], encoding="utf-8")
    b, _ = pair()
    one_line_error(gate(b, path), "huge.json", "median_s")


# ---- hostile files ----------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_refused_without_hanging(pair, tmp_path) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    b, _ = pair()
    one_line_error(gate(b, fifo), "fifo.json")


@pytest.mark.parametrize("hostile", ["/dev/zero", "directory", "huge"])
def test_devices_directories_and_huge_files_are_refused(pair, tmp_path, hostile) -> None:
    if hostile == "/dev/zero":
        if not Path("/dev/zero").exists():
            pytest.skip("no /dev/zero here")
        target = Path("/dev/zero")
    elif hostile == "directory":
        target = tmp_path
    else:
        target = tmp_path / "huge.json"
        with open(target, "wb") as handle:
            handle.truncate(64 << 20)
    b, _ = pair()
    one_line_error(gate(target, b), str(target))


# ---- like with like ---------------------------------------------------------------------------
def _other_mnist(record: Dict[str, Any]) -> Dict[str, Any]:
    out = copy.deepcopy(record)
    out["cases"]["mnist"]["inputs_sha256"] = "f" * 64
    out["mnist"]["accuracy_after"] = 0.5  # LeNet trained elsewhere: not a regression of TensorRT
    return out


def test_different_inputs_refuse_the_comparison_naming_both_hashes(pair, baseline, candidate) -> None:
    run = gate(*pair(baseline, _other_mnist(candidate)))
    one_line_error(run, "not comparable: ", "different inputs", "mnist", "f" * 12,
                   baseline["cases"]["mnist"]["inputs_sha256"][:12])
    assert "REGRESSION" not in run.stdout


def test_with_the_option_the_other_cases_are_gated_and_the_differing_ones_listed(pair, baseline, candidate) -> None:
    ok = gate(*pair(baseline, _other_mnist(candidate)), "--allow-different-inputs", "--json")
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr
    listed = [row for row in json.loads(ok.stdout)["rows"] if row["status"] == "not-compared"]
    assert listed and all("not comparable: different inputs" in row["reason"] for row in listed)
    worse = _other_mnist(candidate)
    worse["bidaf"]["standin"]["answer_after_refit"] = "something else"
    run = gate(*pair(baseline, worse), "--allow-different-inputs")
    assert run.returncode == 1 and "bidaf.standin.answer_after_refit" in run.stdout.splitlines()[-1]


def test_with_the_option_a_differing_case_rows_are_never_regressions(baseline, candidate) -> None:
    result = compare(baseline, _other_mnist(candidate), allow_different_inputs=True)
    rows = [r for r in result.rows if r.metric.startswith(("mnist.", "cases.mnist", "timing.mnist"))]
    assert rows and all(r.verdict == "not-compared" for r in rows), [(r.metric, r.verdict) for r in rows]
    tests = [r for r in result.rows if r.metric.startswith("test ") and "mnist" in r.metric]
    assert all(r.verdict == "not-compared" for r in tests)


def test_different_profiles_are_refused(pair, baseline, candidate) -> None:
    full = copy.deepcopy(candidate)
    full["profile"] = "full"
    one_line_error(gate(*pair(baseline, full)), "profile", "full", "default")


def test_load_results_returns_the_typed_model(pair) -> None:
    record = load_results(pair()[0])
    assert record.cases["mnist"].inputs_sha256 and record.profile == "default"
    assert record.test_counts.passed == sum(t.outcome == "passed" for t in record.tests.values())


def test_every_non_skipped_test_names_only_cases_the_record_has(candidate) -> None:
    from refit_core.reporting.schema import ResultsFileError
    bad = copy.deepcopy(candidate)
    passed = next(k for k, v in bad["tests"].items() if v["outcome"] == "passed")
    bad["tests"][passed]["cases"] = ["nowhere"]
    with pytest.raises(ResultsFileError, match="nowhere"):
        validate_results(bad, "x.json")
    bad = copy.deepcopy(candidate)
    del bad["cases"]["mnist"]
    with pytest.raises(ResultsFileError, match="its case is not in `cases`"):
        validate_results(bad, "x.json")


