"""Formatting: values for display, aligned text tables that fit the terminal, markdown/HTML escaping.

The gate's rows as such a table are gate_table.py.
"""
from __future__ import annotations

import re
import shutil
import textwrap
from typing import Any, List, Sequence

ABSENT = "-"


def pct(value: Any) -> str:
    return ABSENT if value is None else f"{float(value) * 100:.2f}%"


def seconds(value: Any) -> str:
    if value is None:
        return ABSENT
    s = float(value)
    if s >= 1.0:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def ratio(value: Any) -> str:
    if value is None:
        return ABSENT
    v = float(value)
    return f"{v:.0f}x" if v >= 100 else f"{v:.1f}x"


def quote(value: Any) -> str:
    return ABSENT if value is None else repr(str(value))


def plain(value: Any) -> str:
    if value is None:
        return ABSENT
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={plain(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")


def one_line(text: Any) -> str:
    """Any text on one line: newlines and other control characters become one space."""
    return _CONTROL.sub(" ", str(text)).strip()


_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|~])")


def md(text: Any) -> str:
    """Markdown- and HTML-safe inline text: one line, markdown punctuation backslash-escaped,
    & < > as entities. It can start no heading, list, table cell, code span or HTML tag."""
    line = one_line(text)
    line = line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", line)


def md_cell(text: Any) -> str:
    """A markdown table cell (md(), and "-" when empty)."""
    return md(text) or "-"


#: The narrowest table text_table draws (a narrower terminal gets this width).
MIN_TABLE_WIDTH = 40
_GAP = "  "


def terminal_width() -> int:
    """Columns of the terminal (COLUMNS first, as shutil reads it; 80 when there is none)."""
    return shutil.get_terminal_size().columns


#: Most lines a wrapped cell takes; the rest is cut off with "..." (`gate --json` has it all).
MAX_CELL_LINES = 4


def _column_widths(natural: Sequence[int], weight: Sequence[float], room: int) -> List[int]:
    """Widths within `room`: a column of weight 0 keeps its natural width; the others get at
    least their weight's share of what is left (or their natural width, if less), and the
    widest shrink first: a cap c with sum(min(w, max(share, c))) <= the room left."""
    left = room - sum(w for w, k in zip(natural, weight) if not k)
    if sum(natural) - sum(w for w, k in zip(natural, weight) if not k) <= left:
        return list(natural)
    share = [int(left * k) for k in weight]
    cap = 1
    while sum(min(w, max(s, cap + 1)) for w, s, k in zip(natural, share, weight) if k) <= left:
        cap += 1
    return [min(w, max(s, cap)) if k else w for w, s, k in zip(natural, share, weight)]


def _wrap(cell: str, width: int) -> List[str]:
    lines = textwrap.wrap(cell, width, break_long_words=True, break_on_hyphens=False) or [""]
    if len(lines) > MAX_CELL_LINES:
        lines = lines[:MAX_CELL_LINES]
        lines[-1] = lines[-1][:max(0, width - 3)] + "..."
    return lines


def text_table(header: Sequence[str], body: Sequence[Sequence[str]], width: int,
               weight: Sequence[float] = ()) -> str:
    """Aligned columns never wider than `width` (at least MIN_TABLE_WIDTH): a long cell wraps
    within its column (MAX_CELL_LINES at most). weight: per column, 0 = never narrowed, else
    the least share of the room it keeps when the table must narrow (default: all alike)."""
    weight = list(weight) or [0.1] * len(header)
    cells = [[one_line(c) for c in row] for row in [list(header)] + [list(r) for r in body]]
    natural = [max(len(row[i]) for row in cells) for i in range(len(header))]
    room = max(width, MIN_TABLE_WIDTH) - len(_GAP) * (len(header) - 1)
    widths = _column_widths(natural, weight, room)

    def lines(row: Sequence[str]) -> List[str]:
        parts = [_wrap(cell, w) for cell, w in zip(row, widths)]
        return [_GAP.join((p[k] if k < len(p) else "").ljust(w) for p, w in zip(parts, widths)).rstrip()
                for k in range(max(len(p) for p in parts))]

    out = lines(cells[0]) + [_GAP.join("-" * w for w in widths)]
    for row in cells[1:]:
        out += lines(row)
    return "\n".join(out)

