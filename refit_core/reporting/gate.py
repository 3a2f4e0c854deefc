"""The upgrade gate: compare a candidate TensorRT version's results with a baseline's.

Users upgrading TensorRT need one yes/no answer plus the evidence. compare() turns two
results records into rows (metric, baseline, candidate, allowed, verdict); the verdicts are

* "ok"          within tolerance, or an information-only row;
* "REGRESSION"  outside tolerance: the gate fails (exit code 1);
* "changed"     different but not judged a regression (weight-name sets, environment,
                a test that went from skipped to passed, ...);
* "missing"     present in one file only (a skipped BiDAF run, a test not run).

Standard library only: this runs on the GPU kit (CPython 3.9, no matplotlib).
"""
from __future__ import annotations

import argparse
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence

from .results import (ENVIRONMENT_KEYS, REFIT_KIND, UNNAMED_WEIGHT, ResultsFileError,
                      load_results, normalize_weight_names, split_timing_name)

OK = "ok"
REGRESSION = "REGRESSION"
CHANGED = "changed"
MISSING = "missing"
VERDICTS = (OK, REGRESSION, CHANGED, MISSING)

#: Exit codes of run_gate.
EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_UNREADABLE = 2

_ABSENT = "-"
_CELL_WIDTH = 44
_METRIC_WIDTH = 72
_EPS = 1e-9  # float slack so that "exactly at the tolerance" passes


@dataclass
class Tolerances:
    """How far a candidate may differ from the baseline before the gate fails.

    Defaults are chosen for a TensorRT upgrade on the same GPU: numerics may move a little
    (TF32, other tactics), answers may not, and timings only fail on a gross slowdown
    because single-run timings are noisy.
    """

    #: MNIST accuracy (before/after refit, reference) may drop by this many percentage points.
    accuracy_drop_pp: float = 0.1
    #: Test images whose predicted digit may differ (of 10,000).
    max_changed_predictions: int = 5
    #: Held-out BiDAF answers that may differ; the sample answers must never change.
    max_changed_answers: int = 0
    #: Held-out BiDAF exact match may drop by this many percentage points.
    exact_match_drop_pp: float = 0.0
    #: Max |difference| of the fixed-batch MNIST logits; includes TF32 and tactic differences.
    max_logit_drift: float = 1e-2
    #: A refit median may be this many times the baseline's before it is a regression.
    max_refit_slowdown: float = 2.0
    #: Treat "missing" rows (data in one file only) as failures too.
    strict_missing: bool = False


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


@dataclass
class GateResult:
    """All rows of a comparison and the overall verdict."""

    rows: List[GateRow] = field(default_factory=list)
    strict_missing: bool = False

    @property
    def regressions(self) -> List[GateRow]:
        return [row for row in self.rows if row.verdict == REGRESSION]

    @property
    def failing(self) -> List[GateRow]:
        """Rows that make the gate fail: regressions, plus missing rows when strict."""
        bad = (REGRESSION, MISSING) if self.strict_missing else (REGRESSION,)
        return [row for row in self.rows if row.verdict in bad]

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

    def verdict_line(self) -> str:
        """One line a CI log or a human can act on."""
        counts = self.counts()
        detail = ", ".join(f"{counts[v]} {v}" for v in (OK, CHANGED, MISSING))
        if self.passed:
            return f"GATE PASSED: no regressions ({detail})"
        names = [row.metric for row in self.failing]
        shown = ", ".join(names[:5]) + (f", ... (+{len(names) - 5} more)" if len(names) > 5 else "")
        what = "regression" if len(names) == 1 else "regressions"
        if self.strict_missing and any(r.verdict == MISSING for r in self.failing):
            what += " or missing (strict)"
        return f"GATE FAILED: {len(names)} {what}: {shown} ({detail})"


# --------------------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------------------

def _pct(value: Any) -> str:
    return _ABSENT if value is None else f"{float(value) * 100:.2f}%"


def _seconds(value: Any) -> str:
    if value is None:
        return _ABSENT
    s = float(value)
    if s >= 1.0:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def _quote(value: Any) -> str:
    return _ABSENT if value is None else repr(str(value))


def _plain(value: Any) -> str:
    if value is None:
        return _ABSENT
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _shorten(text: str, width: int, middle: bool = False) -> str:
    if len(text) <= width:
        return text
    if middle:
        head = (width - 3) // 2
        return text[:head] + "..." + text[len(text) - (width - 3 - head):]
    return text[:width - 3] + "..."


# --------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------

def _missing_row(metric: str, baseline: Any, candidate: Any, show: Any = _plain) -> GateRow:
    return GateRow(metric, show(baseline) if baseline is not None else _ABSENT,
                   show(candidate) if candidate is not None else _ABSENT, "present in both", MISSING)


def _drop_row(metric: str, b: Any, c: Any, allowed_pp: float) -> Optional[GateRow]:
    """A fraction (accuracy, exact match) that may drop by at most allowed_pp points."""
    if b is None and c is None:
        return None
    if b is None or c is None:
        return _missing_row(metric, b, c, _pct)
    drop_pp = (float(b) - float(c)) * 100.0
    verdict = REGRESSION if drop_pp > allowed_pp + _EPS else OK
    delta = (float(c) - float(b)) * 100.0
    return GateRow(metric, _pct(b), f"{_pct(c)} ({delta:+.2f} pp)",
                   f"drop <= {allowed_pp:g} pp", verdict)


def _equal_row(metric: str, b: Any, c: Any, show: Any, if_different: str) -> Optional[GateRow]:
    if b is None and c is None:
        return None
    if b is None or c is None:
        return _missing_row(metric, b, c, show)
    verdict = OK if b == c else if_different
    allowed = "unchanged" if if_different == REGRESSION else "info"
    return GateRow(metric, show(b), show(c), allowed, verdict)


def _weights_row(metric: str, b: Any, c: Any) -> Optional[GateRow]:
    """Refittable-weight sets: compared after normalisation; differences are reported only."""
    if b is None and c is None:
        return None
    nb = normalize_weight_names(b) if b is not None else None
    nc = normalize_weight_names(c) if c is not None else None

    def describe(names: List[str]) -> str:
        unnamed = names.count(UNNAMED_WEIGHT)
        return f"{len(names) - unnamed} named + {unnamed} unnamed"

    if nb is None or nc is None:
        return _missing_row(metric, nb, nc, describe)
    if nb == nc:
        return GateRow(metric, describe(nb), describe(nc), "info (normalised)", OK)
    gone = Counter(nb) - Counter(nc)
    new = Counter(nc) - Counter(nb)
    diff = [f"-{n}" + (f" x{k}" if k > 1 else "") for n, k in sorted(gone.items())]
    diff += [f"+{n}" + (f" x{k}" if k > 1 else "") for n, k in sorted(new.items())]
    return GateRow(metric, describe(nb), f"{describe(nc)}: {' '.join(diff)}",
                   "info (normalised)", CHANGED)


def _environment_rows(b: Dict[str, Any], c: Dict[str, Any]) -> List[GateRow]:
    keys = [k for k in ENVIRONMENT_KEYS if k in b or k in c]
    keys += sorted(k for k in set(b) | set(c) if k not in ENVIRONMENT_KEYS)
    rows = []
    for key in keys:
        row = _equal_row(f"environment.{key}", b.get(key), c.get(key), _plain, CHANGED)
        if row is not None:
            row.allowed = "info"
            rows.append(row)
    return rows


def _argmax_row(b: Any, c: Any, tol: Tolerances) -> Optional[GateRow]:
    metric = "mnist.argmax_all"
    if b is None and c is None:
        return None
    if b is None or c is None:
        return _missing_row(metric, b, c, lambda s: f"{len(s)} predictions")
    allowed = f"<= {tol.max_changed_predictions} changed"
    if len(b) != len(c):
        return GateRow(metric, f"{len(b)} predictions", f"{len(c)} predictions (other test set?)",
                       allowed, REGRESSION)
    changed = sum(1 for x, y in zip(b, c) if x != y)
    verdict = REGRESSION if changed > tol.max_changed_predictions else OK
    return GateRow(metric, f"{len(b)} predictions", f"{changed} changed", allowed, verdict)


def _shape(rows: Any) -> str:
    if not isinstance(rows, list) or not rows:
        return "empty"
    width = len(rows[0]) if isinstance(rows[0], list) else 0
    return f"{len(rows)}x{width}"


def _logits_row(b_fp: Dict[str, Any], c_fp: Dict[str, Any], tol: Tolerances) -> Optional[GateRow]:
    metric = "mnist.logits_fixed_batch"
    b, c = b_fp.get("logits_fixed_batch"), c_fp.get("logits_fixed_batch")
    if b is None and c is None:
        return None
    if b is None or c is None:
        return _missing_row(metric, b, c, _shape)
    allowed = f"max |diff| <= {tol.max_logit_drift:g} (incl. TF32/tactics)"
    width = len(b[0]) if isinstance(b, list) and b and isinstance(b[0], list) else -1
    shape_ok = (width >= 0 and isinstance(c, list) and len(b) == len(c)
                and all(isinstance(r, list) and len(r) == width for r in b + c))
    if not shape_ok:
        return GateRow(metric, _shape(b), f"{_shape(c)} (shape differs)", allowed, REGRESSION)
    diffs = [abs(float(vb) - float(vc)) for rb, rc in zip(b, c) for vb, vc in zip(rb, rc)]
    drift = math.nan if any(math.isnan(d) for d in diffs) else max(diffs, default=0.0)
    decimals = b_fp.get("logits_decimals")
    base = _shape(b) + (f" ({decimals} dp)" if decimals is not None else "")
    verdict = REGRESSION if (math.isnan(drift) or drift > tol.max_logit_drift + _EPS) else OK
    return GateRow(metric, base, f"max |diff| {drift:.2e}", allowed, verdict)


def _mnist_rows(b: Dict[str, Any], c: Dict[str, Any], tol: Tolerances) -> List[GateRow]:
    rows: List[Optional[GateRow]] = []
    for key in ("accuracy_reference", "accuracy_before", "accuracy_after"):
        rows.append(_drop_row(f"mnist.{key}", b.get(key), c.get(key), tol.accuracy_drop_pp))
    rows.append(_equal_row("mnist.predicted_class_before", b.get("predicted_class_before"),
                           c.get("predicted_class_before"), _plain, REGRESSION))
    b_fp, c_fp = b.get("fingerprint") or {}, c.get("fingerprint") or {}
    rows.append(_argmax_row(b_fp.get("argmax_all"), c_fp.get("argmax_all"), tol))
    rows.append(_logits_row(b_fp, c_fp, tol))
    rows.append(_weights_row("mnist.refittable_weights", b.get("refittable_weights"),
                             c.get("refittable_weights")))
    return [row for row in rows if row is not None]


def _answers_row(metric: str, b: Any, c: Any, tol: Tolerances) -> Optional[GateRow]:
    if b is None and c is None:
        return None
    if b is None or c is None:
        return _missing_row(metric, b, c, lambda d: f"{len(d)} answers")
    changed = sorted(k for k in b if c.get(k) != b[k])
    allowed = f"<= {tol.max_changed_answers} changed"
    verdict = REGRESSION if len(changed) > tol.max_changed_answers else OK
    text = f"{len(changed)} changed"
    if changed:
        text += ": " + ", ".join(changed)
    return GateRow(metric, f"{len(b)} answers", text, allowed, verdict)


def _bidaf_rows(b: Dict[str, Any], c: Dict[str, Any], tol: Tolerances) -> List[GateRow]:
    rows: List[Optional[GateRow]] = []
    for key in sorted(set(b) | set(c)):
        prefix = f"bidaf.{key}"
        if key not in b or key not in c:
            rows.append(_missing_row(prefix, b.get(key), c.get(key), lambda _: "present"))
            continue
        mb, mc = b[key], c[key]
        for name in ("answer_before_refit", "answer_fake", "answer_after_refit"):
            rows.append(_equal_row(f"{prefix}.{name}", mb.get(name), mc.get(name), _quote,
                                   REGRESSION))
        for name in ("heldout_exact_match_trt", "heldout_exact_match_ort"):
            rows.append(_drop_row(f"{prefix}.{name}", mb.get(name), mc.get(name),
                                  tol.exact_match_drop_pp))
        rows.append(_answers_row(f"{prefix}.answers", mb.get("answers"), mc.get("answers"), tol))
        rows.append(_weights_row(f"{prefix}.refittable_weights", mb.get("refittable_weights"),
                                 mc.get("refittable_weights")))
    return [row for row in rows if row is not None]


def _timing_order(name: str) -> Any:
    parts = split_timing_name(name)
    model = parts[0] if parts else name
    return (model != "mnist", model, name)


def _timing_rows(b: Dict[str, Any], c: Dict[str, Any], tol: Tolerances) -> List[GateRow]:
    rows: List[GateRow] = []
    for name in sorted(set(b) | set(c), key=_timing_order):
        metric = f"timing.{name}"
        tb, tc = b.get(name), c.get(name)
        if tb is None or tc is None:
            rows.append(_missing_row(metric, tb and tb.get("median_s"),
                                     tc and tc.get("median_s"), _seconds))
            continue
        mb, mc = float(tb["median_s"]), float(tc["median_s"])
        factor = mc / mb if mb > 0 else (1.0 if mc == 0 else math.inf)
        parts = split_timing_name(name)
        gated = parts is not None and parts[1] == REFIT_KIND
        if gated:
            allowed = f"median <= x{tol.max_refit_slowdown:g} baseline"
            verdict = REGRESSION if factor > tol.max_refit_slowdown + _EPS else OK
        else:
            allowed, verdict = "info (not gated)", OK
        rows.append(GateRow(metric, f"median {_seconds(mb)}",
                            f"median {_seconds(mc)} (x{factor:.2f})", allowed, verdict))
        if tb.get("first_s") is not None and tc.get("first_s") is not None:
            rows.append(GateRow(f"{metric}.first", _seconds(tb["first_s"]),
                                _seconds(tc["first_s"]), "info (not gated)", OK))
    return rows


def _ratio_rows(b: Dict[str, Any], c: Dict[str, Any]) -> List[GateRow]:
    rows = []
    for model in sorted(set(b) | set(c), key=lambda m: (m != "mnist", m)):
        rb, rc = b.get(model), c.get(model)
        show = (lambda v: f"{float(v):.1f}x")
        if rb is None or rc is None:
            rows.append(_missing_row(f"ratio.{model}.rebuild/refit", rb, rc, show))
        else:
            rows.append(GateRow(f"ratio.{model}.rebuild/refit", show(rb), show(rc),
                                "info (not gated)", OK))
    return rows


def _test_rows(b: Dict[str, str], c: Dict[str, str], b_counts: Any, c_counts: Any) -> List[GateRow]:
    rows: List[GateRow] = []

    def counts_text(counts: Any, tests: Dict[str, str]) -> str:
        if not isinstance(counts, dict):
            counts = Counter(tests.values())
        return "{}/{}/{}".format(counts.get("passed", 0), counts.get("failed", 0),
                                 counts.get("skipped", 0))

    if b or c or b_counts or c_counts:
        tb, tc = counts_text(b_counts, b), counts_text(c_counts, c)
        rows.append(GateRow("tests passed/failed/skipped", tb, tc, "info",
                            OK if tb == tc else CHANGED))
    for nodeid in sorted(set(b) | set(c)):
        ob, oc = b.get(nodeid), c.get(nodeid)
        if ob == oc:
            continue
        metric = f"test {nodeid}"
        if ob is None:
            if oc != "failed":
                continue  # a new test that passes or skips: nothing to report
            rows.append(GateRow(metric, _ABSENT, oc, "new test", MISSING))
        elif oc is None:
            rows.append(GateRow(metric, ob, _ABSENT, "present in both", MISSING))
        elif ob == "passed" and oc == "failed":
            rows.append(GateRow(metric, ob, oc, "still passes", REGRESSION))
        else:
            rows.append(GateRow(metric, ob, oc, "info", CHANGED))
    return rows


def _section(data: Dict[str, Any], name: str) -> Dict[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def compare(baseline: Dict[str, Any], candidate: Dict[str, Any],
            tolerances: Optional[Tolerances] = None) -> GateResult:
    """Compare two results records (as load_results returns them) under the tolerances.

    Sections absent from both files produce no rows; a section in one file only produces a
    single "missing" row, so a run that skipped BiDAF is visible without failing the gate.
    """
    tol = tolerances or Tolerances()
    rows: List[GateRow] = []
    rows += _environment_rows(_section(baseline, "environment"), _section(candidate, "environment"))
    for name, build in (("mnist", lambda b, c: _mnist_rows(b, c, tol)),
                        ("bidaf", lambda b, c: _bidaf_rows(b, c, tol))):
        in_b, in_c = name in baseline, name in candidate
        if in_b and in_c:
            rows += build(_section(baseline, name), _section(candidate, name))
        elif in_b or in_c:
            rows.append(_missing_row(name, "present" if in_b else None,
                                     "present" if in_c else None))
    rows += _timing_rows(_section(baseline, "timings"), _section(candidate, "timings"), tol)
    rows += _ratio_rows(_section(baseline, "ratios"), _section(candidate, "ratios"))
    rows += _test_rows(_section(baseline, "tests"), _section(candidate, "tests"),
                       baseline.get("test_counts"), candidate.get("test_counts"))
    return GateResult(rows=rows, strict_missing=tol.strict_missing)


def format_table(result: GateResult, differences_only: bool = False) -> str:
    """Aligned text columns: metric, baseline, candidate, allowed, verdict.

    Long cells are shortened (metrics in the middle, to keep test names readable) so the
    table stays usable in a CI log.
    """
    header = ("metric", "baseline", "candidate", "allowed", "verdict")
    body = []
    for row in result.rows:
        if differences_only and row.verdict == OK:
            continue
        body.append((_shorten(row.metric, _METRIC_WIDTH, middle=True),
                     _shorten(row.baseline, _CELL_WIDTH), _shorten(row.candidate, _CELL_WIDTH),
                     _shorten(row.allowed, _CELL_WIDTH), row.verdict))
    widths = [max([len(header[i])] + [len(r[i]) for r in body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in body]
    if not body:
        out.append("(no rows)")
    return "\n".join(out)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------

def _non_negative(kind: Any) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number")
        if value < 0 or (isinstance(value, float) and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
        return value
    return parse


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `python -m refit_core gate BASELINE CANDIDATE`; defaults are Tolerances'."""
    d = Tolerances()
    parser.add_argument("baseline", metavar="BASELINE", help="results JSON of the known-good TensorRT version")
    parser.add_argument("candidate", metavar="CANDIDATE", help="results JSON of the TensorRT version to check")
    parser.add_argument("--accuracy-drop", type=_non_negative(float), default=d.accuracy_drop_pp,
                        metavar="PP", help="allowed MNIST accuracy drop in percentage points "
                        f"(default {d.accuracy_drop_pp:g})")
    parser.add_argument("--max-changed-predictions", type=_non_negative(int),
                        default=d.max_changed_predictions, metavar="N",
                        help="MNIST test images whose predicted digit may change "
                        f"(default {d.max_changed_predictions})")
    parser.add_argument("--max-changed-answers", type=_non_negative(int),
                        default=d.max_changed_answers, metavar="N",
                        help="held-out BiDAF answers that may change; the sample answers never "
                        f"may (default {d.max_changed_answers})")
    parser.add_argument("--exact-match-drop", type=_non_negative(float),
                        default=d.exact_match_drop_pp, metavar="PP",
                        help="allowed held-out BiDAF exact-match drop in percentage points "
                        f"(default {d.exact_match_drop_pp:g})")
    parser.add_argument("--max-logit-drift", type=_non_negative(float), default=d.max_logit_drift,
                        metavar="X", help="max |diff| of the fixed-batch MNIST logits, including "
                        f"TF32/tactic differences (default {d.max_logit_drift:g})")
    parser.add_argument("--max-refit-slowdown", type=_non_negative(float),
                        default=d.max_refit_slowdown, metavar="FACTOR",
                        help="a refit median may be this many times the baseline's; timings are "
                        f"noisy (default {d.max_refit_slowdown:g})")
    parser.add_argument("--strict-missing", action="store_true",
                        help="fail when data present in one file is missing from the other")
    parser.add_argument("--differences-only", action="store_true",
                        help="print only rows whose verdict is not ok")


def tolerances_from_args(args: argparse.Namespace) -> Tolerances:
    """Tolerances from parsed options; options a caller's parser lacks keep their defaults."""
    d = Tolerances()
    return Tolerances(
        accuracy_drop_pp=getattr(args, "accuracy_drop", d.accuracy_drop_pp),
        max_changed_predictions=getattr(args, "max_changed_predictions", d.max_changed_predictions),
        max_changed_answers=getattr(args, "max_changed_answers", d.max_changed_answers),
        exact_match_drop_pp=getattr(args, "exact_match_drop", d.exact_match_drop_pp),
        max_logit_drift=getattr(args, "max_logit_drift", d.max_logit_drift),
        max_refit_slowdown=getattr(args, "max_refit_slowdown", d.max_refit_slowdown),
        strict_missing=bool(getattr(args, "strict_missing", d.strict_missing)),
    )


def _describe(path: str, data: Dict[str, Any]) -> str:
    env = _section(data, "environment")
    bits = [f"TensorRT {env['tensorrt_version']}" if env.get("tensorrt_version") else None,
            env.get("gpu_name"), data.get("created")]
    shown = ", ".join(str(b) for b in bits if b)
    return f"{path} ({shown})" if shown else path


def run_gate(args: argparse.Namespace) -> int:
    """Print the comparison table and a one-line verdict; 0 ok, 1 regression, 2 unreadable input."""
    try:
        baseline = load_results(args.baseline)
        candidate = load_results(args.candidate)
    except ResultsFileError as exc:
        print(f"gate: cannot compare: {exc}", file=sys.stderr)
        print("GATE ERROR: unreadable input", file=sys.stdout)
        return EXIT_UNREADABLE
    result = compare(baseline, candidate, tolerances_from_args(args))
    print(f"baseline:  {_describe(str(args.baseline), baseline)}")
    print(f"candidate: {_describe(str(args.candidate), candidate)}")
    print()
    print(format_table(result, differences_only=bool(getattr(args, "differences_only", False))))
    print()
    print(result.verdict_line())
    return EXIT_OK if result.passed else EXIT_REGRESSION


def main(argv: Optional[Iterable[str]] = None) -> int:
    """`python -m refit_core.reporting.gate`, usable before the package CLI exists."""
    parser = argparse.ArgumentParser(prog="python -m refit_core.reporting.gate",
                                     description="Compare two refit_core results files.")
    add_gate_arguments(parser)
    return run_gate(parser.parse_args(None if argv is None else list(argv)))


if __name__ == "__main__":
    sys.exit(main())
