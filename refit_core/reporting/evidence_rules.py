"""The gate's rules for each case's evidence: its checks (weight coverage, refit tax and refit floor
judged; refittable weights normalised; the other checks shown), and the run's property tests,
bad inputs (required when in the baseline) and notes (info).

Standard library only (runs on the GPU kit).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from .formatting import plain, quote
from .rule_rows import EPS, absent_either_row, absent_row, info_row, section, weights_row
from .tolerances import Tolerances
from .verdicts import CHANGED, INFO, OK, REGRESSION, GateRow


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
    row = absent_row(metric, b, c, _coverage_summary)
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
    row = absent_either_row(metric, rb, rc, lambda v: f"x{float(v):.3f}")
    if row:
        return row
    if incomparable:
        return GateRow(metric, f"x{rb:.3f}", f"x{rc:.3f}", f"info ({incomparable})", INFO)
    limit = rb * (1.0 + tol.refit_tax_growth)
    verdict = REGRESSION if rc > limit + EPS else OK
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
    row = absent_either_row(metric, b, c, show)
    if row:
        return row
    if incomparable:
        return GateRow(metric, show(b), show(c), f"info ({incomparable})", INFO)
    limit = mb * tol.max_refit_slowdown
    verdict = REGRESSION if mc > limit + EPS else OK
    return GateRow(metric, show(b), f"{show(c)} ({mc / mb:.2f}x)",
                   f"refit <= {tol.max_refit_slowdown:g}x the baseline's", verdict)


def _flat_case(case: Dict[str, Any]) -> Dict[str, Any]:
    """A case's entries, its checks beside its typed parts (inputs_sha256 is judged before the rows)."""
    out = {k: v for k, v in case.items() if k not in ("checks", "inputs_sha256")}
    out.update(case.get("checks") or {})
    return out


def evidence_rows(b: Dict[str, Any], c: Dict[str, Any], tol: Optional[Tolerances] = None,
                  incomparable: Optional[str] = None) -> List[GateRow]:
    """cases, property_tests, bad_inputs (required when in the baseline) and notes (info)."""
    tol = tol or Tolerances()
    rows: List[Optional[GateRow]] = []
    cb, cc = section(b, "cases"), section(c, "cases")
    for case in sorted(set(cb) | set(cc)):
        checks_b, checks_c = _flat_case(section(cb, case)), _flat_case(section(cc, case))
        for check in sorted(set(checks_b) | set(checks_c)):
            metric = f"cases.{case}.{check}"
            if check == "refittable_weights":
                rows.append(weights_row(metric, checks_b.get(check), checks_c.get(check)))
            elif check == COVERAGE_CHECK:
                rows += _coverage_rows(metric, checks_b.get(check), checks_c.get(check))
            elif check == REFIT_TAX_CHECK:
                rows.append(_refit_tax_row(metric, checks_b.get(check), checks_c.get(check), tol, incomparable))
            elif check == REFIT_FLOOR_CHECK:
                rows.append(_refit_floor_row(metric, checks_b.get(check), checks_c.get(check), tol, incomparable))
            else:
                rows.append(info_row(metric, checks_b.get(check), checks_c.get(check)))
    pb, pc = section(b, "property_tests"), section(c, "property_tests")
    for name in sorted(set(pb) | set(pc)):
        rows.append(info_row(f"property_tests.{name}", pb.get(name), pc.get(name)))
    bb, bc = section(b, "bad_inputs"), section(c, "bad_inputs")
    for case in sorted(set(bb) | set(bc)):
        rows.append(info_row(f"bad_inputs.{case}", bb.get(case), bc.get(case), quote,
                             if_different=CHANGED))
    nb, nc = section(b, "notes"), section(c, "notes")
    for key in sorted(set(nb) | set(nc)):
        rows.append(info_row(f"notes.{key}", nb.get(key), nc.get(key), quote,
                             missing_fails=False, if_different=CHANGED))
    return [row for row in rows if row is not None]
