"""Deprecated import path, kept so that callers written before the split keep working.

New code imports from `rules` (compare, Tolerances, verdicts), `formatting` (format_table)
and `cli` (add_gate_arguments, run_gate). There is no standalone entry point: use
`python -m refit_core gate BASELINE CANDIDATE`.
"""
from __future__ import annotations

from .cli import add_gate_arguments, run_gate  # noqa: F401
from .formatting import format_table  # noqa: F401
from .rules import compare  # noqa: F401
from .tolerances import Tolerances  # noqa: F401
from .verdicts import (ALLOWED_MISSING, CHANGED, EXIT_OK, EXIT_REGRESSION, EXIT_UNUSABLE,  # noqa: F401
                       INFO, MISSING, OK, REGRESSION, VERDICTS, GateResult, GateRow)
