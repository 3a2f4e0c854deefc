"""The refit benchmarks' overhead recording, run on the CPU stand-in of tests/test_selfcheck.py
(pure logic: the numbers mean nothing, the plumbing is what is checked)."""
from __future__ import annotations

from refit_core.reporting.results import ResultsRecorder
from tests.benchmarks.test_refit_vs_rebuild import REFIT_ROUNDS, REFIT_WARMUP, _bench_refit
from tests.test_selfcheck import FakeLenet, fake_trt  # noqa: F401  (fixture)


class FakeBenchmark:
    """pytest-benchmark's pedantic(): warm-up rounds, then the measured ones."""

    def __init__(self) -> None:
        self.extra_info = {}
        self.calls = 0

    def pedantic(self, fn, args=(), rounds=1, warmup_rounds=0):
        for _ in range(warmup_rounds + rounds):
            self.calls += 1
            fn(*args)


def test_each_measured_round_records_raw_and_total_seconds(fake_trt):
    engine = FakeLenet()
    weights = {n: engine.trained[n] for n in ("conv1.weight", "conv1.bias")}
    results, bench = ResultsRecorder(), FakeBenchmark()
    samples = _bench_refit(bench, engine.refitter, weights, results, "mnist.refit.conv1")
    entry = results.get(("wrapper_overhead", "mnist.refit.conv1"))
    assert bench.calls == REFIT_ROUNDS + REFIT_WARMUP and len(samples) == REFIT_ROUNDS
    assert entry["rounds"] == REFIT_ROUNDS and len(entry["trt_samples_s"]) == REFIT_ROUNDS
    assert all(0 < raw <= total for raw, total in zip(entry["trt_samples_s"], entry["total_samples_s"]))
    assert bench.extra_info["wrapper_overhead_ratio"] == entry["overhead_ratio"] >= 0
    assert engine.refitter.last_trt_seconds <= engine.refitter.last_total_seconds
