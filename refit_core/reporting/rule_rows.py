"""The row builders the gate's rules share: one compared value -> a GateRow, or None when
neither record has it.

A value the baseline has and the candidate lacks is MISSING (it fails the gate); one only the
candidate has is INFO, except where the baseline must vouch for it (absent_either_row).
Standard library only (runs on the GPU kit).
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Callable, Dict, List, Optional

from .formatting import ABSENT, pct, plain
from .verdicts import CHANGED, INFO, MISSING, OK, REGRESSION, GateRow
from .weights import UNNAMED_WEIGHT, normalize_weight_names

EPS = 1e-9  # float slack so that "exactly at the tolerance" passes
Show = Callable[[Any], str]


def section(data: Dict[str, Any], name: str) -> Dict[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def absent_row(metric: str, b: Any, c: Any, show: Show = plain) -> Optional[GateRow]:
    """The row for a value absent from one side (None when both sides have it)."""
    if c is None:
        return GateRow(metric, show(b), ABSENT, "present in candidate", MISSING)
    if b is None:
        return GateRow(metric, ABSENT, show(c), "new in candidate", INFO)
    return None


def absent_either_row(metric: str, b: Any, c: Any, show: Show) -> Optional[GateRow]:
    """Like absent_row, but a value only the candidate has fails too: the baseline cannot vouch for it."""
    if b is None and c is not None:
        return GateRow(metric, ABSENT, show(c), "present in baseline", MISSING)
    return absent_row(metric, b, c, show)


def drop_row(metric: str, b: Any, c: Any, allowed_pp: float) -> Optional[GateRow]:
    """A fraction (accuracy, exact match) that may drop by at most allowed_pp points."""
    if b is None and c is None:
        return None
    row = absent_row(metric, b, c, pct)
    if row:
        return row
    drop_pp = (float(b) - float(c)) * 100.0
    verdict = REGRESSION if drop_pp > allowed_pp + EPS else OK
    return GateRow(metric, pct(b), f"{pct(c)} ({-drop_pp:+.2f} pp)", f"drop <= {allowed_pp:g} pp",
                   verdict)


def equal_row(metric: str, b: Any, c: Any, show: Show, if_different: str) -> Optional[GateRow]:
    if b is None and c is None:
        return None
    row = absent_row(metric, b, c, show)
    if row:
        return row
    return GateRow(metric, show(b), show(c),
                   "unchanged" if if_different == REGRESSION else "info",
                   OK if b == c else if_different)


def _describe_weights(names: List[str]) -> str:
    unnamed = names.count(UNNAMED_WEIGHT)
    return f"{len(names) - unnamed} named + {unnamed} unnamed"


def weights_row(metric: str, b: Any, c: Any) -> Optional[GateRow]:
    """Refittable-weight sets: compared after normalisation; differences are reported only."""
    if b is None and c is None:
        return None
    nb = normalize_weight_names(b) if b is not None else None
    nc = normalize_weight_names(c) if c is not None else None
    row = absent_row(metric, nb, nc, _describe_weights)
    if row:
        return row
    if nb == nc:
        return GateRow(metric, _describe_weights(nb), _describe_weights(nc), "info (normalised)", OK)
    diff = [f"-{n}" + (f" x{k}" if k > 1 else "") for n, k in sorted((Counter(nb) - Counter(nc)).items())]
    diff += [f"+{n}" + (f" x{k}" if k > 1 else "") for n, k in sorted((Counter(nc) - Counter(nb)).items())]
    return GateRow(metric, _describe_weights(nb), f"{_describe_weights(nc)}: {' '.join(diff)}",
                   "info (normalised)", CHANGED)


#: pytest's per-run temporary folders (/tmp/pytest-of-USER/pytest-N/NAME0): where a message names
#: one, two runs that said the same thing differ only in it
PYTEST_TMP = re.compile(r"pytest-of-[^/\s]+/pytest-\d+/")


def same_but_temp_paths(b: Any, c: Any) -> bool:
    """b == c once the pytest temporary folders in two texts are the same folder."""
    if isinstance(b, str) and isinstance(c, str):
        return PYTEST_TMP.sub("pytest-of-USER/pytest-N/", b) == PYTEST_TMP.sub("pytest-of-USER/pytest-N/", c)
    return b == c


def info_row(metric: str, b: Any, c: Any, show: Show = plain,
             missing_fails: bool = True, if_different: str = INFO) -> Optional[GateRow]:
    """Values shown, not judged; absent from the candidate is MISSING when missing_fails. Texts
    that differ only in pytest's temporary folder count as the same (same_but_temp_paths)."""
    if b is None and c is None:
        return None
    if c is None and not missing_fails:
        return GateRow(metric, show(b), ABSENT, "info", if_different)
    row = absent_row(metric, b, c, show)
    if row:
        return row
    return GateRow(metric, show(b), show(c), "info", OK if same_but_temp_paths(b, c) else if_different)
