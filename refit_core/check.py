"""`python -m refit_core check MODEL.onnx`: the generic refit checks on your own ONNX model.

What it does, on a machine with a GPU and TensorRT: builds a REFIT engine of the model
(FP32 with TF32 off, or FP16), prints which initializers are refittable under their ONNX
names (the coverage map, refit.coverage), refits the model's real weights and seeded
perturbations of them and compares the engine with ONNX Runtime on seeded inputs, checks
that the perturbation changes ONNX Runtime's outputs beyond the tolerance (a check that
cannot fail proves nothing), times refit against a rebuild and measures the refit tax
(inference latency with REFIT against the same model built without it), prints a summary
and writes a results record the gate reads.

Everything that can be refused without a GPU is refused first, in one sentence with exit
status 2 and no traceback: a missing or unreadable file, a dynamic input without --shapes,
a shape for an input the model lacks; then a machine without TensorRT/GPU; then a model
TensorRT's parser rejects or cannot build. Exit status 1: a check failed. 0: all passed.

Python 3.9 (the GPU kit): no 3.10+ syntax here.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .trt.engine import PRECISIONS
from .errors import RefitCoreError

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE = 0, 1, 2

REFIT_WARMUP = 3
INFER_WARMUP = 10


class CheckUnusable(RefitCoreError):
    """`check` cannot run: the model, its shapes or this machine (one sentence, exit 2)."""


# --------------------------------------------------------------------------------------
# Arguments and the checks that need no GPU
# --------------------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def add_shapes_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shapes", nargs="+", action="append", default=[], metavar="NAME:DIMS",
                   help="fixed shapes of dynamic inputs, trtexec style: --shapes input:1x3x224x224 mask:1x128 "
                        "(or comma-separated; every dynamic dim of the input is set, whatever its symbol); "
                        "before or after MODEL")


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="the ONNX model file")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="build precision (fp32: TF32 off; tf32: TF32 allowed; fp16: BuilderFlag.FP16); default fp32")
    add_shapes_argument(p)
    p.add_argument("--save-prepared", metavar="PATH",
                   help="keep the prepared model check builds (shapes fixed, Constant weights as initializers)")
    p.add_argument("--results", metavar="PATH", help="write a results record (JSON) the gate understands")
    p.add_argument("--rounds", type=_positive_int, default=20,
                   help="timed refits and timed inferences per engine, after warm-up (default 20)")
    p.add_argument("--skip-builds", action="store_true",
                   help="skip the two extra builds (the rebuild timing and refit-vs-fresh-build check, "
                        "and the engine without REFIT for the refit tax)")
    p.add_argument("--builder-optimization-level", type=int, choices=range(0, 6), metavar="N", default=None,
                   help="TensorRT's builder optimization level 0-5 for every build (TensorRT 8.6+; "
                        "default: TensorRT's own, 3); lower builds faster, maybe slower engines")
    p.add_argument("--allow-fp16-range", action="store_true",
                   help="fp16: refit weights even when FP16 cannot hold their values (refused by default)")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe inputs and perturbations (default 0)")
    p.add_argument("--verbose", action="store_true", help="echo TensorRT's warnings too")


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="the ONNX model file")
    add_shapes_argument(p)
    p.add_argument("-o", "--output", required=True, metavar="PREPARED.onnx", help="where to write the prepared model")
    p.add_argument("--seed", type=int, default=0, help="seed of the inputs ONNX Runtime compares on (default 0)")


def model_and_shapes(args: argparse.Namespace) -> Tuple[Path, Dict[str, Tuple[int, ...]]]:
    """MODEL and the parsed --shapes, MODEL before or after them: `--shapes x:1x3 m.onnx` leaves
    m.onnx among the shape values (nargs="+"), where it is the one value that is not NAME:DIMS."""
    from .onnx_prep.generic import ModelInputError, is_shape_item, parse_shapes
    items = [s for group in (args.shapes or []) for s in (group if isinstance(group, list) else [group])]
    strays = [s for s in items if not is_shape_item(s)]
    model = args.model
    if model is None and len(strays) == 1:
        model = strays[0]
        items.remove(model)
    elif strays:
        raise ModelInputError(f"--shapes {strays[0]!r} is not NAME:DIMS with DIMS like 1x3x224x224")
    if model is None:
        raise ModelInputError("give the ONNX model file: python -m refit_core " + str(getattr(args, "command", "check"))
                              + " MODEL.onnx [--shapes NAME:DIMS ...]")
    return Path(model).expanduser(), parse_shapes(items)


@dataclass
class Plan:
    """What the GPU part runs: the model, its case, and the options (all checked already)."""

    model: Path
    case: Any  # cases.onnx_model.OnnxModelCase
    key: str   # the case key in the record: "<case name>-<precision>"
    precision: str
    rounds: int
    results: Optional[Path]
    skip_builds: bool
    verbose: bool
    command_line: List[str] = field(default_factory=list)
    #: the prepared model the case builds (onnx_prep.generic), and what preparing it said
    prepared: Optional[Path] = None
    prepare: Any = None
    optimization_level: Optional[int] = None
    _tmp: Any = None

    def cleanup(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def plan_from_args(args: argparse.Namespace) -> Plan:
    """Everything about the model and options that can be refused without a GPU; then the
    prepare step (onnx_prep.generic), whose model the case builds."""
    import tempfile
    from .cases.onnx_model import OnnxModelCase
    from .cases.user_model import ModelInputError, case_name_for, input_shapes_for
    from .onnx_prep.generic import prepare_file
    try:
        path, shapes = model_and_shapes(args)
        if not path.is_file():
            raise ModelInputError(f"model file {path} does not exist")
        path = path.resolve()
        input_shapes_for(path, shapes, shapes_option="--shapes")  # float inputs only, every --shapes fits
    except ModelInputError as exc:
        raise CheckUnusable(str(exc)) from None
    results = Path(args.results).expanduser() if args.results else None
    if results is not None and results.is_dir():
        raise CheckUnusable(f"--results {results} is a directory; give a file name such as {results / 'check.json'}")
    saved = Path(args.save_prepared).expanduser() if getattr(args, "save_prepared", None) else None
    if saved is not None and (saved.is_dir() or saved.resolve() == path):
        raise CheckUnusable(f"--save-prepared {saved} is {'a directory' if saved.is_dir() else 'the model itself'}; "
                            "give a new file name such as prepared.onnx")
    tmp = None
    if saved is None:
        tmp = tempfile.TemporaryDirectory(prefix="refit-check-prepared-")
        saved = Path(tmp.name) / path.name
    try:
        result = prepare_file(path, shapes, saved, seed=int(args.seed))
    except ModelInputError as exc:
        if tmp is not None:
            tmp.cleanup()
        raise CheckUnusable(str(exc)) from None
    prepared = saved.resolve()
    name = case_name_for(path)
    case = OnnxModelCase(name, lambda _directory: prepared, result.prepared.shapes, seed=int(args.seed),
                         precision=args.precision, allow_fp16_range=bool(args.allow_fp16_range),
                         optimization_level=getattr(args, "builder_optimization_level", None))
    argv = getattr(args, "argv", None) or sys.argv[1:]
    return Plan(path, case, f"{name}-{args.precision}", args.precision, int(args.rounds), results,
                bool(args.skip_builds), bool(args.verbose), ["python", "-m", "refit_core"] + [str(a) for a in argv],
                prepared, result, getattr(args, "builder_optimization_level", None), tmp)


def run_prepare(args: argparse.Namespace) -> int:
    """The `prepare` subcommand: write the model check builds, proven with ONNX Runtime."""
    from .onnx_prep.generic import prepare_file
    path, shapes = model_and_shapes(args)
    out = Path(args.output).expanduser()
    if out.is_dir() or (out.exists() and path.exists() and out.resolve() == path.resolve()):
        raise CheckUnusable(f"-o {out} is {'a directory' if out.is_dir() else 'the model itself'}; "
                            "give a new file name such as prepared.onnx")
    prepare_file(path, shapes, out, seed=int(args.seed))
    return EXIT_OK


def gpu_unavailable_reason() -> Optional[str]:
    from .trt.cuda import gpu_unavailable_reason as reason
    return reason()


# --------------------------------------------------------------------------------------
# Progress on long steps
# --------------------------------------------------------------------------------------
class Step:
    """`with Step("building the REFIT engine"):` prints the step, then while it runs a spinner
    (on a terminal) or a "... N s" line every `every` seconds (in a log), then its duration."""

    def __init__(self, label: str, every: float = 15.0, out: Any = None) -> None:
        self.label, self.every = label, every
        self.out = out or sys.stdout
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.seconds = 0.0

    def _tick(self) -> None:
        tty = bool(getattr(self.out, "isatty", lambda: False)())
        frames, i = "|/-\\", 0
        while not self._stop.wait(0.25 if tty else self.every):
            elapsed = time.perf_counter() - self._start
            if tty:
                self.out.write(f"\r{self.label} ... {frames[i % 4]} {elapsed:.0f} s")
                i += 1
            else:
                self.out.write(f"{self.label} ... {elapsed:.0f} s\n")
            self.out.flush()

    def __enter__(self) -> "Step":
        self._start = time.perf_counter()
        self.out.write(f"{self.label} ...\n")
        self.out.flush()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.seconds = time.perf_counter() - self._start
        tty = bool(getattr(self.out, "isatty", lambda: False)())
        end = "failed" if kind is not None else "done"
        self.out.write(("\r\033[K" if tty else "") + f"{self.label}: {end} ({self.seconds:.1f} s)\n")
        self.out.flush()


# --------------------------------------------------------------------------------------
# The run on the GPU
# --------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """One named check: passed, failed or skipped, with a line for the summary."""

    name: str
    status: str  # "passed", "failed", "skipped"
    line: str


class Run:
    """Collects the outcomes, lines of the summary and the results record of one check run."""

    def __init__(self, plan: Plan) -> None:
        from .provenance import now_iso
        from .reporting.results import ResultsRecorder
        self.plan = plan
        self.outcomes: List[Outcome] = []
        self.facts: List[str] = []
        self.rec = ResultsRecorder(note=f"python -m refit_core check {plan.model.name} ({plan.precision})")
        self.started = now_iso()
        self.provenance: Dict[str, Any] = {}

    def outcome(self, name: str, ok: Optional[bool], line: str) -> bool:
        status = "skipped" if ok is None else ("passed" if ok else "failed")
        self.outcomes.append(Outcome(name, status, line))
        mark = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}[status]
        print(f"  [{mark}] {name}: {line}")
        self.rec.record_test(f"check::{self.plan.key}::{name}", status, None if ok else line)
        return bool(ok)

    def fact(self, line: str) -> None:
        self.facts.append(line)
        print(f"  {line}")

    @property
    def failed(self) -> List[str]:
        return [o.name for o in self.outcomes if o.status == "failed"]


def _compare_line(cmp: Any, tol: Any) -> str:
    return (f"{cmp.rows_agreeing}/{cmp.rows} rows within tolerance, max|diff| {cmp.max_abs:.3g}, "
            f"max rel {cmp.max_rel:.3g} ({tol.describe()})")


def _duration(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.3f} ms"


def _weights(n: int) -> str:
    return f"{n} weight" + ("" if n == 1 else "s")


def _record_environment(run: Run, session: Any) -> None:
    import numpy as np
    from . import __version__
    from .provenance import git_state, source_sha256
    from .trt import compat
    run.rec.record_environment(
        tensorrt_version=compat.trt_version_string(), gpu_name=session.gpu_name,
        cuda_driver_version=session.driver_version, cuda_runtime_version=session.runtime_version,
        python_version=".".join(map(str, sys.version_info[:3])), numpy_version=np.__version__,
        tactic_sources=compat.tactic_setting())
    commit, dirty = git_state()
    run.provenance = dict(suite_version=__version__, git_commit=commit, git_dirty=dirty,
                          source_sha256=source_sha256(), command_line=run.plan.command_line,
                          hypothesis_profile="none (check)", tensorrt_build=compat.build_info(),
                          tactic_setting=compat.tactic_setting(), started=run.started)
    run.rec.record_provenance(**run.provenance)


def _open_engine(plan: Plan, session: Any, logger: Any, cache: Any, tmp: Path) -> Any:
    """The case's REFIT engine; a parser rejection or a failed build is CheckUnusable."""
    from .cases.base import CaseResources
    from .config import cache_dir
    from .trt.engine import OnnxParseError
    try:
        with Step(f"building the {plan.precision.upper()} REFIT engine of {plan.model.name} "
                  "(or reading it from the plan cache)"):
            return plan.case.open(CaseResources(None, cache_dir(), tmp), session, logger, cache)
    except OnnxParseError as exc:
        raise CheckUnusable(f"{exc}; check cannot run on a model TensorRT cannot parse") from None
    except RuntimeError as exc:
        if "TensorRT could not build" in str(exc) or "deserialize" in str(exc):
            raise CheckUnusable(f"{' '.join(str(exc).split())}; check cannot run on {plan.model.name}") from None
        raise


@dataclass
class RefitTimes:
    """The first refit, the warm refits after warm-up, and the outputs with the perturbed weights."""

    first_s: float
    samples_s: List[float]
    target_outputs: Any = None


def _refit_checks(run: Run, engine: Any) -> Optional[RefitTimes]:
    """Refit real weights and perturbations; compare with ONNX Runtime. None when nothing
    could be refitted; empty samples when the perturbed refit failed."""
    import numpy as np
    from .cases.base import compare_outputs
    from .errors import RefitError, WeightValidationError
    plan, tol = run.plan, engine.case.tolerance
    build, target = engine.build_weights, engine.target_weights
    try:
        with Step("ONNX Runtime reference for the real weights"):
            ref_build = engine.reference(build)
    except Exception as exc:  # onnxruntime's own errors (unsupported op, bad model) are many types
        raise CheckUnusable(f"ONNX Runtime cannot run {plan.model.name} ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:300]}), so there is no reference to compare with") from None
    cmp = compare_outputs(engine.built_outputs, ref_build, tol)
    run.rec.record_case_check(plan.key, "built_vs_reference", tolerance=tol.describe(), **cmp.summary())
    run.outcome("built_vs_reference", cmp.ok, "engine as built vs ONNX Runtime: " + _compare_line(cmp, tol))
    if not build:
        run.outcome("refit", False, "no initializer is refittable under its ONNX name, so nothing can be refitted "
                                    "by name (see the coverage map above)")
        return None
    try:
        t0 = time.perf_counter()
        engine.refit_to(engine.all_build_weights())
        first = time.perf_counter() - t0
    except (WeightValidationError, RefitError) as exc:
        run.outcome("refit_real_weights", False, f"refit with the model's own weights was refused: {exc}")
        return None
    got = engine.probe()
    cmp = compare_outputs(got, ref_build, tol)
    differing = int((got != engine.built_outputs).sum())
    run.rec.record_case_check(plan.key, "refit_real_vs_reference", tolerance=tol.describe(),
                              bit_identical_to_built=not differing, values_differing_from_built=differing,
                              **cmp.summary())
    run.outcome("refit_real_vs_reference", cmp.ok,
                f"refit with the real weights ({_weights(len(build))}) vs ONNX Runtime: " + _compare_line(cmp, tol))
    # FP16: TensorRT may round a weight to FP16 differently when refitting than when building
    back = compare_outputs(got, engine.built_outputs, tol)
    restored = not differing or (engine.case.precision == "fp16" and back.ok)
    run.outcome("refit_real_restores_built_outputs", restored,
                "outputs after refitting the real weights are bit-identical to the built engine's" if not differing
                else f"after refitting the real weights, {differing} of {got.size} outputs differ from the built "
                     f"engine's (max |diff| {back.max_abs:.3g}; "
                     + ("FP16: within the tolerance, TensorRT rounded some weight differently than at build)"
                        if restored else "same weights!)"))
    noise = engine.case.noise_for(len(build))
    with Step("ONNX Runtime reference for the perturbed weights"):
        ref_target = engine.reference(target)
    blind = compare_outputs(ref_build, ref_target, tol)
    run.rec.record_case_check(plan.key, "perturbation_changes_reference", **blind.summary())
    run.outcome("perturbation_changes_reference", not blind.ok,
                f"seeded perturbation (w*(1+{noise:g}*N(0,1)), w*exp({noise:g}*N(0,1)) for "
                f"all-positive weights) moves ONNX Runtime's outputs by max|diff| "
                f"{blind.max_abs:.3g} ({blind.rows - blind.rows_agreeing}/{blind.rows} rows beyond the tolerance)"
                + ("" if not blind.ok else "; the check below could not tell a refit from no refit"))
    try:
        engine.refit_to(target)
    except (WeightValidationError, RefitError) as exc:
        run.outcome("refit_perturbed_vs_reference", False, f"refit with the perturbed weights was refused: {exc}")
        return RefitTimes(first, [])
    got_target = engine.probe()
    cmp = compare_outputs(got_target, ref_target, tol)
    run.rec.record_case_check(plan.key, "refit_perturbed_vs_reference", tolerance=tol.describe(), **cmp.summary())
    run.outcome("refit_perturbed_vs_reference", cmp.ok, "refit with perturbed weights vs ONNX Runtime: "
                + _compare_line(cmp, tol))
    samples: List[float] = []
    with Step(f"timing refits ({REFIT_WARMUP} warm-up + {plan.rounds})"):
        for i in range(REFIT_WARMUP + plan.rounds):
            weights = target if i % 2 else engine.all_build_weights()
            t0 = time.perf_counter()
            engine.refit_to(weights)
            if i >= REFIT_WARMUP:
                samples.append(time.perf_counter() - t0)
    engine.refit_to(target)  # leave the perturbed weights in for the fresh-build comparison
    return RefitTimes(first, samples, got_target)


def _not_refittable_example(run: Run, engine: Any, coverage: Any) -> None:
    """What asking for a weight that is not refittable by name says (validate_weight with the map)."""
    from .errors import WeightValidationError
    from .flows.bidaf import onnx_float_initializers
    from .refit.validation import validate_weight
    reasons = coverage.explanations()
    if not reasons:
        return
    name = sorted(reasons)[0]
    arrays = onnx_float_initializers(run.plan.model)
    array = arrays.get(name)
    try:
        validate_weight(engine.refitter.specs, name, array, unreachable=reasons)
        message = "(accepted?)"
    except WeightValidationError as exc:
        message = str(exc)
    run.rec.record_case_check(run.plan.key, "not_refittable_example", weight=name, message=message)
    print(f"  asking to refit {name!r} says: {message}")


def _build_timings(run: Run, engine: Any, session: Any, logger: Any, cache: Any, tmp: Path,
                   refit: Optional[RefitTimes]) -> None:
    """Rebuild with the perturbed weights (timed; refit vs fresh build) and the refit tax."""
    from .cases.base import compare_outputs
    from .cases.onnx_model import with_initializers
    from .fileio import atomic_write_bytes, sha256_file
    from .trt import compat
    from .trt.engine import EngineHandle, build_plan_from_onnx, load_or_build
    from .trt.runner import TrtRunner
    plan, case, key = run.plan, engine.case, run.plan.key
    timed = refit is not None and bool(refit.samples_s)
    if refit is not None and timed:
        first, samples = refit.first_s, refit.samples_s
        run.rec.record_timing(f"{key}.refit", samples, first_s=first)
        run.fact(f"refit ({_weights(len(engine.build_weights))}, validate + set + refit_cuda_engine): first "
                 f"{first * 1e3:.2f} ms, then median {statistics.median(samples) * 1e3:.2f} ms over {len(samples)}")
    if plan.skip_builds:
        run.outcome("refit_vs_fresh_build", None, "skipped (--skip-builds)")
        run.fact("refit tax and rebuild timing: skipped (--skip-builds)")
        return
    if refit is not None and timed:
        path = atomic_write_bytes(tmp / "rebuild.onnx", with_initializers(plan.model, engine.target_weights))
        with Step("rebuilding the engine with the perturbed weights (timed, cold: no timing cache)") as step:
            built = build_plan_from_onnx(path, case.build_options(), case.profiles(path), logger)
            fresh = EngineHandle(built.plan, logger)
        session.on_close(fresh.close)
        run.rec.record_timing(f"{key}.rebuild", [step.seconds])
        fresh_out = TrtRunner(fresh).infer(engine.feeds)
        fresh_rows = engine._rows(fresh_out, [t.name for t in engine.runner.outputs])
        cmp = compare_outputs(refit.target_outputs, fresh_rows, case.tolerance)
        run.rec.record_case_check(key, "refit_vs_fresh_build", tolerance=case.tolerance.describe(), **cmp.summary())
        run.outcome("refit_vs_fresh_build", cmp.ok, "refitted engine vs a fresh build with the same weights: "
                    + _compare_line(cmp, case.tolerance))
        median = statistics.median(refit.samples_s)
        ratio = step.seconds / median
        shown = f"{ratio:.0f}" if ratio >= 10 else f"{ratio:.2f}"
        run.fact(f"rebuild (parse + build + deserialize, cold): {step.seconds:.1f} s = {shown} x the median refit")
        fresh.close()
    options = case.build_options(refit=False)
    cache_key = {"model": case.name, "onnx_sha256": sha256_file(plan.model), "options": options.key_parts(),
                 "tensorrt": compat.trt_version_string(), "gpu": session.gpu_name,
                 "shapes": {k: list(v) for k, v in sorted(case.input_shapes.items())}}
    with Step("building the same engine without REFIT, for the refit tax (or reading it from the plan cache)"):
        plain, _ = load_or_build(cache, cache_key, lambda: build_plan_from_onnx(plan.model, options,
                                                                                case.profiles(plan.model), logger),
                                 logger)
    session.on_close(plain.close)
    with Step(f"timing inference, {INFER_WARMUP} warm-up + {plan.rounds} runs per engine"):
        with_refit = engine.runner.time_inference(engine.feeds, plan.rounds, INFER_WARMUP)
        without = TrtRunner(plain).time_inference(engine.feeds, plan.rounds, INFER_WARMUP)
    run.rec.record_timing(f"{key}.inference.refit_engine", with_refit)
    run.rec.record_timing(f"{key}.inference.plain_engine", without)
    a, b = statistics.median(with_refit), statistics.median(without)
    run.rec.record_refit_tax(key, with_refit, without, plan.precision)
    run.fact(f"refit tax: inference median {_duration(a)} with REFIT vs {_duration(b)} without = x{a / b:.3f} "
             f"(one run, median of {plan.rounds} each)")


def run_on_gpu(plan: Plan) -> int:
    """Build, map, refit, compare, time, report. Returns the exit status (0 or 1)."""
    import tempfile
    from .config import cache_dir
    from .refit.coverage import format_table
    from .trt import compat
    from .trt.cuda import CudaSession
    from .trt.engine import PlanCache
    from .trt.recorders import make_logger
    run = Run(plan)
    logger = make_logger("WARNING" if plan.verbose else "ERROR")
    with CudaSession() as session, tempfile.TemporaryDirectory(prefix="refit-check-") as tmp_name:
        tmp = Path(tmp_name)
        print(f"refit_core check: {plan.model} ({plan.precision}, TensorRT {compat.trt_version_string()}, "
              f"{session.gpu_name}; inputs {', '.join(f'{k}:' + 'x'.join(map(str, v)) for k, v in sorted(plan.case.input_shapes.items()))})")
        _record_environment(run, session)
        cache = PlanCache(cache_dir() / "plans")
        engine = _open_engine(plan, session, logger, cache, tmp)
        trt_names = engine.refitter.trt_weight_names()
        coverage = engine.coverage()
        print("\nweight coverage (which ONNX initializers a refit by name can reach):")
        print(format_table(coverage))
        print()
        run.rec.record_case_weights(plan.key, trt_names)
        run.rec.record_case_coverage(plan.key, coverage.to_record())
        c = coverage.counts()
        coverage_line = (f"{c['by_name']} of {len(coverage.initializers)} float initializers refittable by ONNX name, "
                         f"{c['other_name']} only through another name, {c['unmatched']} unmatched, "
                         f"{c['not_refittable']} not refittable; TensorRT lists {coverage.trt_weight_count} "
                         "refittable weights")
        _not_refittable_example(run, engine, coverage)
        print("checks:")
        refit = _refit_checks(run, engine)
        _build_timings(run, engine, session, logger, cache, tmp, refit)
    from .provenance import now_iso
    run.rec.record_provenance(**run.provenance, finished=now_iso())
    failed = run.failed
    counts = {k: sum(o.status == k for o in run.outcomes) for k in ("passed", "failed", "skipped")}
    print(f"\nsummary of {plan.model.name} ({plan.precision}):")
    print(f"  coverage: {coverage_line}")
    print(f"  checks: {counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
          + (f" ({', '.join(failed)})" if failed else ""))
    for line in run.facts:
        print(f"  {line}")
    verdict = (f"CHECK PASSED: {counts['passed']} checks passed"
               if not failed else f"CHECK FAILED: {', '.join(failed)}")
    if plan.results is not None:
        run.rec.write(plan.results)
        print(f"results record: {plan.results}")
    print(verdict)
    return EXIT_FAILED if failed else EXIT_OK


def run_check(args: argparse.Namespace) -> int:
    """The `check` subcommand: refuse what can be refused without a GPU, prepare, then run on it."""
    plan = plan_from_args(args)
    try:
        reason = gpu_unavailable_reason()
        if reason is not None:
            raise CheckUnusable(f"cannot run on this machine: {reason.rstrip('.')}.")
        return run_on_gpu(plan)
    finally:
        plan.cleanup()
