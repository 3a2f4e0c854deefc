"""Refittable-weight names made comparable across TensorRT versions (standard library only).

This is the one home of `is_unnamed_weight`: `refit_core.trt.compat` should import it from
here (reporting must not import compat, which imports numpy at module top).
"""
from __future__ import annotations

import re
from typing import Iterable, List, Optional

#: Placeholder that every unnamed refittable weight becomes, whatever TensorRT called it.
UNNAMED_WEIGHT = "<unnamed>"

#: "(Unnamed Layer* 42) [Constant] CONSTANT": how TensorRT 8.6 names weights of unnamed layers.
_UNNAMED_LAYER_RE = re.compile(r"^\s*\(Unnamed Layer\*\s*\d+\)")


def is_unnamed_weight(name: Optional[str]) -> bool:
    """True for TensorRT's ways of saying "no name": None (8.5), "" and "(Unnamed Layer* N) ..." (8.6)."""
    if name is None:
        return True
    text = str(name)
    return text.strip() == "" or text == UNNAMED_WEIGHT or bool(_UNNAMED_LAYER_RE.match(text))


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
