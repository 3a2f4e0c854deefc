"""Building a session's case engines ahead of the tests, several at a time, into the plan cache.

Builds are the GPU tier's cost (TensorRT 8.5 takes minutes for an FP16 LSTM), and a session
builds every case twice: the REFIT engine and the same model without REFIT. Each build is a
job for a worker process (spawned: its own CUDA context) that runs the case's own code path,
`case.open()` and `engine.plain_runner()`, whose plans land in the plan cache; the session's
`open()` then reads them. A case that can name its no-REFIT weights without the REFIT engine
(`RefitCase.warm_plain`) gets the two builds as two jobs.

Only cases whose engines come from the plan cache (`RefitCase.plan_cached`) are warmed. A job
that fails is reported and the session builds that case itself (the test then shows the real
error). Workers build while no test runs, so no timing overlaps a build; but tactic timing
inside concurrent builds competes for the GPU, so TensorRT may choose other kernels than in a
build on its own (`--refit-build-jobs=1` builds one at a time, in the session).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from .base import CaseResources, RefitCase

#: job kinds: the REFIT engine and the no-REFIT one in one job, or each on its own
BOTH, ENGINE, PLAIN = "engine+plain", "engine", "plain"


def default_jobs() -> int:
    """A quarter of the CPU cores, at most 3. Concurrent builds time their tactics on one GPU, so
    each takes longer: with 6 at a time on an H200 (TensorRT 8.5.3.1) the tiny MLP's FP16 builds
    took 62 s instead of a few, and 1506 s of jobs finished in 396 s, not 250."""
    return max(1, min(3, (os.cpu_count() or 4) // 4))


@dataclass(frozen=True)
class Job:
    case: RefitCase
    kind: str

    @property
    def label(self) -> str:
        return f"{self.case.name} ({'REFIT and without REFIT' if self.kind == BOTH else 'REFIT' if self.kind == ENGINE else 'without REFIT'})"


@dataclass(frozen=True)
class Outcome:
    job: Job
    seconds: float
    problem: Optional[str] = None  # one line when the job failed


def jobs_for(cases: Sequence[RefitCase]) -> List[Job]:
    """The jobs for `cases`, FP16 first (the longest builds), then in the given order."""
    out: List[Job] = []
    for case in sorted(cases, key=lambda c: c.precision != "fp16"):
        if case.warms_plain_alone:
            out += [Job(case, ENGINE), Job(case, PLAIN)]
        else:
            out.append(Job(case, BOTH))
    return out


def _run_job(job: Job, resources: CaseResources, plan_root: str) -> float:
    """In a worker process: build (or find) the job's plans in the cache; the seconds it took."""
    from ..trt.cuda import CudaSession
    from ..trt.engine import PlanCache
    from ..trt.recorders import make_logger
    start = time.perf_counter()
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
    return time.perf_counter() - start


def _worker(job: Job, resources: CaseResources, plan_root: str) -> Outcome:
    import contextlib
    import io
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the builds' progress lines: the parent reports
            return Outcome(job, _run_job(job, resources, plan_root))
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
            status = f"failed, the session builds it ({outcome.problem})" if outcome.problem else "ready"
            say(f"  [{len(outcomes)}/{len(jobs)}] {outcome.job.label}: {outcome.seconds:.1f} s, {status}")
    wall = time.perf_counter() - start
    total = sum(o.seconds for o in outcomes)
    say(f"refit_core: plans ready in {wall:.1f} s ({total:.1f} s of jobs, {total / max(wall, 1e-9):.1f}x)")
    return outcomes
