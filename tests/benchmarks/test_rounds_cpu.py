"""Refit benchmark rounds bounded by time (tests/benchmarks/rounds.py)."""
from __future__ import annotations

import pytest

from tests.benchmarks.rounds import MIN_ROUNDS, ROUNDS_BUDGET_S, probe_rounds, rounds_within


@pytest.mark.parametrize("seconds, most, expected", [
    (0.005, 30, 30),   # MNIST's conv1 refit: all of them
    (0.1, 30, 30),     # 30 rounds fit in the budget exactly
    (0.2, 30, 15),     # as many as fit
    (0.33, 30, MIN_ROUNDS),  # BiDAF on TensorRT 8.5: never fewer than the minimum
    (5.0, 30, MIN_ROUNDS),
    (5.0, 4, 4),       # a benchmark that asks for fewer than the minimum gets what it asks
    (0.0, 30, 30),     # no measurable time: all of them
])
def test_rounds_fit_the_budget_between_the_minimum_and_the_most(seconds, most, expected):
    assert ROUNDS_BUDGET_S == 3.0
    assert rounds_within(seconds, most) == expected


def test_the_probe_times_one_call():
    calls = []
    assert probe_rounds(lambda: calls.append(1), 30) == 30 and calls == [1]
