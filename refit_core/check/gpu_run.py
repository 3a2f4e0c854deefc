"""The run of `check` on the GPU: build (or read) the REFIT engine, print its coverage map, run
the shared checks of cases.checks, time refits, a cold rebuild and the refit tax, print the
summary and write the results record. Exit status 0 (all passed) or 1 (a check failed)."""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..fileio import sha256_file
from .build_times import BuildClock
from .plan import EXIT_FAILED, EXIT_OK, CheckUnusable, Plan
from .progress import Step

REFIT_WARMUP = 3
INFER_WARMUP = 10


@dataclass
class Outcome:
    """One named check: passed, failed or skipped, with a line for the summary."""

    name: str
    status: str  # "passed", "failed", "skipped"
    line: str


class Run:
    """Collects the outcomes, lines of the summary and the results record of one check run."""

    def __init__(self, plan: Plan) -> None:
        from ..provenance import now_iso
        from ..reporting.results import ResultsRecorder
        self.plan = plan
        self.outcomes: List[Outcome] = []
        self.facts: List[str] = []
        self.rec = ResultsRecorder(note=f"python -m refit_core check {plan.model.name} ({plan.precision})")
        self.started = now_iso()
        self.provenance: Dict[str, Any] = {}

    def outcome(self, name: str, ok: Optional[bool], line: str) -> bool:
        from ..reporting.record import CHECK_TEST_PREFIX
        status = "skipped" if ok is None else ("passed" if ok else "failed")
        self.outcomes.append(Outcome(name, status, line))
        mark = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[status]
        print(f"  [{mark}] {name}: {line}")
        self.rec.record_test(f"{CHECK_TEST_PREFIX}{self.plan.key}::{name}", status, None if ok else line, cases=[self.plan.key])
        return bool(ok)

    def fact(self, line: str) -> None:
        self.facts.append(line)
        print(f"  {line}")

    @property
    def failed(self) -> List[str]:
        return [o.name for o in self.outcomes if o.status == "failed"]


def _duration(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.3f} ms"


def _weights(n: int) -> str:
    return f"{n} weight" + ("" if n == 1 else "s")


# --------------------------------------------------------------------------------------
# The steps of the run
# --------------------------------------------------------------------------------------
def _builds() -> int:
    from ..trt.engine import builds_in_this_process
    return builds_in_this_process()


def _record_environment(run: Run, session: Any) -> None:
    import numpy as np
    from ..provenance import run_provenance
    from ..trt import compat
    run.rec.record_environment(
        tensorrt_version=compat.trt_version_string(), gpu_name=session.gpu_name,
        compute_capability=session.compute_capability,
        cuda_driver_version=session.driver_version, cuda_runtime_version=session.runtime_version,
        python_version=".".join(map(str, sys.version_info[:3])), numpy_version=np.__version__,
        tactic_sources=compat.tactic_setting())
    run.provenance = run_provenance(run.plan.command_line, "none (check)", run.started, compat.build_info(),
                                    compat.tactic_setting())
    run.rec.record_provenance(**run.provenance)


def _parser_words(plan: Plan, message: str) -> str:
    """The op types of the nodes TensorRT's parser names, and why where known; "" if none."""
    from ..onnx_prep.generic import describe_parser_rejection
    from ..onnx_prep.source import ModelInputError, load_model
    try:
        return describe_parser_rejection(load_model(plan.prepared or plan.model), message)
    except ModelInputError:
        return ""


def _open_engine(plan: Plan, session: Any, logger: Any, cache: Any, tmp: Path) -> Any:
    """The case's REFIT engine; a parser rejection or a failed build is CheckUnusable."""
    from ..cases.base import CaseResources
    from ..config import cache_dir
    from ..trt.engine import OnnxParseError
    try:
        with Step(f"building the {plan.precision.upper()} REFIT engine of {plan.model.name} "
                  "(or reading it from the plan cache)"):
            return plan.case.open(CaseResources(None, cache_dir(), tmp), session, logger, cache)
    except OnnxParseError as exc:
        words = _parser_words(plan, str(exc))
        raise CheckUnusable(f"{exc}; {words + '; ' if words else ''}"
                            "check cannot run on a model TensorRT cannot parse") from None
    except RuntimeError as exc:
        if "TensorRT could not build" in str(exc) or "deserialize" in str(exc):
            raise CheckUnusable(f"{' '.join(str(exc).split())}; check cannot run on {plan.model.name}") from None
        raise


def _run_check(run: Run, engine: Any, fn: Any) -> Any:
    """One shared check (cases.checks): printed, recorded; a refused refit is a failed check."""
    from ..cases.checks import CheckOutcome
    from ..errors import RefitError, WeightValidationError
    try:
        outcome = fn(engine)
    except (WeightValidationError, RefitError) as exc:
        outcome = CheckOutcome(getattr(fn, "__name__", "check"), False, f"a refit was refused: {exc}")
    if outcome.record:
        run.rec.record_case_check(run.plan.key, outcome.name, **outcome.record)
    for name, fields in outcome.more_records:
        run.rec.record_case_check(run.plan.key, name, **fields)
    run.outcome(outcome.name, outcome.ok, outcome.line)
    return outcome


def _not_refittable_example(run: Run, engine: Any) -> None:
    """What asking for a weight that is not refittable by name says (the refitter's reasons)."""
    from ..errors import WeightValidationError
    from ..onnx_prep.generic import onnx_float_initializers
    from ..refit.validation import validate_weight
    reasons = dict(engine.refitter.unreachable)
    if not reasons:
        return
    arrays = onnx_float_initializers(engine.model_path)
    for name in sorted(reasons):
        if name not in arrays:
            continue
        try:
            validate_weight(engine.refitter.specs, name, arrays[name], unreachable=reasons)
            message = "(accepted?)"
        except WeightValidationError as exc:
            message = str(exc)
        run.rec.record_case_check(run.plan.key, "not_refittable_example", weight=name, message=message)
        print(f"  asking to refit {name!r} says: {message}")
        return


def _time_refits(run: Run, engine: Any) -> List[float]:
    samples: List[float] = []
    with Step(f"timing refits ({REFIT_WARMUP} warm-up + {run.plan.rounds})"):
        for i in range(REFIT_WARMUP + run.plan.rounds):
            weights = engine.target_weights if i % 2 else engine.all_build_weights()
            t0 = time.perf_counter()
            engine.refit_to(weights)
            if i >= REFIT_WARMUP:
                samples.append(time.perf_counter() - t0)
    run.rec.record_timing(f"{run.plan.key}.refit", samples)
    run.fact(f"refit ({_weights(len(engine.target_weights))}, validate + set + refit_cuda_engine): median "
             f"{statistics.median(samples) * 1e3:.2f} ms over {len(samples)}")
    return samples


def _level(plan: Plan) -> str:
    return ("TensorRT's default builder optimization level" if plan.optimization_level is None
            else f"builder optimization level {plan.optimization_level}")


def _timed_rebuild(run: Run, engine: Any, logger: Any, tmp: Path, clock: BuildClock, refit_median: float) -> None:
    """Build the model again with the target weights, as the engine refitted here (REFIT),
    cold (no timing cache, no plan cache): what a user pays instead of a refit."""
    from ..cases.onnx_model import with_initializers
    from ..fileio import atomic_write_bytes
    from ..trt.engine import COLD, EngineHandle, build_plan_from_onnx
    plan, case = run.plan, engine.case
    full = dict(engine.build_weights)
    full.update(engine.target_weights)
    path = atomic_write_bytes(tmp / "rebuild.onnx", with_initializers(engine.model_path, full))
    print(f"estimate for the timed rebuild: {clock.estimate('REFIT')}")
    with Step(f"rebuilding the engine with the target weights (timed, cold: no timing cache; {_level(plan)})") as step:
        built = build_plan_from_onnx(path, case.build_options(), case.profiles(path), logger, timing_cache=COLD)
        EngineHandle(built.plan, logger).close()
    clock.record("REFIT", step.seconds)
    run.rec.record_timing(f"{plan.key}.rebuild", [step.seconds])
    ratio = step.seconds / refit_median
    shown = f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.2f}"
    run.fact(f"rebuild (parse + build + deserialize, cold, {_level(plan)}): {step.seconds:.1f} s = {shown} x "
             "the median refit")


def _fresh_build_and_tax(run: Run, engine: Any, clock: BuildClock) -> None:
    """The model WITHOUT REFIT with the target weights (the REFIT build's timing cache reused):
    the shared refit-vs-fresh-build check, then the refit tax against it."""
    from ..cases import checks
    plan = run.plan
    print(f"estimate for the build without REFIT: {clock.estimate('without REFIT')}"
          + (" (less: it reuses the REFIT build's timing cache)" if getattr(engine, "timing_cache", None) else ""))
    before = _builds()
    with Step(f"building the model without REFIT with the target weights ({_level(plan)}; or reading it from the "
              "plan cache)") as step:
        engine.plain_runner()
    if _builds() > before:
        clock.record("without REFIT", step.seconds)
    _run_check(run, engine, checks.refit_equals_fresh_build)
    engine.refit_to(engine.target_weights)  # the same weights in both engines while timing
    with Step(f"timing inference, {INFER_WARMUP} warm-up + {plan.rounds} runs per engine"):
        with_refit = engine.runner.time_inference(engine.feeds, plan.rounds, INFER_WARMUP)
        without = engine.plain_runner().time_inference(engine.feeds, plan.rounds, INFER_WARMUP)
    run.rec.record_timing(f"{plan.key}.inference.refit_engine", with_refit)
    run.rec.record_timing(f"{plan.key}.inference.plain_engine", without)
    a, b = statistics.median(with_refit), statistics.median(without)
    run.rec.record_refit_tax(plan.key, with_refit, without, plan.precision)
    run.fact(f"refit tax: inference median {_duration(a)} with REFIT vs {_duration(b)} without = x{a / b:.3f} "
             f"(one run, median of {plan.rounds} each)")


def _coverage_line(coverage: Any, engine: Any) -> str:
    c = coverage.counts()
    blocked = len(getattr(engine.refitter, "blocked", {}) or {})
    return (f"{c['by_name']} of {len(coverage.initializers)} float initializers refittable by ONNX name"
            + (f" ({blocked} of them only with TensorRT-only partners, so left out)" if blocked else "")
            + f", {c['other_name']} only through another name, {c['unmatched']} unmatched, "
            f"{c['not_refittable']} not refittable; TensorRT lists {coverage.trt_weight_count} refittable weights")


def run_on_gpu(plan: Plan) -> int:
    """Build, map, refit, compare, time, report. Returns the exit status (0 or 1)."""
    import tempfile
    from ..cases import checks
    from ..config import plan_cache_dir
    from ..refit.coverage import format_table
    from ..trt import compat
    from ..trt.cuda import CudaSession
    from ..trt.plan_cache import PlanCache
    from ..trt.recorders import make_logger
    if plan.optimization_level is not None and not compat.has_feature("builder_optimization_level"):
        raise CheckUnusable(f"--builder-optimization-level: {compat.feature_unavailable_reason('builder_optimization_level')}")
    run = Run(plan)
    logger = make_logger("WARNING" if plan.verbose else "ERROR")
    with CudaSession() as session, tempfile.TemporaryDirectory(prefix="refit-check-") as tmp_name:
        tmp = Path(tmp_name)
        print(f"refit_core check: {plan.model} ({plan.precision}, TensorRT {compat.trt_version_string()}, "
              f"{session.gpu_name}; {_level(plan)}; inputs "
              f"{', '.join(f'{k}:' + 'x'.join(map(str, v)) for k, v in sorted(plan.case.input_shapes.items()))})")
        _record_environment(run, session)
        run.rec.record_case_inputs(plan.key, sha256_file(plan.model))
        cache = PlanCache(plan_cache_dir())
        clock = BuildClock(plan.prepared or plan.model, compat.trt_version_string(), session.gpu_name)
        before = _builds()
        print(f"estimate for the REFIT build: {clock.estimate('REFIT')}")
        engine = _open_engine(plan, session, logger, cache, tmp)
        if _builds() > before and engine.build_seconds:
            clock.record("REFIT", engine.build_seconds)
        coverage = engine.coverage()
        print("\nweight coverage (which ONNX initializers a refit by name can reach):")
        print(format_table(coverage))
        print()
        run.rec.record_case_weights(plan.key, engine.refitter.trt_weight_names())
        run.rec.record_case_coverage(plan.key, coverage.to_record())
        coverage_line = _coverage_line(coverage, engine)
        _not_refittable_example(run, engine)
        left_out = engine.left_out_outputs
        if left_out:
            run.fact(f"outputs compared: {', '.join(engine.output_names)}; left out: {', '.join(left_out)} (integer or "
                     "boolean: indices or flags a near-tie flips by a whole step, not numbers a tolerance fits)")
        print("checks:")
        usable = _run_check(run, engine, checks.refittable_weights).ok
        try:
            with Step("ONNX Runtime references for the build and the target weights"):
                checks.reference(engine, "build")
                if engine.target_weights:
                    checks.reference(engine, "target")
        except Exception as exc:  # onnxruntime's own errors (unsupported op, bad model) are many types
            raise CheckUnusable(f"ONNX Runtime cannot run {plan.model.name} ({type(exc).__name__}: "
                                f"{' '.join(str(exc).split())[:300]}), so there is no reference to compare with") from None
        _run_check(run, engine, checks.built_vs_reference)
        if usable:
            for fn in checks.REFIT_CHECKS[1:]:
                _run_check(run, engine, fn)
            samples = _time_refits(run, engine)
            if plan.skip_builds:
                run.outcome("refit_vs_fresh_build", None, "skipped (--skip-builds)")
                run.fact("refit tax and rebuild timing: skipped (--skip-builds)")
            else:
                _timed_rebuild(run, engine, logger, tmp, clock, statistics.median(samples))
                _fresh_build_and_tax(run, engine, clock)
    from ..provenance import now_iso
    run.rec.record_provenance(**run.provenance, finished=now_iso())
    failed = run.failed
    counts = {k: sum(o.status == k for o in run.outcomes) for k in ("passed", "failed", "skipped")}
    print(f"\nsummary of {plan.model.name} ({plan.precision}):")
    print(f"  coverage: {coverage_line}")
    print(f"  checks: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
          + (f" ({', '.join(failed)})" if failed else ""))
    for line in run.facts:
        print(f"  {line}")
    verdict = (f"CHECK PASSED: {counts['passed']} checks passed on {_weights(len(engine.target_weights))} refittable "
               "by name" if not failed else f"CHECK FAILED: {', '.join(failed)}")
    if plan.results is not None:
        run.rec.write(plan.results)
        print(f"results record: {plan.results}")
    print(verdict)
    return EXIT_FAILED if failed else EXIT_OK
