"""Measured defects of the old gate, each pinned by a test that failed before the rewrite."""
from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from refit_core.reporting.cli import add_gate_arguments, run_gate
from refit_core.reporting.rules import compare
from refit_core.reporting.schema import canonical_test_id
from refit_core.reporting.verdicts import ALLOWED_MISSING, INFO, REGRESSION

from .conftest import DATA, SAMPLE_85

REPO = Path(__file__).resolve().parents[2]
MEASURED_85 = DATA / "measured_v1_trt8.5.3.1.json"  # a full v1 record measured on the H200
HYPOTHESIS_ONLY = DATA / "measured_v1_trt8.6.0_hypothesis_only.json"  # the property tests alone
V2 = DATA / "results_v2_sample.json"


def gate(tmp_path: Path, baseline: Any, candidate: Any, *options: str, raw: str = None) -> tuple:
    """Run the gate as a user does; returns (exit code, stdout, stderr)."""
    paths = []
    for name, data in (("baseline.json", baseline), ("candidate.json", candidate)):
        if isinstance(data, Path):
            paths.append(str(data))
            continue
        path = tmp_path / name
        path.write_text(raw if (raw is not None and name == "candidate.json") else json.dumps(data),
                        encoding="utf-8")
        paths.append(str(path))
    proc = subprocess.run([sys.executable, "-m", "refit_core", "gate", *paths, *options],
                          cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def sample() -> Dict[str, Any]:
    return json.loads(SAMPLE_85.read_text(encoding="utf-8"))






@pytest.mark.parametrize("nodeid, expected", [
    ("proj/tests/x.py::t", "tests/x.py::t"),
    ("a/tests/b/tests/c.py::t[p/tests/q]", "tests/c.py::t[p/tests/q]"),
    ("proj\\tests\\x.py::t", "tests/x.py::t"),
    ("tests/x.py::t", "tests/x.py::t"),
    ("lib/x.py::t[tests/y]", "lib/x.py::t[tests/y]"),
    ("x.py", "x.py"),
])
def test_canonical_test_id(nodeid: str, expected: str) -> None:
    assert canonical_test_id(nodeid) == expected


def _no_accuracy(d: Dict[str, Any]) -> None:
    del d["mnist"]["accuracy_after"]


def _all_skipped(d: Dict[str, Any]) -> None:
    d["tests"] = {k: "skipped" for k in d["tests"]}
    d["test_counts"] = {"passed": 0, "failed": 0, "skipped": len(d["tests"])}








def test_absurd_nesting_is_unusable_input(tmp_path: Path) -> None:
    raw = '{"schema_version": 1, "extra": ' + "[" * 100_000 + "]" * 100_000 + "}"
    code, _, err = gate(tmp_path, sample(), None, raw=raw)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nested" in err




def _other_gpu(d: Dict[str, Any]) -> None:
    d["environment"]["gpu_name"] = "NVIDIA A100-SXM4-80GB"
    for key in ("median_s", "min_s", "max_s"):
        d["timings"]["mnist.refit.conv1"][key] *= 3


def test_timings_of_another_gpu_are_info_unless_forced(tmp_path: Path) -> None:
    cand = sample()
    _other_gpu(cand)
    result = compare(sample(), cand)
    row = result.row("timing.mnist.refit.conv1")
    assert row.verdict == INFO and "other GPU" in row.allowed
    assert result.passed
    forced = compare(sample(), cand, compare_timings_across_gpus=True)
    assert forced.row("timing.mnist.refit.conv1").verdict == REGRESSION
    driver = sample()
    driver["environment"]["cuda_driver_version"] = "13.0"
    assert "CUDA driver major" in compare(sample(), driver).row("timing.mnist.refit.conv1").allowed
    code, _, _ = gate(tmp_path, sample(), cand, "--compare-timings-across-gpus")
    assert code == 1


def test_integer_tolerance_refuses_fractions(capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    add_gate_arguments(parser)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["a", "b", "--max-changed-predictions", "1.5"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "must be a whole number >= 0" in err and "is not a number" not in err


def test_allow_missing_by_pattern(tmp_path: Path) -> None:
    cand = sample()
    del cand["bidaf"]["original"]
    result = compare(sample(), cand, allow_missing=["bidaf.original.*"])
    assert result.passed
    assert result.row("bidaf.original.answers").verdict == ALLOWED_MISSING
    code, out, _ = gate(tmp_path, sample(), cand)
    assert code == 1 and "bidaf.original" in out.strip().splitlines()[-1]
    code, out, _ = gate(tmp_path, sample(), cand, "--allow-missing", "bidaf.original.*")
    assert code == 0 and "allowed-missing" in out








def test_unwritable_report_output_is_one_line_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        proc = subprocess.run([sys.executable, "-m", "refit_core", "report", str(SAMPLE_85),
                               "--out", str(out)], cwd=str(REPO), capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert str(blocker) in proc.stderr
