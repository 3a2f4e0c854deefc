"""refit_core: a verification suite for TensorRT engine refitting.

Importing the package imports nothing heavy: TensorRT, pycuda and PyTorch are loaded only
by the modules that need them, so the CPU tier and the GPU kit (no PyTorch) both work.
"""
from __future__ import annotations

__version__ = "0.1.0"
