"""Checks a weight before TensorRT sees it (numpy only, so CI tests every rule).

TensorRT's own checks are not enough: set_named_weights returns False without saying why,
a wrong element count has aborted the whole process in some versions (NVIDIA/TensorRT#639),
and a dtype it cannot take raises a bare TypeError. Each rule here raises a
WeightValidationError that names the weight and the problem instead.
"""
from __future__ import annotations

import difflib
import functools
import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import numpy as np

from ..errors import WeightValidationError


@dataclass(frozen=True)
class WeightSpec:
    """What the engine expects of one refittable weight.

    `name` is the key users refit by. Named weights use `set_named_weights(name)`; the
    sample's unnamed conv bias is addressed by layer and role instead (`layer`, `role`).
    `group` lists weights that are refitted together (a layer's kernel and bias).
    """

    name: str
    shape: Tuple[int, ...]
    dtype: str = "float32"
    layer: Optional[str] = None
    role: Optional[str] = None
    group: Optional[str] = None
    #: the engine was built with FP16: values must fit FP16 (validate_fp16_range) unless allowed
    fp16: bool = False

    @property
    def count(self) -> int:
        # math.prod, not np.prod: this runs once per weight per refit, and numpy's reduction
        # machinery cost more than the rest of the shape checks together
        return int(math.prod(self.shape))


def specs_from_arrays(arrays: Mapping[str, np.ndarray], groups: Optional[Mapping[str, str]] = None
                      ) -> Dict[str, WeightSpec]:
    groups = groups or {}
    return {name: WeightSpec(name, tuple(int(d) for d in a.shape), str(a.dtype), group=groups.get(name))
            for name, a in arrays.items()}


def _unknown_name_message(name: Any, known: Iterable[str]) -> str:
    known = sorted(known)
    close = difflib.get_close_matches(str(name), known, n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    shown = ", ".join(repr(k) for k in known[:12]) + (" ..." if len(known) > 12 else "")
    return f"is not a refittable weight of this engine{hint} (refittable: {shown})"


@functools.lru_cache(maxsize=64)
def _dtype(name: str) -> np.dtype:
    return np.dtype(name)


def validate_weight(specs: Mapping[str, WeightSpec], name: Any, array: Any,
                    allow_nonfinite: bool = False, allow_fp16_range: bool = False,
                    unreachable: Optional[Mapping[str, str]] = None) -> np.ndarray:
    """Return `array` (unchanged, or a view in the spec's shape) if the engine can take it as
    weight `name`; raise otherwise.

    Nothing is converted silently: a float64 array is an error, not a cast, so that the
    numbers the user checks are the numbers the engine runs. `unreachable`: names the engine
    does not list mapped to why (the coverage map's `Coverage.explanations()`: folded or fused
    away, and how to keep a weight refittable); an unknown name found there gets that reason.
    A spec with `fp16=True` refuses values FP16 cannot hold unless `allow_fp16_range`.
    A shape that differs from the spec's only by size-1 dims (same_but_size1) is accepted on
    every path alike, and the array comes back reshaped to the spec's shape (a view).
    """
    if not isinstance(name, str):
        raise WeightValidationError(None, f"weight names are strings, got {type(name).__name__} {name!r}")
    if name not in specs:
        if unreachable and name in unreachable:
            raise WeightValidationError(name, f"{unreachable[name]} (not a refittable weight of this engine)")
        raise WeightValidationError(name, _unknown_name_message(name, specs))
    spec = specs[name]
    if array is None:
        raise WeightValidationError(name, "got None instead of an array")
    if not isinstance(array, np.ndarray):
        raise WeightValidationError(name, f"expected a numpy.ndarray, got {type(array).__name__}")
    if isinstance(array, np.ma.MaskedArray):
        # TensorRT reads the raw buffer, masked-out values included (a NaN under the mask
        # would pass any check made through the mask): refuse rather than guess a fill value.
        raise WeightValidationError(
            name, "is a numpy masked array; TensorRT would read the raw values under the mask too: "
                  "pass a plain array with the values you mean (e.g. w.filled(0.0))")
    want = _dtype(spec.dtype)
    if array.dtype != want:
        raise WeightValidationError(
            name, f"dtype is {array.dtype}, the engine's weight is {want}: convert explicitly "
                  f"(np.asarray(w, dtype=np.{want.name})) if that is what you mean")
    if array.size == 0:
        raise WeightValidationError(name, f"empty array (shape {array.shape}); expected shape {spec.shape}")
    if array.size != spec.count:
        raise WeightValidationError(
            name, f"has {array.size} elements (shape {array.shape}), expected {spec.count} (shape {spec.shape})")
    squeezed = False
    if tuple(array.shape) != tuple(spec.shape):
        if not same_but_size1(array.shape, spec.shape):
            raise WeightValidationError(
                name, f"shape {tuple(array.shape)} differs from the engine's {tuple(spec.shape)} although the "
                      "element count matches: reshape it explicitly if the layout really is the same")
        squeezed = True
    flags = array.flags  # one flags object, not one per check
    if not flags.c_contiguous:
        raise WeightValidationError(
            name, "is not C-contiguous (a transposed or strided view); TensorRT reads raw memory in "
                  "row-major order: pass np.ascontiguousarray(w)")
    if not flags.aligned:
        raise WeightValidationError(
            name, f"is not aligned (its buffer does not start on a {array.dtype.itemsize}-byte boundary for "
                  f"{array.dtype}); TensorRT reads it as typed memory: pass an aligned copy (w.copy())")
    if not flags.writeable:
        raise WeightValidationError(
            name, "is read-only; TensorRT reads the buffer after the call returns, and refit_core takes "
                  "only buffers the caller owns: pass a writable copy (w.copy())")
    if not allow_nonfinite and want.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            n_nan = int(np.isnan(array).sum())
            n_inf = int((~finite).sum()) - n_nan
            raise WeightValidationError(
                name, f"contains {n_nan} NaN and {n_inf} Inf values; refused by default "
                      "(pass allow_nonfinite=True to refit them anyway)")
    if spec.fp16:
        validate_fp16_range(name, array, allow=allow_fp16_range)
    return array.reshape(spec.shape) if squeezed else array  # contiguous: a view of the caller's buffer


def same_but_size1(a: Tuple[int, ...], b: Tuple[int, ...]) -> bool:
    """Shapes that differ only by dims of size 1 ((1,) and (), (1, 64) and (64,)): the same values
    in the same order, so a weight of one is taken for the other (reshaped, never copied)."""
    return tuple(d for d in a if d != 1) == tuple(d for d in b if d != 1)


#: FP16's largest finite value; larger magnitudes overflow (round to inf, or TensorRT clamps them).
FP16_MAX = 65504.0
#: FP16's smallest positive (subnormal) value; nonzero magnitudes below it lose their value
#: (they round to 0, or to this value).
FP16_MIN_SUBNORMAL = 2.0 ** -24
#: Refuse when more than this share of a weight's nonzero values is below FP16_MIN_SUBNORMAL.
FP16_MAX_UNDERFLOW_FRACTION = 0.01


def validate_fp16_range(name: str, array: np.ndarray, allow: bool = False) -> np.ndarray:
    """Refuse a float weight for an FP16 engine when FP16 cannot hold its values.

    Refused: any finite |w| > 65504 (FP16_MAX: overflows to inf, or is clamped), or more
    than 1% (FP16_MAX_UNDERFLOW_FRACTION) of the nonzero values below 2**-24
    (FP16_MIN_SUBNORMAL: they flush to zero). A few tiny values are normal in trained
    weights and are let through. `allow=True` lets everything through (TensorRT then
    converts as it does). Non-finite values are validate_weight's business, not counted here.
    """
    arr = np.asarray(array)
    if allow or arr.dtype.kind != "f" or arr.dtype == np.float16 or arr.size == 0:
        return array
    mag = np.abs(arr[np.isfinite(arr)]).astype(np.float64)
    over = int((mag > FP16_MAX).sum())
    nonzero = int((mag > 0).sum())
    under = int(((mag > 0) & (mag < FP16_MIN_SUBNORMAL)).sum())
    problems = []
    if over:
        problems.append(f"{over} of {arr.size} values exceed FP16's largest value {FP16_MAX:g} in magnitude "
                        f"(largest |w| {float(mag.max()):.6g}; they would become inf or be clamped)")
    if nonzero and under > FP16_MAX_UNDERFLOW_FRACTION * nonzero:
        problems.append(f"{under} of its {nonzero} nonzero values ({under / nonzero:.1%}, more than "
                        f"{FP16_MAX_UNDERFLOW_FRACTION:.0%}) are smaller in magnitude than FP16's smallest "
                        f"value 2**-24 and would flush to zero")
    if problems:
        raise WeightValidationError(
            name, "does not fit the FP16 engine: " + "; ".join(problems) +
                  "; rescale the weight, build the engine in FP32, or allow it explicitly "
                  "(allow_fp16_range=True / --allow-fp16-range)")
    return array


def validate_weights(specs: Mapping[str, WeightSpec], weights: Mapping[str, Any],
                     allow_nonfinite: bool = False, allow_fp16_range: bool = False,
                     unreachable: Optional[Mapping[str, str]] = None) -> Dict[str, np.ndarray]:
    """Validate every weight of a refit before any is handed to TensorRT (all or nothing)."""
    return {name: validate_weight(specs, name, arr, allow_nonfinite, allow_fp16_range, unreachable)
            for name, arr in weights.items()}


def incomplete_groups(specs: Mapping[str, WeightSpec], supplied: Iterable[str]) -> Dict[str, list]:
    """For each group touched by `supplied`, the members not supplied (empty dict: complete)."""
    supplied = set(supplied)
    members: Dict[str, list] = {}
    for spec in specs.values():
        if spec.group is not None:
            members.setdefault(spec.group, []).append(spec.name)
    out = {}
    for group, names in members.items():
        if supplied & set(names):
            left = sorted(set(names) - supplied)
            if left:
                out[group] = left
    return out
