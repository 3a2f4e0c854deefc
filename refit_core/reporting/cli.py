"""`python -m refit_core gate|report`: argument wiring and exit codes (refit_core/cli.py calls this).

Exit codes: 0 passed (report: written), 1 regression (report: PNG not made, no matplotlib),
2 unusable input or environment (unreadable or invalid record, unwritable output, bad option).
Every user mistake ends in ONE line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, Optional

from .formatting import one_line
from .gate_table import format_table
from .record import Record
from .rules import GateRefused, compare
from .schema import ResultsFileError, load_results
from .tolerances import add_tolerance_options, tolerances_from_options
from .verdicts import EXIT_UNUSABLE, GateResult


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
    parser.add_argument("--allow-different-inputs", action="store_true",
                        help="gate every case whose inputs (cases.<case>.inputs_sha256) are the same in both "
                        "records and list the others as not compared (default: refuse, exit 2)")
    parser.add_argument("--differences-only", action="store_true",
                        help="print only the rows worth a look: regressions, missing, not compared, changed, "
                        "evidence that appeared or disappeared (not ok rows nor provenance shown for information)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON document instead of the table: verdict, exit_code, summary, "
                        "both records and every row (status, key, baseline, candidate, reason); same exit codes")


def _identity(path: str, record: Record) -> Dict[str, Any]:
    env = record.environment
    return {"path": path, "tensorrt_version": env.tensorrt_version, "gpu_name": env.gpu_name,
            "created": record.created, "profile": record.profile}


def _describe(path: str, record: Record) -> str:
    bits = _identity(path, record)
    shown = [f"TensorRT {bits['tensorrt_version']}" if bits["tensorrt_version"] else None,
             bits["gpu_name"], bits["created"], f"profile {bits['profile']}"]
    return one_line(f"{path} ({', '.join(str(b) for b in shown if b)})")


def gate_document(result: Optional[GateResult], sides: Dict[str, Any], error: Optional[str] = None,
                  differences_only: bool = False) -> Dict[str, Any]:
    """What `gate --json` prints: the same rows as the table (GateRow.fields), the verdict and exit code."""
    if result is None:
        return {"verdict": "error", "exit_code": EXIT_UNUSABLE, "summary": "GATE ERROR: unusable input",
                "error": error, **sides, "counts": {}, "rows": []}
    rows = result.differences() if differences_only else result.rows
    return {"verdict": "passed" if result.passed else "failed", "exit_code": result.exit_code,
            "summary": result.verdict_line(), **sides, "counts": result.counts(),
            "rows": [row.fields() for row in rows]}


def run_gate(args: argparse.Namespace) -> int:
    """Print the table (or --json) and a one-line verdict; 0 passed, 1 regression, 2 unusable input."""
    paths = {"baseline": str(args.baseline), "candidate": str(args.candidate)}
    as_json = bool(getattr(args, "json", False))
    differences_only = bool(getattr(args, "differences_only", False))

    def refuse(message: str) -> int:
        print(f"gate: cannot compare: {message}", file=sys.stderr)
        if as_json:
            sides = {side: {"path": path} for side, path in paths.items()}
            print(json.dumps(gate_document(None, sides, error=message), indent=2))
        else:
            print("GATE ERROR: unusable input")
        return EXIT_UNUSABLE

    try:
        baseline = load_results(args.baseline)
        candidate = load_results(args.candidate)
        tolerances = tolerances_from_options(lambda name: getattr(args, name, None))
        result = compare(baseline, candidate, tolerances,
                         allow_missing=list(getattr(args, "allow_missing", None) or []),
                         compare_timings_across_gpus=bool(getattr(args, "compare_timings_across_gpus", False)),
                         allow_different_inputs=bool(getattr(args, "allow_different_inputs", False)))
    except GateRefused as exc:
        where = paths.get(exc.side, f"{paths['baseline']} vs {paths['candidate']}")
        return refuse(f"{one_line(where)}: {one_line(exc)}")
    except (ResultsFileError, ValueError) as exc:
        return refuse(one_line(exc))
    if as_json:
        sides = {"baseline": _identity(paths["baseline"], baseline),
                 "candidate": _identity(paths["candidate"], candidate)}
        print(json.dumps(gate_document(result, sides, differences_only=differences_only), indent=2))
        return result.exit_code
    print(f"baseline:  {_describe(paths['baseline'], baseline)}")
    print(f"candidate: {_describe(paths['candidate'], candidate)}")
    print()
    print(format_table(result, differences_only=differences_only))
    print()
    print(result.verdict_line())  # one line, however long: what a CI log is searched for
    return result.exit_code


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    from .report import DEFAULT_OUT, PLOT_NAME, REPORT_NAME
    parser.add_argument("results", nargs="+", metavar="RESULTS",
                        help="results records: files, folders (the files directly in them) or globs; files "
                        "that are no record (logs, benchmark JSON, older schemas) are skipped with one line each")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help=f"directory for {REPORT_NAME}, {PLOT_NAME} and the other charts (default {DEFAULT_OUT})")


def run_report(args: argparse.Namespace) -> int:
    from .report import write_report
    return write_report(list(args.results), getattr(args, "out", None))
