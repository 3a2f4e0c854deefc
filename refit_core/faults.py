"""Faults injected at the TensorRT boundary, and the pytest plugin that injects one.

A verification suite is worth what it catches. Each fault below models a refit bug that a new
TensorRT release or a change to the wrapper could bring; `python -m refit_core selfcheck`
(refit_core/selfcheck.py) runs the GPU tier once per fault and expects every run to fail. A
fault that survives is a hole in the suite: sharpen the tests, never the fault.

Faults patch only `refit_core.trt.compat` functions and `EngineRefitter` methods (the place
where refit_core meets TensorRT), never a test. Load the plugin with
`-p refit_core.faults --refit-fault NAME`; it patches in pytest_configure, before any engine
exists, and writes what happened (first failing test, how often the fault bit) to
`--refit-fault-report PATH`. `--refit-fault none` patches nothing (the self-check's baseline)
but orders the tests the same way.

Nothing here imports TensorRT: the patches wrap the compat functions, which import it when
called.
"""
from __future__ import annotations

import os

import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import numpy as np
import pytest

FAULT_OPTION = "--refit-fault"
#: Set by the fault plugin for the processes the tests start: a test that runs TensorRT in a
#: subprocess calls apply_from_environment() there, so the fault reaches it too.
FAULT_ENV = "REFIT_INJECTED_FAULT"
REPORT_OPTION = "--refit-fault-report"
NO_FAULT = "none"

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


# --------------------------------------------------------------------------------------
# Test order: cheap, precise checks first, so that -x stops a killed fault within seconds
# --------------------------------------------------------------------------------------
#: (rank, what it matches) in order; the first match wins, unmatched tests get CHEAP_DEFAULT.
FIRST_FILES = ("tests/refit/test_refit_teeth_gpu.py", "tests/refit/test_rollback_gpu.py")
CHEAP_DEFAULT = 2


def rank_of(nodeid: str) -> int:
    """0 the fault-targeted checks (their BiDAF parametrizations at 4; the wrong-count child
    here too: it alone sees a rollback that refit_cuda_engine refused, measured at 220 s when
    ranked with the other subprocess tests), 1 tiny-mlp cases, 2 other MNIST/refit checks,
    3 property tests, 4 BiDAF, 5 tests that start subprocesses, 6 benchmarks."""
    path = nodeid.split("::", 1)[0].replace("\\", "/")
    low = nodeid.lower()
    if "/benchmarks/" in f"/{path}":
        return 6
    if any(path.endswith(f) for f in FIRST_FILES):
        return 4 if "bidaf" in low else 0
    if "test_cli_" in low or "subprocess" in low or "raw_tensorrt" in low:
        return 5
    if "bidaf" in low:
        return 4
    if "properties" in path:
        return 3
    if "tiny-mlp" in low:
        return 1
    return CHEAP_DEFAULT


def order_items(items: List[Any]) -> List[Any]:
    """Stable sort by rank_of: within a rank the order pytest chose (fixture grouping) stays."""
    return sorted(items, key=lambda item: rank_of(item.nodeid))


# --------------------------------------------------------------------------------------
# The pytest plugin
# --------------------------------------------------------------------------------------
class FaultRun:
    """One pytest run under one fault (or none): patches, ordering, the report file."""

    def __init__(self, name: str, report_path: Optional[str]) -> None:
        self.name = name
        self.fault = None if name == NO_FAULT else get_fault(name)
        self.report_path = report_path
        self.patcher = Patcher()
        self.started = time.time()
        self.first_failure: Optional[str] = None
        self.first_failure_message: Optional[str] = None
        self.last_started: Optional[str] = None
        self.counts = {"passed": 0, "failed": 0, "skipped": 0}

    def apply(self) -> None:
        if self.fault is not None:
            self.fault.patch(self.patcher)

    def report(self, finished: bool) -> Dict[str, Any]:
        return {"fault": self.name, "kind": self.fault.kind if self.fault else None,
                "first_failure": self.first_failure, "first_failure_message": self.first_failure_message,
                "last_started": self.last_started, "counts": dict(self.counts), "bites": self.patcher.bites,
                "seconds": round(time.time() - self.started, 3), "finished": finished}

    def write(self, finished: bool) -> None:
        if self.report_path:
            from .fileio import atomic_write_json
            atomic_write_json(self.report_path, self.report(finished), indent=2)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session: Any, config: Any, items: List[Any]) -> None:
        items[:] = order_items(items)

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.last_started = nodeid
        self.write(False)  # a run that crashes still says where

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or report.failed or report.skipped:
            if report.failed:
                self.counts["failed"] += 1
                if self.first_failure is None:
                    self.first_failure = report.nodeid
                    crash = getattr(report.longrepr, "reprcrash", None)
                    text = getattr(crash, "message", None) or str(report.longrepr)
                    self.first_failure_message = text.strip().splitlines()[0][:300] if text.strip() else ""
            elif report.skipped:
                self.counts["skipped"] += 1
            elif report.when == "call":
                self.counts["passed"] += 1

    def pytest_sessionfinish(self, session: Any, exitstatus: Any) -> None:
        self.write(True)

    def pytest_unconfigure(self, config: Any) -> None:
        self.patcher.undo()
        os.environ.pop(FAULT_ENV, None)


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("refit_core faults", "refit_core fault injection (python -m refit_core selfcheck)")
    group.addoption(FAULT_OPTION, default=None, metavar="NAME",
                    help=f"inject this fault at the TensorRT boundary ({NO_FAULT!r}: none, tests ordered "
                         f"cheap first); one of: {', '.join(fault_names())}")
    group.addoption(REPORT_OPTION, default=None, metavar="PATH",
                    help="write the run's first failing test and the fault's bite count here (JSON)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: Any) -> None:
    name = config.getoption(FAULT_OPTION)
    if name is None:
        return
    if name != NO_FAULT and name not in FAULTS_BY_NAME:
        raise pytest.UsageError(f"{FAULT_OPTION}={name!r}: no such fault; known: {NO_FAULT}, "
                                f"{', '.join(fault_names())}")
    run = FaultRun(name, config.getoption(REPORT_OPTION))
    run.apply()
    config.pluginmanager.register(run, "refit_core-fault-run")
    os.environ[FAULT_ENV] = name  # subprocesses of the tests inject it too (apply_from_environment)


def apply_from_environment() -> Optional[Patcher]:
    """In a subprocess a test started: inject the fault the parent pytest run was given (its
    name is in $REFIT_INJECTED_FAULT); returns the Patcher (None when there is no fault)."""
    name = os.environ.get(FAULT_ENV)
    if not name or name == NO_FAULT:
        return None
    patcher = Patcher()
    get_fault(name).patch(patcher)
    return patcher


def describe(faults: Iterable[Fault] = FAULTS) -> str:
    """One line per fault: name, class, what it does."""
    rows = [(f.name, f.kind, f.description) for f in faults]
    w1, w2 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    return "\n".join(f"{a:<{w1}}  {b:<{w2}}  {c}" for a, b, c in rows)
