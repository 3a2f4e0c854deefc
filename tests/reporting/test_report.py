"""The cross-version report: markdown table (one row per version) and the refit-vs-rebuild PNG."""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest

from refit_core.reporting.cli import add_report_arguments, run_report
from refit_core.reporting.formatting import md
from refit_core.reporting.report import PLOT_NAME, REPORT_NAME, build_markdown
from refit_core.reporting.runs import run_label, version_key
from refit_core.reporting.schema import load_results

from .conftest import SAMPLE_85, SAMPLE_86

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The GPU kit has no matplotlib: there the PNG tests skip; in CI (CI=true) it must be installed.
needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None and os.environ.get("CI") != "true",
    reason="matplotlib is not installed (the GPU kit has none); the PNG is not written")


def _report(paths: List[Path], out: Path, capsys: pytest.CaptureFixture) -> tuple:
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    code = run_report(parser.parse_args([*map(str, paths), "--out", str(out)]))
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def _table_rows(markdown: str) -> List[str]:
    """Body rows of the first markdown table."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| TensorRT"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


@needs_matplotlib
def test_report_writes_markdown_and_png(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report"
    code, stdout, _ = _report([SAMPLE_86, SAMPLE_85], out, capsys)  # given newest first
    assert code == 0
    report, plot = out / REPORT_NAME, out / PLOT_NAME
    assert str(report) in stdout and str(plot) in stdout

    markdown = report.read_text(encoding="utf-8")
    rows = _table_rows(markdown)
    assert len(rows) == 2  # one row per TensorRT version ...
    assert rows[0].startswith("| 8.5.3.1 |") and rows[1].startswith("| 8.6.0 |")  # ... sorted
    header = markdown.splitlines()[[i for i, l in enumerate(markdown.splitlines())
                                    if l.startswith("| TensorRT")][0]]
    for column in ("GPU", "MNIST before", "MNIST after", "BiDAF standin answer",
                   "BiDAF standin EM", "mnist refit median", "mnist first refit",
                   "mnist rebuild median", "mnist rebuild/refit", "bidaf.standin rebuild/refit"):
        assert column in header
    assert "99.12%" in rows[0] and '"savanna"' in rows[0]
    label_85, label_86 = (run_label(load_results(p)) for p in (SAMPLE_85, SAMPLE_86))
    assert label_85.startswith("8.5.3.1, NVIDIA H100 80GB HBM3, ")
    assert f"- {md(label_85)}: 8 passed, 0 failed, 1 skipped" in markdown
    assert f"- {md(label_86)}: 9 passed, 0 failed, 0 skipped" in markdown
    assert "TEST FIXTURE" in markdown  # fixture notes travel into the report
    assert f"]({PLOT_NAME})" in markdown

    data = plot.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000


@needs_matplotlib
def test_versions_sort_numerically(baseline: Dict[str, Any],
                                   write_json: Callable[[str, Any], Path],
                                   tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    newer = dict(baseline, environment=dict(baseline["environment"], tensorrt_version="10.0.1"))
    paths = [write_json("r10.json", newer), SAMPLE_86, SAMPLE_85]
    code, _, _ = _report(paths, tmp_path / "out", capsys)
    assert code == 0
    rows = _table_rows((tmp_path / "out" / REPORT_NAME).read_text(encoding="utf-8"))
    assert [row.split("|")[1].strip() for row in rows] == ["8.5.3.1", "8.6.0", "10.0.1"]
    assert version_key("8.6.0") < version_key("10.0.1") < version_key(None)




def test_cells_are_markdown_safe(baseline: Dict[str, Any]) -> None:
    baseline["bidaf"]["standin"]["answer_after_refit"] = "a | b\nc"
    markdown = build_markdown([("x.json", baseline)])
    row = _table_rows(markdown)[0]
    assert "a \\| b c" in row
    header = next(line for line in markdown.splitlines() if line.startswith("| TensorRT"))
    assert row.count(" | ") == header.count(" | ")  # same columns as the header


def test_a_damaged_record_exits_2(baseline: Dict[str, Any], write_json: Callable[[str, Any], Path],
                                  tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A schema-3 record that fails validation is damaged, not skipped: one line naming file and field."""
    baseline["mnist"]["accuracy_after"] = 1.5
    bad = write_json("bad.json", baseline)
    code, _, err = _report([SAMPLE_85, bad], tmp_path / "out", capsys)
    assert code == 2 and "bad.json" in err and "accuracy_after" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / REPORT_NAME).exists()


def test_without_matplotlib_the_markdown_is_still_written(
        tmp_path: Path, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import now raises ImportError
    code, _, err = _report([SAMPLE_85], tmp_path / "out", capsys)
    assert code == 1 and "matplotlib" in err
    assert (tmp_path / "out" / REPORT_NAME).exists()
    assert not (tmp_path / "out" / PLOT_NAME).exists()


def test_ratio_basis_picks_the_timings_shown_beside_the_ratio():
    from refit_core.reporting.runs import model_timings
    data = {"timings": {"m.refit.all": {"median_s": 0.008}, "m.refit.conv1": {"median_s": 0.005, "first_s": 0.006},
                        "m.rebuild.cold": {"median_s": 1.5}},
            "ratios": {"m": 300.0}, "ratio_basis": {"m": ["m.rebuild.cold", "m.refit.conv1"]}}
    t = model_timings(data, "m")
    assert t["refit_name"] == "m.refit.conv1" and t["refit_median_s"] == 0.005 and t["first_refit_s"] == 0.006
    del data["ratio_basis"]
    assert model_timings(data, "m")["refit_name"] == "m.refit.all"  # alphabetical primary without a basis


def test_report_escapes_what_it_prints(baseline: Dict[str, Any]) -> None:
    evil = "H100\n# Injected heading\n<script>alert(1)</script> `code` | cell *bold*"
    baseline["environment"]["gpu_name"] = evil
    baseline["note"] = "note\n## also injected <b>x</b>"
    markdown = build_markdown([("x.json", baseline)])
    lines = markdown.splitlines()
    assert not any(line.startswith("# Injected") or line.startswith("## also") for line in lines)
    assert "<script>" not in markdown and "<b>" not in markdown
    assert "`code`" not in markdown
    row = _table_rows(markdown)[0]
    header = next(line for line in lines if line.startswith("| TensorRT"))
    assert row.count(" | ") == header.count(" | ")
    assert "&lt;script&gt;" in row and "\\|" in row


