"""The BiDAF refit flow on a real TensorRT engine (GPU tier), for every available model."""
from __future__ import annotations

import numpy as np
import pytest

from refit_core.data.reading_comprehension import SAMPLE_ANSWER, SAMPLE_CONTEXT, SAMPLE_QUERY, heldout_examples
from refit_core.flows import bidaf as flow
from refit_core.trt.runner import InputShapeError

pytestmark = pytest.mark.gpu


def _model_key(bidaf_engine) -> str:
    return "original" if "original" in str(bidaf_engine.prepared.model_path) else "standin"


def test_sample_pair_fake_then_real_weights(bidaf_engine, bidaf_model, results):
    key = bidaf_model[0]
    before = bidaf_engine.answer(SAMPLE_CONTEXT, SAMPLE_QUERY)[2]
    bidaf_engine.refitter.refit_with(flow.fake_weights(bidaf_engine.prepared))
    fake = bidaf_engine.answer(SAMPLE_CONTEXT, SAMPLE_QUERY)[2]
    bidaf_engine.refitter.refit_with(flow.real_weights(bidaf_engine.prepared))
    real = bidaf_engine.answer(SAMPLE_CONTEXT, SAMPLE_QUERY)[2]
    print(f"{key}: built with real weights -> {before!r}; ones_like fakes -> {fake!r}; refit real -> {real!r}")
    assert fake != SAMPLE_ANSWER
    assert real == SAMPLE_ANSWER
    results.record_bidaf(key, answer_before_refit=before, answer_fake=fake, answer_after_refit=real,
                         refittable_weights=bidaf_engine.trt_weight_names_raw)


def test_heldout_splits_exact_match_equals_onnx_runtime(bidaf_engine, bidaf_ort, bidaf_model, results):
    """Splits a-c (training distribution, held-out templates/phrasings, held-out values):
    TensorRT answers every question as ONNX Runtime does, and each split clears its
    exact-match floor (the committed metadata's ONNX Runtime value minus
    splits.FLOOR_MARGIN, defined once in refit_core/models/bidaf/splits.py)."""
    from refit_core.data.reading_comprehension import EVAL_SPLITS, split_examples
    from refit_core.models.bidaf.splits import floors
    key = bidaf_model[0]
    if key != "standin":
        pytest.skip("no held-out set for the original model (it was trained on SQuAD)")
    bidaf_engine.refitter.refit_with(flow.real_weights(bidaf_engine.prepared))
    floor = floors()
    trt_answers, ort_answers, hits_trt, hits_ort, n = {}, {}, 0, 0, 0
    differ, below = [], []
    for split in EVAL_SPLITS:
        examples = split_examples(split)
        split_hits_trt = split_hits_ort = 0
        for i, ex in enumerate(examples):
            start, end, text = bidaf_engine.answer(ex.context, ex.query)
            ref = bidaf_ort.answer(ex.context, ex.query)
            name = f"{split}/{i}"
            trt_answers[name], ort_answers[name] = text, ref.text
            if (start, end) != tuple(ref.span):
                differ.append(name)
            split_hits_trt += (start, end) == ex.span
            split_hits_ort += tuple(ref.span) == ex.span
        em_trt, em_ort = split_hits_trt / len(examples), split_hits_ort / len(examples)
        print(f"{key} split {split}: exact match TensorRT {em_trt:.4f}, ONNX Runtime {em_ort:.4f} "
              f"over {len(examples)} questions (floor {floor[split]:.4f})")
        if min(em_trt, em_ort) < floor[split]:
            below.append(f"{split}: TensorRT {em_trt:.4f} / ONNX Runtime {em_ort:.4f} < {floor[split]:.4f}")
        hits_trt, hits_ort, n = hits_trt + split_hits_trt, hits_ort + split_hits_ort, n + len(examples)
    print(f"{key}: {len(differ)} of {n} answers differ between TensorRT and ONNX Runtime")
    results.record_bidaf(key, heldout_exact_match_trt=hits_trt / n, heldout_exact_match_ort=hits_ort / n,
                         answers=trt_answers)
    assert not differ, f"TensorRT and ONNX Runtime differ on {differ[:10]}"
    assert not below, f"exact match below the floor: {below}"


@pytest.mark.parametrize("context_len,query_len", [(1, 1), (10, 6), (37, 13), (64, 32)])
def test_lengths_inside_the_profile_match_onnx_runtime(bidaf_engine, bidaf_ort, context_len, query_len):
    bidaf_engine.refitter.refit_with(flow.real_weights(bidaf_engine.prepared))
    rng = np.random.default_rng(context_len * 100 + query_len)
    base_ctx = SAMPLE_CONTEXT.rstrip(".").split()
    words = [base_ctx[i % len(base_ctx)] for i in rng.permutation(context_len)] if context_len > 1 else ["fox"]
    context = " ".join(words)[:10_000]
    query_words = (SAMPLE_QUERY.rstrip("?").split() * 8)[:query_len]
    query = " ".join(query_words)
    from refit_core.text.tokenize import tokenize
    assert len(tokenize(context)) == context_len and len(tokenize(query)) == query_len
    start, end, text = bidaf_engine.answer(context, query)
    ref = bidaf_ort.answer(context, query)
    assert (start, end) == ref.span


def test_context_longer_than_the_profile_gets_a_clear_error(bidaf_engine):
    bidaf_engine.refitter.refit_with(flow.real_weights(bidaf_engine.prepared))
    too_long = " ".join(["fox"] * (flow.CONTEXT_LENGTHS[2] + 1))
    with pytest.raises(InputShapeError, match=r"outside the engine's optimization profile \[1, 64\]"):
        bidaf_engine.answer(too_long, SAMPLE_QUERY)
    too_long_query = " ".join(["what"] * (flow.QUERY_LENGTHS[2] + 1))
    with pytest.raises(InputShapeError, match=r"\[1, 32\]"):
        bidaf_engine.answer(SAMPLE_CONTEXT, too_long_query)
    assert bidaf_engine.answer(SAMPLE_CONTEXT, SAMPLE_QUERY)[2] == SAMPLE_ANSWER  # the engine still runs


def test_plan_from_the_cache_refits_and_answers_the_same(bidaf_engine, bidaf_prepared, cuda_session, trt_logger,
                                                         plan_cache):
    from refit_core.trt.engine import BuildOptions
    handle, built = flow.build_bidaf_engine(bidaf_prepared, BuildOptions(), trt_logger, plan_cache,
                                            cuda_session.gpu_name)
    try:
        assert built is None and handle.source == "cache"
        cached = flow.BidafTrt(bidaf_prepared, handle, cuda_session.synchronize)
        cached.refitter.refit_with(flow.fake_weights(bidaf_prepared))
        bidaf_engine.refitter.refit_with(flow.fake_weights(bidaf_prepared))
        assert cached.answer(SAMPLE_CONTEXT, SAMPLE_QUERY) == bidaf_engine.answer(SAMPLE_CONTEXT, SAMPLE_QUERY)
        cached.refitter.refit_with(flow.real_weights(bidaf_prepared))
        bidaf_engine.refitter.refit_with(flow.real_weights(bidaf_prepared))
        for ex in heldout_examples()[:50]:
            assert cached.answer(ex.context, ex.query) == bidaf_engine.answer(ex.context, ex.query)
    finally:
        handle.close()


def test_cli_bidaf_prints_the_sample_lines():
    import os
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "refit_core", "bidaf"], capture_output=True, text=True,
                          env=dict(os.environ), timeout=600)
    print(proc.stdout[-3000:], proc.stderr[-2000:])
    assert proc.returncode == 0
    for line in ("Refitting engine...", "Doing inference...", "Passed"):
        assert line in proc.stdout
    assert "Answer: brown" in proc.stdout
