"""ONNX Runtime: the prepared model answers exactly like the original one.

First on the tiny look-alike (always), then on the real models: the project's stand-in
(refit_core/assets/bidaf_standin.onnx) and, when the user's data directory holds it, the
original bidaf-9.onnx.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Callable, List, Tuple

import numpy as np
import onnx
import pytest

import refit_core
from refit_core.config import DATA_DIR_ENV
from refit_core.errors import DataError
from refit_core.samples.bidaf.original import ORIGINAL_BIDAF_LOCATIONS, find_original_bidaf, original_bidaf_candidates
from refit_core.samples.bidaf.prepare import prepare_bidaf
from refit_core.samples.bidaf.ort_reference import Answer, OrtBidaf, OrtPreparedBidaf

STANDIN_PATH = Path(refit_core.__file__).resolve().parent / "assets" / "bidaf_standin.onnx"
UNKNOWN = ["zebra", "Quixotic", "supercalifragilistic", "42", "x-ray", "naïve"]
PUNCT = [".", ",", "?", "!"]


def _random_text(rng: random.Random, words: List[str], n_min: int, n_max: int) -> str:
    out = []
    for _ in range(rng.randint(n_min, n_max)):
        r = rng.random()
        if r < 0.15:
            out.append(rng.choice(UNKNOWN))
        elif r < 0.25:
            out.append(rng.choice(PUNCT))
        else:
            w = rng.choice(words)
            out.append(w.capitalize() if rng.random() < 0.2 else w)
    return " ".join(out)


@pytest.mark.parametrize("variant", [dict(), dict(opset=13), dict(compress_axis=False), dict(seed=7)],
                         ids=["opset11", "opset13", "compress-no-axis", "seed7"])
def test_tiny_prepared_matches_original(make_tiny_bidaf: Callable, tmp_path: Path, variant: dict) -> None:
    tiny = make_tiny_bidaf(**variant)
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny.model, str(path))
    original = OrtBidaf(path)
    prepared = OrtPreparedBidaf(prepare_bidaf(path, tmp_path / "prepared"))
    rng = random.Random(1234)
    spans = set()
    for _ in range(150):
        context = _random_text(rng, tiny.words, 1, 25)
        query = _random_text(rng, tiny.words, 1, 8)
        a, b = original.answer(context, query), prepared.answer(context, query)
        assert a == b, f"{context!r} / {query!r}: original {a.span}, prepared {b.span}"
        start_scores, end_scores = prepared.scores(context, query)
        assert len(start_scores) == len(end_scores) == len(b.tokens)
        assert (int(np.argmax(start_scores)), int(np.argmax(end_scores))) == b.span
        spans.add(a.span)
    assert len(spans) > 20, "the look-alike should pick many different spans"


def test_answer_fields(tiny_bidaf, tiny_bidaf_path: Path, tmp_path: Path) -> None:
    answer = OrtPreparedBidaf(prepare_bidaf(tiny_bidaf_path, tmp_path / "prepared")).answer(
        "A quick brown fox jumps over the lazy dog.", "What color is the fox?")
    assert isinstance(answer, Answer)
    assert answer.tokens == ("A", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", ".")
    assert 0 <= answer.start < len(answer.tokens) and 0 <= answer.end < len(answer.tokens)
    assert answer.text == " ".join(answer.tokens[answer.start:answer.end + 1])


def test_empty_text_is_refused(tiny_bidaf_path: Path) -> None:
    model = OrtBidaf(tiny_bidaf_path)
    with pytest.raises(DataError, match="the query is empty"):
        model.answer("A fox.", "   ")
    with pytest.raises(DataError, match="the context is empty"):
        model.answer("", "What?")
    with pytest.raises(DataError, match="does not exist"):
        OrtBidaf(tiny_bidaf_path.parent / "missing.onnx")


# --------------------------------------------------------------------------- real models

def _data_dir(config: pytest.Config) -> str:
    return config.getoption("--data-dir", default=None) or os.environ.get(DATA_DIR_ENV, "")


@pytest.fixture(scope="module", params=["standin", "original"])
def real_bidaf(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Tuple[str, OrtBidaf, OrtPreparedBidaf]:
    """(name, original on ORT, prepared on ORT) for the stand-in and, if found, bidaf-9."""
    if request.param == "standin":
        if not STANDIN_PATH.is_file():
            pytest.skip(f"BiDAF stand-in not generated yet: {STANDIN_PATH} is missing")
        path = STANDIN_PATH
    else:
        data_dir = _data_dir(request.config)
        if not data_dir:
            where = ", ".join(f"<data dir>/{rel}" for rel in ORIGINAL_BIDAF_LOCATIONS)
            pytest.skip(f"original bidaf-9.onnx: no data directory (set {DATA_DIR_ENV} or "
                        f"--data-dir); it would be looked for at {where}")
        found = find_original_bidaf(data_dir)
        if found is None:
            looked = ", ".join(str(p) for p in original_bidaf_candidates(data_dir))
            pytest.skip(f"original bidaf-9.onnx not found; looked at: {looked}")
        path = found
    prepared = prepare_bidaf(path, tmp_path_factory.mktemp(f"prepared-{request.param}"))
    return request.param, OrtBidaf(path), OrtPreparedBidaf(prepared)


def test_real_sample_pair_is_brown(real_bidaf: Tuple[str, OrtBidaf, OrtPreparedBidaf]) -> None:
    from refit_core.samples.bidaf.data import SAMPLE_ANSWER, SAMPLE_CONTEXT, SAMPLE_QUERY
    name, original, prepared = real_bidaf
    a = original.answer(SAMPLE_CONTEXT, SAMPLE_QUERY)
    b = prepared.answer(SAMPLE_CONTEXT, SAMPLE_QUERY)
    assert a.text.lower() == SAMPLE_ANSWER, f"{name} original answered {a.text!r}"
    assert b.text.lower() == SAMPLE_ANSWER, f"{name} prepared answered {b.text!r}"
    assert a == b


def test_real_heldout_spans_identical(real_bidaf: Tuple[str, OrtBidaf, OrtPreparedBidaf]) -> None:
    from refit_core.samples.bidaf.data import heldout_examples
    name, original, prepared = real_bidaf
    examples = heldout_examples()
    assert examples
    diff = []
    for ex in examples:
        a, b = original.answer(ex.context, ex.query), prepared.answer(ex.context, ex.query)
        if a.span != b.span:
            diff.append((ex.context, ex.query, a.span, b.span))
    assert not diff, f"{name}: {len(diff)} of {len(examples)} held-out spans differ, e.g. {diff[:3]}"
    if name == "standin":  # trained on this data set: this preprocessing must reproduce its answers
        hits = sum(1 for ex in examples if prepared.answer(ex.context, ex.query).span == ex.span)
        assert hits / len(examples) >= 0.9, f"stand-in exact match {hits}/{len(examples)}"


def test_real_scores_are_what_the_spans_are_the_arg_max_of(real_bidaf: Tuple[str, OrtBidaf, OrtPreparedBidaf]
                                                            ) -> None:
    """The score outputs the surgery adds (compared between TensorRT and ONNX Runtime) are
    the ArgMax inputs of the original model's answer: on every held-out question their
    arg-max is the original (string) model's span, for the stand-in and bidaf-9 alike."""
    from refit_core.samples.bidaf.data import heldout_examples
    name, original, prepared = real_bidaf
    for ex in heldout_examples()[:100]:
        start_scores, end_scores = prepared.scores(ex.context, ex.query)
        span = original.answer(ex.context, ex.query).span
        assert (int(np.argmax(start_scores)), int(np.argmax(end_scores))) == span, (name, ex.query)
        assert not np.isnan(start_scores).any() and not np.isnan(end_scores).any()


def test_real_prepared_graph(real_bidaf: Tuple[str, OrtBidaf, OrtPreparedBidaf]) -> None:
    from refit_core.samples.bidaf.prepare import BIDAF_INPUT_NAMES, REFIT_WEIGHT_NAMES
    name, original, prepared = real_bidaf
    model = onnx.load(str(prepared.prepared.model_path))
    onnx.checker.check_model(model)
    ops = {n.op_type for n in model.graph.node}
    assert not ops & {"CategoryMapper", "Hardmax", "Compress"}, f"{name}: {ops}"
    assert "ArgMax" in ops and "Gather" in ops
    assert sorted(prepared.prepared.input_names) == sorted(BIDAF_INPUT_NAMES)
    inits = {t.name: t for t in model.graph.initializer}
    for weight in REFIT_WEIGHT_NAMES:
        assert list(inits[weight].dims) == list(prepared.prepared.refit_weights[weight].shape)
