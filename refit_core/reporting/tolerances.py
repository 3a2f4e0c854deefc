"""Gate tolerances, declared ONCE: the dataclass fields carry flag, type and help.

`add_tolerance_options(addoption, prefix)` turns them into command-line options for an
argparse parser (`parser.add_argument`) or a pytest option group (`group.addoption`);
`tolerances_from_options(get, prefix)` reads them back. The same parsers check both.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Dict

_WHOLE = "must be a whole number >= 0"
_NUMBER = "must be a finite number >= 0"


def parse_whole(text: Any) -> int:
    """An integer tolerance: "3" is fine, "1.5", "-1" and "x" are refused."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    raw = str(text).strip()
    if not raw.isdigit():
        raise argparse.ArgumentTypeError(f"{_WHOLE} (got {str(text)!r})")
    return int(raw)


def parse_number(text: Any) -> float:
    """A float tolerance: finite and >= 0."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{_NUMBER} (got {str(text)!r})") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{_NUMBER} (got {str(text)!r})")
    return value


def _option(flag: str, parse: Callable[[Any], Any], metavar: str, help: str) -> Dict[str, Any]:
    return {"flag": flag, "parse": parse, "metavar": metavar, "help": help}


@dataclass(frozen=True)
class Tolerances:
    """How far a candidate may differ from the baseline before the gate fails.

    Defaults suit a TensorRT upgrade on the same GPU: numerics may move a little (TF32, other
    tactics), answers may not, and timings fail only on a gross slowdown (single runs are noisy).
    """

    accuracy_drop_pp: float = field(default=0.1, metadata=_option(
        "accuracy-drop", parse_number, "PP",
        "allowed MNIST accuracy drop (before/after refit, reference) in percentage points"))
    max_changed_predictions: int = field(default=5, metadata=_option(
        "max-changed-predictions", parse_whole, "N",
        "MNIST test images whose predicted digit may change"))
    max_changed_answers: int = field(default=0, metadata=_option(
        "max-changed-answers", parse_whole, "N",
        "held-out BiDAF answers that may change; the sample answers never may"))
    exact_match_drop_pp: float = field(default=0.0, metadata=_option(
        "exact-match-drop", parse_number, "PP",
        "allowed held-out BiDAF exact-match drop in percentage points"))
    max_logit_drift: float = field(default=1e-2, metadata=_option(
        "max-logit-drift", parse_number, "X",
        "max |diff| of the fixed-batch MNIST logits, including TF32/tactic differences"))
    max_refit_slowdown: float = field(default=2.0, metadata=_option(
        "max-refit-slowdown", parse_number, "FACTOR",
        "a refit median may be this many times the baseline's (same GPU only)"))
    refit_tax_growth: float = field(default=0.15, metadata=_option(
        "refit-tax-growth", parse_number, "FRACTION",
        "a case's refit tax (REFIT engine latency / latency without REFIT) may grow by this fraction "
        "of the baseline's (0.15: x1.20 may become x1.38; same GPU only)"))

    def __post_init__(self) -> None:
        for f in fields(self):
            try:
                value = f.metadata["parse"](getattr(self, f.name))
            except argparse.ArgumentTypeError as exc:
                raise ValueError(f"Tolerances.{f.name} {exc}") from None
            object.__setattr__(self, f.name, value)


def option_dest(flag: str, prefix: str = "") -> str:
    """The attribute name an option gets: "--refit-gate-accuracy-drop" -> "refit_gate_accuracy_drop"."""
    return (prefix + flag).replace("-", "_")


def add_tolerance_options(addoption: Callable[..., Any], prefix: str = "") -> None:
    """Declare one option per Tolerances field through `addoption(*flags, **kwargs)`.

    Works with argparse (`parser.add_argument`) and pytest (`parser.getgroup(...).addoption`);
    with prefix "refit-gate-" the options are `--refit-gate-accuracy-drop`, ... .
    """
    defaults = Tolerances()
    for f in fields(Tolerances):
        meta = f.metadata
        default = getattr(defaults, f.name)
        addoption(f"--{prefix}{meta['flag']}", dest=option_dest(meta["flag"], prefix),
                  type=meta["parse"], default=default, metavar=meta["metavar"],
                  help=f"{meta['help']} (default {default:g})")


def tolerances_from_options(get: Callable[[str], Any], prefix: str = "") -> Tolerances:
    """Tolerances from parsed options; `get(dest)` returns an option's value (None: default).

    argparse: `tolerances_from_options(lambda n: getattr(args, n, None))`;
    pytest: `tolerances_from_options(config.getoption, prefix="refit-gate-")`.
    """
    values: Dict[str, Any] = {}
    for f in fields(Tolerances):
        try:
            value = get(option_dest(f.metadata["flag"], prefix))
        except (AttributeError, KeyError, ValueError):
            value = None
        if value is not None:
            try:
                values[f.name] = f.metadata["parse"](value)
            except argparse.ArgumentTypeError as exc:
                raise ValueError(f"--{prefix}{f.metadata['flag']} {exc}") from None
    return Tolerances(**values)
