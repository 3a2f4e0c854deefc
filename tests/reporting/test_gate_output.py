"""The gate's output: `--json` (the table's rows, machine-readable), a table that fits the
terminal, and `--differences-only` (CPU tier, on the sample and the committed records)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

from refit_core.reporting.cli import add_gate_arguments, run_gate
from refit_core.reporting.formatting import MIN_TABLE_WIDTH, text_table
from refit_core.reporting.gate_table import format_table
from refit_core.reporting.rules import compare
from refit_core.reporting.schema import load_results
from refit_core.reporting.verdicts import CHANGED, INFO, MISSING, OK, REGRESSION, ROW_FIELDS, GateResult, GateRow

from .conftest import SAMPLE_85, SAMPLE_86

RESULTS = Path(__file__).resolve().parents[2] / "results"
COLD, WARM = RESULTS / "trt8.6.0-H100.json", RESULTS / "trt8.6.0-H100-warm.json"
Record = Dict[str, Any]


def _gate(paths: Tuple[Path, Path], *options: str, capsys: pytest.CaptureFixture) -> Tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    add_gate_arguments(parser)
    code = run_gate(parser.parse_args([str(paths[0]), str(paths[1]), *options]))
    out, err = capsys.readouterr()
    return code, out, err


def _slow_refit(data: Record) -> Record:
    for key in ("median_s", "min_s", "max_s"):
        data["timings"]["mnist.refit.conv1"][key] *= 3.0
    return data


# -- --json ----------------------------------------------------------------------------------

def test_json_holds_every_row_the_table_shows(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = _gate((SAMPLE_85, SAMPLE_86), "--json", capsys=capsys)
    doc = json.loads(out)  # one document, nothing else on stdout
    result = compare(load_results(SAMPLE_85), load_results(SAMPLE_86))
    assert code == doc["exit_code"] == 0 and doc["verdict"] == "passed"
    assert doc["summary"] == result.verdict_line()
    assert doc["rows"] == [dict(zip(ROW_FIELDS, (r.verdict, r.metric, r.baseline, r.candidate, r.allowed)))
                           for r in result.rows]
    assert doc["counts"] == result.counts()
    assert doc["baseline"]["tensorrt_version"] == "8.5.3.1" and doc["candidate"]["path"] == str(SAMPLE_86)


def test_json_of_a_regression_exits_1_and_names_it(baseline: Record, write_json: Callable[[str, Any], Path],
                                                   capsys: pytest.CaptureFixture) -> None:
    slow = write_json("slow.json", _slow_refit(json.loads(json.dumps(baseline))))
    code, out, _ = _gate((write_json("base.json", baseline), slow), "--json", capsys=capsys)
    doc = json.loads(out)
    assert code == doc["exit_code"] == 1 and doc["verdict"] == "failed"
    failing = [row for row in doc["rows"] if row["status"] == REGRESSION]
    assert [row["key"] for row in failing] == ["timing.mnist.refit.conv1"]
    assert "x3.00" in failing[0]["candidate"] and failing[0]["reason"]


def test_json_of_unusable_input_exits_2_with_a_document(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = _gate((SAMPLE_85, tmp_path / "absent.json"), "--json", capsys=capsys)
    doc = json.loads(out)
    assert code == doc["exit_code"] == 2 and doc["verdict"] == "error" and doc["rows"] == []
    assert "absent.json" in doc["error"] and len(err.strip().splitlines()) == 1


# -- the table fits the terminal -------------------------------------------------------------

@pytest.mark.parametrize("columns", [MIN_TABLE_WIDTH, 60, 80, 120, 200])
def test_table_is_never_wider_than_the_terminal(columns: int, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))  # shutil.get_terminal_size reads it first
    code, out, _ = _gate((COLD, WARM), capsys=capsys)
    assert code == 0
    lines = out.splitlines()
    table = lines[lines.index("") + 1:len(lines) - 2]  # between the two records and the verdict
    rule = next(i for i, line in enumerate(table) if set(line) == {"-", " "})
    assert "".join(table[:rule]).split()[0] == "status"
    assert max(len(line) for line in table) <= columns
    if columns >= 80:
        assert table[0].split() == list(ROW_FIELDS)
    # every row is still there, in order: each starts a line with its status
    result = compare(load_results(COLD), load_results(WARM))
    statuses = [line.split()[0] for line in table[rule + 1:] if not line.startswith(" ")]
    assert statuses == [row.verdict for row in result.rows]


def test_a_wide_terminal_shows_long_cells_whole() -> None:
    long = "x" * 150
    result = GateResult(rows=[GateRow("bad_inputs.case", long, long + "y", "info", CHANGED)])
    wide = format_table(result, width=400)
    assert long + "y" in wide and len(wide.splitlines()) == 3
    narrow = format_table(result, width=80)
    assert max(len(line) for line in narrow.splitlines()) <= 80
    assert narrow.splitlines()[2].split()[:2] == [CHANGED, "bad_inputs.case"]  # status and key on the row's first line


def test_text_table_wraps_and_cuts_long_cells_within_their_column() -> None:
    text = text_table(("a", "b"), [("word " * 100, "short")], width=MIN_TABLE_WIDTH)
    lines = text.splitlines()
    assert all(len(line) <= MIN_TABLE_WIDTH for line in lines)
    assert 3 <= len(lines) <= 2 + 4 and lines[-1].rstrip().endswith("...")  # at most 4 lines a cell


# -- --differences-only ----------------------------------------------------------------------

def test_differences_only_leaves_out_ok_and_provenance_rows(capsys: pytest.CaptureFixture) -> None:
    # a pair with changes and no regression: the warm run (suite efe7770) before the cold one (09e4f4c)
    base, cand = RESULTS / "trt8.5.3.1-H100-warm.json", RESULTS / "trt8.5.3.1-H100.json"
    code, out, _ = _gate((base, cand), "--differences-only", "--json", capsys=capsys)
    rows = json.loads(out)["rows"]
    result = compare(load_results(base), load_results(cand))
    assert code == 0 and rows
    assert not [r for r in rows if r["status"] == OK or r["key"].startswith("provenance.")]
    assert [r["key"] for r in rows] == [r.metric for r in result.rows if r.verdict == CHANGED]
    assert any(r.metric.startswith("provenance.") and r.baseline != r.candidate for r in result.rows)


def test_differences_only_keeps_regressions_and_evidence_that_came_or_went(
        baseline: Record, write_json: Callable[[str, Any], Path], capsys: pytest.CaptureFixture) -> None:
    doctored = _slow_refit(json.loads(json.dumps(baseline)))
    del doctored["mnist"]["accuracy_reference"]  # gone from the candidate: missing
    doctored.setdefault("notes", {})["new_note"] = "only here"  # new in the candidate: info with one side absent
    paths = (write_json("base.json", baseline), write_json("cand.json", doctored))
    code, out, _ = _gate(paths, "--differences-only", capsys=capsys)
    assert code == 1
    shown: List[str] = [line.split()[1] for line in out.splitlines()
                        if line.split() and line.split()[0] in (REGRESSION, MISSING, INFO, CHANGED)]
    assert {"timing.mnist.refit.conv1", "mnist.accuracy_reference", "notes.new_note"} <= set(shown)
    assert not any(key.startswith("provenance.") for key in shown)
    assert "\nok " not in out


@pytest.mark.parametrize("candidate_text, shown", [
    ("cached plan /tmp/pytest-of-ci/pytest-7/test_damage0/plans/a.plan is not usable; rebuilding", False),
    ("cached plan /tmp/pytest-of-root/pytest-0/test_damage0/plans/b.plan is not usable; rebuilding", True)])
def test_a_bad_input_text_that_differs_only_in_pytests_temp_folder_is_no_difference(
        baseline: Record, write_json: Callable[[str, Any], Path], capsys: pytest.CaptureFixture,
        candidate_text: str, shown: bool) -> None:
    """Two runs' messages name their own /tmp/pytest-of-USER/pytest-N folder: the same message, not a
    change for --differences-only; another file named in it is one."""
    base = json.loads(json.dumps(baseline))
    base.setdefault("bad_inputs", {})["plan cache: corrupt"] = \
        "cached plan /tmp/pytest-of-root/pytest-0/test_damage0/plans/a.plan is not usable; rebuilding"
    cand = json.loads(json.dumps(base))
    cand["bad_inputs"]["plan cache: corrupt"] = candidate_text
    paths = (write_json("base.json", base), write_json("cand.json", cand))
    code, out, _ = _gate(paths, "--differences-only", "--json", capsys=capsys)
    keys = [r["key"] for r in json.loads(out)["rows"]]
    assert code == 0 and ("bad_inputs.plan cache: corrupt" in keys) is shown
