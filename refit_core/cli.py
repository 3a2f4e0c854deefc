"""`python -m refit_core {mnist,bidaf,fetch-mnist,gate,report,prepare,check,selfcheck}`
(installed: `refit-core ...`).

Each subcommand imports only what it needs, so `gate` and `report` work without TensorRT
and `mnist` fails with one sentence (no traceback) where there is no GPU. Help and usage name
the program as it was invoked, and every subcommand takes its options in any order
(`Parser`).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional, Sequence

from . import __version__
from .errors import RefitCoreError

#: the program name under `python -m refit_core` (__main__.py passes it); the console script's is its own
MODULE_PROG = "python -m refit_core"
DISTRIBUTION = "refit-core"
#: exit status when stdout's reader closed the pipe early, as a shell reports a process killed by SIGPIPE
SIGPIPE_EXIT = 128 + 13


class _ParseFailed(Exception):
    """A trial parse failed (Parser.parse_known_args tries again before reporting it)."""


class Parser(argparse.ArgumentParser):
    """argparse with options anywhere in a subcommand, as pytest and Polygraphy take them.

    A subcommand parses intermixed (`report --out DIR a.json b.json` and `report a.json --out DIR
    b.json` are the same; after `--` the usual rules apply). An option that takes several values (`check --shapes A B`) would
    otherwise swallow a positional given after it (`check --shapes input:1x3 model.onnx`): when
    positionals are then missing, the last values of such a run are tried as those positionals.
    """

    def __init__(self, *args, intermixed: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.intermixed = intermixed
        self._trial = False
        self._inside = False

    def error(self, message: str):  # type: ignore[override]
        if self._trial:
            raise _ParseFailed(message)
        super().error(message)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        args = list(sys.argv[1:] if args is None else args)
        if not self.intermixed or self._inside or "--" in args:  # after '--' everything is positional
            return super().parse_known_args(args, namespace)
        first: Optional[str] = None
        for attempt in [args, *self._positionals_moved_out_of_greedy_options(args)]:
            self._inside, self._trial = True, True
            try:
                return self.parse_known_intermixed_args(attempt, namespace)
            except _ParseFailed as exc:
                first = first if first is not None else str(exc)
            finally:
                self._inside, self._trial = False, False
        self.error(first or "invalid arguments")
        raise AssertionError("unreachable")  # pragma: no cover - error() exits

    def _positionals_moved_out_of_greedy_options(self, args: Sequence[str]) -> List[List[str]]:
        """`args` with the last 1, 2, ... values after an option of nargs '+'/'*' moved in front."""
        greedy = {flag for action in self._actions if action.option_strings and action.nargs in ("+", "*")
                  for flag in action.option_strings}
        out: List[List[str]] = []
        for i in range(len(args)):
            if args[i] not in greedy:
                continue
            end = i + 1
            while end < len(args) and not args[end].startswith("-"):
                end += 1
            for k in range(1, end - i - 1):
                out.append(list(args[end - k:end]) + list(args[:end - k]) + list(args[end:]))
        return out


def program_name(argv0: Optional[str] = None) -> str:
    """How the user invoked us: `refit-core` (the console script) or `python -m refit_core`."""
    name = os.path.basename(argv0 if argv0 is not None else (sys.argv[0] if sys.argv else ""))
    return MODULE_PROG if name in ("", "__main__.py", "-c") or name.endswith(".py") else name


def _gpu_or_exit() -> None:
    from .trt.cuda import gpu_unavailable_reason
    reason = gpu_unavailable_reason()
    if reason is not None:
        raise SystemExit(f"refit_core: cannot run on this machine: {reason}.")


def cmd_mnist(args: argparse.Namespace) -> int:
    from .config import resolve_data_dir
    data_dir = resolve_data_dir(args.data_dir)
    _gpu_or_exit()
    from .samples.mnist.flow import run_mnist_flow
    result = run_mnist_flow(data_dir)
    return 0 if result.accuracy_after >= 0.98 else 1


def cmd_bidaf(args: argparse.Namespace) -> int:
    _gpu_or_exit()
    from .samples.bidaf.flow import run_bidaf_flow
    ok = run_bidaf_flow(model_path=args.model, context=args.context, query=args.query)
    return 0 if ok else 1


def cmd_fetch_mnist(args: argparse.Namespace) -> int:
    from .samples.mnist.data import fetch_mnist
    fetch_mnist(args.directory)
    return 0


def build_parser(prog: Optional[str] = None) -> argparse.ArgumentParser:
    parser = Parser(prog=prog or program_name(),
                    description="TensorRT engine refit flows, results gate and report.")
    parser.add_argument("--version", action="version", version=f"{DISTRIBUTION} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True,
                                parser_class=_subcommand_parser)

    p = sub.add_parser("mnist", help="the engine_refit_mnist flow: zero conv1, measure, refit, measure")
    p.add_argument("--data-dir", help="directory with the MNIST IDX files (default: $REFIT_DATA_DIR)")
    p.set_defaults(func=cmd_mnist)

    p = sub.add_parser("fetch-mnist", help="download the four MNIST files into DIR, verifying their sha256")
    p.add_argument("directory", metavar="DIR", help="folder to put the files in (then REFIT_DATA_DIR=DIR)")
    p.set_defaults(func=cmd_fetch_mnist)

    p = sub.add_parser("bidaf", help="the engine_refit_onnx_bidaf flow: prepare, build, refit fake then real")
    p.add_argument("--model", help="BiDAF ONNX model (default: the bundled stand-in)")
    p.add_argument("--context", help="context text (default: the sample's)")
    p.add_argument("--query", help="question (default: the sample's)")
    p.set_defaults(func=cmd_bidaf)

    from .reporting.cli import add_gate_arguments, add_report_arguments, run_gate, run_report
    p = sub.add_parser("gate", help="compare two results files; exit 0 passed, 1 regression or "
                       "missing evidence, 2 unusable input")
    add_gate_arguments(p)
    p.set_defaults(func=run_gate)

    p = sub.add_parser("report", help="markdown table and PNG chart across TensorRT versions")
    add_report_arguments(p)
    p.set_defaults(func=run_report)

    # -- prepare and check: your own ONNX model (refit_core/onnx_prep/generic.py, refit_core/check/) --
    from .check import run_check
    from .check.plan import add_check_arguments, add_prepare_arguments, run_prepare
    p = sub.add_parser("prepare", help="write the model check builds: dynamic input dims fixed from --shapes, "
                       "Constant-node weights as initializers, proven equal with ONNX Runtime; no TensorRT")
    add_prepare_arguments(p)
    p.set_defaults(func=run_prepare)

    p = sub.add_parser("check", help="refit checks on your own ONNX model: coverage map, refit vs ONNX Runtime, "
                       "refit vs rebuild, refit tax; exit 0 passed, 1 a check failed, 2 unusable input/machine")
    add_check_arguments(p)
    p.set_defaults(func=run_check)

    from .selfcheck import add_selfcheck_arguments, cmd_selfcheck
    p = sub.add_parser("selfcheck", help="run the GPU tier once per injected fault and print the kill matrix; "
                       "exit 1 when a fault survives or the baseline fails")
    add_selfcheck_arguments(p)
    p.set_defaults(func=cmd_selfcheck)
    return parser


def _subcommand_parser(**kwargs) -> Parser:
    return Parser(intermixed=True, **kwargs)


def main(argv: Optional[List[str]] = None, prog: Optional[str] = None) -> int:
    try:
        args = build_parser(prog).parse_args(argv)
        return int(args.func(args) or 0)
    except RefitCoreError as exc:
        print(f"refit_core: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`gate ... | head`): no traceback; stdout goes to devnull so that
        # the interpreter's final flush cannot raise again, and the exit is the shell's SIGPIPE status
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return SIGPIPE_EXIT
