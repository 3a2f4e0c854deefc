"""The state of one refit_core pytest run and the helpers the plugin's hooks and fixtures share.

`RefitSession` (kept in `config.stash` under SESSION_KEY, and registered as a plugin so that
its own hook methods run) holds the results recorder, the stable test ids, the engines built
for the cases, and what the gate found.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from .errors import DataError, RefitCoreError, TrainingUnavailable

PATH_OPTIONS = ("--refit-baseline", "--refit-results", "--refit-model")
#: Fixtures that run a sample's engine, and the case each belongs to (a test's outcome is attributed to it).
CASE_FIXTURES = {"mnist_engine": "mnist", "trained_lenet": "mnist", "mnist_reference_logits": "mnist"}
DEFAULT_HYPOTHESIS_PROFILE = "ci"

#: the phases a GPU run records (ResultsRecorder.record_phase): the engines built ahead, each
#: case's checks ("case.<name>"), the benchmarks, the tests of no case, and the whole session
BUILDS_AHEAD_PHASE, CASE_PHASE_PREFIX, BENCHMARK_PHASE, OTHER_PHASE, TOTAL_PHASE = (
    "builds_ahead", "case.", "benchmarks", "other_tests", "total")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")



_GPU_REASON: Dict[str, Optional[str]] = {}


def gpu_skip_reason() -> Optional[str]:
    """None when the GPU tier can run here, else one sentence saying what is missing (cached)."""
    if "reason" not in _GPU_REASON:
        from .trt.cuda import gpu_unavailable_reason
        _GPU_REASON["reason"] = gpu_unavailable_reason()
    return _GPU_REASON["reason"]


def report_reason(report: Any) -> Optional[str]:
    """A skip's reason, or the one line that says why a test (or a module's import) failed."""
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple) and len(longrepr) == 3:
        text = str(longrepr[2])
        return text[len("Skipped: "):] if text.startswith("Skipped: ") else text
    if report.failed and longrepr is not None:
        crash = getattr(longrepr, "reprcrash", None)
        if crash is not None and crash.message:
            return str(crash.message).splitlines()[0][:300]
        lines = [line for line in str(longrepr).splitlines() if line.strip()]
        return lines[-1].strip()[:300] if lines else None
    return None


def separate_form_paths(config: Any) -> Dict[Path, str]:
    """Existing paths given to our path options as a separate argument (`--opt PATH`), each
    with the option that took it."""
    args = list(config.invocation_params.args)
    out: Dict[Path, str] = {}
    for i, arg in enumerate(args[:-1]):
        if arg in PATH_OPTIONS:
            value = Path(args[i + 1]).expanduser()
            path = value if value.is_absolute() else Path(config.invocation_params.dir) / value
            if path.exists():
                out[path.resolve()] = arg
    return out


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def rootdir_hijacked(rootpath: Path, inipath: Optional[Path], invocation_dir: Path, anchors: List[Path],
                     values: List[Path]) -> Optional[Path]:
    """The value that moved pytest's rootdir, or None.

    pytest picks its rootdir and ini file before any plugin can declare options, treating
    the value of `--opt PATH` as a test path; a PATH outside the project then moves the
    rootdir to PATH's directory (and pytest.ini is not read). That happened when PATH lies
    inside the rootdir but a test path (or, with none, the invocation directory) does not,
    or when no ini file was found and the rootdir is not where pytest was started.
    """
    for value in values:
        if not _inside(value, rootpath):
            continue
        if any(not _inside(a, rootpath) for a in anchors):
            return value
        if inipath is None and rootpath.resolve() != invocation_dir.resolve():
            return value
    return None


class RefitSession:
    """Per-run state: the results recorder, stable test ids, shared case engines, the gate."""

    def __init__(self, config: Any) -> None:
        from .provenance import now_iso
        self.config = config
        self.started = now_iso()
        self.stable_ids: Dict[str, str] = {}
        self.test_cases: Dict[str, List[str]] = {}  # pytest node id -> the cases the test uses
        self.engines: Dict[str, Any] = {}
        self.recorder: Any = None
        self.gpu_used = False
        self.results_path: Optional[Path] = None
        self.gate_lines: List[str] = []
        self.problem: Optional[str] = None  # a sentence that makes the session exit 2
        self.hypothesis_profile = DEFAULT_HYPOTHESIS_PROFILE
        self.user_cases: List[str] = []  # --refit-model cases registered for this session
        self.needed_cases: List[str] = []  # cases the selected tests open, in test order (collection)
        self.prewarmed = False
        self.profile = "default"  # --refit-profile (set in pytest_configure)
        self.left_to_full = 0  # GPU tests the profile deselected
        self.item_phase: Dict[str, str] = {}  # nodeid -> phase its time is booked to
        self.phase_seconds: Dict[str, float] = {}
        self.current_nodeid: Optional[str] = None
        self.prewarm_seconds = 0.0
        self.prewarm_nodeid: Optional[str] = None  # the test whose setup ran the builds ahead
        self.clock_start = time.perf_counter()
        self.clock_end: Optional[float] = None

    # ---- results ----------------------------------------------------------------------
    def get_recorder(self) -> Any:
        if self.recorder is None:
            from .reporting.results import ResultsRecorder
            self.recorder = ResultsRecorder()
        return self.recorder

    def stable_id(self, nodeid: str) -> str:
        if nodeid in self.stable_ids:
            return self.stable_ids[nodeid]
        from .reporting.schema import canonical_test_id
        return canonical_test_id(nodeid)

    # ---- hooks (this object is registered as a plugin, as pytest-benchmark does) -------------
    def pytest_collectreport(self, report: Any) -> None:
        """A module that fails to import, or skips as a whole, is evidence too."""
        if report.failed or report.skipped:
            self.get_recorder().record_test(self.stable_id(report.nodeid), report.outcome, report_reason(report))

    def pytest_sessionstart(self, session: Any) -> None:
        self.clock_start = time.perf_counter()

    def pytest_sessionfinish(self, session: Any) -> None:
        self.clock_end = time.perf_counter()

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.current_nodeid = nodeid

    def phases(self) -> Dict[str, float]:
        """Wall seconds per phase: builds ahead, each case's checks, benchmarks, other tests,
        and the total (session start to end, or to now while it runs)."""
        out = {BUILDS_AHEAD_PHASE: round(self.prewarm_seconds, 3)}
        out.update((k, round(v, 3)) for k, v in sorted(self.phase_seconds.items()))
        end = self.clock_end if self.clock_end is not None else time.perf_counter()
        out[TOTAL_PHASE] = round(end - self.clock_start, 3)
        return out

    def pytest_runtest_logreport(self, report: Any) -> None:
        seconds = float(getattr(report, "duration", 0.0) or 0.0)
        if report.when == "setup" and report.nodeid == self.prewarm_nodeid:
            seconds = max(0.0, seconds - self.prewarm_seconds)  # booked to the builds ahead
        phase = self.item_phase.get(report.nodeid)
        if phase is not None:
            self.phase_seconds[phase] = self.phase_seconds.get(phase, 0.0) + seconds
        if report.when == "call" or report.outcome != "passed":
            outcome = "failed" if report.outcome == "failed" else report.outcome
            self.get_recorder().record_test(self.stable_id(report.nodeid), outcome, report_reason(report),
                                            cases=self.test_cases.get(report.nodeid, ()))

    # ---- engines ----------------------------------------------------------------------
    def say(self, line: str) -> None:
        """A progress line on the terminal, past pytest's output capture."""
        from contextlib import nullcontext
        capman = self.config.pluginmanager.getplugin("capturemanager")
        reporter = self.config.pluginmanager.getplugin("terminalreporter")
        with capman.global_and_fixture_disabled() if capman is not None else nullcontext():
            if reporter is not None:
                reporter.write_line(line)
            else:
                print(line, flush=True)

    def case_skip_reason(self, case: Any, resources: Any, cuda_session: Any) -> Optional[str]:
        if case.slow_build and self.profile != "full":
            return f"{case.slow_build}; run with --refit-profile full to include it"
        reason = case.unavailable_reason(resources)
        if reason is None and case.precision == "tf32" and cuda_session.compute_capability < (8, 0):
            reason = (f"TF32 needs compute capability >= 8.0 (Ampere); {cuda_session.gpu_name} has "
                      f"{'.'.join(map(str, cuda_session.compute_capability))}, where TF32 would equal FP32")
        return reason

    def prewarm(self, resources: Any, cuda_session: Any, logger: Any, plan_cache: Any) -> None:
        """Once, before the first case engine: build the plan-cached engines of every case the
        selected tests use (cases.prewarm): in this process by default, one Builder and one
        timing cache for all; --refit-build-jobs=N>1 in N worker processes. Its wall time is
        the builds-ahead phase."""
        if self.prewarmed:
            return
        self.prewarmed = True
        from .cases import registry
        from .cases.prewarm import (default_jobs, jobs_for, load_build_times, prewarm, prewarm_in_process,
                                    record_build_times)
        from .trt.compat import trt_version_string
        workers = self.config.getoption("--refit-build-jobs", None)
        workers = default_jobs() if workers is None else int(workers)
        cases = [registry.get(n) for n in self.needed_cases if n in registry.CASES and n not in self.engines]
        cases = [c for c in cases if c.plan_cached and self.case_skip_reason(c, resources, cuda_session) is None]
        if plan_cache is None or not cases:
            return
        start = time.perf_counter()
        scope = f"TensorRT {trt_version_string()} | {cuda_session.gpu_name}"
        jobs = jobs_for(cases, load_build_times(plan_cache.root), scope)
        if workers <= 1:
            outcomes = prewarm_in_process(jobs, resources, cuda_session, logger, plan_cache, say=self.say,
                                          engines=self.engines)
        else:
            outcomes = prewarm(jobs, resources, plan_cache.root, workers, say=self.say)
        record_build_times(plan_cache.root, outcomes, scope)
        self.prewarm_seconds = time.perf_counter() - start
        self.prewarm_nodeid = self.current_nodeid

    def open_case(self, case: Any, resources: Any, cuda_session: Any, logger: Any, plan_cache: Any,
                  **inputs: Any) -> Any:
        """The case's engine, built once per session (skips with the reason when it cannot be)."""
        if case.name not in self.engines:
            reason = self.case_skip_reason(case, resources, cuda_session)
            if reason is not None:
                pytest.skip(f"case {case.name}: {reason}")
            self.prewarm(resources, cuda_session, logger, plan_cache)
        if case.name not in self.engines:  # the builds ahead keep the engines they opened
            try:
                self.engines[case.name] = case.open(resources, cuda_session, logger, plan_cache, **inputs)
            except TrainingUnavailable as exc:
                pytest.skip(f"case {case.name}: {exc}")
            except DataError as exc:
                if in_ci():
                    pytest.fail(f"CI must run case {case.name}, but: {exc}", pytrace=False)
                pytest.skip(f"case {case.name}: {exc}")
        return self.engines[case.name]


SESSION_KEY = pytest.StashKey[RefitSession]()


def refit_session(config: Any) -> RefitSession:
    return config.stash[SESSION_KEY]


def provenance_of(state: RefitSession) -> Dict[str, Any]:
    from .provenance import run_provenance
    from .trt import compat
    return run_provenance(["pytest"] + list(state.config.invocation_params.args), state.hypothesis_profile,
                          state.started, compat.build_info(), compat.tactic_setting())


def cases_of_item(item: Any) -> List[str]:
    """The registered cases a test uses: its `case_engine`/`refit_case` parameter, `bidaf-<key>` for
    its `bidaf_model` parameter, and the case of each sample fixture it asks for (CASE_FIXTURES)."""
    out: Dict[str, None] = {}
    spec = getattr(item, "callspec", None)
    params = spec.params if spec is not None else {}
    for name in ("case_engine", "refit_case"):
        if name in params:
            out[str(params[name])] = None
    if "bidaf_model" in params:
        out[f"bidaf-{params['bidaf_model']}"] = None
    for fixture in getattr(item, "fixturenames", ()):
        if fixture in CASE_FIXTURES:
            out[CASE_FIXTURES[fixture]] = None
    return list(out)


def record_case_inputs(recorder: Any) -> None:
    """cases.<case>.inputs_sha256 of every case a test that did not skip used, or that recorded a
    check, from the registered case (RefitCase.inputs_sha256()); ValueError naming a case that
    cannot say what it ran on."""
    from .cases import registry
    recorded = recorder.get(("cases",), {}) or {}
    for name in list(dict.fromkeys(recorder.test_cases() + list(recorded))):
        if (recorded.get(name) or {}).get("inputs_sha256"):
            continue
        if name not in registry.CASES:
            raise ValueError(f"case {name!r} is in the record but not registered: cannot say what it ran on")
        try:
            digest = registry.get(name).inputs_sha256()
        except (NotImplementedError, OSError, RefitCoreError) as exc:
            raise ValueError(f"case {name!r} cannot say what it ran on (inputs_sha256): {exc}") from None
        recorder.record_case_inputs(name, digest)
