"""Refittable-weight names made comparable across TensorRT versions (standard library only).

How each TensorRT version spells "no name" is version knowledge and lives in the version
seam (`refit_core.trt.compat.is_unnamed_weight`, which imports neither numpy nor TensorRT);
this module adds the placeholder records use for them.
"""
from __future__ import annotations

from typing import Iterable, List, Optional

from ..trt import compat

#: Placeholder that every unnamed refittable weight becomes, whatever TensorRT called it.
UNNAMED_WEIGHT = "<unnamed>"


def is_unnamed_weight(name: Optional[str]) -> bool:
    """TensorRT's ways of saying "no name", or the placeholder a record already holds."""
    return name == UNNAMED_WEIGHT or compat.is_unnamed_weight(name)


def normalize_weight_names(names: Optional[Iterable[Optional[str]]]) -> List[str]:
    """Sorted named weights, then one UNNAMED_WEIGHT per unnamed weight (the count survives).

    TensorRT 8.5 reports unnamed refittable weights as None and 8.6 as strings such as
    "(Unnamed Layer* 42) [Constant] CONSTANT", whose layer number also shifts between versions.
    """
    if names is None:
        return []
    named: List[str] = []
    unnamed = 0
    for name in names:
        if is_unnamed_weight(name):
            unnamed += 1
        else:
            named.append(str(name))
    return sorted(named) + [UNNAMED_WEIGHT] * unnamed


def unnamed_weight_count(names: Optional[Iterable[Optional[str]]]) -> int:
    """How many of the names are unnamed weights (in any TensorRT version's spelling)."""
    return sum(1 for name in (names or []) if is_unnamed_weight(name))
