"""The BiDAF refit flow on a real TensorRT engine (GPU tier), for every available model."""
from __future__ import annotations

import numpy as np
import pytest

from refit_core.samples.bidaf.data import SAMPLE_ANSWER, SAMPLE_CONTEXT, SAMPLE_QUERY, heldout_examples
from refit_core.samples.bidaf import flow
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


def test_heldout_splits_exact_match_equals_onnx_runtime(bidaf_engine, bidaf_model, results):
    """Splits a-c (training distribution, held-out templates/phrasings, held-out values), for
    every model: TensorRT gives ONNX Runtime's span on every question and its start/end scores
    within cases.bidaf.SCORE_TOLERANCE (this needs no gold answers, so it runs on the original
    bidaf-9 as well). The stand-in's exact match clears each split's floor (the committed
    metadata's ONNX Runtime value minus FLOOR_MARGIN, refit_core/samples/bidaf/reference.py);
    the original was trained on SQuAD, so its exact match on these questions is only reported."""
    from refit_core.cases.bidaf import bidaf_outputs, compare_bidaf, ort_outputs
    from refit_core.samples.bidaf.data import EVAL_SPLITS, split_examples
    from refit_core.samples.bidaf.reference import floors
    key = bidaf_model[0]
    bidaf_engine.refitter.refit_with(flow.real_weights(bidaf_engine.prepared))
    floor = floors() if key == "standin" else {}
    prepared = bidaf_engine.prepared
    differ, scores_off, below, per_split, answers = [], [], [], {}, {}
    hits_trt = hits_ort = n = 0
    for split in EVAL_SPLITS:
        examples = split_examples(split)
        pairs = [(ex.context, ex.query) for ex in examples]
        runs = []
        for i, (context, query) in enumerate(pairs):
            start, end, answers[f"{split}/{i}"], s_scores, e_scores = bidaf_engine.answer_and_scores(context, query)
            runs.append((start, end, s_scores, e_scores))
        got = bidaf_outputs(runs)
        ref = ort_outputs(prepared.model_path, prepared, {}, pairs)
        check = compare_bidaf(got, ref)
        differ += [f"{split}/{i}" for i in np.flatnonzero(np.any(got.spans != ref.spans, axis=1))]
        if not check.scores.ok:
            scores_off.append(f"{split}: {check.scores}")
        gold = np.asarray([ex.span for ex in examples], np.float64)
        em_trt = float(np.mean(np.all(got.spans == gold, axis=1)))
        em_ort = float(np.mean(np.all(ref.spans == gold, axis=1)))
        per_split[split] = {"questions": len(examples), "exact_match_trt": em_trt, "exact_match_ort": em_ort,
                            "scores_max_abs": check.scores.max_abs, "scores_max_rel": check.scores.max_rel}
        print(f"{key} split {split}: exact match TensorRT {em_trt:.4f}, ONNX Runtime {em_ort:.4f} over "
              f"{len(examples)} questions" + (f" (floor {floor[split]:.4f})" if split in floor else "")
              + f"; {check}")
        if split in floor and min(em_trt, em_ort) < floor[split]:
            below.append(f"{split}: TensorRT {em_trt:.4f} / ONNX Runtime {em_ort:.4f} < {floor[split]:.4f}")
        hits_trt += int(round(em_trt * len(examples)))
        hits_ort += int(round(em_ort * len(examples)))
        n += len(examples)
    print(f"{key}: {len(differ)} of {n} answers differ between TensorRT and ONNX Runtime")
    results.record_bidaf(key, heldout_exact_match_trt=hits_trt / n, heldout_exact_match_ort=hits_ort / n,
                         answers=answers, heldout_answers_differing=len(differ), heldout_splits=per_split)
    assert not differ, f"TensorRT and ONNX Runtime differ on {len(differ)} answers, e.g. {differ[:10]}"
    assert not scores_off, f"scores outside the tolerance: {scores_off}"
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
    from refit_core.samples.bidaf.tokenize import tokenize
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
