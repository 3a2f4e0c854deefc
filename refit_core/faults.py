"""The pytest plugin that injects one fault (refit_core/fault_catalog.py) at the TensorRT boundary.

Load it with `-p refit_core.faults --refit-fault NAME`; it patches in pytest_configure, before
any engine exists, and writes what happened (first failing test, how often the fault bit) to
`--refit-fault-report PATH`. `--refit-fault none` patches nothing (the self-check's baseline)
but orders the tests the same way. `python -m refit_core selfcheck` (refit_core/selfcheck.py)
runs the GPU tier once per fault with it.
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional

import pytest

from .fault_catalog import FAULTS_BY_NAME, Patcher, fault_names, get_fault

FAULT_OPTION = "--refit-fault"
#: Set by the fault plugin for the processes the tests start: a test that runs TensorRT in a
#: subprocess calls apply_from_environment() there, so the fault reaches it too.
FAULT_ENV = "REFIT_INJECTED_FAULT"
REPORT_OPTION = "--refit-fault-report"
NO_FAULT = "none"


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

