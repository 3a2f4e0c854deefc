"""Gate rows, verdicts and the overall result (no rules here: see rules.py)."""
from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from .formatting import ABSENT

OK = "ok"
REGRESSION = "REGRESSION"
CHANGED = "changed"            # different, reported, not judged (weight sets, environment, ...)
MISSING = "missing"            # the baseline has it, the candidate does not: fails the gate
ALLOWED_MISSING = "allowed-missing"  # missing, but allowed by --allow-missing PATTERN
INFO = "info"                  # shown only: provenance, numbers of property tests, timings of other GPUs
NOT_COMPARED = "not-compared"  # a case run on different inputs (--allow-different-inputs): not judged
VERDICTS = (OK, REGRESSION, CHANGED, MISSING, ALLOWED_MISSING, INFO, NOT_COMPARED)
FAILING = (REGRESSION, MISSING)

#: Exit codes of `python -m refit_core gate`.
EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_UNUSABLE = 2

#: A row's fields as the table heads them and `gate --json` names them (in this order).
ROW_FIELDS = ("status", "key", "baseline", "candidate", "reason")


@dataclass
class GateRow:
    """One compared metric, already formatted for display."""

    metric: str
    baseline: str
    candidate: str
    allowed: str
    verdict: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")

    def fields(self) -> Dict[str, str]:
        """The row as ROW_FIELDS -> text: what the table shows and `gate --json` writes."""
        return dict(zip(ROW_FIELDS, (self.verdict, self.metric, self.baseline, self.candidate, self.allowed)))

    def is_difference(self) -> bool:
        """Worth a look (`gate --differences-only`): a regression, missing or not-compared evidence, a
        change, or evidence that appeared or disappeared; not an ok row, nor an info row shown
        beside a value that always differs (timestamps, commits, timings of another GPU)."""
        if self.verdict in (REGRESSION, MISSING, ALLOWED_MISSING, NOT_COMPARED, CHANGED):
            return True
        return self.verdict == INFO and ABSENT in (self.baseline, self.candidate) and self.baseline != self.candidate


@dataclass
class GateResult:
    """All rows of a comparison and the overall verdict."""

    rows: List[GateRow] = field(default_factory=list)

    @property
    def regressions(self) -> List[GateRow]:
        return [row for row in self.rows if row.verdict == REGRESSION]

    @property
    def failing(self) -> List[GateRow]:
        """Rows that make the gate fail: regressions and missing evidence."""
        return [row for row in self.rows if row.verdict in FAILING]

    @property
    def passed(self) -> bool:
        return not self.failing

    def counts(self) -> Dict[str, int]:
        counter = Counter(row.verdict for row in self.rows)
        return {verdict: counter.get(verdict, 0) for verdict in VERDICTS}

    def row(self, metric: str) -> Optional[GateRow]:
        """The row for a metric name, or None (handy in tests and scripts)."""
        for row in self.rows:
            if row.metric == metric:
                return row
        return None

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.passed else EXIT_REGRESSION

    def differences(self) -> List[GateRow]:
        """The rows `--differences-only` shows (GateRow.is_difference)."""
        return [row for row in self.rows if row.is_difference()]

    def verdict_line(self) -> str:
        """One line a CI log or a human can act on."""
        counts = self.counts()
        detail = ", ".join(f"{counts[v]} {v}" for v in (OK, CHANGED, MISSING, ALLOWED_MISSING, INFO, NOT_COMPARED)
                           if counts[v] or v in (OK, CHANGED, MISSING))
        if self.passed:
            return f"GATE PASSED: no regressions, no missing evidence ({detail})"
        names = [row.metric for row in self.regressions]  # regressions first, then missing
        names += [row.metric for row in self.rows if row.verdict == MISSING]
        shown = ", ".join(names[:5]) + (f", ... (+{len(names) - 5} more)" if len(names) > 5 else "")
        what = []
        if counts[REGRESSION]:
            what.append(f"{counts[REGRESSION]} regression" + ("s" if counts[REGRESSION] > 1 else ""))
        if counts[MISSING]:
            what.append(f"{counts[MISSING]} missing")
        return f"GATE FAILED: {' and '.join(what)}: {shown} ({detail})"


def apply_allow_missing(rows: List[GateRow], patterns: Sequence[str]) -> None:
    """Turn MISSING rows whose metric matches a pattern (fnmatch) into ALLOWED_MISSING."""
    for row in rows:
        if row.verdict != MISSING:
            continue
        for pattern in patterns:
            if fnmatch.fnmatchcase(row.metric, pattern):
                row.verdict = ALLOWED_MISSING
                row.allowed = f"allowed missing (--allow-missing {pattern})"
                break
