"""Shared fixtures for the reporting tests: the stored sample results files and helpers."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, Dict

import pytest

DATA = Path(__file__).parent / "data"
SAMPLE_85 = DATA / "results_trt8.5.3.1_sample.json"
SAMPLE_86 = DATA / "results_trt8.6.0_sample.json"


@pytest.fixture
def baseline() -> Dict[str, Any]:
    """The TensorRT 8.5 sample record (a fresh copy each test, so doctoring is safe)."""
    return json.loads(SAMPLE_85.read_text(encoding="utf-8"))


@pytest.fixture
def candidate() -> Dict[str, Any]:
    """The TensorRT 8.6 sample record."""
    return json.loads(SAMPLE_86.read_text(encoding="utf-8"))


@pytest.fixture
def write_json(tmp_path: Path) -> Callable[[str, Any], Path]:
    """Write a (doctored) record to tmp_path and return its path."""
    def write(name: str, data: Any) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(copy.deepcopy(data), indent=2), encoding="utf-8")
        return path
    return write
