"""`python -m refit_core check MODEL.onnx` and `python -m refit_core prepare MODEL.onnx -o OUT`.

`prepare` (onnx_prep.generic, no TensorRT) writes the model `check` builds: dynamic input
dims fixed from --shapes, weights held in Constant nodes moved to initializers, proven with
ONNX Runtime. `check` prepares (keeping the file with --save-prepared), then on a machine
with a GPU and TensorRT builds a REFIT engine (FP32 with TF32 off, TF32, or FP16), prints
the coverage map (refit.coverage) with the weights TensorRT refits only with TensorRT-only
partners (left out, with why and what to change), and runs the shared checks of
cases.checks, the same the GPU tier's tests/cases/test_refit_checks_gpu.py runs: engine vs
ONNX Runtime, the perturbation moves the reference, refit back restores, refit to the
perturbed weights matches ONNX Runtime, twice is bit-identical, and (unless --skip-builds)
refit vs a fresh build WITHOUT REFIT. It times refits, a cold rebuild (saying which builder
optimization level), and the refit tax against the engine without REFIT (built from the
REFIT build's timing cache); an estimate is printed before each build. A results record
for the gate is written with --results.

Everything that can be refused without a GPU is refused first, in one sentence with exit
status 2 and no traceback: a missing or unreadable file, external data outside the model's
folder, a dynamic input without --shapes, a shape that does not fit, a model ONNX Runtime
cannot run; then a machine without TensorRT/GPU; then a model TensorRT's parser rejects
(naming the op types, and dynamic quantization) or cannot build. Exit status 1: a check
failed (nothing refittable by name is a failed check, with the reason). 0: all passed.

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

from .fileio import sha256_file
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
        from .reporting.record import CHECK_TEST_PREFIX
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
# Build-time estimates (printed before each build)
# --------------------------------------------------------------------------------------
#: Builds `check` measured, per machine: in the cache directory, one JSON list.
BUILD_TIMES_FILE = "check-build-times.json"
BUILD_TIMES_KEPT = 200
#: Said when nothing was measured on this TensorRT and GPU yet: how long REFIT builds took elsewhere.
NO_HISTORY_HINT = ("no build measured on this TensorRT and GPU yet; REFIT builds measured on an H200 took "
                   "129 s (a 10.9 MB OCR recognizer) and 209 s (a 20 MB detector) on TensorRT 8.6.0, 120 s "
                   "(a 10 MB MobileNetV3, FP16) on 8.5.2.2")


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def estimate_build(history: List[Dict[str, Any]], sha256: str, size: int, kind: str, tensorrt: str,
                   gpu: str) -> str:
    """What a build of `kind` of this model will take: its own earlier builds here, else the
    earlier builds of `kind` on this TensorRT and GPU scaled by file size, else what was measured."""
    import statistics as st
    here = [h for h in history if h.get("kind") == kind and h.get("tensorrt") == tensorrt and h.get("gpu") == gpu]
    same = [float(h["seconds"]) for h in here if h.get("sha256") == sha256]
    if same:
        return f"about {_seconds(st.median(same))} (this model's {kind} build measured here before)"
    rates = [float(h["seconds"]) / float(h["bytes"]) for h in here if float(h.get("bytes") or 0) > 0]
    if rates:
        return (f"about {_seconds(st.median(rates) * size)} (from {len(rates)} earlier {kind} build"
                f"{'' if len(rates) == 1 else 's'} on this TensorRT and GPU, scaled by file size: a rough guide)")
    return NO_HISTORY_HINT


def load_build_times(path: Path) -> List[Dict[str, Any]]:
    """The measured builds; a missing or damaged file is no history (it only informs estimates)."""
    from .fileio import read_json_strict
    try:
        data = read_json_strict(path)
    except (OSError, ValueError):
        return []
    return [h for h in data if isinstance(h, dict)] if isinstance(data, list) else []


def record_build_time(path: Path, entry: Dict[str, Any]) -> None:
    from .fileio import atomic_write_json, file_lock, lock_path_for
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(lock_path_for(path)):
        history = load_build_times(path) + [entry]
        atomic_write_json(path, history[-BUILD_TIMES_KEPT:], indent=1)


class BuildClock:
    """Estimates before each build and records what it took, for one model on this machine."""

    def __init__(self, model: Path, tensorrt: str, gpu: str, path: Optional[Path] = None) -> None:
        from .config import cache_dir
        from .fileio import sha256_file
        self.path = path or cache_dir() / BUILD_TIMES_FILE
        self.sha256, self.size = sha256_file(model), model.stat().st_size
        self.tensorrt, self.gpu = tensorrt, gpu

    def estimate(self, kind: str) -> str:
        return estimate_build(load_build_times(self.path), self.sha256, self.size, kind, self.tensorrt, self.gpu)

    def record(self, kind: str, seconds: float) -> None:
        try:
            record_build_time(self.path, dict(kind=kind, sha256=self.sha256, bytes=self.size, tensorrt=self.tensorrt,
                                              gpu=self.gpu, seconds=round(float(seconds), 2)))
        except OSError as exc:  # an estimate aid: never fails the check
            print(f"  (build time not kept: {exc})")


def _builds() -> int:
    from .trt.engine import builds_in_this_process
    return builds_in_this_process()


# --------------------------------------------------------------------------------------
# The run on the GPU
# --------------------------------------------------------------------------------------
def _record_environment(run: Run, session: Any) -> None:
    import numpy as np
    from .provenance import run_provenance
    from .trt import compat
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
    from .onnx_prep.generic import ModelInputError, describe_parser_rejection, load_model
    try:
        return describe_parser_rejection(load_model(plan.prepared or plan.model), message)
    except ModelInputError:
        return ""


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
        words = _parser_words(plan, str(exc))
        raise CheckUnusable(f"{exc}; {words + '; ' if words else ''}"
                            "check cannot run on a model TensorRT cannot parse") from None
    except RuntimeError as exc:
        if "TensorRT could not build" in str(exc) or "deserialize" in str(exc):
            raise CheckUnusable(f"{' '.join(str(exc).split())}; check cannot run on {plan.model.name}") from None
        raise


def _run_check(run: Run, engine: Any, fn: Any) -> Any:
    """One shared check (cases.checks): printed, recorded; a refused refit is a failed check."""
    from .cases.checks import CheckOutcome
    from .errors import RefitError, WeightValidationError
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
    from .errors import WeightValidationError
    from .onnx_prep.generic import onnx_float_initializers
    from .refit.validation import validate_weight
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
    from .cases.onnx_model import with_initializers
    from .fileio import atomic_write_bytes
    from .trt.engine import COLD, EngineHandle, build_plan_from_onnx
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
    from .cases import checks
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
    from .cases import checks
    from .config import cache_dir
    from .refit.coverage import format_table
    from .trt import compat
    from .trt.cuda import CudaSession
    from .trt.plan_cache import PlanCache
    from .trt.recorders import make_logger
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
        cache = PlanCache(cache_dir() / "plans")
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
    verdict = (f"CHECK PASSED: {counts['passed']} checks passed on {_weights(len(engine.target_weights))} refittable "
               "by name" if not failed else f"CHECK FAILED: {', '.join(failed)}")
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
