"""The refit tax and the refit floor, per case and precision (GPU tier, pytest-benchmark).

Refit tax: inference latency of the case's REFIT engine over the same model built without
REFIT (the engine the generic fresh-build check compares with), GPU side (execute_async_v3 +
synchronize, inputs already on the device), blocks of rounds alternating between the two
engines so drift hits both; the ratio of the medians, one run. Refit floor: the bytes of the
weights a refit is given over the measured host-to-device bandwidth (page-locked copies of
the same size); the warm refit's median over it says how far refit is from moving bytes.
Recorded (results: cases.<case>.refit_tax / refit_floor), never asserted; the gate flags a
refit tax that grows by more than its margin.
"""
from __future__ import annotations

import time

import pytest

from tests.benchmarks.rounds import probe_rounds

pytestmark = [pytest.mark.gpu, pytest.mark.serial]

TAX_BLOCKS, TAX_BLOCK_ROUNDS, TAX_WARMUP = 10, 20, 10
FLOOR_ROUNDS, FLOOR_WARMUP = 20, 3


def test_refit_tax(benchmark, case_engine, results):
    name = case_engine.case.name
    feeds = case_engine.latency_feeds()
    refit_runner, plain_runner = case_engine.runner, case_engine.plain_runner()
    with_refit, without = [], []

    def block():
        with_refit.extend(refit_runner.time_inference(feeds, TAX_BLOCK_ROUNDS, TAX_WARMUP))
        without.extend(plain_runner.time_inference(feeds, TAX_BLOCK_ROUNDS, TAX_WARMUP))

    benchmark.pedantic(block, rounds=TAX_BLOCKS, warmup_rounds=1)
    skip = TAX_BLOCK_ROUNDS  # the warm-up block
    results.record_refit_tax(name, with_refit[skip:], without[skip:], case_engine.case.precision)
    entry = results.get(("cases", name, "refit_tax"))
    benchmark.extra_info.update(refit_tax=entry["ratio"], refit_engine_median_s=entry["refit_engine_median_s"],
                                plain_engine_median_s=entry["plain_engine_median_s"])
    print(f"{name}: inference median {entry['refit_engine_median_s'] * 1e3:.4f} ms with REFIT, "
          f"{entry['plain_engine_median_s'] * 1e3:.4f} ms without: refit tax x{entry['ratio']:.3f}")


def test_refit_floor(benchmark, case_engine, results):
    from refit_core.trt.cuda import h2d_bytes_per_second
    name = case_engine.case.name
    weights = case_engine.target_weights
    nbytes = case_engine.weight_bytes(weights)
    bandwidth = h2d_bytes_per_second(nbytes)
    case_engine.refit_to(case_engine.all_build_weights())
    samples = []

    def refit():
        t0 = time.perf_counter()
        case_engine.refit_to(weights)
        samples.append(time.perf_counter() - t0)

    plan = probe_rounds(lambda: case_engine.refit_to(weights), FLOOR_ROUNDS, FLOOR_WARMUP)
    benchmark.pedantic(refit, rounds=plan.rounds, warmup_rounds=plan.warmup)
    results.record_refit_floor(name, samples[plan.warmup:], nbytes, bandwidth, len(weights),
                               case_engine.case.precision)
    entry = results.get(("cases", name, "refit_floor"))
    benchmark.extra_info.update(refit_floor_ratio=entry["ratio"], weight_bytes=nbytes,
                                h2d_gb_per_s=entry["h2d_gb_per_s"])
    print(f"{name}: refit of {len(weights)} weights ({nbytes / 1e6:.3f} MB) median "
          f"{entry['refit_median_s'] * 1e3:.3f} ms; H2D floor {entry['floor_s'] * 1e3:.4f} ms at "
          f"{entry['h2d_gb_per_s']:.1f} GB/s: refit/floor x{entry['ratio']:.1f}")
