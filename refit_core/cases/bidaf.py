"""The BiDAF cases: the bundled stand-in ("standin") and, where the user has it, the
original bidaf-9 model ("original"), through graph surgery and the ONNX parser.

Build weights: the model's own initializers (every one TensorRT lists as refittable by
name). Target weights: the sample's two weights (`Parameter576_B_0`, `W_0`) with seeded
multiplicative noise. Reference: ONNX Runtime on the prepared model with the same
initializers. Probes: the first 40 held-out questions.

What is compared (one place, used by the generic checks, the property test and its CPU
twin): the start and end SCORES each answer is the arg-max of (the prepared model's extra
outputs, samples.bidaf.BIDAF_SCORE_OUTPUTS), one row per question, within SCORE_TOLERANCE per
row; and the arg-max spans, of which SPAN_TOLERANCE's share must be identical (a near-tie
may flip under another summation order). `probe()` (the generic view) is the score matrix.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..samples.bidaf import BIDAF_OUTPUTS, BIDAF_SAMPLE_WEIGHTS, BIDAF_SCORE_OUTPUTS
from .base import (NO_OP_MARGIN, CaseEngine, CaseResources, Comparison, OutputTolerance, RefitCase,
                   compare_outputs, variant_name)

PROBE_QUESTIONS = 40
TARGET_SEED = 20261123
#: w * (1 + TARGET_NOISE * N(0, 1)): large on purpose, so the target moves the reference scores
#: far beyond SCORE_TOLERANCE for any trained stand-in (checked on ONNX Runtime, CPU tier,
#: and again on the GPU before the target refit is judged)
TARGET_NOISE = 4.0

#: TensorRT FP32 (TF32 cleared) vs ONNX Runtime on the LSTM pointer scores, per question row:
#: max|diff| <= 1e-3 + 1e-3 * max|reference score of the row|. FP32 reassociation in the
#: LSTMs and matmuls moves the scores by ~1e-5 relative; 1e-3 leaves room for long contexts
#: (64 tokens) while a changed weight moves them by far more (weight_change_visible).
SCORE_TOLERANCE = OutputTolerance(atol=1e-3, rtol=1e-3)
#: arg-max spans: at least 95% identical (a near-tie in the scores may flip)
SPAN_TOLERANCE = OutputTolerance(exact_rows=True, min_agreement=0.95)
#: (scores, spans) by build precision. FP16 runs the LSTMs, attention and pointer layers in
#: FP16 (~1e-3 relative per operation, compounded over the recurrences); more near-ties flip.
#: TARGET_NOISE moves the scores by order one, beyond twice the FP16 tolerance.
PRECISION_TOLERANCES = {"fp32": (SCORE_TOLERANCE, SPAN_TOLERANCE),
                        "tf32": (OutputTolerance(atol=1e-2, rtol=1e-2),
                                 OutputTolerance(exact_rows=True, min_agreement=0.9)),
                        "fp16": (OutputTolerance(atol=3e-2, rtol=3e-2),
                                 OutputTolerance(exact_rows=True, min_agreement=0.9))}

Run = Tuple[int, int, np.ndarray, np.ndarray]  # (start, end, start scores, end scores)


def probe_pairs(n: int = PROBE_QUESTIONS) -> List[Tuple[str, str]]:
    from ..samples.bidaf.data import heldout_examples
    return [(ex.context, ex.query) for ex in heldout_examples()[:n]]


def target_weights(initial: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The sample's weights with seeded multiplicative noise (deterministic)."""
    rng = np.random.default_rng(TARGET_SEED)
    out = {}
    for name in BIDAF_SAMPLE_WEIGHTS:
        w = np.asarray(initial[name], np.float32)
        out[name] = np.ascontiguousarray(w * (1.0 + TARGET_NOISE * rng.standard_normal(w.shape)), dtype=np.float32)
    return out


@dataclass(frozen=True)
class BidafOutputs:
    """What a BiDAF engine (or ONNX Runtime) answered for the probe questions.

    `spans`: questions x 2 (start, end). `scores`: questions x 2*width, the start scores then
    the end scores over the context tokens, each padded with zeros to `width` (the longest
    context): padding is equal in any two runs on the same questions, and a zero never
    raises a row's max|score|.
    """

    spans: np.ndarray
    scores: np.ndarray


def bidaf_outputs(runs: Sequence[Run]) -> BidafOutputs:
    """Stack per-question (start, end, start scores, end scores) into BidafOutputs."""
    width = max((max(len(s), len(e)) for _, _, s, e in runs), default=0)
    scores = np.zeros((len(runs), 2 * width), np.float64)
    for i, (_, _, s, e) in enumerate(runs):
        s = np.asarray(s, np.float64).reshape(-1)
        e = np.asarray(e, np.float64).reshape(-1)
        scores[i, :len(s)] = s
        scores[i, width:width + len(e)] = e
    spans = np.asarray([[a, b] for a, b, _, _ in runs], np.float64).reshape(len(runs), 2)
    return BidafOutputs(spans=spans, scores=scores)


@dataclass(frozen=True)
class BidafCheck:
    """Engine vs reference: the scores within SCORE_TOLERANCE and the spans within SPAN_TOLERANCE."""

    scores: Comparison
    spans: Comparison

    @property
    def ok(self) -> bool:
        return self.scores.ok and self.spans.ok

    def __str__(self) -> str:
        return (f"scores {self.scores} ({SCORE_TOLERANCE.describe()}); "
                f"spans {self.spans.rows_agreeing}/{self.spans.rows} identical ({SPAN_TOLERANCE.describe()})")


def compare_bidaf(got: BidafOutputs, ref: BidafOutputs) -> BidafCheck:
    """The BiDAF refit check: `got` (the engine) against `ref` (ONNX Runtime, same weights)."""
    return BidafCheck(scores=compare_outputs(got.scores, ref.scores, SCORE_TOLERANCE),
                      spans=compare_outputs(got.spans, ref.spans, SPAN_TOLERANCE))


def weight_change_visible(before: BidafOutputs, after: BidafOutputs, margin: float = NO_OP_MARGIN) -> bool:
    """True when the reference scores for the new weights (`after`) leave those for the old
    ones (`before`) by more than `margin` x SCORE_TOLERANCE in some question: an engine that
    kept the old weights (within the tolerance of `before`) then fails compare_bidaf."""
    return not compare_outputs(before.scores, after.scores, SCORE_TOLERANCE.scaled(margin)).ok


def ort_runs(model_path: Path, prepared: Any, weights: Mapping[str, np.ndarray],
             pairs: Sequence[Tuple[str, str]]) -> List[Run]:
    """(start, end, start scores, end scores) per pair from ONNX Runtime on the prepared model
    with `weights` swapped in (the other initializers keep their values)."""
    from ..models.ort_session import ort_session
    from ..samples.bidaf.preprocess import encode_text, feeds_for_prepared
    from .onnx_model import with_initializers
    session = ort_session(with_initializers(model_path, weights))
    names = list(BIDAF_OUTPUTS) + list(BIDAF_SCORE_OUTPUTS)
    runs: List[Run] = []
    for context, query in pairs:
        ctx = encode_text(context, prepared.maps, "context")
        qry = encode_text(query, prepared.maps, "query")
        start, end, s, e = session.run(names, feeds_for_prepared(ctx, qry, prepared.input_names))
        runs.append((int(np.ravel(start)[0]), int(np.ravel(end)[0]),
                     np.asarray(s, np.float64).reshape(-1), np.asarray(e, np.float64).reshape(-1)))
    return runs


def ort_outputs(model_path: Path, prepared: Any, weights: Mapping[str, np.ndarray],
                pairs: Sequence[Tuple[str, str]]) -> BidafOutputs:
    """BidafOutputs from ONNX Runtime for `weights` (the reference of every BiDAF check)."""
    return bidaf_outputs(ort_runs(model_path, prepared, weights, pairs))


def trt_outputs(runner: Any, prepared: Any, pairs: Sequence[Tuple[str, str]]) -> BidafOutputs:
    """BidafOutputs from a TensorRT runner of the prepared model."""
    from ..samples.bidaf.flow import answer_and_scores_with
    runs = []
    for context, query in pairs:
        start, end, _, s, e = answer_and_scores_with(runner, prepared, context, query)
        runs.append((start, end, s, e))
    return bidaf_outputs(runs)


def build_plain_engine(case: "BidafCase", prepared: Any, weights: Mapping[str, np.ndarray], tmp_dir: Path,
                       logger: Any, plan_cache: Any, gpu_name: str) -> Any:
    """The prepared model with `weights` built WITHOUT REFIT in the case's precision (plan cached)."""
    from ..fileio import atomic_write_bytes
    from ..samples.bidaf.flow import build_bidaf_engine
    from .onnx_model import with_initializers
    path = atomic_write_bytes(Path(tmp_dir) / "plain-build.onnx", with_initializers(prepared.model_path, weights))
    handle, _ = build_bidaf_engine(prepared, case.build_options(refit=False), logger, plan_cache, gpu_name,
                                   model_path=path)
    return handle


def _bidaf_engine_class() -> Any:
    from ..samples.bidaf.flow import BidafTrt

    class BidafCaseEngine(BidafTrt, CaseEngine):
        """The sample's BidafTrt (answer(), prepared, refitter) plus the generic view."""

        def __init__(self, case: "BidafCase", prepared: Any, handle: Any, built: Any, session: Any,
                     logger: Any, tmp_dir: Path, plan_cache: Any = None) -> None:
            BidafTrt.__init__(self, prepared, handle, session.synchronize, fp16=case.precision == "fp16")
            self.case = case
            self.plan_cache = plan_cache
            self.session = session
            self.logger = logger
            self.tmp_dir = tmp_dir
            self.build_seconds = built.seconds if built else None
            self.built_result = built
            self.pairs = probe_pairs()
            self.build_weights = {n: a.copy() for n, a in self.initial.items()}
            self.target_weights = target_weights(self.initial)
            self.built_outputs = self.probe()

        def outputs(self, pairs: Optional[Sequence[Tuple[str, str]]] = None) -> BidafOutputs:
            """Spans and scores of the engine as it is now (default: the probe questions)."""
            return trt_outputs(self.runner, self.prepared, self.pairs if pairs is None else pairs)

        def reference_outputs(self, weights: Mapping[str, np.ndarray],
                              pairs: Optional[Sequence[Tuple[str, str]]] = None) -> BidafOutputs:
            """ONNX Runtime's spans and scores with `weights` (the rest: the model's own)."""
            return ort_outputs(self.prepared.model_path, self.prepared, weights,
                               self.pairs if pairs is None else pairs)

        def probe(self) -> np.ndarray:
            return self.outputs().scores

        def probe_with(self, runner: Any) -> np.ndarray:
            return trt_outputs(runner, self.prepared, self.pairs).scores

        def build_plain(self, weights: Mapping[str, np.ndarray]) -> Any:
            return build_plain_engine(self.case, self.prepared, weights, self.tmp_dir, self.logger,
                                      self.plan_cache, self.session.gpu_name)

        def latency_feeds(self) -> Dict[str, np.ndarray]:
            from ..samples.bidaf.data import SAMPLE_CONTEXT, SAMPLE_QUERY
            from ..samples.bidaf.preprocess import encode_text, feeds_for_prepared
            return feeds_for_prepared(encode_text(SAMPLE_CONTEXT, self.prepared.maps, "context"),
                                      encode_text(SAMPLE_QUERY, self.prepared.maps, "query"),
                                      self.prepared.input_names)

        def onnx_model_path(self) -> Optional[Path]:
            return Path(self.prepared.model_path)

        def further_comparisons(self, weights: Mapping[str, np.ndarray]) -> Dict[str, Tuple[Comparison, str]]:
            span_tol = self.case.span_tolerance
            spans = compare_outputs(self.outputs().spans, self.reference_outputs(weights).spans, span_tol)
            return {"spans": (spans, span_tol.describe())}

        def reference(self, weights: Mapping[str, np.ndarray]) -> np.ndarray:
            return self.reference_outputs(weights).scores

    return BidafCaseEngine


class BidafCase(RefitCase):
    description = "BiDAF through graph surgery and the ONNX parser; refit of the sample's two weights"
    plan_cached = True
    warms_plain_alone = True  # the target weights come from the model's initializers, not the engine

    def __init__(self, key: str, precision: str = "fp32") -> None:
        if key not in ("standin", "original"):
            raise ValueError(f"BiDAF model key {key!r}: 'standin' or 'original'")
        self.key = key
        self.precision = precision
        self.name = variant_name(f"bidaf-{key}", precision)
        # probe() is the score matrix; the spans are the further comparison (compare_bidaf: FP32)
        self.tolerance, self.span_tolerance = PRECISION_TOLERANCES[precision]
        if precision == "fp16":
            self.slow_build = ("BiDAF's FP16 engines take minutes to build on TensorRT 8.5 (results/README.md), "
                               "more than the default tier's budget")
        self._prepared: Dict[Path, Any] = {}
        self._original: Optional[Path] = None  # the original model model_path() found (for inputs_sha256)

    def build_options(self, refit: bool = True) -> Any:
        from ..trt.engine import BuildOptions
        return BuildOptions(refit=refit, precision=self.precision)

    def __getstate__(self) -> Dict[str, Any]:
        """Pickled (to a prewarm worker) without the prepared models of this process."""
        state = dict(self.__dict__)
        state["_prepared"] = {}
        return state

    def warm_plain(self, resources: CaseResources, session: Any, logger: Any, plan_cache: Any) -> None:
        from ..onnx_prep.generic import onnx_float_initializers
        prepared = self.prepare(resources)
        weights = target_weights(onnx_float_initializers(prepared.model_path))
        build_plain_engine(self, prepared, weights, resources.tmp_dir, logger, plan_cache, session.gpu_name).close()

    def model_path(self, resources: CaseResources) -> Optional[Path]:
        if self.key == "standin":
            from ..samples.bidaf.flow import default_model_path
            return default_model_path()
        from ..samples.bidaf.original import find_original_bidaf
        found = find_original_bidaf(resources.data_dir) if resources.data_dir else None
        if found:
            self._original = Path(found)
        return Path(found) if found else None

    def inputs_sha256(self) -> str:
        """sha256 of the model file: the committed stand-in (verified against its manifest), or
        the user's original bidaf-9.onnx (the one model_path() found, else the one in
        $REFIT_DATA_DIR)."""
        from ..models.assets import asset_sha256, file_sha256
        if self.key == "standin":
            from ..samples.bidaf import STANDIN_ONNX
            return asset_sha256(STANDIN_ONNX)
        path = self._original
        if path is None:
            from ..config import resolve_data_dir
            from ..errors import DataError
            from ..samples.bidaf.original import find_original_bidaf
            try:
                found = find_original_bidaf(resolve_data_dir(None))
            except DataError:
                found = None
            if not found:
                raise DataError(f"case {self.name}: the original bidaf-9 model was not found, so there are no "
                                "inputs to hash")
            path = Path(found)
        return file_sha256(path)

    def unavailable_reason(self, resources: CaseResources) -> Optional[str]:
        if self.model_path(resources) is not None:
            return None
        from ..samples.bidaf.original import original_bidaf_candidates
        looked = [str(p) for p in original_bidaf_candidates(resources.data_dir)] if resources.data_dir else []
        return f"original bidaf-9 model not found (looked at: {', '.join(looked) or 'no data dir given'})"

    def prepare(self, resources: CaseResources) -> Any:
        """The model after graph surgery (maps, refit weights, modified ONNX), made once per
        temp dir (that is, once per pytest session)."""
        from ..samples.bidaf.prepare import prepare_bidaf
        if resources.tmp_dir not in self._prepared:
            out = resources.tmp_dir / f"prepared-{self.key}"
            self._prepared[resources.tmp_dir] = prepare_bidaf(self.model_path(resources), out)
        return self._prepared[resources.tmp_dir]

    def open(self, resources: CaseResources, session: Any, logger: Any, plan_cache: Any,
             prepared: Any = None) -> CaseEngine:
        from ..samples.bidaf.flow import build_bidaf_engine
        prepared = prepared if prepared is not None else self.prepare(resources)
        handle, built = build_bidaf_engine(prepared, self.build_options(), logger, plan_cache, session.gpu_name)
        session.on_close(handle.close)
        tmp = resources.tmp_dir / f"engine-{self.name}"
        tmp.mkdir(parents=True, exist_ok=True)
        return _bidaf_engine_class()(self, prepared, handle, built, session, logger, tmp, plan_cache)
