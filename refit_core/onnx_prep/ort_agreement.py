"""The proof that preparing changed nothing: ONNX Runtime runs the source and the prepared
model on the same seeded inputs, and the outputs must be identical (a fixed shape may let
ONNX Runtime pick another kernel; then they must agree within PREPARE_RTOL, and the
tolerance is printed). Needs onnx and onnxruntime, never TensorRT (Python 3.9).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .source import ModelInputError, Shape, model_inputs

__all__ = ["PREPARE_RTOL", "seeded_inputs", "input_dtypes", "seeded_feeds", "Agreement", "compare_with_ort"]

#: Prepared vs original outputs when they are not bit-identical: max|diff| <= PREPARE_RTOL * max(1, max|ref|).
PREPARE_RTOL = 1e-5


def seeded_inputs(specs: Mapping[str, Tuple[Shape, Any]], seed: int) -> Dict[str, np.ndarray]:
    """Seeded inputs by name order: standard-normal floats of each input's float dtype; zeros for
    integer inputs (token ids, indices, sample rates: zero is valid for all of them, where a random
    integer may index out of range); a checkerboard of True and False for boolean inputs (masks:
    all False would mask everything, or pick one branch of a Where, in either convention, and hide
    the weights behind it; every row of two or more elements holds both values)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for name in sorted(specs):
        shape, dtype = tuple(specs[name][0]), np.dtype(specs[name][1])
        if dtype.kind == "f":
            feeds[name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[name] = np.indices(shape).sum(axis=0) % 2 == 0 if shape else np.array(True)
        else:
            feeds[name] = np.zeros(shape, dtype=dtype)
    return feeds


def input_dtypes(model: Any) -> Dict[str, Any]:
    """Each real input's numpy dtype."""
    from onnx import helper
    return {inp.name: helper.tensor_dtype_to_np_dtype(inp.elem_type) for inp in model_inputs(model)}


def seeded_feeds(model: Any, shapes: Mapping[str, Shape], seed: int) -> Dict[str, np.ndarray]:
    """seeded_inputs for the model's inputs of these shapes."""
    return seeded_inputs({name: (shapes[name], dtype) for name, dtype in input_dtypes(model).items()}, seed)


@dataclass
class Agreement:
    """Prepared vs original outputs on the same inputs."""

    identical: bool
    max_abs: float
    max_ref: float
    outputs: int
    #: when not identical: whether they are with ONNX Runtime's graph optimizations off
    identical_unoptimized: Optional[bool] = None

    @property
    def ok(self) -> bool:
        return self.identical or self.max_abs <= PREPARE_RTOL * max(1.0, self.max_ref)

    def describe(self) -> str:
        if self.identical:
            return f"ONNX Runtime outputs identical ({self.outputs} outputs, seeded inputs)"
        why = ("identical with ONNX Runtime's graph optimizations off: its optimizer folds and fuses the two "
               "graphs differently" if self.identical_unoptimized else "not identical with the optimizations off either")
        return (f"ONNX Runtime outputs agree within {PREPARE_RTOL:g} x max(1, max|ref|), not bit for bit "
                f"(max|diff| {self.max_abs:.3g}, max|ref| {self.max_ref:.3g}; {why})")


def _ort_run(model: Any, names: List[str], feeds: Mapping[str, np.ndarray], optimize: bool) -> List[Any]:
    from ..models.ort_session import ort_session
    return ort_session(model.SerializeToString(), optimize=optimize).run(names, dict(feeds))


def _agreement(want: Sequence[Any], got: Sequence[Any]) -> Agreement:
    identical, max_abs, max_ref = True, 0.0, 0.0
    for a, b in zip(want, got):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            return Agreement(False, float("inf"), 0.0, len(want))
        if not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
            identical = False
        if a.dtype.kind == "f" and a.size:
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            max_abs = max(max_abs, float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0)
            finite = np.abs(a[np.isfinite(a)]).astype(np.float64)
            max_ref = max(max_ref, float(finite.max()) if finite.size else 0.0)
        elif not np.array_equal(a, b):
            max_abs = float("inf")
    return Agreement(identical, max_abs, max_ref, len(want))


def compare_with_ort(original: Any, prepared: Any, shapes: Mapping[str, Shape], seed: int = 0) -> Agreement:
    """Both models on the same seeded inputs, ONNX Runtime's graph optimizations on; when the
    outputs are not identical, again with them off (`identical_unoptimized` says what that gave)."""
    feeds = seeded_feeds(original, shapes, seed)
    names = [o.name for o in original.graph.output]
    try:
        want = _ort_run(original, names, feeds, optimize=True)
    except Exception as exc:  # onnxruntime's own errors are many types
        raise ModelInputError(f"ONNX Runtime cannot run the model with shapes "
                              f"{', '.join(f'{k}:' + 'x'.join(map(str, v)) for k, v in sorted(shapes.items()))} "
                              f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]})") from None
    result = _agreement(want, _ort_run(prepared, names, feeds, optimize=True))
    if not result.identical:
        plain = _agreement(_ort_run(original, names, feeds, optimize=False),
                           _ort_run(prepared, names, feeds, optimize=False))
        result.identical_unoptimized = plain.identical
    return result
