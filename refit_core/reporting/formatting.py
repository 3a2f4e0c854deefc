"""Formatting: values for display, the gate's text table, markdown/HTML escaping."""
from __future__ import annotations

import re
from typing import Any, List, Sequence

ABSENT = "-"
_CELL_WIDTH = 44
_METRIC_WIDTH = 72


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


def _shorten(text: str, width: int, middle: bool = False) -> str:
    if len(text) <= width:
        return text
    if middle:
        head = (width - 3) // 2
        return text[:head] + "..." + text[len(text) - (width - 3 - head):]
    return text[:width - 3] + "..."


def format_table(result: Any, differences_only: bool = False) -> str:
    """Aligned text columns: metric, baseline, candidate, allowed, verdict.

    Cells are put on one line and long ones shortened (metrics in the middle, to keep test
    names readable) so the table stays usable in a CI log.
    """
    header = ("metric", "baseline", "candidate", "allowed", "verdict")
    body: List[Sequence[str]] = []
    for row in result.rows:
        if differences_only and row.verdict == "ok":
            continue
        body.append((_shorten(one_line(row.metric), _METRIC_WIDTH, middle=True),
                     _shorten(one_line(row.baseline), _CELL_WIDTH),
                     _shorten(one_line(row.candidate), _CELL_WIDTH),
                     _shorten(one_line(row.allowed), _CELL_WIDTH), row.verdict))
    widths = [max([len(header[i])] + [len(r[i]) for r in body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in body]
    if not body:
        out.append("(no rows)")
    return "\n".join(out)
