"""ONNX Runtime references for BiDAF: the original (string) model and the prepared one.

Why: the TensorRT engines are judged against these. Running the original model and the
prepared model on the same text must give the same span, which checks the graph surgery
and the preprocessing's id lookup on the CPU before a GPU is involved.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import onnxruntime as ort

from ...errors import DataError
from . import BIDAF_OUTPUTS, BIDAF_SCORE_OUTPUTS
from ...models.ort_session import ort_session
from .preprocess import (EncodedText, answer_span, encode_text, feeds_for_original,
                               feeds_for_prepared)
from .prepare import PreparedBidaf

__all__ = ["Answer", "OrtBidaf", "OrtPreparedBidaf", "OUTPUT_NAMES", "SCORE_OUTPUT_NAMES"]

OUTPUT_NAMES: Tuple[str, str] = BIDAF_OUTPUTS
#: the prepared model's start/end scores (the ArgMax inputs), added by the graph surgery
SCORE_OUTPUT_NAMES: Tuple[str, str] = BIDAF_SCORE_OUTPUTS


@dataclass(frozen=True)
class Answer:
    """A predicted span: token indices (inclusive), its text and the context tokens."""

    start: int
    end: int
    text: str
    tokens: Tuple[str, ...]

    @property
    def span(self) -> Tuple[int, int]:
        """(start, end), for comparing two runs."""
        return (self.start, self.end)


def _session(model: Union[str, Path, bytes]) -> ort.InferenceSession:
    """A fresh CPU session (models.ort_session is the one place sessions are made)."""
    return ort_session(model, reuse=False)


def _output_names(session: ort.InferenceSession) -> List[str]:
    """start_pos/end_pos when the model names them so, else its first two outputs."""
    names = [o.name for o in session.get_outputs()]
    if all(n in names for n in OUTPUT_NAMES):
        return list(OUTPUT_NAMES)
    if len(names) < 2:
        raise DataError(f"a BiDAF model has two outputs (start, end); this one has {names}")
    return names[:2]


def _answer(session: ort.InferenceSession, outputs: Sequence[str], feeds: Dict[str, np.ndarray],
            ctx: EncodedText) -> Answer:
    start_arr, end_arr = session.run(list(outputs), feeds)
    start = int(np.asarray(start_arr).reshape(-1)[0])
    end = int(np.asarray(end_arr).reshape(-1)[0])
    return Answer(start=start, end=end, text=answer_span(ctx.tokens, start, end),
                  tokens=tuple(ctx.tokens))


class OrtBidaf:
    """The original BiDAF (string inputs, CategoryMappers inside) on ONNX Runtime's CPU."""

    def __init__(self, model_path: Union[str, Path]) -> None:
        self.model_path = Path(model_path)
        self.session = _session(self.model_path)
        self._outputs = _output_names(self.session)

    def answer(self, context: str, query: str) -> Answer:
        """The span the model picks in ``context`` for ``query``."""
        ctx = encode_text(context, None, "context")
        qry = encode_text(query, None, "query")
        return _answer(self.session, self._outputs, feeds_for_original(ctx, qry), ctx)


class OrtPreparedBidaf:
    """The prepared BiDAF (int64 id inputs) on ONNX Runtime's CPU, fed via the saved maps."""

    def __init__(self, prepared: PreparedBidaf) -> None:
        self.prepared = prepared
        self.session = _session(prepared.model_path)
        self._outputs = _output_names(self.session)
        have = {i.name for i in self.session.get_inputs()}
        missing = [n for n in prepared.input_names.values() if n not in have]
        if missing:
            raise DataError(f"prepared model {str(prepared.model_path)!r} lacks inputs "
                            f"{missing} recorded in its manifest (inputs: {sorted(have)})")

    def answer(self, context: str, query: str) -> Answer:
        """The span the model picks in ``context`` for ``query``."""
        ctx = encode_text(context, self.prepared.maps, "context")
        qry = encode_text(query, self.prepared.maps, "query")
        feeds = feeds_for_prepared(ctx, qry, self.prepared.input_names)
        return _answer(self.session, self._outputs, feeds, ctx)

    def scores(self, context: str, query: str) -> Tuple[np.ndarray, np.ndarray]:
        """The start and end scores over the context's tokens (float64, one value per token):
        what start_pos / end_pos are the arg-max of."""
        have = [o.name for o in self.session.get_outputs()]
        missing = [n for n in SCORE_OUTPUT_NAMES if n not in have]
        if missing:
            raise DataError(f"prepared model {str(self.prepared.model_path)!r} has no {missing} outputs "
                            f"(outputs: {have}); prepare it again with this version")
        ctx = encode_text(context, self.prepared.maps, "context")
        qry = encode_text(query, self.prepared.maps, "query")
        feeds = feeds_for_prepared(ctx, qry, self.prepared.input_names)
        start, end = self.session.run(list(SCORE_OUTPUT_NAMES), feeds)
        return (np.asarray(start, np.float64).reshape(-1), np.asarray(end, np.float64).reshape(-1))
