"""Refit vs rebuild, timed like trtexec: warm up, then the median of repeated refits; the
first refit of a fresh engine is timed and reported on its own (GPU tier, pytest-benchmark).
Each refit benchmark also records what TensorRT costs apart from what the wrapper costs
(results: wrapper_overhead.<name>); timings are recorded, never asserted.

`pytest --benchmark-only` runs exactly these. At the end of the run one line per model
prints rebuild / refit (medians of this run); the results JSON keeps every timing.

The timed rebuilds are cold (`*.rebuild.cold_cache`: an empty timing cache, trt.engine.COLD,
even though the session's other builds share one) or warm from this session's own cache
(`*.rebuild.warm_cache`). The BiDAF rebuilds (~45 s each on TensorRT 8.5) run only under
--refit-profile full.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from refit_core.trt import compat
from refit_core.trt.engine import COLD, BuildOptions, EngineHandle
from tests.benchmarks.rounds import probe_rounds

pytestmark = [pytest.mark.gpu, pytest.mark.serial]

REFIT_ROUNDS, REFIT_WARMUP = 30, 5
MNIST_REBUILD_ROUNDS = 3
#: one rebuild per timing-cache state: each costs ~50 s on TensorRT 8.5 (the GPU tier's budget)
BIDAF_REBUILD_ROUNDS = 1


def _timed(fn, samples):
    """`fn` wrapped to append each call's duration to `samples`: the raw timings go into the
    results record, measured the same way pytest-benchmark measures its rounds."""
    def run(*args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        samples.append(time.perf_counter() - t0)
        return out
    return run


def _bench(benchmark, fn, rounds, warmup, args=()):
    """pedantic rounds of `fn`; returns the durations of the measured rounds (warm-ups dropped)."""
    samples = []
    benchmark.pedantic(_timed(fn, samples), args=args, rounds=rounds, warmup_rounds=warmup)
    return samples[warmup:]


def _bench_refit(benchmark, refitter, weights, results, name):
    """Warm refit_with rounds (up to REFIT_WARMUP + REFIT_ROUNDS, fewer where a refit is slow: rounds.py);
    besides pytest-benchmark's own timing, keep each round's raw refit_cuda_engine seconds and
    refit_with's total (EngineRefitter.last_trt_seconds / last_total_seconds) and record the
    wrapper's overhead, (total - raw) / raw of the medians. Returns the measured rounds'
    durations (warm-ups dropped)."""
    raw, total = [], []

    def refit():
        out = refitter.refit_with(weights)
        raw.append(refitter.last_trt_seconds)
        total.append(refitter.last_total_seconds)
        return out

    plan = probe_rounds(lambda: refitter.refit_with(weights), REFIT_ROUNDS, REFIT_WARMUP)
    samples = _bench(benchmark, refit, plan.rounds, plan.warmup)
    raw, total = raw[plan.warmup:], total[plan.warmup:]
    ratio = results.record_wrapper_overhead(name, raw, total)
    entry = results.get(("wrapper_overhead", name))
    benchmark.extra_info.update(trt_median_s=entry["trt_median_s"], wrapper_total_median_s=entry["total_median_s"],
                                wrapper_overhead_ratio=ratio)
    print(f"{name}: refit_cuda_engine median {entry['trt_median_s'] * 1e3:.3f} ms, refit_with total median "
          f"{entry['total_median_s'] * 1e3:.3f} ms, wrapper overhead {ratio:.1%}")
    return samples


def _record(results, benchmark, name, samples, first_s=None):
    results.record_timing(name, samples, first_s=first_s)
    if first_s is not None:
        benchmark.extra_info["first_refit_s"] = first_s


def _note_timing_cache(results, benchmark, name, accepted):
    """A warm-cache rebuild is only warm if TensorRT took the cache: say so in the record."""
    if any(a is False for a in accepted):
        note = (f"TensorRT {compat.trt_version_string()} rejected the serialized timing cache "
                "(\"The timing cache will not be used!\"): this rebuild ran without it")
        benchmark.extra_info["timing_cache"] = "rejected"
        results.record_note(name, note)
        print(f"{name}: {note}")


def _ratio(results, model, rebuild, refit):
    timings = results.get(("timings",), {}) or {}
    if rebuild in timings and refit in timings:
        results.record_ratio(model, rebuild, refit)
        results.record_ratio_basis(model, rebuild, refit)


# ---- MNIST -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bench_lenet(cuda_session, trt_logger, trained_lenet):
    """A fresh zero-conv1 engine of its own, so its first refit really is the first."""
    from refit_core.samples.mnist import flow
    from refit_core.refit.refitter import EngineRefitter
    start = flow.dummy_conv1(trained_lenet.weights)
    handle, _ = flow.build_lenet_engine(start, BuildOptions(), trt_logger, None, cuda_session.gpu_name)
    refitter = EngineRefitter(handle, flow.weight_specs(), start, cuda_session.synchronize)
    trained = {k: np.ascontiguousarray(v, np.float32) for k, v in trained_lenet.weights.items()}
    yield flow, handle, refitter, trained, start
    handle.close()


@pytest.mark.parametrize("which", ["conv1", "all_weights"])
def test_mnist_refit(benchmark, bench_lenet, results, which):
    flow, handle, refitter, trained, start = bench_lenet
    names = flow.REFIT_TARGETS if which == "conv1" else tuple(flow.LENET_SHAPES)
    weights = {n: trained[n] for n in names}
    first = None
    if refitter.refit_count == 0:
        t0 = time.perf_counter()
        refitter.refit_with(weights)
        first = time.perf_counter() - t0
    samples = _bench_refit(benchmark, refitter, weights, results, f"mnist.refit.{which}")
    _record(results, benchmark, f"mnist.refit.{which}", samples, first)


def test_mnist_refit_from_device_memory(benchmark, bench_lenet, results):
    if not compat.has_feature("device_weights"):
        pytest.skip(compat.feature_unavailable_reason("device_weights"))
    from refit_core.trt.cuda import to_device
    flow, handle, refitter, trained, start = bench_lenet
    bufs = {n: to_device(trained[n]) for n in flow.REFIT_TARGETS}

    def refit_device():
        for n, buf in bufs.items():
            compat.set_named_weights(refitter.refitter, n, None, buf.ptr, trained[n].size)
        refitter.synchronize()
        assert compat.refit_engine(refitter.refitter)

    samples = _bench(benchmark, refit_device, REFIT_ROUNDS, REFIT_WARMUP)
    _record(results, benchmark, "mnist.refit.conv1_device", samples)
    for buf in bufs.values():
        buf.free()


@pytest.mark.parametrize("cache", ["cold_cache", "warm_cache"])
def test_mnist_rebuild(benchmark, bench_lenet, cuda_session, trt_logger, results, cache):
    """build_serialized_network + deserialize from the same network definition."""
    flow, handle, refitter, trained, start = bench_lenet
    timing_cache = COLD
    if cache == "warm_cache":
        timing_cache = flow.build_lenet_plan(trained, BuildOptions(), trt_logger).timing_cache

    accepted = []

    def rebuild():
        res = flow.build_lenet_plan(trained, BuildOptions(), trt_logger, timing_cache=timing_cache)
        accepted.append(res.timing_cache_accepted)
        EngineHandle(res.plan, trt_logger).close()

    samples = _bench(benchmark, rebuild, MNIST_REBUILD_ROUNDS, 0)
    _record(results, benchmark, f"mnist.rebuild.{cache}", samples)
    _note_timing_cache(results, benchmark, f"mnist.rebuild.{cache}", accepted)
    _ratio(results, "mnist", "mnist.rebuild.cold_cache", "mnist.refit.conv1")


def test_mnist_inference_of_the_test_set(benchmark, mnist_engine, mnist_test_set, results):
    """Next to refit: what serving the 10,000 test images (batches of 1000) costs."""
    images = mnist_test_set["images"]
    samples = _bench(benchmark, mnist_engine.logits, 10, 2, args=(images,))
    _record(results, benchmark, "mnist.inference.test_set_10000", samples)


# ---- BiDAF -----------------------------------------------------------------------------
_BIDAF_TIMING_CACHES = {}  # model key -> serialized timing caches of this session's builds


@pytest.fixture(scope="module")
def bench_bidaf(cuda_session, trt_logger, bidaf_prepared, plan_cache):
    """A stand-in engine of its own (a new deserialization, so its first refit is the first),
    from the plan cache: the case engine's plan, or built here and cached for it (one build of
    ~50 s on TensorRT 8.5 instead of two). `built` (timing cache for the warm rebuild) is None
    when the plan came from the cache."""
    from refit_core.samples.bidaf import flow
    handle, built = flow.build_bidaf_engine(bidaf_prepared, BuildOptions(), trt_logger, plan_cache,
                                            cuda_session.gpu_name)
    engine = flow.BidafTrt(bidaf_prepared, handle, cuda_session.synchronize)
    yield flow, engine, built
    handle.close()


@pytest.mark.parametrize("which", ["sample_weights", "all_weights"])
def test_bidaf_refit(benchmark, bench_bidaf, bidaf_model, results, which):
    flow, engine, _ = bench_bidaf
    names = flow.SAMPLE_WEIGHTS if which == "sample_weights" else tuple(sorted(engine.specs))
    weights = {n: engine.initial[n] for n in names}
    first = None
    if engine.refitter.refit_count == 0:
        t0 = time.perf_counter()
        engine.refitter.refit_with(weights)
        first = time.perf_counter() - t0
    name = f"bidaf.{bidaf_model[0]}.refit.{which}"
    samples = _bench_refit(benchmark, engine.refitter, weights, results, name)
    _record(results, benchmark, name, samples, first)


@pytest.mark.full_profile
@pytest.mark.parametrize("cache", ["cold_cache", "warm_cache"])
def test_bidaf_rebuild(benchmark, bench_bidaf, bidaf_prepared, bidaf_model, trt_logger, results, cache):
    from refit_core.trt.engine import build_plan_from_onnx
    flow, engine, built = bench_bidaf
    profile = [flow.bidaf_profile(bidaf_prepared.input_names)]
    key = bidaf_model[0]
    caches = _BIDAF_TIMING_CACHES.setdefault(key, [])  # from this session's earlier builds
    if built is not None:
        caches.append(built.timing_cache)
    timing_cache = COLD
    if cache == "warm_cache":
        if not caches:
            pytest.skip("no timing cache from an earlier build of this model in this session "
                        "(its plan came from the plan cache and the cold rebuild did not run)")
        timing_cache = caches[-1]

    accepted = []

    def rebuild():
        res = build_plan_from_onnx(bidaf_prepared.model_path, BuildOptions(), profile, trt_logger,
                                   timing_cache=timing_cache)
        accepted.append(res.timing_cache_accepted)
        if cache == "cold_cache":
            caches.append(res.timing_cache)
        EngineHandle(res.plan, trt_logger).close()

    samples = _bench(benchmark, rebuild, BIDAF_REBUILD_ROUNDS, 0)
    _record(results, benchmark, f"bidaf.{key}.rebuild.{cache}", samples)
    _note_timing_cache(results, benchmark, f"bidaf.{key}.rebuild.{cache}", accepted)
    _ratio(results, f"bidaf.{key}", f"bidaf.{key}.rebuild.cold_cache", f"bidaf.{key}.refit.sample_weights")


def test_bidaf_inference_of_one_query(benchmark, bench_bidaf, bidaf_model, results):
    from refit_core.samples.bidaf.data import SAMPLE_CONTEXT, SAMPLE_QUERY
    flow, engine, _ = bench_bidaf
    samples = _bench(benchmark, engine.answer, 50, 5, args=(SAMPLE_CONTEXT, SAMPLE_QUERY))
    _record(results, benchmark, f"bidaf.{bidaf_model[0]}.inference.one_query", samples)
