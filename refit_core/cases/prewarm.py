"""Building a session's case engines ahead of the tests into the plan cache.

Builds are the GPU tier's cost (TensorRT 8.5 takes minutes for an FP16 LSTM), and a session
builds every case twice: the REFIT engine and the same model without REFIT. Each build is a
job that runs the case's own code path, `case.open()` and `engine.plain_runner()`, whose plans
land in the plan cache; the session's `open()` then reads them. A case that can name its
no-REFIT weights without the REFIT engine (`RefitCase.warm_plain`) gets the two builds as two
jobs.

By default the jobs run one after the other in the session's own process
(`prewarm_in_process`): one `Builder` (trt.engine.shared_builds) and one timing cache per
precision for every build. `--refit-build-jobs=N` (N > 1) runs them in N spawned worker
processes instead, each with its own CUDA context, Builder and copy of the timing caches (the
last one to finish a precision writes its cache). Why one process is the default
(results/zoo/README.md): concurrent builds time their tactics on the same GPU, so they add no
throughput; each worker pays the first `Builder` again; and builds beside other builds may
choose other kernels (a refit tax below 1 was seen only there). One process saves
those two Builders and shares what tactic timing learns between the REFIT and no-REFIT builds
of a case; it loses only the overlap of the CPU parts of the builds.

Jobs start longest first: by the seconds the same job took to build in an earlier session
with the same TensorRT version and GPU (kept in ``prewarm-build-times.json`` beside the plans;
a job that only read its plans is not recorded), and jobs never measured before all others,
FP16 first, so that the longest build does not start last.

Only cases whose engines come from the plan cache (`RefitCase.plan_cached`) are warmed. A job
that fails is reported and the session builds that case itself (the test then shows the real
error). Workers build while no test runs, so no timing overlaps a build; but tactic timing
inside concurrent builds competes for the GPU, so TensorRT may choose other kernels than in a
build on its own (`--refit-build-jobs=1` builds one at a time, in the session).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .base import CaseResources, RefitCase

#: beside the plans: {"<TensorRT version> | <GPU> | <case> | <job kind>": seconds of its last build}
BUILD_TIMES_FILE = "prewarm-build-times.json"
_MAX_BUILD_TIMES_BYTES = 1 << 20

#: job kinds: the REFIT engine and the no-REFIT one in one job, or each on its own
BOTH, ENGINE, PLAIN = "engine+plain", "engine", "plain"


#: the --refit-build-jobs default: default_jobs() computes it, the option's help and docs/options.md say it
DEFAULT_JOBS = 1
DEFAULT_JOBS_TEXT = "1, one build after the other in the session's process"


def default_jobs() -> int:
    """DEFAULT_JOBS: the builds ahead run in the session's process (see the module's docstring):
    concurrent builds time their tactics on one GPU, so each takes longer."""
    return DEFAULT_JOBS


@dataclass(frozen=True)
class Job:
    case: RefitCase
    kind: str

    def time_key(self, scope: str) -> str:
        return f"{scope} | {self.case.name} | {self.kind}"

    @property
    def label(self) -> str:
        return f"{self.case.name} ({'REFIT and without REFIT' if self.kind == BOTH else 'REFIT' if self.kind == ENGINE else 'without REFIT'})"


@dataclass(frozen=True)
class Outcome:
    job: Job
    seconds: float
    problem: Optional[str] = None  # one line when the job failed
    built: bool = False  # False: the job only read plans from the cache


def jobs_for(cases: Sequence[RefitCase], measured: Optional[Mapping[str, float]] = None,
             scope: str = "") -> List[Job]:
    """The jobs for `cases` in the order to start them: jobs without a measured build time
    first, FP16 before the others (the longest builds when nothing is known), then measured
    ones longest first; ties keep the given order. `measured`: load_build_times(), for `scope`."""
    out: List[Job] = []
    for case in sorted(cases, key=lambda c: c.precision != "fp16"):
        if case.warms_plain_alone:
            out += [Job(case, ENGINE), Job(case, PLAIN)]
        else:
            out.append(Job(case, BOTH))
    known = measured or {}

    def order(item: Tuple[int, Job]) -> Tuple[int, float, int]:
        seconds = known.get(item[1].time_key(scope))
        return (0, 0.0, item[0]) if seconds is None else (1, -float(seconds), item[0])
    return [job for _, job in sorted(enumerate(out), key=order)]


def load_build_times(plan_root: Path) -> Dict[str, float]:
    """The recorded build times; {} when there are none or the file is unreadable (it only orders jobs)."""
    from ..fileio import read_json_strict
    try:  # non-blocking, bounded, strict: a FIFO, a huge or a malformed file is "none recorded"
        data = read_json_strict(Path(plan_root) / BUILD_TIMES_FILE, _MAX_BUILD_TIMES_BYTES)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: float(v) for k, v in data.items()
            if isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1e7}


def record_build_times(plan_root: Path, outcomes: Sequence[Outcome], scope: str) -> None:
    """Keep the seconds of each job that built (not one that failed or read its plans)."""
    from ..fileio import atomic_write_text
    times = load_build_times(plan_root)
    new = {o.job.time_key(scope): round(o.seconds, 1) for o in outcomes if o.built and not o.problem}
    if not new:
        return
    times.update(new)
    try:
        atomic_write_text(Path(plan_root) / BUILD_TIMES_FILE, json.dumps(times, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # a read-only cache: the next session orders its jobs without them


def _build_job(job: Job, resources: CaseResources, session: object, logger: object, cache: object,
               keep: Optional[Dict[str, object]] = None) -> None:
    """Build (or find) the job's plans in the plan cache, through the case's own code path.
    With `keep`, the opened REFIT engine is kept there under the case's name (the session's
    engines: not opened twice), else closed."""
    if job.kind == PLAIN:
        job.case.warm_plain(resources, session, logger, cache)
        return
    engine = job.case.open(resources, session, logger, cache)
    try:
        if job.kind == BOTH:
            engine.plain_runner()
    except BaseException:
        engine.close()
        raise
    if keep is None:
        engine.close()
    else:
        keep[job.case.name] = engine


def _run_job(job: Job, resources: CaseResources, plan_root: str) -> Tuple[float, bool]:
    """In a worker process: build (or find) the job's plans in the cache; the seconds it took
    and whether it built any. The worker's builds share one Builder and the timing caches."""
    from ..trt.cuda import CudaSession
    from ..trt.engine import builds_in_this_process, shared_builds
    from ..trt.plan_cache import PlanCache, TimingCacheStore
    from ..trt.recorders import make_logger
    start, builds = time.perf_counter(), builds_in_this_process()
    session = CudaSession()
    try:
        logger, cache = make_logger(), PlanCache(Path(plan_root))
        with shared_builds(TimingCacheStore(Path(plan_root), session.gpu_name)):
            _build_job(job, resources, session, logger, cache)
    finally:
        session.close()
    return time.perf_counter() - start, builds_in_this_process() > builds


def prewarm_in_process(jobs: Sequence[Job], resources: CaseResources, session: object, logger: object,
                       cache: object, say: Callable[[str], None] = print,
                       engines: Optional[Dict[str, object]] = None) -> List[Outcome]:
    """Run `jobs` one after the other in this process (the caller's CUDA session, logger and
    plan cache; builds share whatever trt.engine.shared_builds the caller set up). The REFIT
    engines opened go into `engines` (case name -> engine) when given. A job that fails is
    reported, not raised: the session builds that case itself and the test shows why."""
    from ..trt.engine import builds_in_this_process
    if not jobs:
        return []
    say(f"refit_core: building {len(jobs)} case engine job(s) into the plan cache, in this process")
    start = time.perf_counter()
    outcomes: List[Outcome] = []
    for job in jobs:  # with the session's own resources, as its open() would
        t0, builds = time.perf_counter(), builds_in_this_process()
        try:
            _build_job(job, resources, session, logger, cache, keep=engines)
            outcome = Outcome(job, time.perf_counter() - t0, built=builds_in_this_process() > builds)
        except Exception as exc:  # noqa: BLE001 - reported; the session builds the case itself
            line = " ".join(str(exc).split())[:300]
            outcome = Outcome(job, time.perf_counter() - t0, f"{type(exc).__name__}: {line}")
        outcomes.append(outcome)
        say(f"  [{len(outcomes)}/{len(jobs)}] {_status(outcome)}")
    wall = time.perf_counter() - start
    say(f"refit_core: plans ready in {wall:.1f} s")
    return outcomes


def _status(outcome: Outcome) -> str:
    status = (f"failed, the session builds it ({outcome.problem})" if outcome.problem
              else "built" if outcome.built else "read from the plan cache")
    return f"{outcome.job.label}: {outcome.seconds:.1f} s, {status}"


def _worker(job: Job, resources: CaseResources, plan_root: str) -> Outcome:
    import contextlib
    import io
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the builds' progress lines: the parent reports
            seconds, built = _run_job(job, resources, plan_root)
            return Outcome(job, seconds, built=built)
    except BaseException as exc:  # reported; the session builds the case itself and shows the error
        line = " ".join(str(exc).split())[:300]
        return Outcome(job, time.perf_counter() - start, f"{type(exc).__name__}: {line}")


def prewarm(jobs: Sequence[Job], resources: CaseResources, plan_root: Path, workers: int,
            say: Callable[[str], None] = print) -> List[Outcome]:
    """Run `jobs` in `workers` spawned processes; each job gets its own temp directory."""
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context
    if not jobs:
        return []
    workers = max(1, min(workers, len(jobs)))
    say(f"refit_core: building {len(jobs)} case engine job(s) into the plan cache, {workers} at a time "
        "(--refit-build-jobs)")
    start = time.perf_counter()
    outcomes: List[Outcome] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = []
        for i, job in enumerate(jobs):
            tmp = Path(resources.tmp_dir) / "prewarm" / f"{i:02d}-{job.case.name}-{job.kind.replace('+', '-')}"
            tmp.mkdir(parents=True, exist_ok=True)
            own = CaseResources(data_dir=resources.data_dir, cache_root=resources.cache_root, tmp_dir=tmp)
            futures.append(pool.submit(_worker, job, own, str(plan_root)))
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            say(f"  [{len(outcomes)}/{len(jobs)}] {_status(outcome)}")
    wall = time.perf_counter() - start
    total = sum(o.seconds for o in outcomes)
    say(f"refit_core: plans ready in {wall:.1f} s ({total:.1f} s of jobs, {total / max(wall, 1e-9):.1f}x)")
    return outcomes
