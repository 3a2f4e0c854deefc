"""The gate's comparison rules: two results records -> rows with verdicts.

Missing evidence fails: a metric, section or test the baseline has and the candidate lacks
is MISSING (fails) unless allowed by name (`allow_missing`, fnmatch on the metric). Timings
and ratios are compared only between the same GPU model and CUDA driver major version.
Standard library only (runs on the GPU kit).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from ..errors import DataError
from .formatting import ABSENT, pct, plain, quote, ratio, seconds
from .record import Environment, Record, metric_case
from .schema import record_dict
from .timings import REFIT_KIND, split_timing_name
from .tolerances import Tolerances
from .verdicts import (ALLOWED_MISSING, CHANGED, FAILING, INFO, MISSING, NOT_COMPARED, OK,  # noqa: F401
                       REGRESSION, VERDICTS, GateResult, GateRow, apply_allow_missing)

ENVIRONMENT_KEYS = tuple(Environment.model_fields)


class GateRefused(DataError):
    """The two records cannot be compared (exit 2): `side` is "baseline", "candidate" or "both"."""

    def __init__(self, side: str, message: str) -> None:
        self.side = side
        super().__init__(message)
from .weights import UNNAMED_WEIGHT, normalize_weight_names

_EPS = 1e-9  # float slack so that "exactly at the tolerance" passes
Show = Callable[[Any], str]


def _section(data: Dict[str, Any], name: str) -> Dict[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def _absent(metric: str, b: Any, c: Any, show: Show = plain) -> Optional[GateRow]:
    """The row for a value absent from one side (None when both sides have it)."""
    if c is None:
        return GateRow(metric, show(b), ABSENT, "present in candidate", MISSING)
    if b is None:
        return GateRow(metric, ABSENT, show(c), "new in candidate", INFO)
    return None


def _absent_either(metric: str, b: Any, c: Any, show: Show) -> Optional[GateRow]:
    """Like _absent, but a value only the candidate has fails too: the baseline cannot vouch for it."""
    if b is None and c is not None:
        return GateRow(metric, ABSENT, show(c), "present in baseline", MISSING)
    return _absent(metric, b, c, show)


def _drop_row(metric: str, b: Any, c: Any, allowed_pp: float) -> Optional[GateRow]:
    """A fraction (accuracy, exact match) that may drop by at most allowed_pp points."""
    if b is None and c is None:
        return None
    row = _absent(metric, b, c, pct)
    if row:
        return row
    drop_pp = (float(b) - float(c)) * 100.0
    verdict = REGRESSION if drop_pp > allowed_pp + _EPS else OK
    return GateRow(metric, pct(b), f"{pct(c)} ({-drop_pp:+.2f} pp)", f"drop <= {allowed_pp:g} pp",
                   verdict)


def _equal_row(metric: str, b: Any, c: Any, show: Show, if_different: str) -> Optional[GateRow]:
    if b is None and c is None:
        return None
    row = _absent(metric, b, c, show)
    if row:
        return row
    return GateRow(metric, show(b), show(c),
                   "unchanged" if if_different == REGRESSION else "info",
                   OK if b == c else if_different)


def _describe_weights(names: List[str]) -> str:
    unnamed = names.count(UNNAMED_WEIGHT)
    return f"{len(names) - unnamed} named + {unnamed} unnamed"


def _weights_row(metric: str, b: Any, c: Any) -> Optional[GateRow]:
    """Refittable-weight sets: compared after normalisation; differences are reported only."""
    if b is None and c is None:
        return None
    nb = normalize_weight_names(b) if b is not None else None
    nc = normalize_weight_names(c) if c is not None else None
    row = _absent(metric, nb, nc, _describe_weights)
    if row:
        return row
    if nb == nc:
        return GateRow(metric, _describe_weights(nb), _describe_weights(nc), "info (normalised)", OK)
    diff = [f"-{n}" + (f" x{k}" if k > 1 else "") for n, k in sorted((Counter(nb) - Counter(nc)).items())]
    diff += [f"+{n}" + (f" x{k}" if k > 1 else "") for n, k in sorted((Counter(nc) - Counter(nb)).items())]
    return GateRow(metric, _describe_weights(nb), f"{_describe_weights(nc)}: {' '.join(diff)}",
                   "info (normalised)", CHANGED)


def _info_row(metric: str, b: Any, c: Any, show: Show = plain,
              missing_fails: bool = True, if_different: str = INFO) -> Optional[GateRow]:
    """Values shown, not judged; absent from the candidate is MISSING when missing_fails."""
    if b is None and c is None:
        return None
    if c is None and not missing_fails:
        return GateRow(metric, show(b), ABSENT, "info", if_different)
    row = _absent(metric, b, c, show)
    if row:
        return row
    return GateRow(metric, show(b), show(c), "info", OK if b == c else if_different)


# --------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------

def _environment_rows(b: Dict[str, Any], c: Dict[str, Any]) -> List[GateRow]:
    keys = [k for k in ENVIRONMENT_KEYS if k in b or k in c]
    keys += sorted(k for k in set(b) | set(c) if k not in ENVIRONMENT_KEYS)
    rows = [_equal_row(f"environment.{k}", b.get(k), c.get(k), plain, CHANGED) for k in keys]
    return [r for r in rows if r is not None]


def _provenance_summary(key: str, value: Any) -> str:
    if key == "hypothesis_examples" and isinstance(value, dict):
        return f"{len(value)} tests, {sum(value.values())} examples"
    if key == "command_line" and isinstance(value, list):
        return " ".join(str(v) for v in value)
    if isinstance(value, bool) or value is None:
        return "null" if value is None else str(value).lower()
    return plain(value)


def _provenance_rows(b: Dict[str, Any], c: Dict[str, Any]) -> List[GateRow]:
    rows = []
    for key in sorted(set(b) | set(c)):
        show = (lambda v, k=key: _provenance_summary(k, v))
        rows.append(GateRow(f"provenance.{key}", show(b[key]) if key in b else ABSENT,
                            show(c[key]) if key in c else ABSENT, "info", INFO))
    return rows


def _argmax_row(b: Any, c: Any, tol: Tolerances) -> Optional[GateRow]:
    metric = "mnist.argmax_all"
    if b is None and c is None:
        return None
    row = _absent(metric, b, c, lambda s: f"{len(s)} predictions")
    if row:
        return row
    allowed = f"<= {tol.max_changed_predictions} changed"
    if len(b) != len(c):
        return GateRow(metric, f"{len(b)} predictions", f"{len(c)} predictions (other test set?)",
                       allowed, REGRESSION)
    changed = sum(1 for x, y in zip(b, c) if x != y)
    return GateRow(metric, f"{len(b)} predictions", f"{changed} changed", allowed,
                   REGRESSION if changed > tol.max_changed_predictions else OK)


def _shape(rows: Any) -> str:
    if not isinstance(rows, list) or not rows:
        return "empty"
    return f"{len(rows)}x{len(rows[0]) if isinstance(rows[0], list) else 0}"


def _logits_row(b_fp: Dict[str, Any], c_fp: Dict[str, Any], tol: Tolerances) -> Optional[GateRow]:
    metric = "mnist.logits_fixed_batch"
    b, c = b_fp.get("logits_fixed_batch"), c_fp.get("logits_fixed_batch")
    if b is None and c is None:
        return None
    row = _absent(metric, b, c, _shape)
    if row:
        return row
    allowed = f"max |diff| <= {tol.max_logit_drift:g} (incl. TF32/tactics)"
    width = len(b[0]) if b and isinstance(b[0], list) else -1
    if not (width >= 0 and len(b) == len(c) and all(len(r) == width for r in b + c)):
        return GateRow(metric, _shape(b), f"{_shape(c)} (shape differs)", allowed, REGRESSION)
    drift = max((abs(float(x) - float(y)) for rb, rc in zip(b, c) for x, y in zip(rb, rc)),
                default=0.0)
    decimals = b_fp.get("logits_decimals")
    base = _shape(b) + (f" ({decimals} dp)" if decimals is not None else "")
    verdict = REGRESSION if (math.isnan(drift) or drift > tol.max_logit_drift + _EPS) else OK
    return GateRow(metric, base, f"max |diff| {drift:.2e}", allowed, verdict)


def _mnist_rows(b: Dict[str, Any], c: Dict[str, Any], tol: Tolerances) -> List[GateRow]:
    rows: List[Optional[GateRow]] = []
    for key in ("accuracy_reference", "accuracy_before", "accuracy_after"):
        rows.append(_drop_row(f"mnist.{key}", b.get(key), c.get(key), tol.accuracy_drop_pp))
    rows.append(_equal_row("mnist.predicted_class_before", b.get("predicted_class_before"),
                           c.get("predicted_class_before"), plain, REGRESSION))
    b_fp, c_fp = _section(b, "fingerprint"), _section(c, "fingerprint")
    rows.append(_argmax_row(b_fp.get("argmax_all"), c_fp.get("argmax_all"), tol))
    rows.append(_logits_row(b_fp, c_fp, tol))
    rows.append(_weights_row("mnist.refittable_weights", b.get("refittable_weights"),
                             c.get("refittable_weights")))
    rows.append(_info_row("mnist.max_abs_logit_diff_vs_reference",
                          b.get("max_abs_logit_diff_vs_reference"),
                          c.get("max_abs_logit_diff_vs_reference"), lambda v: f"{v:.2e}"))
    return [row for row in rows if row is not None]


def _answers_row(metric: str, b: Any, c: Any, tol: Tolerances) -> Optional[GateRow]:
    if b is None and c is None:
        return None
    row = _absent(metric, b, c, lambda d: f"{len(d)} answers")
    if row:
        return row
    changed = sorted(k for k in b if c.get(k) != b[k])
    text = f"{len(changed)} changed" + (": " + ", ".join(changed) if changed else "")
    return GateRow(metric, f"{len(b)} answers", text, f"<= {tol.max_changed_answers} changed",
                   REGRESSION if len(changed) > tol.max_changed_answers else OK)


def _bidaf_rows(b: Dict[str, Any], c: Dict[str, Any], tol: Tolerances) -> List[GateRow]:
    rows: List[Optional[GateRow]] = []
    for key in sorted(set(b) | set(c), key=lambda k: (k != "standin", k)):
        prefix, mb, mc = f"bidaf.{key}", _section(b, key), _section(c, key)
        for name in ("answer_before_refit", "answer_fake", "answer_after_refit"):
            rows.append(_equal_row(f"{prefix}.{name}", mb.get(name), mc.get(name), quote, REGRESSION))
        for name in ("heldout_exact_match_trt", "heldout_exact_match_ort"):
            rows.append(_drop_row(f"{prefix}.{name}", mb.get(name), mc.get(name),
                                  tol.exact_match_drop_pp))
        splits_b, splits_c = _section(mb, "heldout_splits"), _section(mc, "heldout_splits")
        for split in sorted(set(splits_b) | set(splits_c)):
            sb, sc = _section(splits_b, split), _section(splits_c, split)
            for name in ("exact_match_trt", "exact_match_ort"):
                rows.append(_drop_row(f"{prefix}.heldout_splits.{split}.{name}", sb.get(name), sc.get(name),
                                      tol.exact_match_drop_pp))
        rows.append(_answers_row(f"{prefix}.answers", mb.get("answers"), mc.get("answers"), tol))
        rows.append(_weights_row(f"{prefix}.refittable_weights", mb.get("refittable_weights"),
                                 mc.get("refittable_weights")))
    return [row for row in rows if row is not None]


#: The check name of a case's weight-coverage map (ResultsRecorder.record_case_coverage).
COVERAGE_CHECK = "coverage"
_COVERAGE_CATEGORIES = ("by_name", "other_name", "unmatched", "not_refittable")


def _coverage_summary(cov: Any) -> str:
    if not isinstance(cov, dict):
        return plain(cov)
    parts = [f"{len(cov.get(k) or [])} {k.replace('_', ' ')}" for k in _COVERAGE_CATEGORIES]
    return ", ".join(parts) + f"; {len(cov.get('trt_only') or [])} TensorRT-only"


def _coverage_rows(metric: str, b: Any, c: Any) -> List[GateRow]:
    """A case's coverage map: an initializer refittable by its name in the baseline and not
    in the candidate is a REGRESSION (a user's refit by that name now fails); names that
    became refittable are INFO; the other categories are shown as a summary (CHANGED)."""
    row = _absent(metric, b, c, _coverage_summary)
    if row:
        return [row] if b is not None or c is not None else []
    was = set((b or {}).get("by_name") or [])
    now = set((c or {}).get("by_name") or [])
    lost, gained = sorted(was - now), sorted(now - was)
    text = f"{len(now)} by name"
    if lost:
        text += "; lost: " + ", ".join(lost[:8]) + (f" (+{len(lost) - 8} more)" if len(lost) > 8 else "")
    if gained:
        text += "; new: " + ", ".join(gained[:8]) + (f" (+{len(gained) - 8} more)" if len(gained) > 8 else "")
    verdict = REGRESSION if lost else (INFO if gained else OK)
    rows = [GateRow(f"{metric}.by_name", f"{len(was)} by name", text, "no initializer loses refit by name",
                    verdict)]
    sb, sc = _coverage_summary(b), _coverage_summary(c)
    rows.append(GateRow(metric, sb, sc, "info", OK if sb == sc else CHANGED))
    return rows


#: The check names of a case's refit tax and refit floor (ResultsRecorder.record_refit_tax/_floor).
REFIT_TAX_CHECK, REFIT_FLOOR_CHECK = "refit_tax", "refit_floor"


def _ratio_of(entry: Any) -> Any:
    return entry.get("ratio") if isinstance(entry, dict) else None


def _refit_tax_row(metric: str, b: Any, c: Any, tol: Tolerances, incomparable: Optional[str]) -> Optional[GateRow]:
    """The refit tax may grow by at most tol.refit_tax_growth of the baseline's ratio (same GPU);
    absent from the candidate: MISSING."""
    rb, rc = _ratio_of(b), _ratio_of(c)
    if rb is None and rc is None and b is None and c is None:
        return None
    row = _absent_either(metric, rb, rc, lambda v: f"x{float(v):.3f}")
    if row:
        return row
    if incomparable:
        return GateRow(metric, f"x{rb:.3f}", f"x{rc:.3f}", f"info ({incomparable})", INFO)
    limit = rb * (1.0 + tol.refit_tax_growth)
    verdict = REGRESSION if rc > limit + _EPS else OK
    return GateRow(metric, f"x{rb:.3f}", f"x{rc:.3f} ({(rc / rb - 1) * 100:+.1f}%)",
                   f"<= x{limit:.3f} (growth <= {tol.refit_tax_growth:.0%})", verdict)


def _refit_floor_row(metric: str, b: Any, c: Any, tol: Tolerances, incomparable: Optional[str]) -> Optional[GateRow]:
    """A case's median refit may take at most tol.max_refit_slowdown times the baseline's (same GPU);
    its ratio to the host-to-device floor is shown beside it; absent from the candidate: MISSING."""
    def median(entry: Any) -> Any:
        return entry.get("refit_median_s") if isinstance(entry, dict) else None

    def show(entry: Any) -> str:
        return f"{median(entry) * 1e3:.3g} ms (x{float(_ratio_of(entry)):.0f} the H2D floor)"
    mb, mc = median(b), median(c)
    if b is None and c is None:
        return None
    row = _absent_either(metric, b, c, show)
    if row:
        return row
    if incomparable:
        return GateRow(metric, show(b), show(c), f"info ({incomparable})", INFO)
    limit = mb * tol.max_refit_slowdown
    verdict = REGRESSION if mc > limit + _EPS else OK
    return GateRow(metric, show(b), f"{show(c)} ({mc / mb:.2f}x)",
                   f"refit <= {tol.max_refit_slowdown:g}x the baseline's", verdict)


def _flat_case(case: Dict[str, Any]) -> Dict[str, Any]:
    """A case's entries, its checks beside its typed parts (inputs_sha256 is judged before the rows)."""
    out = {k: v for k, v in case.items() if k not in ("checks", "inputs_sha256")}
    out.update(case.get("checks") or {})
    return out


def _evidence_rows(b: Dict[str, Any], c: Dict[str, Any], tol: Optional[Tolerances] = None,
                   incomparable: Optional[str] = None) -> List[GateRow]:
    """cases, property_tests, bad_inputs (required when in the baseline) and notes (info)."""
    tol = tol or Tolerances()
    rows: List[Optional[GateRow]] = []
    cb, cc = _section(b, "cases"), _section(c, "cases")
    for case in sorted(set(cb) | set(cc)):
        checks_b, checks_c = _flat_case(_section(cb, case)), _flat_case(_section(cc, case))
        for check in sorted(set(checks_b) | set(checks_c)):
            metric = f"cases.{case}.{check}"
            if check == "refittable_weights":
                rows.append(_weights_row(metric, checks_b.get(check), checks_c.get(check)))
            elif check == COVERAGE_CHECK:
                rows += _coverage_rows(metric, checks_b.get(check), checks_c.get(check))
            elif check == REFIT_TAX_CHECK:
                rows.append(_refit_tax_row(metric, checks_b.get(check), checks_c.get(check), tol, incomparable))
            elif check == REFIT_FLOOR_CHECK:
                rows.append(_refit_floor_row(metric, checks_b.get(check), checks_c.get(check), tol, incomparable))
            else:
                rows.append(_info_row(metric, checks_b.get(check), checks_c.get(check)))
    pb, pc = _section(b, "property_tests"), _section(c, "property_tests")
    for name in sorted(set(pb) | set(pc)):
        rows.append(_info_row(f"property_tests.{name}", pb.get(name), pc.get(name)))
    bb, bc = _section(b, "bad_inputs"), _section(c, "bad_inputs")
    for case in sorted(set(bb) | set(bc)):
        rows.append(_info_row(f"bad_inputs.{case}", bb.get(case), bc.get(case), quote,
                              if_different=CHANGED))
    nb, nc = _section(b, "notes"), _section(c, "notes")
    for key in sorted(set(nb) | set(nc)):
        rows.append(_info_row(f"notes.{key}", nb.get(key), nc.get(key), quote,
                              missing_fails=False, if_different=CHANGED))
    return [row for row in rows if row is not None]


# --------------------------------------------------------------------------------------
# Timings (comparable only on the same GPU model and CUDA driver major version)
# --------------------------------------------------------------------------------------

def gpu_identity(env: Dict[str, Any], side: str) -> Tuple[str, str, str]:
    """(GPU name stripped and case-folded, compute capability, CUDA driver major); a missing or
    empty field is GateRefused naming it."""
    name = str(env.get("gpu_name") or "").strip().casefold()
    capability = str(env.get("compute_capability") or "").strip()
    driver = str(env.get("cuda_driver_version") or "").strip().split(".")[0]
    for field, value in (("gpu_name", name), ("compute_capability", capability), ("cuda_driver_version", driver)):
        if not value:
            raise GateRefused(side, f"environment.{field} is missing or empty: the gate needs the GPU's "
                                    "identity (name, compute capability, CUDA driver) in both records")
    return name, capability, driver


def timings_incomparable(b_env: Dict[str, Any], c_env: Dict[str, Any]) -> Optional[str]:
    """Why timings of the two records cannot be compared (another normalised GPU), or None."""
    gb, gc = gpu_identity(b_env, "baseline"), gpu_identity(c_env, "candidate")
    if gb[:2] != gc[:2]:
        return f"other GPU ({gb[0]} {gb[1]} vs {gc[0]} {gc[1]})"
    if gb[2] != gc[2]:
        return f"other CUDA driver major ({gb[2]} vs {gc[2]})"
    return None


def _timing_order(name: str) -> Any:
    parts = split_timing_name(name)
    model = parts[0] if parts else name
    return (model != "mnist", model, name)


def _timing_rows(b: Dict[str, Any], c: Dict[str, Any], tol: Tolerances,
                 incomparable: Optional[str]) -> List[GateRow]:
    rows: List[GateRow] = []
    for name in sorted(set(b) | set(c), key=_timing_order):
        metric = f"timing.{name}"
        tb, tc = b.get(name), c.get(name)
        row = _absent(metric, tb and tb["median_s"], tc and tc["median_s"],
                      lambda v: f"median {seconds(v)}")
        if row:
            rows.append(row)
            continue
        mb, mc = float(tb["median_s"]), float(tc["median_s"])
        factor = mc / mb
        parts = split_timing_name(name)
        if incomparable:
            allowed, verdict = f"not compared: {incomparable}", INFO
        elif parts is not None and parts[1] == REFIT_KIND:
            allowed = f"median <= x{tol.max_refit_slowdown:g} baseline"
            verdict = REGRESSION if factor > tol.max_refit_slowdown + _EPS else OK
        else:
            allowed, verdict = "info (not gated)", OK
        rows.append(GateRow(metric, f"median {seconds(mb)}", f"median {seconds(mc)} (x{factor:.2f})",
                            allowed, verdict))
        if tb.get("first_s") is not None and tc.get("first_s") is not None:
            rows.append(GateRow(f"{metric}.first", seconds(tb["first_s"]), seconds(tc["first_s"]),
                                "info (not gated)", INFO if incomparable else OK))
    return rows


def _ratio_rows(b: Dict[str, Any], c: Dict[str, Any], b_basis: Dict[str, Any],
                c_basis: Dict[str, Any], incomparable: Optional[str]) -> List[GateRow]:
    rows: List[Optional[GateRow]] = []
    for model in sorted(set(b) | set(c), key=lambda m: (m != "mnist", m)):
        metric = f"ratio.{model}.rebuild/refit"
        row = _absent(metric, b.get(model), c.get(model), ratio)
        if row is None:
            row = GateRow(metric, ratio(b[model]), ratio(c[model]),
                          f"not compared: {incomparable}" if incomparable else "info (not gated)",
                          INFO if incomparable else OK)
        rows.append(row)
    for model in sorted(set(b_basis) | set(c_basis)):
        rows.append(_info_row(f"ratio_basis.{model}", b_basis.get(model), c_basis.get(model),
                              missing_fails=False, if_different=CHANGED))
    return [row for row in rows if row is not None]


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------

def _outcome_text(entry: Any) -> str:
    if entry is None:
        return ABSENT
    outcome, reason = entry
    return f"{outcome}: {reason}" if reason and outcome != "passed" else outcome


def test_outcomes(data: Dict[str, Any]) -> Dict[str, Tuple[str, Optional[str]]]:
    """test id -> (outcome, reason or None) of a record's data."""
    return {k: (v["outcome"], v.get("reason")) for k, v in _section(data, "tests").items()}


def _test_rows(b_data: Dict[str, Any], c_data: Dict[str, Any]) -> List[GateRow]:
    b, c = test_outcomes(b_data), test_outcomes(c_data)

    def counts(tests: Dict[str, Any]) -> str:
        n = Counter(outcome for outcome, _ in tests.values())
        return f"{n['passed']}/{n['failed']}/{n['skipped']}"

    rows = [GateRow("tests passed/failed/skipped", counts(b), counts(c), "info",
                    OK if counts(b) == counts(c) else CHANGED)]
    passed = sum(1 for outcome, _ in c.values() if outcome == "passed")
    if not passed:
        rows.append(GateRow("tests.passed", str(sum(1 for o, _ in b.values() if o == "passed")),
                            "no tests recorded" if not c else "no test passed",
                            ">= 1 passed", REGRESSION))
    for test_id in sorted(set(b) | set(c)):
        ob, oc = b.get(test_id), c.get(test_id)
        was, now = ob and ob[0], oc and oc[0]
        if was == now:
            continue
        metric = f"test {test_id}"
        if now == "failed":
            rows.append(GateRow(metric, _outcome_text(ob), _outcome_text(oc),
                                "still passes" if was == "passed" else "does not fail", REGRESSION))
        elif was == "passed":  # skipped or absent now
            rows.append(GateRow(metric, _outcome_text(ob), _outcome_text(oc), "passes", MISSING))
        elif was is not None and now is not None:
            rows.append(GateRow(metric, _outcome_text(ob), _outcome_text(oc), "info", CHANGED))
        elif was is not None:  # skipped or failed in the baseline, absent now
            rows.append(GateRow(metric, _outcome_text(ob), ABSENT, "info", INFO))
    return rows


# --------------------------------------------------------------------------------------
# The comparison
# --------------------------------------------------------------------------------------

def _no_evidence(data: Dict[str, Any]) -> Optional[str]:
    outcomes = [t["outcome"] for t in _section(data, "tests").values()]
    if not outcomes:
        return "no tests recorded"
    if "passed" not in outcomes:
        return f"no test passed ({len(outcomes)} recorded, every one {'/'.join(sorted(set(outcomes)))})"
    return None


def differing_inputs(b: Dict[str, Any], c: Dict[str, Any]) -> Dict[str, Tuple[str, str]]:
    """case -> (baseline hash, candidate hash) for the cases both records ran on different inputs."""
    cb, cc = _section(b, "cases"), _section(c, "cases")
    return {case: (cb[case]["inputs_sha256"], cc[case]["inputs_sha256"]) for case in sorted(set(cb) & set(cc))
            if cb[case]["inputs_sha256"] != cc[case]["inputs_sha256"]}


def not_comparable_text(hashes: Tuple[str, str]) -> str:
    return f"not comparable: different inputs ({hashes[0][:12]} vs {hashes[1][:12]})"


def _row_cases(metric: str, tests: Dict[str, Set[str]]) -> Set[str]:
    """The cases a row's metric belongs to (record.metric_case; tests: the cases they used)."""
    head, _, rest = metric.partition(".")
    if metric.startswith("test "):
        return tests.get(metric[len("test "):], set())
    if head == "cases":
        return {rest.split(".", 1)[0]}
    if head == "mnist":
        return {"mnist"}
    if head == "bidaf":
        return {metric_case("bidaf." + rest.split(".", 1)[0])}
    if head in ("timing", "wrapper_overhead"):
        parts = split_timing_name(rest)
        return {metric_case(parts[0])} if parts else set()
    if head in ("ratio", "ratio_basis"):
        model = rest[:-len(".rebuild/refit")] if rest.endswith(".rebuild/refit") else rest
        return {metric_case(model)}
    return set()


def as_record(data: Any, source: str) -> Record:
    """A Record as is; record data (a dict) validated into one (ResultsFileError naming `source`)."""
    from .schema import validate_results
    return data if isinstance(data, Record) else validate_results(data, source)


def refuse_incomparable(baseline: Record, candidate: Record, allow_different_inputs: bool = False) -> None:
    """GateRefused when the two records cannot be compared: either without GPU evidence, other
    profiles, a GPU identity missing, or (unless allowed) a case run on different inputs."""
    b, c = record_dict(baseline), record_dict(candidate)
    for side, data in (("baseline", b), ("candidate", c)):
        why = _no_evidence(data)
        if why:
            raise GateRefused(side, f"no GPU evidence: {why}")
    if baseline.profile != candidate.profile:
        raise GateRefused("both", f"profiles differ: baseline ran profile {baseline.profile!r}, candidate "
                                  f"{candidate.profile!r}; compare records of the same --refit-profile")
    gpu_identity(b.get("environment", {}), "baseline")
    gpu_identity(c.get("environment", {}), "candidate")
    differing = differing_inputs(b, c)
    if differing and not allow_different_inputs:
        shown = "; ".join(f"{case}: {not_comparable_text(h)[len('not comparable: '):]}" for case, h in differing.items())
        raise GateRefused("both", f"not comparable: {len(differing)} case(s) ran on different inputs ({shown}); "
                                  "gate the other cases with --allow-different-inputs")


def compare(baseline: Record, candidate: Record, tolerances: Optional[Tolerances] = None,
            allow_missing: Sequence[str] = (), compare_timings_across_gpus: bool = False,
            allow_different_inputs: bool = False) -> GateResult:
    """Compare two validated records under the tolerances (GateRefused when they cannot be).

    Anything the baseline has and the candidate lacks is MISSING (fails) unless a pattern of
    allow_missing matches its metric name. With allow_different_inputs, every row of a case
    whose inputs differ is NOT_COMPARED (shown, never judged).
    """
    baseline, candidate = as_record(baseline, "baseline"), as_record(candidate, "candidate")
    refuse_incomparable(baseline, candidate, allow_different_inputs)
    tol = tolerances or Tolerances()
    b, c = record_dict(baseline), record_dict(candidate)
    b_env, c_env = _section(b, "environment"), _section(c, "environment")
    incomparable = timings_incomparable(b_env, c_env)
    if compare_timings_across_gpus:
        incomparable = None
    rows: List[GateRow] = []
    rows.append(GateRow("profile", baseline.profile, candidate.profile, "same profile", OK))
    rows += _environment_rows(b_env, c_env)
    rows += _provenance_rows(_section(b, "provenance"), _section(c, "provenance"))
    rows += _mnist_rows(_section(b, "mnist"), _section(c, "mnist"), tol)
    rows += _bidaf_rows(_section(b, "bidaf"), _section(c, "bidaf"), tol)
    rows += _evidence_rows(b, c, tol, incomparable)
    rows += _timing_rows(_section(b, "timings"), _section(c, "timings"), tol, incomparable)
    rows += _ratio_rows(_section(b, "ratios"), _section(c, "ratios"),
                        _section(b, "ratio_basis"), _section(c, "ratio_basis"), incomparable)
    rows += _test_rows(b, c)
    differing = differing_inputs(b, c)
    if differing:
        tests: Dict[str, Set[str]] = {}
        for data in (b, c):
            for test_id, entry in _section(data, "tests").items():
                tests.setdefault(test_id, set()).update(entry.get("cases", []))
        for row in rows:
            hit = sorted(_row_cases(row.metric, tests) & set(differing))
            if hit:
                row.verdict, row.allowed = NOT_COMPARED, f"{hit[0]}: {not_comparable_text(differing[hit[0]])}"
        for case, hashes in differing.items():
            rows.append(GateRow(f"cases.{case}.inputs_sha256", hashes[0], hashes[1], not_comparable_text(hashes),
                                NOT_COMPARED))
    apply_allow_missing(rows, list(allow_missing))
    return GateResult(rows=rows)
