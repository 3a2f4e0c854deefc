"""A refit wrapper that validates first, refuses incomplete refits, and loses nothing on failure.

TensorRT's Refitter returns False rather than raising, and after a failed
refit_cuda_engine "a subset of weights may have been refitted". This wrapper therefore
(1) validates every weight in Python before TensorRT sees it, (2) refuses to refit while
TensorRT reports missing weights, (3) waits for in-flight work on the engine's CUDA context,
and (4) on a TensorRT failure refits the previous values back, so the engine keeps running
with the weights it had.

Timing: `last_trt_seconds` is the raw refit_cuda_engine call of the last refit (what
TensorRT costs), `last_total_seconds` the whole refit_with (validation, set calls, the
missing-weights check, synchronisation, bookkeeping): the benchmarks report their ratio.
"""
from __future__ import annotations

import dataclasses

import time
from typing import AbstractSet, Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Union

import numpy as np

from ..errors import RefitError, WeightValidationError
from ..trt import compat
from ..trt.engine import EngineHandle
from ..trt.recorders import make_error_recorder
from .coverage import Initializer, classify
from .validation import WeightSpec, incomplete_groups, validate_weight

#: NaN/Inf allowed in every weight (True), in none (False), or in the weights named
NonfiniteAllowance = Union[bool, AbstractSet[str]]


def _allows(allow_nonfinite: NonfiniteAllowance, name: str) -> bool:
    return allow_nonfinite is True or (not isinstance(allow_nonfinite, bool) and name in allow_nonfinite)


def blocked_weights(names: Sequence[str], settable: Set[str],
                    missing_after: Callable[[List[str]], List[str]]) -> Dict[str, List[str]]:
    """Which of `names` TensorRT refits only together with a weight no name in `settable`
    reaches, and those weights: name -> sorted partners (pure; `missing_after(names)` is what
    a fresh refitter's get_missing_weights() says once `names` are set).

    One probe with every name set tells whether any is blocked at all; only then each name is
    probed alone, with the settable partners TensorRT asks for added until it asks for no
    more (a kernel, its bias, a weight shared with another layer)."""
    if all(m in settable for m in missing_after(list(names))):
        return {}
    blocked: Dict[str, List[str]] = {}
    for name in names:
        setting = [name]
        while True:
            missing = missing_after(setting)
            unsettable = sorted({m for m in missing if m not in settable})
            if unsettable:
                blocked[name] = unsettable
                break
            more = [m for m in missing if m not in setting]
            if not more:
                break
            setting += more
    return blocked


def blocked_reason(partners: Sequence[str]) -> str:
    """Why a weight TensorRT lists under its ONNX name is still not refitted by name, and what to do."""
    shown = ", ".join(repr(p) for p in partners[:4]) + (" ..." if len(partners) > 4 else "")
    return (f"is listed by TensorRT, but TensorRT refits it only together with {shown}, weight(s) TensorRT made "
            f"itself when it folded constants into the layer (a BatchNorm folded into the convolution, say), "
            f"which no ONNX name reaches on TensorRT {_version_hint()}; the other weights are refitted without it. "
            f"To refit it: export without folding (torch.onnx.export(..., do_constant_folding=False), BatchNorm "
            f"kept as its own node), or on TensorRT 10 refit from the ONNX file with OnnxParserRefitter")


def _version_hint() -> str:
    try:
        return compat.trt_version_string()
    except Exception:  # TensorRT absent (CPU tests): the sentence still reads
        return "8.x"


class EngineRefitter:
    """Refits one engine. `current` holds the values the engine runs with now (at first the
    weights it was built with); they are what a failed refit is rolled back to.

    `specs=None` derives the specs from `current`: every weight TensorRT lists as refittable
    under a name that `current` has (an ONNX model's initializers, say) gets the shape and
    dtype of that array; the other arrays are dropped, and so are the ones TensorRT refits only
    together with weights of its own no name reaches (`blocked`, found by `blocked_weights` on
    throwaway refitters): they go to `unreachable` with the reason, and the rest stay refittable.
    """

    def __init__(self, handle: EngineHandle, specs: Optional[Mapping[str, WeightSpec]],
                 current: Mapping[str, np.ndarray], synchronize: Optional[Any] = None,
                 fp16: bool = False) -> None:
        if not handle.refittable:
            raise RefitError("this engine was built without BuilderFlag.REFIT, so its weights cannot be "
                             "changed; rebuild it with refit enabled (BuildOptions(refit=True))")
        trt = compat.import_tensorrt()
        self.handle = handle
        self._synchronize = synchronize
        #: names of `current` TensorRT does not list -> why (folded/fused) and how to keep them refittable
        self.unreachable: Dict[str, str] = {}
        #: weights TensorRT lists by name but refits only together with weights of its own that no
        #: ONNX name reaches (BatchNorm folded into `tmp_weight_N` on 8.x) -> those partners
        self.blocked: Dict[str, List[str]] = {}
        # what TensorRT lists, and the partner probes, on refitters of their own, each gone before the next
        probe = trt.Refitter(handle.engine, handle.logger)
        self.trt_names: List[Optional[str]] = list(probe.get_all_weights())
        prototypes = compat.weight_prototypes(probe, self.trt_names)
        del probe
        if specs is None:
            named = [n for n in self.trt_names if n is not None and n in current]
            inits = [Initializer(n, str(np.asarray(a).dtype), tuple(int(d) for d in np.shape(a)))
                     for n, a in current.items()]
            self.unreachable = classify(inits, self.trt_names, prototypes).explanations()

            def missing_after(names: List[str]) -> List[str]:
                r = trt.Refitter(handle.engine, handle.logger)
                arrays = [np.ascontiguousarray(current[n]) for n in names]  # alive while r holds them
                try:
                    for n, a in zip(names, arrays):
                        compat.set_named_weights(r, n, a)
                    return [str(m) for m in r.get_missing_weights()]
                finally:
                    del r, arrays

            self.blocked = blocked_weights(named, set(named), missing_after)
            for name, partners in self.blocked.items():
                self.unreachable[name] = blocked_reason(partners)
            named = [n for n in named if n not in self.blocked]
            specs = {n: WeightSpec(n, tuple(int(d) for d in np.shape(current[n])), str(np.asarray(current[n]).dtype),
                                   fp16=fp16)
                     for n in named}
            current = {n: current[n] for n in named}
        elif fp16:  # the caller's specs, checked against FP16's range too
            specs = {n: dataclasses.replace(s, fp16=True) for n, s in specs.items()}
        self.refitter = trt.Refitter(handle.engine, handle.logger)
        self.recorder = make_error_recorder()
        self.refitter.error_recorder = self.recorder
        self.specs: Dict[str, WeightSpec] = dict(specs)
        self.current: Dict[str, np.ndarray] = {k: np.array(v, copy=True) for k, v in current.items()}
        self._pending: Dict[str, np.ndarray] = {}
        self.refit_count = 0
        self.last_refit_seconds: Optional[float] = None  # refit(): the TensorRT call (+ stream wait)
        self.last_trt_seconds: Optional[float] = None  # the raw refit_cuda_engine call alone
        self.last_total_seconds: Optional[float] = None  # refit_with, end to end
        handle.adopt(self)

    # ---- what TensorRT knows -----------------------------------------------------------
    def trt_weight_names(self) -> List[Optional[str]]:
        """Every refittable weight as TensorRT lists it (None or "(Unnamed Layer* N) ..." for
        weights nobody named, depending on the version)."""
        return list(self.trt_names)

    def missing(self) -> List[str]:
        """Weights TensorRT still needs before it will refit (its get_missing_weights)."""
        return [str(n) for n in self.refitter.get_missing_weights()]

    # ---- setting -----------------------------------------------------------------------
    # allow_nonfinite: True lets NaN/Inf through in every weight; a set of names, in those weights only
    def set(self, name: str, array: Any, allow_nonfinite: NonfiniteAllowance = False,
            allow_fp16_range: bool = False) -> None:
        """Validate one weight and hand it to TensorRT (nothing is refitted yet)."""
        arr = validate_weight(self.specs, name, array, _allows(allow_nonfinite, name), allow_fp16_range,
                              self.unreachable)
        self._push(name, arr)
        self._pending[name] = arr

    def set_many(self, weights: Mapping[str, Any], allow_nonfinite: NonfiniteAllowance = False,
                 allow_fp16_range: bool = False) -> None:
        """Validate all, then set all: one bad weight means none is handed over."""
        checked = {n: validate_weight(self.specs, n, a, _allows(allow_nonfinite, n), allow_fp16_range,
                                      self.unreachable)
                   for n, a in weights.items()}
        for name, arr in checked.items():
            self._push(name, arr)
            self._pending[name] = arr

    def _push(self, name: str, arr: np.ndarray) -> None:
        spec = self.specs[name]
        self.recorder.clear()
        mark = self.handle.logger.mark()
        if spec.layer is not None:
            ok = compat.set_layer_weights(self.refitter, spec.layer, str(spec.role), arr)
        else:
            ok = compat.set_named_weights(self.refitter, name, arr)
        if not ok:
            raise RefitError(f"TensorRT refused weight {name!r}", self._trt_messages(mark))

    def _trt_messages(self, mark: int) -> List[str]:
        """What TensorRT said since `mark`: its errors, or, when it reported none, its
        warnings (a refusal TensorRT logs below error level still gets quoted)."""
        logger = self.handle.logger
        said = self.recorder.descriptions() + logger.errors_since(mark)
        if not said:
            kept = list(getattr(logger, "messages", []))
            start = max(0, mark - int(getattr(logger, "_offset", 0)))
            said = [m for s, m in kept[start:] if s == "WARNING"]
        seen: List[str] = []
        for s in said:
            if s not in seen:
                seen.append(s)
        return seen

    # ---- refitting ---------------------------------------------------------------------
    def refit(self, stream: Any = None) -> float:
        """Refit the engine with what was set; returns the seconds the refit took.

        `stream` (a pycuda Stream, TensorRT >= 10.0): refit with refit_cuda_engine_async on
        it and wait for it."""
        pending = dict(self._pending)
        groups = incomplete_groups(self.specs, pending)
        if groups:
            left = sorted(n for names in groups.values() for n in names)
            raise RefitError(
                f"refit refused: {', '.join(repr(n) for n in left)} not supplied; weights of one layer are "
                f"refitted together ({', '.join(sorted(groups))})", missing=left)
        missing = self.missing()
        if missing:
            raise RefitError(f"refit refused: TensorRT still needs {', '.join(repr(m) for m in missing)}",
                             missing=missing)
        self.synchronize()  # no inference may be reading the weights while they change
        self.recorder.clear()
        mark = self.handle.logger.mark()
        start = time.perf_counter()
        ok = compat.refit_engine(self.refitter, None if stream is None else stream.handle)
        trt_seconds = time.perf_counter() - start
        if ok and stream is not None:
            stream.synchronize()
        seconds = time.perf_counter() - start
        if not ok:
            messages = self._trt_messages(mark)
            self._pending.clear()
            self._roll_back(pending)
            raise RefitError(f"TensorRT's refit_cuda_engine failed for a refit of "
                             f"{', '.join(repr(n) for n in sorted(pending))}; the previous weights were restored",
                             messages, missing=self.missing())
        self._commit(pending)
        self._pending.clear()
        self.refit_count += 1
        self.last_refit_seconds = seconds
        self.last_trt_seconds = trt_seconds
        return seconds

    def _commit(self, refitted: Mapping[str, np.ndarray]) -> None:
        """The refitted values become `current`: one copy of each array the caller owns (the
        caller may change it after the refit), none of a value taken from `current` itself
        (fill_missing, rollback)."""
        for name, arr in refitted.items():
            if self.current.get(name) is not arr:
                self.current[name] = np.array(arr, copy=True)

    def refit_with(self, weights: Mapping[str, Any], allow_nonfinite: NonfiniteAllowance = False,
                   fill_missing: bool = False, allow_fp16_range: bool = False) -> float:
        """Validate, set and refit in one call; a bad weight leaves the engine untouched.

        `fill_missing`: TensorRT may need weights besides the ones changed (a kernel and the
        bias it was fused with, a weight shared by two layers); supply their current values.
        """
        start = time.perf_counter()
        try:
            self.set_many(weights, allow_nonfinite, allow_fp16_range)
            if fill_missing:
                # current values were validated when they were refitted: hand them over as they are
                for name in self.missing():
                    if name in self.current and name in self.specs and name not in self._pending:
                        self._push(name, self.current[name])
                        self._pending[name] = self.current[name]
        except (WeightValidationError, RefitError):
            self.discard()
            raise
        try:
            seconds = self.refit()
        except RefitError:
            self.discard()
            raise
        self.last_total_seconds = time.perf_counter() - start
        return seconds

    def synchronize(self) -> None:
        """Wait for in-flight work on the engine's CUDA context (no-op without a synchronizer)."""
        if self._synchronize is not None:
            self._synchronize()

    def discard(self) -> None:
        """Forget weights set but not refitted, so the next refit starts clean: TensorRT
        unsets them where it can (compat.unset_named_weights), otherwise the current values
        are handed back, also for what TensorRT now reports missing because of them."""
        names = list(self._pending)
        self._pending.clear()
        for name in names + [m for m in self.missing() if m not in names]:
            spec = self.specs.get(name)
            if spec is not None and spec.layer is None and compat.unset_named_weights(self.refitter, name):
                continue
            if name in self.current:
                self._push(name, self.current[name])

    def _roll_back(self, attempted: Mapping[str, np.ndarray]) -> None:
        """After refit_cuda_engine returned False ("a subset of weights may have been
        refitted"): refit the current values of every weight attempted, and of every weight
        TensorRT still misses (it refuses the restoring refit otherwise), so the engine holds
        exactly `current` again and nothing attempted stays set for the next refit."""
        names = [n for n in attempted if n in self.current]
        names += [m for m in self.missing() if m in self.current and m not in names]
        for name in names:
            self._push(name, self.current[name])
        if names and not compat.refit_engine(self.refitter):
            raise RefitError("refit failed and restoring the previous weights failed too: the engine may "
                             "hold a mix of old and new weights; rebuild it", self.recorder.descriptions())

    def close(self) -> None:
        self._pending.clear()
        self.refitter = None
