"""The gate's result as a text table: what `python -m refit_core gate` prints and the pytest
plugin's gate summary shows (one row per GateRow, the columns verdicts.ROW_FIELDS, drawn by
formatting.text_table within the terminal's width).
"""
from __future__ import annotations

from typing import Optional

from .formatting import terminal_width, text_table
from .verdicts import ROW_FIELDS, GateResult

#: The least share of a narrowed gate table each column keeps: the key most (it names the row),
#: the status none (never narrowed: one word a log search finds).
_GATE_WEIGHTS = {"status": 0.0, "key": 0.4, "baseline": 0.1, "candidate": 0.1, "reason": 0.1}


def format_table(result: GateResult, differences_only: bool = False, width: Optional[int] = None) -> str:
    """The gate's rows as text columns (verdicts.ROW_FIELDS), as wide as the terminal at most
    (`width`, default terminal_width()); long cells wrap within their column.

    differences_only: just GateResult.differences() (regressions, missing, changed, ...)."""
    rows = result.differences() if differences_only else result.rows
    body = [list(row.fields().values()) for row in rows]
    table = text_table(ROW_FIELDS, body, width or terminal_width(), [_GATE_WEIGHTS[n] for n in ROW_FIELDS])
    if not body:
        table += "\n" + ("(no differences)" if differences_only else "(no rows)")
    return table
