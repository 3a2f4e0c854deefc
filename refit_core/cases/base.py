"""The case interface: what the generic refit checks need to know about one model.

A `RefitCase` says how to get a REFIT engine of a model, which weights it is built with and
which different weights the checks refit it to, the probe inputs, a reference that computes
the outputs for any weights (numpy float64 for LeNet, ONNX Runtime for ONNX models), and
how two sets of outputs compare (`OutputTolerance`). The generic checks in
`tests/cases/` are written once against `CaseEngine` and parametrized over the registry
(`refit_core.cases.registry`); adding a model is adding one case module and registering it.

Everything here imports without TensorRT: cases load TensorRT, pycuda, onnx and onnxruntime
only inside `open()`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

Weights = Dict[str, np.ndarray]


@dataclass(frozen=True)
class OutputTolerance:
    """How a case's probe outputs (rows x columns, float64) are compared.

    Float outputs (`exact_rows=False`): row i agrees when
    max|got_i - ref_i| <= atol + rtol * max|ref_i| (each row's own scale, so one large row
    cannot hide another row's error). Integer outputs such as arg-max spans
    (`exact_rows=True`): a row agrees when it is equal; `min_agreement` of the rows must
    agree (near-ties in pointer logits may flip under another summation order).
    """

    atol: float = 0.0
    rtol: float = 0.0
    exact_rows: bool = False
    min_agreement: float = 1.0

    def scaled(self, k: float) -> "OutputTolerance":
        """A tolerance k times as loose. Used as a margin: when the reference outputs for two
        sets of weights differ beyond `tol.scaled(2)`, an engine within `tol` of one of them
        cannot be within `tol` of the other (float rows: the triangle inequality per row, up to
        the two rows' own scales;
        exact rows: with k = 2, more than twice the allowed share of rows differ)."""
        if k < 1:
            raise ValueError(f"a margin scales a tolerance by k >= 1, not {k}")
        if self.exact_rows:
            return OutputTolerance(exact_rows=True, min_agreement=max(0.0, 1.0 - k * (1.0 - self.min_agreement)))
        return OutputTolerance(atol=k * self.atol, rtol=k * self.rtol)

    def describe(self) -> str:
        if self.exact_rows:
            return f">= {self.min_agreement:.0%} of rows identical"
        return f"per row max|diff| <= {self.atol:g} + {self.rtol:g} * max|ref row|"


#: how far (in tolerances) the reference for new weights must be from the reference for the
#: weights the engine holds, so that a refit that did nothing fails the comparison
NO_OP_MARGIN = 2.0


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing probe outputs; `ok` says whether it is within tolerance."""

    ok: bool
    rows: int
    rows_agreeing: int
    max_abs: float
    max_rel: float

    def summary(self) -> Dict[str, Any]:
        """For a results record: non-finite differences (NaN outputs) are written as text."""
        def num(x: float) -> Any:
            return x if np.isfinite(x) else str(x)
        return {"rows": self.rows, "rows_agreeing": self.rows_agreeing, "max_abs": num(self.max_abs),
                "max_rel": num(self.max_rel)}


def compare_outputs(got: np.ndarray, ref: np.ndarray, tol: OutputTolerance) -> Comparison:
    """Compare two rows x columns output arrays under `tol` (shapes must match)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape or got.ndim != 2:
        raise ValueError(f"outputs to compare must be 2-D and of one shape: {got.shape} vs {ref.shape}")
    with np.errstate(invalid="ignore"):
        diff = np.abs(got - ref)
    diff[got == ref] = 0.0  # equal values agree, infinities of one sign (masked scores) included
    diff[np.isnan(diff)] = np.inf  # a NaN never agrees, nor does inf against anything else
    row_abs = diff.max(axis=1) if diff.size else np.zeros(len(got))
    # a row's scale is its largest finite |value|: an infinite entry must not widen the tolerance
    finite_ref = np.where(np.isfinite(ref), np.abs(ref), 0.0)
    row_scale = finite_ref.max(axis=1) if ref.size else np.zeros(len(ref))
    row_rel = row_abs / np.maximum(row_scale, 1e-30)
    if tol.exact_rows:
        agree = row_abs == 0
        ok = bool(agree.mean() >= tol.min_agreement) if len(agree) else True
    else:
        agree = row_abs <= tol.atol + tol.rtol * row_scale
        ok = bool(agree.all())
    finite_rel = row_rel[np.isfinite(row_rel)]
    return Comparison(ok=ok, rows=int(len(agree)), rows_agreeing=int(agree.sum()),
                      max_abs=float(row_abs.max()) if len(row_abs) else 0.0,
                      max_rel=float(finite_rel.max()) if len(finite_rel) else (0.0 if not len(row_rel) else float("inf")))


@dataclass
class CaseResources:
    """What cases may need from the session: the data directory, a cache root, a temp dir."""

    data_dir: Optional[Path]
    cache_root: Path
    tmp_dir: Path


class CaseEngine(ABC):
    """A case's REFIT engine on the GPU, with a runner and a refitter (`EngineRefitter`).

    `build_weights` are the values the engine was built with, `target_weights` the different
    values the checks refit it to (both keyed by refit name; only the names that differ
    need to be in `target_weights`). `probe()` runs the probe inputs and returns a
    rows x columns float64 array; `reference(weights)` computes the same from the
    weights alone; `fresh_probe(weights)` builds a new engine with `weights` (no plan
    cache) and probes it.

    `plain_runner()` is the same model built WITHOUT REFIT, with the target weights, in the
    case's precision (built once, plan-cached where the case caches plans): the fresh build
    the refitted engine must equal, and the engine the refit tax is measured against.
    `latency_feeds()` are the inputs inference latency is timed with (one batch).
    """

    case: "RefitCase"
    handle: Any
    refitter: Any
    build_seconds: Optional[float] = None
    build_weights: Weights
    target_weights: Weights
    built_outputs: np.ndarray  # probe() right after the build, before any refit

    @abstractmethod
    def probe(self) -> np.ndarray: ...

    @abstractmethod
    def reference(self, weights: Mapping[str, np.ndarray]) -> np.ndarray: ...

    def fresh_probe(self, weights: Mapping[str, np.ndarray]) -> np.ndarray:
        """Probe outputs of a new REFIT engine built with `weights` (the property tests' twin)."""
        raise NotImplementedError(f"{type(self).__name__} does not build fresh REFIT engines")

    _plain: Any = None
    _nonfinite: Optional[frozenset] = None  # build weights holding NaN or Inf (refit_to)

    def probe_with(self, runner: Any) -> np.ndarray:
        """The probe outputs (rows x columns, float64) of any runner of this model."""
        raise NotImplementedError(f"{type(self).__name__} does not say how to probe a runner")

    def build_plain(self, weights: Mapping[str, np.ndarray]) -> Any:
        """An EngineHandle of the model built without REFIT with `weights`, in the case's precision."""
        raise NotImplementedError(f"{type(self).__name__} cannot build the model without REFIT")

    def latency_feeds(self) -> Dict[str, np.ndarray]:
        raise NotImplementedError(f"{type(self).__name__} has no inputs to time inference with")

    def onnx_model_path(self) -> Optional[Path]:
        """The ONNX file the engine was parsed from (None: built with the network API)."""
        return None

    def coverage(self) -> Any:
        """The weight-coverage map of the engine (refit.coverage.Coverage) against the ONNX file it
        was parsed from; None for engines built with the network API (no initializers to map)."""
        path = self.onnx_model_path()
        if path is None:
            return None
        from ..refit.coverage import coverage_of_model
        from ..trt import compat
        names = self.refitter.trt_weight_names()
        return coverage_of_model(path, names, compat.weight_prototypes(self.refitter.refitter, names))

    def plain_runner(self) -> Any:
        """A runner of the engine built without REFIT with the target weights (built once)."""
        if self._plain is None:
            from ..trt.runner import TrtRunner
            full = dict(self.build_weights)
            full.update(self.target_weights)
            handle = self.build_plain(full)
            self.session.on_close(handle.close)
            self._plain = TrtRunner(handle)
            self._plain_handle = handle
        return self._plain

    def plain_probe(self) -> np.ndarray:
        return self.probe_with(self.plain_runner())

    def weight_bytes(self, weights: Mapping[str, np.ndarray]) -> int:
        """Bytes TensorRT copies for `weights` (FP32 host arrays, what the refit hands over)."""
        return int(sum(np.asarray(w).nbytes for w in weights.values()))

    def further_comparisons(self, weights: Mapping[str, np.ndarray]) -> Dict[str, Tuple[Comparison, str]]:
        """Comparisons beyond `probe()`, of the engine as it is now with the reference for
        `weights`: name -> (comparison, tolerance described). None by default; BiDAF adds
        its arg-max spans (probe() is its scores)."""
        return {}

    def refit_to(self, weights: Mapping[str, np.ndarray]) -> float:
        """Refit to `weights`; weights TensorRT refits together with them keep their values. A
        weight the engine was built with NaN or Inf in (a -inf a Max starts from) may carry them:
        the refit path refuses non-finite values in every other weight."""
        if self._nonfinite is None:
            self._nonfinite = frozenset(n for n, w in self.build_weights.items()
                                        if np.asarray(w).dtype.kind == "f" and not np.isfinite(w).all())
        return self.refitter.refit_with(weights, allow_nonfinite=self._nonfinite, fill_missing=True)

    def all_build_weights(self) -> Weights:
        """The build values of every weight in `target_weights` (to refit back)."""
        return {n: self.build_weights[n] for n in self.target_weights}

    def close(self) -> None:
        if self._plain is not None:
            self._plain_handle.close()
            self._plain = None
        self.handle.close()


def variant_name(base: str, precision: str) -> str:
    """A case's name in one precision: the bare name for FP32 (records of earlier suites keep
    their keys), `<name>-tf32` and `<name>-fp16` for the others."""
    return base if precision == "fp32" else f"{base}-{precision}"


class RefitCase(ABC):
    """One registered model. `name` is the test id; `marks` are pytest mark names to add;
    `precision` is the build precision of this variant (trt.engine.PRECISIONS)."""

    name: str = ""
    precision: str = "fp32"
    description: str = ""
    tolerance: OutputTolerance = OutputTolerance()
    marks: Tuple[str, ...] = ()
    #: its engines come from the plan cache: a prewarm (cases.prewarm) may build them ahead in another process
    plan_cached: bool = False
    #: warm_plain() can build the no-REFIT engine without the REFIT one (a prewarm runs the two at once)
    warms_plain_alone: bool = False
    #: why this case's builds are too slow for the default GPU tier ("" when they are not); such a
    #: case runs only under --refit-profile full (the default profile deselects it, or it skips saying this)
    slow_build: str = ""

    def unavailable_reason(self, resources: CaseResources) -> Optional[str]:
        """None when the case can run, else why not (the tests skip with it)."""
        return None

    @abstractmethod
    def open(self, resources: CaseResources, session: Any, logger: Any, plan_cache: Any) -> CaseEngine:
        """Build (or load) the engine with the build weights and return it ready to refit."""

    def inputs_sha256(self) -> str:
        """sha256 (64 hex digits) of what this case runs on: its weights and model file, the same
        for every precision variant. A results record carries it per case, so that the gate
        compares only like with like. Every case class provides it (cheaply: cached)."""
        raise NotImplementedError(f"{type(self).__name__} does not say what it runs on (inputs_sha256)")

    def warm_plain(self, resources: CaseResources, session: Any, logger: Any, plan_cache: Any) -> None:
        """Put the no-REFIT engine that `CaseEngine.plain_runner()` uses into the plan cache,
        without building the REFIT engine (only where `warms_plain_alone`)."""
        raise NotImplementedError(f"{type(self).__name__} needs its REFIT engine to know the plain build's weights")

    def __str__(self) -> str:
        return self.name
