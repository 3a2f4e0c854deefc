"""The BiDAF cases: the bundled stand-in ("standin") and, where the user has it, the
original bidaf-9 model ("original"), through graph surgery and the ONNX parser.

Build weights: the model's own initializers (every one TensorRT lists as refittable by
name). Target weights: the sample's two weights (`Parameter576_B_0`, `W_0`) with seeded
multiplicative noise, so answers change without turning degenerate. Reference: ONNX Runtime
on the prepared model with the same initializers. Probes: the first 40 held-out questions;
one row (start, end) each, compared as exact spans.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..interfaces import BIDAF_OUTPUTS, BIDAF_SAMPLE_WEIGHTS
from .base import CaseEngine, CaseResources, OutputTolerance, RefitCase

PROBE_QUESTIONS = 40
TARGET_SEED = 20261123
TARGET_NOISE = 4.0  # w * (1 + TARGET_NOISE * N(0, 1)): changes 20 of the 40 stand-in answers (ONNX Runtime)


def probe_pairs() -> List[Tuple[str, str]]:
    from ..data.reading_comprehension import heldout_examples
    return [(ex.context, ex.query) for ex in heldout_examples()[:PROBE_QUESTIONS]]


def target_weights(initial: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The sample's weights with seeded multiplicative noise (deterministic)."""
    rng = np.random.default_rng(TARGET_SEED)
    out = {}
    for name in BIDAF_SAMPLE_WEIGHTS:
        w = np.asarray(initial[name], np.float32)
        out[name] = np.ascontiguousarray(w * (1.0 + TARGET_NOISE * rng.standard_normal(w.shape)), dtype=np.float32)
    return out


def ort_spans(model_path: Path, prepared: Any, weights: Mapping[str, np.ndarray],
              pairs: List[Tuple[str, str]]) -> np.ndarray:
    """(start, end) per pair from ONNX Runtime on the prepared model with `weights` swapped in."""
    from ..models.ort_session import ort_session
    from ..text.preprocess import encode_text, feeds_for_prepared
    from .onnx_model import with_initializers
    session = ort_session(with_initializers(model_path, weights))
    rows = []
    for context, query in pairs:
        ctx = encode_text(context, prepared.maps, "context")
        qry = encode_text(query, prepared.maps, "query")
        outs = session.run(list(BIDAF_OUTPUTS), feeds_for_prepared(ctx, qry, prepared.input_names))
        rows.append([int(np.ravel(o)[0]) for o in outs])
    return np.asarray(rows, dtype=np.float64)


def _bidaf_engine_class() -> Any:
    from ..flows.bidaf import BidafTrt, answer_with

    class BidafCaseEngine(BidafTrt, CaseEngine):
        """The sample's BidafTrt (answer(), prepared, refitter) plus the generic view."""

        def __init__(self, case: "BidafCase", prepared: Any, handle: Any, built: Any, session: Any,
                     logger: Any, tmp_dir: Path) -> None:
            BidafTrt.__init__(self, prepared, handle, session.synchronize)
            self.case = case
            self.session = session
            self.logger = logger
            self.tmp_dir = tmp_dir
            self.build_seconds = built.seconds if built else None
            self.built_result = built
            self.pairs = probe_pairs()
            self.build_weights = {n: a.copy() for n, a in self.initial.items()}
            self.target_weights = target_weights(self.initial)
            self.built_outputs = self.probe()

        def probe(self) -> np.ndarray:
            return np.asarray([list(self.answer(c, q)[:2]) for c, q in self.pairs], dtype=np.float64)

        def reference(self, weights: Mapping[str, np.ndarray]) -> np.ndarray:
            return ort_spans(self.prepared.model_path, self.prepared, weights, self.pairs)

        def fresh_probe(self, weights: Mapping[str, np.ndarray]) -> np.ndarray:
            from ..fileio import atomic_write_bytes
            from ..flows.bidaf import bidaf_profile
            from ..trt.engine import BuildOptions, EngineHandle, build_plan_from_onnx
            from ..trt.runner import TrtRunner
            from .onnx_model import with_initializers
            path = atomic_write_bytes(self.tmp_dir / "fresh-build.onnx",
                                      with_initializers(self.prepared.model_path, weights))
            result = build_plan_from_onnx(path, BuildOptions(), [bidaf_profile(self.prepared.input_names)],
                                          self.logger)
            handle = EngineHandle(result.plan, self.logger)
            try:
                runner = TrtRunner(handle)
                return np.asarray([list(answer_with(runner, self.prepared, c, q)[:2]) for c, q in self.pairs],
                                  dtype=np.float64)
            finally:
                handle.close()

    return BidafCaseEngine


class BidafCase(RefitCase):
    description = "BiDAF through graph surgery and the ONNX parser; refit of the sample's two weights"
    tolerance = OutputTolerance(exact_rows=True, min_agreement=0.95)

    def __init__(self, key: str) -> None:
        if key not in ("standin", "original"):
            raise ValueError(f"BiDAF model key {key!r}: 'standin' or 'original'")
        self.key = key
        self.name = f"bidaf-{key}"
        self._prepared: Dict[Path, Any] = {}

    def model_path(self, resources: CaseResources) -> Optional[Path]:
        if self.key == "standin":
            from ..flows.bidaf import default_model_path
            return default_model_path()
        from ..onnx_prep.bidaf import find_original_bidaf
        found = find_original_bidaf(resources.data_dir) if resources.data_dir else None
        return Path(found) if found else None

    def unavailable_reason(self, resources: CaseResources) -> Optional[str]:
        if self.model_path(resources) is not None:
            return None
        from ..onnx_prep.bidaf import original_bidaf_candidates
        looked = [str(p) for p in original_bidaf_candidates(resources.data_dir)] if resources.data_dir else []
        return f"original bidaf-9 model not found (looked at: {', '.join(looked) or 'no data dir given'})"

    def prepare(self, resources: CaseResources) -> Any:
        """The model after graph surgery (maps, refit weights, modified ONNX), made once per
        temp dir (that is, once per pytest session)."""
        from ..onnx_prep.bidaf import prepare_bidaf
        if resources.tmp_dir not in self._prepared:
            out = resources.tmp_dir / f"prepared-{self.key}"
            self._prepared[resources.tmp_dir] = prepare_bidaf(self.model_path(resources), out)
        return self._prepared[resources.tmp_dir]

    def open(self, resources: CaseResources, session: Any, logger: Any, plan_cache: Any,
             prepared: Any = None) -> CaseEngine:
        from ..flows.bidaf import build_bidaf_engine
        from ..trt.engine import BuildOptions
        prepared = prepared if prepared is not None else self.prepare(resources)
        handle, built = build_bidaf_engine(prepared, BuildOptions(), logger, plan_cache, session.gpu_name)
        session.on_close(handle.close)
        tmp = resources.tmp_dir / f"engine-{self.key}"
        tmp.mkdir(parents=True, exist_ok=True)
        return _bidaf_engine_class()(self, prepared, handle, built, session, logger, tmp)
