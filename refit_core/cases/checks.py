"""The generic refit checks, written once, with two front ends: the GPU tier's
tests/cases/test_refit_checks_gpu.py (one test per check, parametrized over the case
registry) and `python -m refit_core check MODEL.onnx` (refit_core/check/).

Each check takes a `CaseEngine` (cases.base), puts the weights it needs in place first (so
order does not matter), and returns a `CheckOutcome`: passed/failed/not applicable, one line
that says what was compared and how it came out, and the fields the results record keeps
(`ResultsRecorder.record_case_check(case, name, **record)`). The front ends print, record
and assert; neither computes a verdict of its own.

Weights the checks refit are `engine.target_weights` (the case's choice; for ONNX models
every weight TensorRT refits by its ONNX name without a TensorRT-only partner). The engine
the refit is compared with, "a fresh build", is the model built WITHOUT REFIT with the same
weights (`engine.plain_probe()`): what a user gets by rebuilding, the engine the refit tax
is measured against.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from .base import NO_OP_MARGIN, Comparison, OutputTolerance, compare_outputs


@dataclass
class CheckOutcome:
    """One check's result. `ok` None: the check does not apply to this engine (`line` says why)."""

    name: str
    ok: Optional[bool]
    line: str
    record: Dict[str, Any] = field(default_factory=dict)
    #: more (name, fields) entries for the record (BiDAF's arg-max spans, say)
    more_records: List[Any] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "skipped" if self.ok is None else ("passed" if self.ok else "failed")


def compare_line(cmp: Comparison, tol: OutputTolerance) -> str:
    return (f"{cmp.rows_agreeing}/{cmp.rows} rows within tolerance, max|diff| {cmp.max_abs:.3g}, "
            f"max rel {cmp.max_rel:.3g} ({tol.describe()})")


def _weights(n: int) -> str:
    return f"{n} weight" + ("" if n == 1 else "s")


def non_finite_note(got: Any, ref: Any = None) -> str:
    """"" when every output is finite, else how many are NaN or infinite (and, given the
    reference, whether it has any): a model made undefined and a refit gone wrong read apart."""
    got = np.asarray(got, dtype=np.float64)
    bad = int(np.count_nonzero(~np.isfinite(got)))
    if not bad:
        return ""
    where = "" if ref is None or not np.isfinite(np.asarray(ref, dtype=np.float64)).all() else \
        " where the reference has none"
    return f"; {bad} of {got.size} outputs are NaN or infinite{where}"


def reference(engine: Any, which: str) -> np.ndarray:
    """The reference outputs for the engine's "build" or "target" weights, computed once per engine."""
    memo = engine.__dict__.setdefault("_check_references", {})
    if which not in memo:
        memo[which] = engine.reference(engine.build_weights if which == "build" else engine.target_weights)
    return memo[which]


def restore(engine: Any) -> np.ndarray:
    """Refit the build weights back and return the probe outputs."""
    engine.refit_to(engine.all_build_weights())
    return engine.probe()


# --------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------
def refittable_weights(engine: Any) -> CheckOutcome:
    """The weights the checks refit are ones TensorRT lists under that name (or the case
    addresses by layer), and there is at least one; what is left out is said, with why."""
    refitter = engine.refitter
    named = {str(n) for n in refitter.trt_weight_names() if n is not None}
    by_layer = {s.name for s in refitter.specs.values() if s.layer is not None}
    specs = set(refitter.specs)
    unlisted = sorted(specs - by_layer - named)
    outside = sorted(set(engine.target_weights) - specs)
    blocked = dict(getattr(refitter, "blocked", {}) or {})
    left_out = (f"; {len(blocked)} listed by name but refitted by TensorRT only together with weights of its own, "
                f"left out (e.g. {sorted(blocked)[0]!r} with {', '.join(map(repr, blocked[sorted(blocked)[0]][:2]))})"
                if blocked else "")
    record = {"refitted": len(engine.target_weights), "blocked_by_trt_only_partner": sorted(blocked)}
    if unlisted or outside:
        return CheckOutcome("weights_to_refit", False,
                            f"weights the checks would refit that TensorRT does not list: {unlisted or outside}", record)
    if not engine.target_weights:
        if blocked:
            why = (f"every weight TensorRT lists under an ONNX name ({len(blocked)}) is refitted only together with "
                   f"weights TensorRT made itself, e.g. {sorted(blocked)[0]!r}: "
                   f"{refitter.unreachable.get(sorted(blocked)[0], '')}")
        else:
            why = ("no initializer is refittable under its ONNX name (see the coverage map: folded, fused, or "
                   "weights kept in Constant nodes; export without constant folding)")
        return CheckOutcome("weights_to_refit", False, f"nothing to refit by name: {why}", record)
    return CheckOutcome("weights_to_refit", True,
                        f"{_weights(len(engine.target_weights))} refittable by name and checked{left_out}", record)


def built_vs_reference(engine: Any) -> CheckOutcome:
    """The engine as built agrees with the reference for its build weights."""
    tol = engine.case.tolerance
    cmp = compare_outputs(engine.built_outputs, reference(engine, "build"), tol)
    return CheckOutcome("built_vs_reference", cmp.ok, "engine as built vs the reference: " + compare_line(cmp, tol),
                        dict(tolerance=tol.describe(), **cmp.summary()))


def perturbation_changes_reference(engine: Any) -> CheckOutcome:
    """The target weights move the reference beyond NO_OP_MARGIN x the tolerance, so a refit
    that did nothing cannot pass the checks below."""
    tol = engine.case.tolerance
    no_op = compare_outputs(reference(engine, "build"), reference(engine, "target"), tol.scaled(NO_OP_MARGIN))
    return CheckOutcome("perturbation_changes_reference", not no_op.ok,
                        f"the target weights move the reference by max|diff| {no_op.max_abs:.3g} "
                        f"({no_op.rows - no_op.rows_agreeing}/{no_op.rows} rows beyond {NO_OP_MARGIN:g} x the tolerance)"
                        + ("" if not no_op.ok else "; a refit could not be told from no refit" + _zero_fed(engine)),
                        dict(margin=NO_OP_MARGIN, **no_op.summary()))


def _zero_fed(engine: Any) -> str:
    """Where the probe fed integer inputs zeros (onnx_prep.ort_agreement.seeded_inputs), say so:
    outputs that reach the weights only through other values of them cannot show a refit."""
    names = sorted(n for n, a in (getattr(engine, "feeds", None) or {}).items() if np.asarray(a).dtype.kind in "iu")
    if not names:
        return ""
    return (f" (the probe feeds zeros to the integer input{'s' if len(names) > 1 else ''} "
            f"{', '.join(map(repr, names))}; if the outputs reach the weights only through other values, "
            "no check here can show a refit)")


def refit_to_target_matches_reference(engine: Any) -> CheckOutcome:
    """Refit to the target weights: the engine agrees with the reference for them and no
    longer with the build reference (plus the case's further comparisons)."""
    tol = engine.case.tolerance
    before = compare_outputs(restore(engine), reference(engine, "build"), tol)
    if not before.ok:
        return CheckOutcome("refit_vs_reference", False, "with its build weights refitted back the engine is off "
                            "its reference: " + compare_line(before, tol), dict(tolerance=tol.describe(), **before.summary()))
    engine.refit_to(engine.target_weights)
    got = engine.probe()
    target_ref = reference(engine, "target")
    cmp = compare_outputs(got, target_ref, tol)
    stale = compare_outputs(got, reference(engine, "build"), tol)
    ok = cmp.ok and not stale.ok
    line = (f"refit with the target weights ({_weights(len(engine.target_weights))}) vs the reference: "
            + compare_line(cmp, tol) + non_finite_note(got, target_ref)
            + ("" if not stale.ok else "; but it still matches the build reference"))
    if not cmp.ok and not stale.ok:
        line += weight_not_reached(engine, got, cmp)
    more = []
    for name, (further, described) in engine.further_comparisons(engine.target_weights).items():
        more.append((f"refit_vs_reference_{name}", dict(tolerance=described, **further.summary())))
        line += f"; {name}: {further}"
        ok = ok and further.ok
    return CheckOutcome("refit_vs_reference", ok, line, dict(tolerance=tol.describe(), **cmp.summary()), more)


#: how long a failed refit_vs_reference may spend looking for the weight its refit did not reach
SUSPECT_SECONDS = 30.0


def weight_not_reached(engine: Any, got: np.ndarray, miss: Comparison) -> str:
    """After a refit to the target that missed the reference (`miss`) without staying at the
    build: the one target weight which, left at its build value in the reference, brings the
    reference nearest the engine's outputs `got`, when that explains at least three quarters
    of the miss; "" otherwise. The likeliest weight whose refit did not reach the engine (a
    constant a build fused into a kernel, say). References are recomputed per weight, for at
    most SUSPECT_SECONDS; the line says how many were tried when not all."""
    names = sorted(engine.target_weights)
    if len(names) < 2:
        return ""
    tol, start, best, tried = engine.case.tolerance, time.monotonic(), None, 0
    for name in names:
        if time.monotonic() - start > SUSPECT_SECONDS:
            break
        try:
            ref = engine.reference({**engine.target_weights, name: engine.build_weights[name]})
        except Exception:  # noqa: BLE001 - a reference that cannot be computed names no suspect
            continue
        tried += 1
        cmp = compare_outputs(got, ref, tol)
        if best is None or cmp.max_abs < best[1].max_abs:
            best = (name, cmp)
    if best is None or not best[1].max_abs <= miss.max_abs / 4:
        return ""
    name, cmp = best
    some = "" if tried == len(names) else f"; {tried} of {len(names)} weights tried in {SUSPECT_SECONDS:g} s"
    return (f"; the reference with only {name!r} at its build value is within max|diff| {cmp.max_abs:.3g} of "
            f"the engine's outputs, nearer than with any other weight left so{some}: its refit likely did not reach the engine")


def refit_back_restores_built_outputs(engine: Any) -> CheckOutcome:
    """Refitting the build weights back gives the built engine's outputs: bit for bit in FP32
    and TF32. In FP16 TensorRT may convert a weight to FP16 differently when refitting than
    when building (measured: the BiDAF stand-in's LSTM on 8.5.3.1), so there the outputs must
    agree within the tolerance and the restore must be deterministic."""
    case = engine.case
    engine.refit_to(engine.target_weights)
    changed = engine.probe()
    back = restore(engine)
    engine.refit_to(engine.target_weights)
    again = restore(engine)
    differ = back != engine.built_outputs
    cmp = compare_outputs(back, engine.built_outputs, case.tolerance)
    record = dict(values=int(differ.size), values_differing=int(differ.sum()), bit_exact=bool(not differ.any()),
                  **cmp.summary())
    if np.array_equal(changed, engine.built_outputs):
        return CheckOutcome("refit_back_vs_built", False, "the target refit changed no output", record)
    if not np.array_equal(again, back):
        return CheckOutcome("refit_back_vs_built", False, "refitting the build weights back twice gave different "
                            "outputs", record)
    if not differ.any():
        return CheckOutcome("refit_back_vs_built", True, "after the target refit, refitting the build weights back "
                            "gives the built engine's outputs bit for bit", record)
    ok = case.precision == "fp16" and cmp.ok
    return CheckOutcome("refit_back_vs_built", ok,
                        f"after refitting the build weights back, {int(differ.sum())} of {differ.size} outputs differ "
                        f"from the built engine's (max |diff| {cmp.max_abs:.3g}; "
                        + ("FP16: within the tolerance and deterministic, TensorRT rounded a weight differently "
                           "than at build)" if ok else "same weights!)"), record)


def refit_twice_is_bit_identical(engine: Any) -> CheckOutcome:
    engine.refit_to(engine.target_weights)
    once = np.asarray(engine.probe())
    engine.refit_to(engine.target_weights)
    twice = np.asarray(engine.probe())
    same = once.shape == twice.shape and once.tobytes() == twice.tobytes()  # bits: a NaN equals itself
    return CheckOutcome("refit_twice_bit_identical", same, "refitting the same weights twice gives "
                        + ("bit-identical outputs" if same else "different outputs") + non_finite_note(twice))


def refit_equals_fresh_build(engine: Any) -> CheckOutcome:
    """The refitted engine agrees with the model built afresh WITHOUT REFIT with the same
    weights, and that fresh build agrees with the reference (else the comparison proves nothing)."""
    tol = engine.case.tolerance
    engine.refit_to(engine.target_weights)
    got = engine.probe()
    fresh = engine.plain_probe()
    cmp = compare_outputs(got, fresh, tol)
    fresh_vs_ref = compare_outputs(fresh, reference(engine, "target"), tol)
    line = "refitted engine vs a fresh build without REFIT with the same weights: " + compare_line(cmp, tol)
    if not fresh_vs_ref.ok:
        line += "; the fresh build itself is off the reference: " + compare_line(fresh_vs_ref, tol)
    return CheckOutcome("refit_vs_fresh_build", cmp.ok and fresh_vs_ref.ok, line,
                        dict(tolerance=tol.describe(), fresh_build="without REFIT", **cmp.summary()))


#: The checks `check` runs in order before the builds (the fresh-build one comes after them).
REFIT_CHECKS = (built_vs_reference, perturbation_changes_reference, refit_back_restores_built_outputs,
                refit_to_target_matches_reference, refit_twice_is_bit_identical)
