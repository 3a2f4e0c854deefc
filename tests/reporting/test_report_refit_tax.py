"""The report's refit tax section: a table row per case and version, one chart per version
(CPU tier); records without the measurements say so."""
from __future__ import annotations

from pathlib import Path

import pytest

from refit_core.reporting.report import build_markdown, tax_plot_name, write_report
from refit_core.reporting.results import ResultsRecorder, load_results

ENV = dict(gpu_name="NVIDIA H200", cuda_driver_version="580.159.04", cuda_runtime_version="12.1",
           python_version="3.9.20", numpy_version="1.26.4", tactic_sources="no-cudnn")


def _write(tmp_path: Path, version: str, taxes) -> Path:
    rec = ResultsRecorder(created="2026-11-23")
    rec.record_environment(tensorrt_version=version, **ENV)
    for case, tax in taxes.items():
        rec.record_refit_tax(case, [tax * 1e-3], [1e-3], case.rsplit("-", 1)[-1] if case.endswith("16") else "fp32")
        rec.record_refit_floor(case, [5e-3], 1_000_000, 5e10, 4, "fp32")
    rec.record_test("tests/x.py::t", "passed")
    return rec.write(tmp_path / f"trt{version}.json")


def test_each_case_and_version_gets_a_row_and_each_version_a_chart(tmp_path: Path, capsys):
    pytest.importorskip("matplotlib", reason="the charts need matplotlib (requirements.txt)")
    paths = [_write(tmp_path, "8.5.3.1", {"mobilenet-v3-small": 1.32, "mobilenet-v3-small-fp16": 1.37}),
             _write(tmp_path, "8.6.0", {"mobilenet-v3-small": 1.1})]
    out = tmp_path / "report"
    assert write_report([str(p) for p in paths], str(out)) == 0
    text = (out / "report.md").read_text()
    assert "## Refit tax and refit floor" in text
    assert "| mobilenet-v3-small | 8.5.3.1 | fp32 | x1.320 | 5 ms | 1.000 | 20 us | 250x |" in text, text
    assert "| mobilenet-v3-small-fp16 | 8.5.3.1 | fp16 | x1.370 |" in text
    rows = [line for line in text.splitlines() if line.startswith("| mobilenet-v3-small")]
    assert len(rows) == 3
    for path in paths:
        png = out / tax_plot_name(load_results(path))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        assert png.name in text


def test_records_without_measurements_say_so(tmp_path: Path):
    rec = ResultsRecorder(created="2026-11-23")
    rec.record_environment(tensorrt_version="8.5.3.1", **ENV)
    rec.record_test("tests/x.py::t", "passed")
    path = rec.write(tmp_path / "old.json")
    text = build_markdown([(str(path), load_results(path))])
    assert "No record here has refit tax or floor measurements" in text
