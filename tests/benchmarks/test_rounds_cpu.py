"""Refit benchmark rounds bounded by time (tests/benchmarks/rounds.py)."""
from __future__ import annotations

import pytest

from tests.benchmarks.rounds import MIN_ROUNDS, ROUNDS_BUDGET_S, WARMUP_BUDGET_S, Rounds, probe_rounds, rounds_within


@pytest.mark.parametrize("seconds, most, expected", [
    (0.005, 30, 30),   # MNIST's conv1 refit: all of them
    (ROUNDS_BUDGET_S / 30, 30, 30),  # 30 rounds fit in the budget exactly
    (ROUNDS_BUDGET_S / 15, 30, 15),  # as many as fit
    (0.33, 30, 6),     # BiDAF on TensorRT 8.5 (330 ms): what fits
    (0.45, 30, MIN_ROUNDS),  # slower: never fewer than the minimum
    (5.0, 30, MIN_ROUNDS),
    (5.0, 4, 4),       # a benchmark that asks for fewer than the minimum gets what it asks
    (0.0, 30, 30),     # no measurable time: all of them
])
def test_rounds_fit_the_budget_between_the_minimum_and_the_most(seconds, most, expected):
    assert rounds_within(seconds, most) == expected


def test_the_probe_times_one_call_and_plans_warmups_and_rounds():
    calls = []
    assert probe_rounds(lambda: calls.append(1), 30, 5) == Rounds(warmup=5, rounds=30) and calls == [1]


def test_a_slow_call_gets_one_warmup_and_the_minimum_rounds():
    import time
    slow = max(WARMUP_BUDGET_S, ROUNDS_BUDGET_S / MIN_ROUNDS) * 1.05
    assert probe_rounds(lambda: time.sleep(slow), 30, 5) == Rounds(warmup=1, rounds=MIN_ROUNDS)
