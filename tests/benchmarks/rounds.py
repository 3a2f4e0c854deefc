"""How many warm-up and measured rounds a refit benchmark takes: like pytest-benchmark's own
calibration, bounded by time. Up to `most` rounds, fewer where one refit is slow (BiDAF's take
~330-450 ms on TensorRT 8.5), never fewer than MIN_ROUNDS; warm-ups likewise, never fewer than
one (the probe call itself is one more). The first refit of an engine is timed apart by the
benchmarks; timings are recorded with their round count."""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

#: seconds of measured rounds a refit benchmark aims at; at least MIN_ROUNDS are taken all the same
ROUNDS_BUDGET_S = 2.0
MIN_ROUNDS = 5
#: seconds of warm-up rounds; at least one
WARMUP_BUDGET_S = 0.5


class Rounds(NamedTuple):
    warmup: int
    rounds: int


def rounds_within(seconds_per_round: float, most: int, budget_s: float = ROUNDS_BUDGET_S,
                  least: int = MIN_ROUNDS) -> int:
    """`most` rounds when they fit in `budget_s`, else as many as fit, but at least `least`."""
    if not seconds_per_round > 0:
        return most
    return max(min(least, most), min(most, math.floor(budget_s / seconds_per_round)))


def probe_rounds(fn: Callable[[], object], most: int, most_warmup: int) -> Rounds:
    """Time one call of `fn` (a warm-up too) and plan the warm-ups and rounds for it."""
    t0 = time.perf_counter()
    fn()
    seconds = time.perf_counter() - t0
    return Rounds(rounds_within(seconds, most_warmup, WARMUP_BUDGET_S, 1), rounds_within(seconds, most))
