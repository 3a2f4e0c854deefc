"""One example of the BiDAF refit property, for any "engine": TensorRT on the GPU
(tests/refit/test_refit_properties_gpu.py) or ONNX Runtime standing in for it on the CPU
(tests/refit/test_bidaf_property_cpu.py). Both run this very code, so the CPU test shows
what the GPU test would catch.

The property: after refitting to `weights`, the engine's start/end scores agree with ONNX
Runtime's for the same weights within cases.bidaf.SCORE_TOLERANCE (per question) and its
arg-max spans within SPAN_TOLERANCE. An example counts only when the weights move the
reference scores beyond NO_OP_MARGIN x the tolerance (`weight_change_visible`), so a refit
that changed nothing fails it; examples that do not are rejected with `hypothesis.assume`
and counted in `stats["rejected_invisible"]`.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np
from hypothesis import assume, strategies as st

from refit_core.cases.bidaf import (SCORE_TOLERANCE, SPAN_TOLERANCE, BidafCheck, BidafOutputs, compare_bidaf,
                                    weight_change_visible)
from tests.refit.strategies import mild_perturbations

Pairs = Sequence[Tuple[str, str]]
#: held-out questions each example asks
QUESTIONS = 20
#: at most this many weights change per example
MAX_WEIGHTS = 6


@st.composite
def bidaf_plans(draw: Callable, names: Sequence[str]) -> Dict[str, Dict]:
    """1..MAX_WEIGHTS of `names`, each with a mild perturbation (tests/refit/strategies.py)."""
    names = sorted(names)
    chosen = draw(st.sets(st.sampled_from(names), min_size=1, max_size=min(MAX_WEIGHTS, len(names))))
    return draw(mild_perturbations(sorted(chosen)))


def new_stats() -> Dict[str, object]:
    return {"checked_examples": 0, "rejected_invisible": 0, "scores_max_abs": 0.0, "scores_max_rel": 0.0,
            "spans_rows": 0, "spans_min_agreeing": None, "score_tolerance": SCORE_TOLERANCE.describe(),
            "span_tolerance": SPAN_TOLERANCE.describe()}


def check_example(refit: Callable[[Mapping[str, np.ndarray]], None], engine_outputs: Callable[[], BidafOutputs],
                  before: BidafOutputs, reference: BidafOutputs, weights: Mapping[str, np.ndarray],
                  stats: Dict[str, object]) -> BidafCheck:
    """Refit the engine to `weights` and judge it against `reference` (ONNX Runtime with
    `weights`); `before` is ONNX Runtime with the weights the engine holds now. Rejects the
    example (assume) when the weights do not move the reference visibly."""
    if not weight_change_visible(before, reference):
        stats["rejected_invisible"] = int(stats["rejected_invisible"]) + 1  # type: ignore[arg-type]
        assume(False)
    refit(weights)
    check = compare_bidaf(engine_outputs(), reference)
    stats["checked_examples"] = int(stats["checked_examples"]) + 1  # type: ignore[arg-type]
    stats["scores_max_abs"] = max(float(stats["scores_max_abs"]), _finite(check.scores.max_abs))  # type: ignore
    stats["scores_max_rel"] = max(float(stats["scores_max_rel"]), _finite(check.scores.max_rel))  # type: ignore
    stats["spans_rows"] = check.spans.rows
    prev = stats["spans_min_agreeing"]
    stats["spans_min_agreeing"] = check.spans.rows_agreeing if prev is None else min(int(prev), check.spans.rows_agreeing)  # type: ignore
    return check


def _finite(x: float) -> float:
    return x if np.isfinite(x) else float(np.finfo(np.float64).max)


def summary(stats: Mapping[str, object]) -> Dict[str, object]:
    """For results.record_property_test: scalars only (None dropped)."""
    return {k: v for k, v in stats.items() if v is not None}


def held_out_pairs(n: int = QUESTIONS) -> List[Tuple[str, str]]:
    from refit_core.cases.bidaf import probe_pairs
    return probe_pairs(n)
