"""The gate's rules for the samples' metrics: MNIST (accuracies, predictions, fixed-batch logits)
and each BiDAF model (sample answers, held-out exact match and answers).

Standard library only (runs on the GPU kit).
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

from .formatting import plain, quote
from .rule_rows import EPS, absent_row, drop_row, equal_row, info_row, section, weights_row
from .tolerances import Tolerances
from .verdicts import OK, REGRESSION, GateRow


def _argmax_row(b: Any, c: Any, tol: Tolerances) -> Optional[GateRow]:
    metric = "mnist.argmax_all"
    if b is None and c is None:
        return None
    row = absent_row(metric, b, c, lambda s: f"{len(s)} predictions")
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
    row = absent_row(metric, b, c, _shape)
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
    verdict = REGRESSION if (math.isnan(drift) or drift > tol.max_logit_drift + EPS) else OK
    return GateRow(metric, base, f"max |diff| {drift:.2e}", allowed, verdict)


def mnist_rows(b: Dict[str, Any], c: Dict[str, Any], tol: Tolerances) -> List[GateRow]:
    rows: List[Optional[GateRow]] = []
    for key in ("accuracy_reference", "accuracy_before", "accuracy_after"):
        rows.append(drop_row(f"mnist.{key}", b.get(key), c.get(key), tol.accuracy_drop_pp))
    rows.append(equal_row("mnist.predicted_class_before", b.get("predicted_class_before"),
                          c.get("predicted_class_before"), plain, REGRESSION))
    b_fp, c_fp = section(b, "fingerprint"), section(c, "fingerprint")
    rows.append(_argmax_row(b_fp.get("argmax_all"), c_fp.get("argmax_all"), tol))
    rows.append(_logits_row(b_fp, c_fp, tol))
    rows.append(weights_row("mnist.refittable_weights", b.get("refittable_weights"),
                            c.get("refittable_weights")))
    rows.append(info_row("mnist.max_abs_logit_diff_vs_reference",
                         b.get("max_abs_logit_diff_vs_reference"),
                         c.get("max_abs_logit_diff_vs_reference"), lambda v: f"{v:.2e}"))
    return [row for row in rows if row is not None]


def _answers_row(metric: str, b: Any, c: Any, tol: Tolerances) -> Optional[GateRow]:
    if b is None and c is None:
        return None
    row = absent_row(metric, b, c, lambda d: f"{len(d)} answers")
    if row:
        return row
    changed = sorted(k for k in b if c.get(k) != b[k])
    text = f"{len(changed)} changed" + (": " + ", ".join(changed) if changed else "")
    return GateRow(metric, f"{len(b)} answers", text, f"<= {tol.max_changed_answers} changed",
                   REGRESSION if len(changed) > tol.max_changed_answers else OK)


def bidaf_rows(b: Dict[str, Any], c: Dict[str, Any], tol: Tolerances) -> List[GateRow]:
    rows: List[Optional[GateRow]] = []
    for key in sorted(set(b) | set(c), key=lambda k: (k != "standin", k)):
        prefix, mb, mc = f"bidaf.{key}", section(b, key), section(c, key)
        for name in ("answer_before_refit", "answer_fake", "answer_after_refit"):
            rows.append(equal_row(f"{prefix}.{name}", mb.get(name), mc.get(name), quote, REGRESSION))
        for name in ("heldout_exact_match_trt", "heldout_exact_match_ort"):
            rows.append(drop_row(f"{prefix}.{name}", mb.get(name), mc.get(name),
                                 tol.exact_match_drop_pp))
        splits_b, splits_c = section(mb, "heldout_splits"), section(mc, "heldout_splits")
        for split in sorted(set(splits_b) | set(splits_c)):
            sb, sc = section(splits_b, split), section(splits_c, split)
            for name in ("exact_match_trt", "exact_match_ort"):
                rows.append(drop_row(f"{prefix}.heldout_splits.{split}.{name}", sb.get(name), sc.get(name),
                                     tol.exact_match_drop_pp))
        rows.append(_answers_row(f"{prefix}.answers", mb.get("answers"), mc.get("answers"), tol))
        rows.append(weights_row(f"{prefix}.refittable_weights", mb.get("refittable_weights"),
                                mc.get("refittable_weights")))
    return [row for row in rows if row is not None]
