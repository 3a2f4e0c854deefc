"""How many measured rounds a refit benchmark takes: like pytest-benchmark's own calibration,
bounded by time. Up to `most` rounds, fewer where one refit is slow (BiDAF's take ~330 ms on
TensorRT 8.5), never fewer than `least`; timings are recorded with their round count."""
from __future__ import annotations

import math
import time
from typing import Callable

#: seconds of measured rounds a refit benchmark aims at; at least MIN_ROUNDS are taken all the same
ROUNDS_BUDGET_S = 3.0
MIN_ROUNDS = 10


def rounds_within(seconds_per_round: float, most: int, budget_s: float = ROUNDS_BUDGET_S,
                  least: int = MIN_ROUNDS) -> int:
    """`most` rounds when they fit in `budget_s`, else as many as fit, but at least `least`."""
    if not seconds_per_round > 0:
        return most
    return max(min(least, most), min(most, math.floor(budget_s / seconds_per_round)))


def probe_rounds(fn: Callable[[], object], most: int) -> int:
    """Time one call of `fn` (a warm-up too) and return rounds_within for it."""
    t0 = time.perf_counter()
    fn()
    return rounds_within(time.perf_counter() - t0, most)
