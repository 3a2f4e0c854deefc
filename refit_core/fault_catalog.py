"""The faults injected at the TensorRT boundary: what each one patches, and their registry (FAULTS).

A verification suite is worth what it catches. Each fault below models a refit bug that a new
TensorRT release or a change to the wrapper could bring; `python -m refit_core selfcheck`
(refit_core/selfcheck.py) runs the GPU tier once per fault and expects every run to fail. A
fault that survives is a hole in the suite: sharpen the tests, never the fault.

Faults patch only `refit_core.trt.compat` functions and `EngineRefitter` methods (the place
where refit_core meets TensorRT), never a test. The pytest plugin that injects one is
refit_core/faults.py.

Nothing here imports TensorRT: the patches wrap the compat functions, which import it when
called.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np

#: The fault classes; every one has at least one fault in FAULTS.
CLASSES: Tuple[str, ...] = ("refit-does-nothing", "first-refit-only", "stale-weights", "permuted-or-scaled",
                            "validation-off", "rollback-off", "missing-view-wrong")


class Patcher:
    """Sets attributes and undoes them; counts `bites` (calls where the fault changed what
    reached TensorRT), so a fault that was never exercised shows as such in the kill matrix."""

    def __init__(self) -> None:
        self._undo: List[Tuple[Any, str, Any]] = []
        self.bites = 0

    def set(self, owner: Any, attr: str, value: Any) -> None:
        self._undo.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, value)

    def bite(self) -> None:
        self.bites += 1

    def undo(self) -> None:
        while self._undo:
            owner, attr, value = self._undo.pop()
            setattr(owner, attr, value)


@dataclass(frozen=True)
class Fault:
    name: str
    kind: str
    description: str
    patch: Callable[[Patcher], None]


# --------------------------------------------------------------------------------------
# What the faults patch
# --------------------------------------------------------------------------------------
def _compat() -> Any:
    from .trt import compat
    return compat


def _refitter_class() -> Any:
    from .refit.refitter import EngineRefitter
    return EngineRefitter


def _is_bias_like(refitter: Any, name: str) -> bool:
    """A bias by role, by name, or by shape (1-D: biases of every case, BiDAF's included)."""
    spec = refitter.specs.get(name)
    if spec is None:
        return False
    return str(spec.role).upper() == "BIAS" or "bias" in name.lower() or len(spec.shape) == 1


# ---- refit reports success but changes nothing ------------------------------------------
def _noop_refit(p: Patcher) -> None:
    compat = _compat()

    def refit_engine(refitter: Any, stream_handle: Optional[int] = None) -> bool:
        p.bite()
        return True
    p.set(compat, "refit_engine", refit_engine)


def _noop_set(p: Patcher) -> None:
    compat = _compat()
    real_named = compat.set_named_weights

    def set_named_weights(refitter: Any, name: str, array: Any, on_device_ptr: Optional[int] = None,
                          count: Optional[int] = None) -> bool:
        if on_device_ptr is not None:
            return real_named(refitter, name, array, on_device_ptr, count)
        p.bite()
        return True

    def set_layer_weights(refitter: Any, layer: str, role: str, array: Any) -> bool:
        p.bite()
        return True
    p.set(compat, "set_named_weights", set_named_weights)
    p.set(compat, "set_layer_weights", set_layer_weights)


# ---- only the first refit of an engine takes effect -------------------------------------
def _first_refit_only(p: Patcher) -> None:
    compat = _compat()
    real = compat.refit_engine
    refitted = set()  # id() of TensorRT refitters that refitted once (one refitter per engine)

    def refit_engine(refitter: Any, stream_handle: Optional[int] = None) -> bool:
        if id(refitter) in refitted:
            p.bite()
            return True
        ok = real(refitter, stream_handle)
        if ok:
            refitted.add(id(refitter))
        return ok
    p.set(compat, "refit_engine", refit_engine)


# ---- some weights silently keep their old values ----------------------------------------
def _stale(choose: Callable[[Any, Dict[str, np.ndarray]], List[str]]) -> Callable[[Patcher], None]:
    """Just before TensorRT refits, the chosen names get the engine's current value handed
    over instead of the new one; the wrapper still believes the new values went in."""
    def patch(p: Patcher) -> None:
        cls = _refitter_class()
        real_refit, real_push = cls.refit, cls._push

        def refit(self: Any, stream: Any = None) -> float:
            for name in choose(self, dict(self._pending)):
                p.bite()
                real_push(self, name, self.current[name])
            return real_refit(self, stream)
        p.set(cls, "refit", refit)
    return patch


def _differs(refitter: Any, name: str, value: np.ndarray) -> bool:
    old = refitter.current.get(name)
    return old is not None and old is not value and not np.array_equal(old, value)


def _all_biases(refitter: Any, pending: Dict[str, np.ndarray]) -> List[str]:
    return [n for n, v in pending.items() if _is_bias_like(refitter, n) and _differs(refitter, n, v)]


def _last_bias(refitter: Any, pending: Dict[str, np.ndarray]) -> List[str]:
    return _all_biases(refitter, pending)[-1:]


# ---- values reach the engine permuted or scaled -----------------------------------------
def _transformed(transform: Callable[[np.ndarray], np.ndarray]) -> Callable[[Patcher], None]:
    """Every host array handed to TensorRT is replaced by transform(array) (same shape and
    dtype). The replacement is kept alive until the next set of that name: TensorRT reads
    host weights when it refits, not when they are set."""
    def patch(p: Patcher) -> None:
        compat = _compat()
        real_named, real_layer = compat.set_named_weights, compat.set_layer_weights
        alive: Dict[Tuple[int, str], np.ndarray] = {}

        def swap(refitter: Any, key: str, array: Any) -> Any:
            arr = np.asarray(array)
            if arr.size < 2 or arr.dtype.kind != "f":
                return array
            out = np.ascontiguousarray(transform(arr).astype(arr.dtype, copy=False).reshape(arr.shape))
            if not np.array_equal(out, arr):
                p.bite()
            alive[(id(refitter), key)] = out
            return out

        def set_named_weights(refitter: Any, name: str, array: Any, on_device_ptr: Optional[int] = None,
                              count: Optional[int] = None) -> bool:
            if on_device_ptr is not None:
                return real_named(refitter, name, array, on_device_ptr, count)
            return real_named(refitter, name, swap(refitter, name, array))

        def set_layer_weights(refitter: Any, layer: str, role: str, array: Any) -> bool:
            return real_layer(refitter, layer, role, swap(refitter, f"{layer}:{role}", array))
        p.set(compat, "set_named_weights", set_named_weights)
        p.set(compat, "set_layer_weights", set_layer_weights)
    return patch


def reversed_flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1)[::-1].copy()


def rolled_flat(a: np.ndarray) -> np.ndarray:
    return np.roll(a.reshape(-1), 1)


def scaled(factor: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda a: a.astype(np.float64) * factor


# ---- validation switched off ------------------------------------------------------------
def _validation_off(p: Patcher) -> None:
    from .refit import refitter as refitter_module, validation

    def validate_weight(specs: Mapping[str, Any], name: Any, array: Any, *_flags: Any, **_options: Any) -> Any:
        """Only converts: to the spec's dtype (when the name is known) and C order."""
        p.bite()
        spec = specs.get(name) if isinstance(name, str) else None
        return np.ascontiguousarray(np.asarray(array, dtype=None if spec is None else np.dtype(spec.dtype)))
    p.set(refitter_module, "validate_weight", validate_weight)
    p.set(validation, "validate_weight", validate_weight)


# ---- rollback switched off --------------------------------------------------------------
def _roll_back_noop(p: Patcher) -> None:
    cls = _refitter_class()

    def _roll_back(self: Any, attempted: Mapping[str, np.ndarray]) -> None:
        p.bite()
    p.set(cls, "_roll_back", _roll_back)


def _discard_noop(p: Patcher) -> None:
    """discard forgets what was set but hands nothing back: TensorRT keeps the refused
    refit's earlier weights set, and the next refit takes them along."""
    cls = _refitter_class()

    def discard(self: Any) -> None:
        if self._pending:
            p.bite()
        self._pending.clear()
    p.set(cls, "discard", discard)


def _rollback_off(p: Patcher) -> None:
    _roll_back_noop(p)
    _discard_noop(p)


# ---- the refitter's view of missing weights is wrong ------------------------------------
def _missing(edit: Callable[[List[str]], List[str]]) -> Callable[[Patcher], None]:
    def patch(p: Patcher) -> None:
        cls = _refitter_class()
        real = cls.missing

        def missing(self: Any) -> List[str]:
            names = real(self)
            out = edit(list(names))
            if out != names:
                p.bite()
            return out
        p.set(cls, "missing", missing)
    return patch


FAULTS: Tuple[Fault, ...] = (
    Fault("noop-refit", "refit-does-nothing",
          "compat.refit_engine returns True without calling refit_cuda_engine", _noop_refit),
    Fault("noop-set", "refit-does-nothing",
          "compat.set_named_weights / set_layer_weights return True without handing anything to TensorRT",
          _noop_set),
    Fault("first-refit-only", "first-refit-only",
          "the first refit_cuda_engine of each refitter runs; later ones return True and do nothing",
          _first_refit_only),
    Fault("stale-all-biases", "stale-weights",
          "every bias-like weight (role BIAS, 'bias' in the name, or 1-D) keeps the engine's current value",
          _stale(_all_biases)),
    Fault("stale-last-bias", "stale-weights",
          "the last bias-like weight a refit sets (with a new value) keeps the engine's current value",
          _stale(_last_bias)),
    Fault("permute-reversed", "permuted-or-scaled",
          "every weight reaches TensorRT with its flat element order reversed", _transformed(reversed_flat)),
    Fault("permute-rolled", "permuted-or-scaled",
          "every weight reaches TensorRT with its flat elements rolled by one", _transformed(rolled_flat)),
    Fault("scale-1.01", "permuted-or-scaled", "every weight reaches TensorRT scaled by 1.01",
          _transformed(scaled(1.01))),
    Fault("scale-1.001", "permuted-or-scaled", "every weight reaches TensorRT scaled by 1.001",
          _transformed(scaled(1.001))),
    Fault("validation-off", "validation-off",
          "validate_weight only converts (dtype of the spec, C order): no name, shape, count, "
          "finiteness or ownership checks", _validation_off),
    Fault("rollback-off", "rollback-off",
          "EngineRefitter._roll_back does nothing and discard forgets without handing the current values back",
          _rollback_off),
    Fault("roll-back-noop", "rollback-off",
          "EngineRefitter._roll_back does nothing (after refit_cuda_engine returned False)", _roll_back_noop),
    Fault("discard-noop", "rollback-off",
          "discard forgets weights set but not refitted without handing the current values back",
          _discard_noop),
    Fault("missing-empty", "missing-view-wrong", "EngineRefitter.missing() returns []", _missing(lambda n: [])),
    Fault("missing-drops-one", "missing-view-wrong",
          "EngineRefitter.missing() drops the last name TensorRT reports", _missing(lambda n: n[:-1])),
)
FAULTS_BY_NAME: Dict[str, Fault] = {f.name: f for f in FAULTS}


def fault_names() -> List[str]:
    return [f.name for f in FAULTS]


def get_fault(name: str) -> Fault:
    try:
        return FAULTS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"no fault named {name!r}; known: {', '.join(fault_names())}") from None



def describe(faults: Iterable[Fault] = FAULTS) -> str:
    """One line per fault: name, class, what it does."""
    rows = [(f.name, f.kind, f.description) for f in faults]
    w1, w2 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{w1}}  {b:<{w2}}  {c}" for a, b, c in rows)
