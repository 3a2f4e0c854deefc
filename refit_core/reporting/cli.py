"""`python -m refit_core gate|report`: argument wiring and exit codes (refit_core/cli.py calls this).

Exit codes: 0 passed (report: written), 1 regression (report: PNG not made, no matplotlib),
2 unusable input or environment (unreadable or invalid record, unwritable output, bad option).
Every user mistake ends in ONE line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Dict

from .formatting import format_table, one_line
from .rules import compare
from .schema import ResultsFileError, load_results
from .tolerances import add_tolerance_options, tolerances_from_options
from .verdicts import EXIT_OK, EXIT_REGRESSION, EXIT_UNUSABLE


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m refit_core gate BASELINE CANDIDATE`; tolerances come from Tolerances."""
    parser.add_argument("baseline", metavar="BASELINE", help="results JSON of the known-good TensorRT version")
    parser.add_argument("candidate", metavar="CANDIDATE", help="results JSON of the TensorRT version to check")
    add_tolerance_options(parser.add_argument)
    parser.add_argument("--allow-missing", action="append", default=[], metavar="PATTERN",
                        help="allow data the candidate lacks when its metric name (as shown in the "
                        "table) matches PATTERN (fnmatch, e.g. 'bidaf.original.*'); repeatable")
    parser.add_argument("--compare-timings-across-gpus", action="store_true",
                        help="compare timings and ratios even between different GPU models or CUDA "
                        "driver major versions (otherwise shown as info)")
    parser.add_argument("--differences-only", action="store_true",
                        help="print only rows whose verdict is not ok")


def _describe(path: str, data: Dict[str, Any]) -> str:
    env = data.get("environment") or {}
    bits = [f"TensorRT {env['tensorrt_version']}" if env.get("tensorrt_version") else None,
            env.get("gpu_name"), data.get("created"), f"schema {data.get('schema_version')}"]
    return one_line(f"{path} ({', '.join(str(b) for b in bits if b)})")


def run_gate(args: argparse.Namespace) -> int:
    """Print the table and a one-line verdict; 0 passed, 1 regression, 2 unusable input."""
    try:
        baseline = load_results(args.baseline)
        candidate = load_results(args.candidate)
        tolerances = tolerances_from_options(lambda name: getattr(args, name, None))
    except (ResultsFileError, ValueError) as exc:
        print(f"gate: cannot compare: {one_line(exc)}", file=sys.stderr)
        print("GATE ERROR: unusable input")
        return EXIT_UNUSABLE
    result = compare(baseline, candidate, tolerances,
                     allow_missing=list(getattr(args, "allow_missing", None) or []),
                     compare_timings_across_gpus=bool(getattr(args, "compare_timings_across_gpus", False)))
    print(f"baseline:  {_describe(str(args.baseline), baseline)}")
    print(f"candidate: {_describe(str(args.candidate), candidate)}")
    print()
    print(format_table(result, differences_only=bool(getattr(args, "differences_only", False))))
    print()
    print(result.verdict_line())
    return EXIT_OK if result.passed else EXIT_REGRESSION


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    from .report import DEFAULT_OUT, PLOT_NAME, REPORT_NAME
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="results JSON files, one per TensorRT version / GPU run")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help=f"directory for {REPORT_NAME} and {PLOT_NAME} (default {DEFAULT_OUT})")


def run_report(args: argparse.Namespace) -> int:
    from .report import write_report
    return write_report(list(args.results), getattr(args, "out", None))
