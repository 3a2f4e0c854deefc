"""The BiDAF stand-in: a small, trained Bi-Directional Attention Flow model whose ONNX
file has the interface and the graph patterns of the ONNX model zoo's bidaf-9.onnx.

Only model.py, train.py, export.py and generate.py import torch; reference.py (ONNX
Runtime inference on the committed file) does not, so the GPU kit can use it.
"""
from __future__ import annotations

from ..assets import ASSETS_DIR
STANDIN_ONNX = ASSETS_DIR / "bidaf_standin.onnx"
STANDIN_METADATA = ASSETS_DIR / "bidaf_standin.json"
