"""ONNX Runtime CPU sessions: the one home for creating them (numpy + onnxruntime, Python 3.9).

Lives in the models layer, the lowest one that runs ONNX files; the samples' ONNX Runtime
references (samples.bidaf.reference, samples.bidaf.ort_reference) build on it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Tuple, Union

from ..errors import DataError

__all__ = ["ort_session", "PROVIDERS"]

PathLike = Union[str, "os.PathLike[str]"]
PROVIDERS = ["CPUExecutionProvider"]

_SESSIONS: Dict[Tuple[str, int, int, int], Any] = {}


def _options(optimize: bool = True) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # warnings about unused initializers etc. are noise here
    opts.intra_op_num_threads = 1  # reproducible sums, and polite on a shared CPU
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return opts


def ort_session(model: Union[PathLike, bytes, bytearray], reuse: bool = True, optimize: bool = True) -> Any:
    """A CPU InferenceSession for an ONNX file or serialized model bytes.

    With ``reuse``, a file's session is kept and handed out again while the file is
    unchanged (same path, inode, size and mtime). A missing file is a DataError naming it.
    ``optimize=False`` turns ONNX Runtime's graph optimizations off (nothing folded or fused:
    the graph as written), in a session of its own.
    """
    import onnxruntime as ort

    if isinstance(model, (bytes, bytearray)):
        return ort.InferenceSession(bytes(model), sess_options=_options(optimize), providers=PROVIDERS)
    path = Path(model)
    if not path.is_file():
        raise DataError(f"ONNX model {str(path)!r} does not exist")
    if not reuse or not optimize:
        return ort.InferenceSession(str(path), sess_options=_options(optimize), providers=PROVIDERS)
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    sess = _SESSIONS.get(key)
    if sess is None:
        sess = ort.InferenceSession(str(path), sess_options=_options(), providers=PROVIDERS)
        _SESSIONS[key] = sess
    return sess
