"""The engine_refit_onnx_bidaf flow: prepare the ONNX model, build a REFIT engine with the
ONNX parser (plan cached on disk), refit fake weights (wrong answer), then the real ones."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np

from ...fileio import sha256_file
from . import BIDAF_CHARS_PER_WORD as CHARS, BIDAF_OUTPUTS, BIDAF_SAMPLE_WEIGHTS as SAMPLE_WEIGHTS
from . import BIDAF_SCORE_OUTPUTS
from ...onnx_prep.generic import onnx_float_initializers
from ...trt.engine import (BuildOptions, BuildResult, EngineHandle, build_plan_from_onnx, load_or_build,
                           plan_key_parts)
from ...trt.plan_cache import PlanCache

# Optimization profile (tokens): min 1, the sample's shapes as opt, and these maxima
CONTEXT_LENGTHS = (1, 10, 64)
QUERY_LENGTHS = (1, 6, 32)


def bidaf_profile(input_names: Mapping[str, str]) -> Dict[str, Tuple[Tuple[int, ...], ...]]:
    """One optimization profile over context and query lengths, keyed by the prepared inputs."""
    prof = {}
    for side, (lo, opt, hi) in (("context", CONTEXT_LENGTHS), ("query", QUERY_LENGTHS)):
        prof[input_names[f"{side}_word"]] = ((lo, 1), (opt, 1), (hi, 1))
        prof[input_names[f"{side}_char"]] = ((lo, 1, 1, CHARS), (opt, 1, 1, CHARS), (hi, 1, 1, CHARS))
    return prof


def build_bidaf_engine(prepared: Any, options: BuildOptions, logger: Any, cache: Optional[PlanCache],
                       gpu_name: str, progress: Callable[[str], None] = print, model_path: Optional[Path] = None
                       ) -> Tuple[EngineHandle, Optional[BuildResult]]:
    """The prepared model's engine (`model_path`: the same graph with other initializers)."""
    path = Path(model_path) if model_path is not None else Path(prepared.model_path)
    profile = bidaf_profile(prepared.input_names)
    key = plan_key_parts("bidaf", options, gpu_name, onnx_sha256=sha256_file(path),
                         profile={k: [list(s) for s in v] for k, v in sorted(profile.items())})
    return load_or_build(cache, key, lambda: build_plan_from_onnx(path, options, [profile], logger),
                         logger, progress)


class BidafTrt:
    """A BiDAF engine with a runner and a refitter over every ONNX-named refittable weight.

    TensorRT also lists refittable weights that are not ONNX initializers (`tmp_weight_N`,
    `/Constant_output_0`, unnamed ones); only names that are float initializers of the
    prepared model get a spec, so users refit by the names they see in the model.
    """

    def __init__(self, prepared: Any, handle: EngineHandle, synchronize: Optional[Callable[[], None]],
                 fp16: bool = False) -> None:
        """`fp16`: the engine was built with FP16 allowed (weights FP16 cannot hold are refused)."""
        from ...refit.refitter import EngineRefitter
        from ...trt.runner import TrtRunner
        self.prepared = prepared
        self.handle = handle
        self.runner = TrtRunner(handle)
        # specs derived from the initializers TensorRT lists as refittable by name
        self.refitter = EngineRefitter(handle, None, onnx_float_initializers(prepared.model_path), synchronize,
                                       fp16=fp16)
        self.trt_weight_names_raw = self.refitter.trt_weight_names()
        self.specs = dict(self.refitter.specs)
        self.initial = {n: a.copy() for n, a in self.refitter.current.items()}

    def answer(self, context: str, query: str) -> Tuple[int, int, str]:
        return answer_with(self.runner, self.prepared, context, query)

    def answer_and_scores(self, context: str, query: str) -> Tuple[int, int, str, np.ndarray, np.ndarray]:
        return answer_and_scores_with(self.runner, self.prepared, context, query)


def answer_and_scores_with(runner: Any, prepared: Any, context: str, query: str
                           ) -> Tuple[int, int, str, np.ndarray, np.ndarray]:
    """(start, end, answer text, start scores, end scores) from a runner of a prepared BiDAF
    engine; the scores (float64, one per context token) are what start/end are the arg-max of."""
    from .preprocess import encode_text, feeds_for_prepared
    ctx = encode_text(context, prepared.maps, "context")
    qry = encode_text(query, prepared.maps, "query")
    out = runner.infer(feeds_for_prepared(ctx, qry, prepared.input_names))
    missing = [n for n in BIDAF_OUTPUTS + BIDAF_SCORE_OUTPUTS if n not in out]
    if missing:
        raise KeyError(f"the BiDAF engine has no outputs {missing} (it has {sorted(out)}): build it "
                       "from a model prepared by this version (samples.bidaf.prepare adds the score outputs)")
    start, end = (int(np.ravel(out[name])[0]) for name in BIDAF_OUTPUTS)
    start_scores, end_scores = (np.asarray(out[name], np.float64).reshape(-1) for name in BIDAF_SCORE_OUTPUTS)
    return start, end, " ".join(ctx.tokens[start:end + 1]), start_scores, end_scores


def answer_with(runner: Any, prepared: Any, context: str, query: str) -> Tuple[int, int, str]:
    """(start, end, answer text) from a runner of a prepared BiDAF engine."""
    return answer_and_scores_with(runner, prepared, context, query)[:3]


def fake_weights(prepared: Any, names: Tuple[str, ...] = SAMPLE_WEIGHTS) -> Dict[str, np.ndarray]:
    """The sample's fakes: ones in the shape of each real weight."""
    return {n: np.ones(prepared.refit_weights[n].shape, np.float32) for n in names}


def real_weights(prepared: Any, names: Tuple[str, ...] = SAMPLE_WEIGHTS) -> Dict[str, np.ndarray]:
    """The real values, as writable copies the caller owns (the refitter refuses read-only views)."""
    return {n: np.array(prepared.refit_weights[n], dtype=np.float32, copy=True, order="C") for n in names}


def default_model_path() -> Path:
    from .reference import STANDIN_PATH
    return Path(STANDIN_PATH)


def run_bidaf_flow(model_path: Optional[str] = None, context: Optional[str] = None, query: Optional[str] = None,
                   progress: Callable[[str], None] = print) -> bool:
    """The sample end to end, as the CLI runs it; True when the refitted engine answers right."""
    from ...config import cache_dir, plan_cache_dir
    from .data import SAMPLE_ANSWER, SAMPLE_CONTEXT, SAMPLE_QUERY
    from ...trt.cuda import CudaSession
    from ...trt.recorders import make_logger
    path = Path(model_path) if model_path else default_model_path()
    context = context or SAMPLE_CONTEXT
    query = query or SAMPLE_QUERY
    from .prepared import prepare_cached
    prepared = prepare_cached(path, cache_dir())
    session = CudaSession()
    try:
        logger = make_logger()
        handle, _ = build_bidaf_engine(prepared, BuildOptions(), logger, PlanCache(plan_cache_dir()),
                                       session.gpu_name, progress)
        session.on_close(handle.close)
        bidaf = BidafTrt(prepared, handle, session.synchronize)
        if context == SAMPLE_CONTEXT and query == SAMPLE_QUERY:
            expected = SAMPLE_ANSWER
        else:
            from .ort_reference import OrtPreparedBidaf
            expected = OrtPreparedBidaf(prepared).answer(context, query).text
        progress("Refitting engine with fake weights...")
        bidaf.refitter.refit_with(fake_weights(prepared))
        progress("Doing inference...")
        fake = bidaf.answer(context, query)[2]
        progress(f"Answer with fake weights: {fake!r}")
        progress("Refitting engine...")
        bidaf.refitter.refit_with(real_weights(prepared))
        progress("Doing inference...")
        real = bidaf.answer(context, query)[2]
        progress(f"Context: {context}")
        progress(f"Query: {query}")
        progress(f"Answer: {real}")
        ok = real == expected and fake != expected
        progress("Passed" if ok else f"FAILED: expected {expected!r} after refit and something else before")
        return ok
    finally:
        session.close()
