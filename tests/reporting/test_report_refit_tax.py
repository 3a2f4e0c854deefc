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




