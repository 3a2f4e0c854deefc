"""Building a session's case engines ahead of the tests, several at a time, into the plan cache.

Builds are the GPU tier's cost (TensorRT 8.5 takes minutes for an FP16 LSTM), and a session
builds every case twice: the REFIT engine and the same model without REFIT. Each build is a
job for a worker process (spawned: its own CUDA context) that runs the case's own code path,
`case.open()` and `engine.plain_runner()`, whose plans land in the plan cache; the session's
`open()` then reads them. A case that can name its no-REFIT weights without the REFIT engine
(`RefitCase.warm_plain`) gets the two builds as two jobs.

Jobs start longest first: by the seconds the same job took to build in an earlier session
with the same TensorRT version and GPU (kept in ``prewarm-build-times.json`` beside the plans;
a job that only read its plans is not recorded), and jobs never measured before all others,
FP16 first, so that the longest build does not start last. (Measured on an H200, it did not
shorten the tier: concurrent builds share one GPU's tactic timing, and the builds ended near their
total time / workers in either order.)

Only cases whose engines come from the plan cache (`RefitCase.plan_cached`) are warmed. A job
that fails is reported and the session builds that case itself (the test then shows the real
error). Workers build while no test runs, so no timing overlaps a build; but tactic timing
inside concurrent builds competes for the GPU, so TensorRT may choose other kernels than in a
build on its own (`--refit-build-jobs=1` builds one at a time, in the session).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .base import CaseResources, RefitCase

#: beside the plans: {"<TensorRT version> | <GPU> | <case> | <job kind>": seconds of its last build}
BUILD_TIMES_FILE = "prewarm-build-times.json"

#: job kinds: the REFIT engine and the no-REFIT one in one job, or each on its own
BOTH, ENGINE, PLAIN = "engine+plain", "engine", "plain"


#: the --refit-build-jobs default: default_jobs() computes it, the option's help and docs/options.md say it
MAX_DEFAULT_JOBS = 3
DEFAULT_JOBS_TEXT = f"a quarter of the CPU cores, at most {MAX_DEFAULT_JOBS}"


def default_jobs() -> int:
    """DEFAULT_JOBS_TEXT. Concurrent builds time their tactics on one GPU, so
    each takes longer: with 6 at a time on an H200 (TensorRT 8.5.3.1) the tiny MLP's FP16 builds
    took 62 s instead of a few, and 1506 s of jobs finished in 396 s, not 250."""
    return max(1, min(MAX_DEFAULT_JOBS, (os.cpu_count() or 4) // 4))


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
    try:
        data = json.loads((Path(plan_root) / BUILD_TIMES_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(k, str) and isinstance(v, (int, float))}


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


def _run_job(job: Job, resources: CaseResources, plan_root: str) -> Tuple[float, bool]:
    """In a worker process: build (or find) the job's plans in the cache; the seconds it took
    and whether it built any."""
    from ..trt.cuda import CudaSession
    from ..trt.engine import PlanCache, builds_in_this_process
    from ..trt.recorders import make_logger
    start, builds = time.perf_counter(), builds_in_this_process()
    session = CudaSession()
    try:
        logger, cache = make_logger(), PlanCache(Path(plan_root))
        if job.kind == PLAIN:
            job.case.warm_plain(resources, session, logger, cache)
        else:
            engine = job.case.open(resources, session, logger, cache)
            try:
                if job.kind == BOTH:
                    engine.plain_runner()
            finally:
                engine.close()
    finally:
        session.close()
    return time.perf_counter() - start, builds_in_this_process() > builds


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
            status = (f"failed, the session builds it ({outcome.problem})" if outcome.problem
                      else "built" if outcome.built else "read from the plan cache")
            say(f"  [{len(outcomes)}/{len(jobs)}] {outcome.job.label}: {outcome.seconds:.1f} s, {status}")
    wall = time.perf_counter() - start
    total = sum(o.seconds for o in outcomes)
    say(f"refit_core: plans ready in {wall:.1f} s ({total:.1f} s of jobs, {total / max(wall, 1e-9):.1f}x)")
    return outcomes
