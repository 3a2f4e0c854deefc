"""The report over real inputs (CPU tier): files, folders and globs with non-records skipped; runs
kept apart by version, GPU and time; the gate between consecutive runs at the top; charts with
labelled axes, zoo cases included; wall time per phase."""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from refit_core.reporting.cli import add_report_arguments, run_report
from refit_core.reporting.formatting import md
from refit_core.reporting.report import PHASES_PLOT_NAME, PLOT_NAME, REPORT_NAME, tax_plot_name
from refit_core.reporting.runs import make_runs, run_label
from refit_core.reporting.schema import load_results

from .conftest import SAMPLE_85

RESULTS = Path(__file__).resolve().parents[2] / "results"
COLD, WARM = RESULTS / "trt8.6.0-H100.json", RESULTS / "trt8.6.0-H100-warm.json"

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None and os.environ.get("CI") != "true",
    reason="matplotlib is not installed (the GPU kit has none); no charts are written")


def _report(arguments: List[str], out: Path, capsys: pytest.CaptureFixture) -> Tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    code = run_report(parser.parse_args([*arguments, "--out", str(out)]))
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def _data(path: Path) -> Dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _section(markdown: str, title: str) -> str:
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A results/ of both committed records and what lies beside them there."""
    where = tmp_path / "results"
    where.mkdir()
    for path in (COLD, WARM, RESULTS / "bench-trt8.6.0-H100.json", RESULTS / "log-trt8.6.0-H100.txt"):
        shutil.copy(path, where / path.name)
    old = dict(_data(COLD), schema_version=2)
    (where / "trt8.5.3.1-old.json").write_text(json.dumps(old), encoding="utf-8")
    (where / "archive").mkdir()
    return where


# -- inputs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("form", ["folder", "glob"])
def test_a_folder_or_glob_of_results_skips_what_is_no_record(form: str, folder: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    argument = str(folder) if form == "folder" else str(folder / "*.*")
    code, _, err = _report([argument], tmp_path / "out", capsys)
    assert code in (0, 1)  # 1: no matplotlib here, the markdown is still written
    skipped = [line for line in err.splitlines() if line.startswith("report: skipped ")]
    names = {"bench-trt8.6.0-H100.json", "log-trt8.6.0-H100.txt", "trt8.5.3.1-old.json"}
    names |= {"archive"} if form == "folder" else set()
    assert len(skipped) == len(names) and all(any(n in line for line in skipped) for n in names)
    assert "older" in next(line for line in skipped if "trt8.5.3.1-old" in line)
    markdown = (tmp_path / "out" / REPORT_NAME).read_text(encoding="utf-8")
    assert markdown.count("| 8.6.0 | NVIDIA H100 80GB HBM3 |") == 2


@pytest.mark.parametrize("what", ["no records", "no such path", "glob matches nothing"])
def test_nothing_to_report_exits_2_in_one_line(what: str, folder: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    if what == "no records":
        for record in (COLD, WARM):
            (folder / record.name).unlink()
        argument, needle = str(folder), "no results record"
    elif what == "no such path":
        argument, needle = str(tmp_path / "absent"), "no such file or folder"
    else:
        argument, needle = str(folder / "*.nothing"), "no file matches"
    code, _, err = _report([argument], tmp_path / "out", capsys)
    lines = [line for line in err.splitlines() if not line.startswith("report: skipped ")]
    assert code == 2 and len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "out" / REPORT_NAME).exists()


# -- runs kept apart -------------------------------------------------------------------------

def test_two_runs_of_one_version_keep_their_own_rows_labels_and_files(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    code, stdout, _ = _report([str(COLD), str(WARM)], tmp_path / "out", capsys)
    runs = make_runs([(str(p), load_results(p)) for p in (COLD, WARM)])
    labels = [run.label for run in runs]
    assert labels == [f"8.6.0, NVIDIA H100 80GB HBM3, {_started(_data(p)):%Y-%m-%d %H:%M}" for p in (COLD, WARM)]
    assert labels[0] != labels[1]
    names = [tax_plot_name(run) for run in runs]
    assert len(set(names)) == 2
    markdown = (tmp_path / "out" / REPORT_NAME).read_text(encoding="utf-8")
    tax = _section(markdown, "Refit tax and refit floor")
    for label in labels:
        assert f"| mnist | {md(label)} | fp32 |" in tax
    if code == 0:  # matplotlib here: one chart per run, each linked
        for name in names:
            assert (tmp_path / "out" / name).exists() and f"]({name})" in markdown


def test_identical_labels_still_get_files_of_their_own() -> None:
    record = load_results(COLD)
    runs = make_runs([("a.json", record), ("b.json", record)])
    assert runs[0].label == runs[1].label and tax_plot_name(runs[0]) != tax_plot_name(runs[1])


# -- the gate between consecutive runs -------------------------------------------------------

def _started(data: Dict[str, Any]) -> datetime:
    return datetime.fromisoformat(data["provenance"]["started"])


def _later(data: Dict[str, Any], minutes: int) -> Dict[str, Any]:
    """A copy of the record that started `minutes` after it."""
    out = copy.deepcopy(data)
    out["provenance"]["started"] = (_started(data) + timedelta(minutes=minutes)).isoformat()
    return out


def _markdown(tmp_path: Path, capsys: pytest.CaptureFixture, *records: Dict[str, Any]) -> str:
    paths = []
    for i, data in enumerate(records):
        path = tmp_path / f"r{i}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        paths.append(str(path))
    code, _, err = _report(paths, tmp_path / "out", capsys)
    assert code in (0, 1), err
    return (tmp_path / "out" / REPORT_NAME).read_text(encoding="utf-8")


def test_the_report_opens_with_the_gate_between_consecutive_runs(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    slow = _later(_data(WARM), 30)
    for key in ("median_s", "min_s", "max_s"):
        slow["timings"]["mnist.refit.conv1"][key] *= 3.0
    markdown = _markdown(tmp_path, capsys, _data(COLD), _data(WARM), slow)
    assert markdown.index("## Gate between consecutive runs") < markdown.index("## Runs")
    gate = _section(markdown, "Gate between consecutive runs")
    assert "**1 of 2 comparison(s) FAILED** (1 regression(s))" in gate
    cold, warm = (md(run_label(load_results(p))) for p in (COLD, WARM))
    assert f"| {cold} | {warm} | passed: no regressions" in gate
    assert f"| {warm} | 8.6.0, NVIDIA H100 80GB HBM3, {_started(slow):%Y-%m-%d %H:%M} | **FAILED**: 1 regression" in gate
    highlighted = gate.split("### Regressions and missing evidence", 1)[1]
    assert "| **REGRESSION** | timing.mnist.refit.conv1 |" in highlighted


def test_runs_that_cannot_be_gated_say_why(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    other_inputs = _later(_data(WARM), 10)
    other_inputs["cases"]["mnist"]["inputs_sha256"] = "0" * 64
    other_gpu = _later(_data(WARM), 20)
    other_gpu["environment"]["gpu_name"] = "NVIDIA H200"
    gate = _section(_markdown(tmp_path, capsys, _data(WARM), other_inputs, other_gpu), "Gate between consecutive runs")
    assert "| not comparable: " in gate and "different inputs" in gate
    assert f"- 8.6.0, NVIDIA H200, {_started(other_gpu):%Y-%m-%d %H:%M} (suite, default profile): no other run" in gate


# -- charts and phases -----------------------------------------------------------------------

@needs_matplotlib
def test_the_refit_chart_labels_its_axes_and_shows_the_zoo_cases() -> None:
    from refit_core.reporting.charts import refit_figure
    records = [(str(p), load_results(p)) for p in (COLD, WARM)]
    top, bottom = refit_figure(records).axes
    assert top.get_yscale() == "log" and "refit median" in top.get_ylabel()  # 4.7 ms .. 126 ms: decades
    assert "rebuild" in bottom.get_ylabel()
    ticks = [t.get_text() for t in top.get_xticklabels()]
    assert {"mnist", "mobilenet-v3-small", "transformer-encoder", "tiny-mlp"} <= set(ticks)
    assert all(t.get_rotation() == 30 for t in top.get_xticklabels())
    assert [t.get_text() for t in bottom.get_xticklabels()] == ["mnist"]  # the case with a rebuild timed
    for ax in (top, bottom):
        assert ax.get_xlabel() == "case" and ax.get_title()
    assert len(top.get_legend().get_texts()) == 2  # one entry per run


@needs_matplotlib
def test_the_phase_chart_has_a_bar_per_run_with_phases(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from refit_core.reporting.charts import phases_figure
    records = [(str(p), load_results(p)) for p in (SAMPLE_85, COLD, WARM)]  # the sample has no phases
    ax = phases_figure(records).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == [run_label(load_results(p)) for p in (COLD, WARM)]
    assert "wall time (s)" in ax.get_xlabel() and ax.get_ylabel() == "run"
    code, stdout, _ = _report([str(COLD), str(WARM)], tmp_path / "out", capsys)
    assert code == 0 and str(tmp_path / "out" / PHASES_PLOT_NAME) in stdout and str(tmp_path / "out" / PLOT_NAME) in stdout
    assert (tmp_path / "out" / PHASES_PLOT_NAME).read_bytes()[:4] == b"\x89PNG"


def test_phases_take_the_recorded_total_not_the_sum_with_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    phases = _section(_markdown(tmp_path, capsys, _data(COLD)), "Where the time went")
    recorded = dict(_data(COLD)["phases"])
    total = recorded.pop("total")
    largest = max(recorded, key=recorded.get)
    assert (f"{md(run_label(load_results(COLD)))} (default profile): {total:.0f} s in all; "
            f"{md(largest)} {recorded[largest]:.1f} s") in phases
    assert "total" not in phases.split("in all;", 1)[1]
