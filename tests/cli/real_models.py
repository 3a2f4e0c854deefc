"""The real pretrained models of tools/real_models.json, where REFIT_REAL_MODELS_DIR has them
(fetched with `python tools/fetch_real_models.py DIR`); a test of a missing one skips naming it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from refit_core.fileio import read_json_strict, sha256_file

MANIFEST = Path(__file__).resolve().parents[2] / "tools" / "real_models.json"
ENV = "REFIT_REAL_MODELS_DIR"


def manifest_models() -> List[Dict[str, Any]]:
    return list(read_json_strict(MANIFEST)["models"])


def model_file(entry: Dict[str, Any]) -> Path:
    """DIR/<id>.onnx, verified against the manifest's sha256; skips saying what is missing."""
    root = os.environ.get(ENV)
    name = f"{entry['id']}.onnx"
    if not root:
        pytest.skip(f"{name} ({entry['package']}=={entry['version']}: {entry['path']}) is not here: set {ENV} to a "
                    f"directory filled by `python tools/fetch_real_models.py DIR`")
    path = Path(root) / name
    if not path.is_file():
        pytest.skip(f"{path} is missing: python tools/fetch_real_models.py {root} --only {entry['id']}")
    assert sha256_file(path) == entry["sha256"], f"{path} is not the file the manifest names (sha256 differs)"
    return path


def expectations(entry: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Every verdict the entry states: "" for `expected` (any TensorRT) and "MAJOR.MINOR" for
    each `expected_on` entry (a version whose verdict differs, e.g. a parser that imports an
    op an older one refuses)."""
    return {"": entry["expected"], **entry.get("expected_on", {})}


def expected_for(entry: Dict[str, Any], version: Tuple[int, int]) -> Dict[str, Any]:
    """The verdict check should give on TensorRT `version` (major, minor)."""
    return entry.get("expected_on", {}).get(f"{version[0]}.{version[1]}", entry["expected"])


def ids() -> List[str]:
    return [m["id"] for m in manifest_models()]
