"""ONNX Runtime reference for a BiDAF ONNX file with bidaf-9.onnx's string interface.

No torch (the GPU kit has none); numpy and onnxruntime only, Python 3.9 compatible.
Works for the committed stand-in (STANDIN_PATH) and for the original bidaf-9.onnx alike.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import BIDAF_CHARS_PER_WORD, BIDAF_OUTPUTS
from ...models.ort_session import ort_session
from . import STANDIN_METADATA, STANDIN_ONNX
from .data import EVAL_SPLITS

STANDIN_PATH = STANDIN_ONNX

PathLike = Union[str, "os.PathLike[str]"]

# The one place the tests' exact-match floors come from: what ONNX Runtime measured for
# the committed file (its metadata) minus this margin, so a TensorRT engine or another
# ONNX Runtime may lose a few answers to float rounding, a broken one cannot pass.
FLOOR_MARGIN = 0.03

from .tokenize import tokenize

try:  # the suite's preprocessing (chars as written, as the sample does); needs onnx-graphsurgeon
    from .preprocess import encode_text as _encode_text
    from .preprocess import feeds_for_original as _feeds_for_original
except ImportError:  # pragma: no cover - a kit without onnx-graphsurgeon
    _encode_text = None


def encode_strings(tokens: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
    """Token list -> (words [n, 1], chars [n, 1, 1, 16]) string arrays.

    Words are lower-cased; chars are taken from the lower-cased word, cut at 16 and
    padded with ''. The stand-in's char map is case-insensitive, so this gives the same
    ids as the original preprocessing (refit_core.samples.bidaf.preprocess), which keeps the
    chars' case; make_feeds uses that one when it can be imported.
    """
    words = [t.lower() for t in tokens]
    chars = []
    for w in words:
        cs = list(w[:BIDAF_CHARS_PER_WORD])
        chars.append(cs + [""] * (BIDAF_CHARS_PER_WORD - len(cs)))
    word_arr = np.asarray(words, dtype=object).reshape(-1, 1)
    char_arr = np.asarray(chars, dtype=object).reshape(-1, 1, 1, BIDAF_CHARS_PER_WORD)
    return word_arr, char_arr


def make_feeds(context: str, query: str) -> Dict[str, np.ndarray]:
    """The four string inputs for one pair (refit_core.samples.bidaf.preprocess when importable)."""
    if _encode_text is not None:
        return _feeds_for_original(_encode_text(context, None, "context"),
                                   _encode_text(query, None, "query"))
    cw, cc = encode_strings(tokenize(context))
    qw, qc = encode_strings(tokenize(query))
    return {"context_word": cw, "context_char": cc, "query_word": qw, "query_char": qc}


def run_session(session, context: str, query: str) -> Tuple[int, int]:
    start, end = session.run(list(BIDAF_OUTPUTS), make_feeds(context, query))
    return int(np.asarray(start).reshape(-1)[0]), int(np.asarray(end).reshape(-1)[0])


def run_original_onnx(model_path: Union[PathLike, bytes], context: str, query: str) -> Tuple[int, int]:
    """(start, end) token indices that the ONNX model at ``model_path`` answers with."""
    return run_session(ort_session(model_path), context, query)


def answer_from_span(tokens: Sequence[str], start: int, end: int) -> str:
    """The answer text: tokens[start..end] joined by spaces ('' for an empty or invalid span)."""
    if start < 0 or end < start or start >= len(tokens):
        return ""
    return " ".join(tokens[start:end + 1])


def answer(model_path: Union[PathLike, bytes], context: str, query: str) -> str:
    """The answer string (context tokens, case kept) of the model for one pair."""
    start, end = run_original_onnx(model_path, context, query)
    return answer_from_span(tokenize(context), start, end)


def predict_spans(model_path: Union[PathLike, bytes], pairs: Sequence[Tuple[str, str]]) -> List[Tuple[int, int]]:
    sess = ort_session(model_path)
    return [run_session(sess, c, q) for c, q in pairs]


def exact_match(model_path: Union[PathLike, bytes], examples: Sequence) -> float:
    """Fraction of examples (with .context, .query, .answer_start, .answer_end) answered exactly."""
    spans = predict_spans(model_path, [(e.context, e.query) for e in examples])
    hits = sum(1 for s, e in zip(spans, examples) if s == (e.answer_start, e.answer_end))
    return hits / max(len(examples), 1)


def floors(metadata: Optional[Mapping[str, object]] = None) -> Dict[str, float]:
    """Exact-match floor per split: the recorded ONNX Runtime value minus FLOOR_MARGIN."""
    meta = metadata if metadata is not None else load_metadata()
    return {s: round(float(meta["splits"][s]["standin"]) - FLOOR_MARGIN, 4)
            for s in EVAL_SPLITS}


def load_metadata(path: Union[str, Path] = STANDIN_METADATA) -> Dict[str, object]:
    return json.loads(Path(path).read_text())
