"""`python -m refit_core selfcheck`: run the GPU tier once per injected fault, print a kill matrix.

Each fault (refit_core/fault_catalog.py) runs in a fresh `python -m pytest -x` subprocess with
`-p refit_core.faults --refit-fault NAME`: the plugin patches the TensorRT boundary before any
engine exists and orders the tests cheap and precise first, so a killed fault stops within
seconds. A fault is killed when its run fails a test (or the process dies); it survives when
the run passes. A survivor is a hole in the suite. The no-fault baseline (`--refit-fault
none`, same order) must pass for the matrix to mean anything; `--no-baseline` skips it and the
JSON then says "not run". The plan cache ($REFIT_CACHE_DIR) is inherited, so engines are
loaded, not rebuilt.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from .fault_catalog import FAULTS, Fault, get_fault
from .faults import FAULT_OPTION, NO_FAULT, REPORT_OPTION

SCHEMA = "refit_core.selfcheck/1"
DEFAULT_SELECT = "gpu"
DEFAULT_IGNORE = ("tests/benchmarks",)
DEFAULT_PATHS = ("tests",)
DEFAULT_TIMEOUT_S = 1800.0

#: statuses: killed (a test failed), crashed (the process died: also a kill), survived (the run
#: passed), timeout, error (pytest could not run: usage error, nothing collected, ...)
KILLED_STATUSES = ("killed", "crashed")


@dataclass
class RunOutcome:
    """One pytest run under one fault (NO_FAULT for the baseline)."""

    fault: str
    kind: Optional[str]
    status: str
    first_failure: Optional[str] = None
    message: Optional[str] = None
    seconds: float = 0.0
    returncode: Optional[int] = None
    counts: Dict[str, int] = field(default_factory=dict)
    bites: Optional[int] = None
    log: Optional[str] = None

    @property
    def killed(self) -> bool:
        return self.status in KILLED_STATUSES


@dataclass
class SelfcheckOptions:
    faults: List[Fault]
    baseline: bool = True
    timeout_s: float = DEFAULT_TIMEOUT_S
    select: str = DEFAULT_SELECT
    ignore: Sequence[str] = DEFAULT_IGNORE
    paths: Sequence[str] = DEFAULT_PATHS
    pytest_args: Sequence[str] = ()
    work_dir: Path = Path("selfcheck-runs")
    python: str = sys.executable
    jobs: int = 1  # faults run this many at a time (each in its own process; the GPU is shared)


def select_faults(names: Optional[Sequence[str]]) -> List[Fault]:
    """Faults by name (comma lists allowed), registry order; all of them for None/empty."""
    if not names:
        return list(FAULTS)
    wanted: List[str] = []
    for chunk in names:
        wanted += [n.strip() for n in str(chunk).split(",") if n.strip()]
    chosen = [get_fault(n) for n in wanted]  # KeyError names the unknown one
    return [f for f in FAULTS if f in chosen]


def pytest_command(opts: SelfcheckOptions, fault: str, report: Path, results: Path) -> List[str]:
    cmd = [opts.python, "-m", "pytest", "-x", "-q", "-p", "refit_core.faults", f"{FAULT_OPTION}={fault}",
           f"{REPORT_OPTION}={report}"]
    if not any(str(a).startswith("--refit-results") for a in opts.pytest_args):
        cmd.append(f"--refit-results={results}")  # never into the project's results/
    if opts.select:
        cmd += ["-m", opts.select]
    cmd += [f"--ignore={path}" for path in opts.ignore]
    return cmd + list(opts.pytest_args) + list(opts.paths)


def _environment() -> Dict[str, str]:
    """The parent's environment, with this refit_core first on the path (the subprocess must
    test the code that is being checked, not another installed copy)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run(cmd: List[str], log_path: Path, timeout_s: float) -> Optional[int]:
    """Run `cmd` in its own process group, output to `log_path`; None on timeout (the group,
    which this call started, is then killed)."""
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_environment(),
                                start_new_session=True)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            return None


def classify(returncode: Optional[int], report: Optional[Dict[str, Any]], fault: str, kind: Optional[str],
             seconds: float, log: Optional[str] = None) -> RunOutcome:
    """What one run says: killed / crashed / survived / timeout / error."""
    report = report or {}
    out = RunOutcome(fault=fault, kind=kind, status="error", first_failure=report.get("first_failure"),
                     message=report.get("first_failure_message"), seconds=round(seconds, 1),
                     returncode=returncode, counts=dict(report.get("counts") or {}), bites=report.get("bites"),
                     log=log)
    if returncode is None:
        out.status = "timeout"
        out.message = f"still running after {seconds:.0f} s (last test started: {report.get('last_started')})"
    elif returncode == 0:
        out.status = "survived"
    elif returncode == 1 and out.first_failure:
        out.status = "killed"
    elif returncode < 0 or returncode >= 128:
        out.status = "crashed"
        sig = -returncode if returncode < 0 else returncode - 128
        out.first_failure = out.first_failure or report.get("last_started")
        out.message = f"the pytest process died (signal {sig}) in {report.get('last_started')}"
    else:
        out.message = (f"pytest exit code {returncode} (2 interrupted, 3 internal error, 4 usage error, "
                       f"5 no tests collected): see {log}")
    return out


def run_one(opts: SelfcheckOptions, fault: Optional[Fault]) -> RunOutcome:
    name = NO_FAULT if fault is None else fault.name
    opts.work_dir.mkdir(parents=True, exist_ok=True)
    report_path = opts.work_dir / f"{name}.report.json"
    if report_path.exists():
        report_path.unlink()
    log_path = opts.work_dir / f"{name}.log"
    cmd = pytest_command(opts, name, report_path, opts.work_dir / f"{name}.results.json")
    start = time.perf_counter()
    code = _run(cmd, log_path, opts.timeout_s)
    seconds = time.perf_counter() - start
    report = None
    if report_path.exists():
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
        except ValueError:
            report = None
    return classify(code, report, name, None if fault is None else fault.kind, seconds, str(log_path))


def format_matrix(outcomes: Sequence[RunOutcome]) -> str:
    """fault | class | killed? | first failing test | seconds, aligned; the baseline row first."""
    rows = [("fault", "class", "killed?", "first failing test", "seconds")]
    for o in outcomes:
        verdict = {"killed": "yes", "crashed": "yes (crash)", "survived": "NO", "timeout": "NO (timeout)",
                   "error": "NO (error)"}.get(o.status, o.status)
        if o.fault == NO_FAULT:
            verdict = {"survived": "passed", "killed": "FAILED"}.get(o.status, o.status.upper())
        rows.append((o.fault if o.fault != NO_FAULT else "(baseline: no fault)", o.kind or "-", verdict,
                     o.first_failure or ("-" if not o.message else o.message), f"{o.seconds:.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]:<{widths[3]}}  {r[4]:>7}"
             for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def summary(baseline: Optional[RunOutcome], outcomes: Sequence[RunOutcome], ran_all: bool = True) -> Dict[str, Any]:
    survived = [o.fault for o in outcomes if not o.killed]
    baseline_status = "not run" if baseline is None else ("passed" if baseline.status == "survived" else "failed")
    kinds: Dict[str, List[str]] = {}
    for o in outcomes:
        kinds.setdefault(o.kind or "-", []).append(o.fault)
    return {"faults": len(outcomes), "killed": len(outcomes) - len(survived), "survived": survived,
            "baseline": baseline_status, "classes": {k: sorted(v) for k, v in kinds.items()},
            "passed": baseline_status != "failed" and not survived and ran_all}


def to_json(opts: SelfcheckOptions, baseline: Optional[RunOutcome], outcomes: Sequence[RunOutcome],
            ran_all: bool, argv: Sequence[str]) -> Dict[str, Any]:
    from .provenance import now_iso, suite_identity
    def row(o: RunOutcome) -> Dict[str, Any]:
        d = asdict(o)
        d["killed"] = o.killed
        return d
    return {"schema": SCHEMA, "finished": now_iso(), "suite": suite_identity(), "command_line": list(argv),
            "pytest": {"select": opts.select, "ignore": list(opts.ignore), "paths": list(opts.paths),
                       "extra_args": list(opts.pytest_args), "timeout_s": opts.timeout_s},
            "baseline": "not run" if baseline is None else row(baseline),
            "faults": [row(o) for o in outcomes],
            "faults_not_run": [f.name for f in opts.faults][len(outcomes):],
            "summary": summary(baseline, outcomes, ran_all)}


def run_selfcheck(opts: SelfcheckOptions, json_path: Optional[Path] = None, argv: Sequence[str] = (),
                  progress: Callable[[str], None] = print,
                  run: Callable[[SelfcheckOptions, Optional[Fault]], RunOutcome] = run_one) -> int:
    """Baseline (unless skipped), then every fault; 0 when the baseline passed (or was not
    run) and every fault was killed, 1 otherwise."""
    baseline: Optional[RunOutcome] = None
    outcomes: List[RunOutcome] = []
    ran_all = True
    total = len(opts.faults) + (1 if opts.baseline else 0)
    step = 0
    if opts.baseline:
        step += 1
        progress(f"[{step}/{total}] baseline (no fault) ...")
        baseline = run(opts, None)
        progress(f"    baseline: {'passed' if baseline.status == 'survived' else baseline.status.upper()} "
                 f"in {baseline.seconds:.1f} s")
        if baseline.status != "survived":
            progress(f"    the baseline must pass for the kill matrix to mean anything: "
                     f"{baseline.first_failure or baseline.message} (log: {baseline.log}); no fault run")
            ran_all = False
    if ran_all:
        def done(o: RunOutcome, step: int) -> None:
            progress(f"[{step}/{total}] {o.fault} ({o.kind}): {'killed' if o.killed else o.status.upper()} "
                     f"in {o.seconds:.1f} s{' by ' + o.first_failure if o.first_failure else ''}"
                     f"{'' if o.bites is None else f'; the fault bit {o.bites} times'}")
        if opts.jobs <= 1:
            for fault in opts.faults:
                progress(f"[{step + 1}/{total}] {fault.name} ({fault.kind}) ...")
                outcomes.append(run(opts, fault))
                step += 1
                done(outcomes[-1], step)
        else:
            from concurrent.futures import ThreadPoolExecutor, as_completed
            progress(f"{len(opts.faults)} faults, {opts.jobs} at a time ...")
            by_name: Dict[str, RunOutcome] = {}
            with ThreadPoolExecutor(max_workers=opts.jobs) as pool:
                futures = [pool.submit(run, opts, fault) for fault in opts.faults]
                for future in as_completed(futures):
                    o = future.result()
                    by_name[o.fault] = o
                    step += 1
                    done(o, step)
            outcomes = [by_name[f.name] for f in opts.faults]  # registry order in the matrix
    progress("")
    progress(format_matrix(([baseline] if baseline is not None else []) + outcomes))
    data = to_json(opts, baseline, outcomes, ran_all, argv)
    s = data["summary"]
    progress(f"\n{s['killed']}/{s['faults']} faults killed; baseline {s['baseline']}"
             + (f"; SURVIVED: {', '.join(s['survived'])}" if s["survived"] else ""))
    if json_path is not None:
        from .fileio import atomic_write_json
        atomic_write_json(json_path, data, indent=2, sort_keys=False)
        progress(f"kill matrix written to {json_path}")
    return 0 if s["passed"] else 1


# --------------------------------------------------------------------------------------
# The CLI subcommand
# --------------------------------------------------------------------------------------
def add_selfcheck_arguments(p: Any) -> None:
    p.add_argument("--faults", action="append", metavar="NAME[,NAME]",
                   help="run only these faults (repeatable, comma lists; default: all); see --list")
    p.add_argument("--list", action="store_true", help="list the faults and exit")
    p.add_argument("--baseline", dest="baseline", action="store_true", default=True,
                   help="first run the tests without a fault; it must pass (default)")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the baseline (e.g. right after a passing GPU run of the same code); "
                        "the JSON then says baseline \"not run\"")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help=f"per-run limit; a run past it counts as not killed (default {DEFAULT_TIMEOUT_S:.0f})")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="run N faults at a time, each in its own pytest process (default 1; a fault's "
                        "seconds then include sharing the machine)")
    p.add_argument("--json", metavar="PATH", help="write the kill matrix here as JSON (atomic write)")
    p.add_argument("--work-dir", default=None, metavar="DIR",
                   help="per-run logs, reports and results records (default: a new temporary directory)")
    p.add_argument("--select", "-m", dest="select", default=DEFAULT_SELECT, metavar="MARKEXPR",
                   help=f"pytest -m expression (default {DEFAULT_SELECT!r}; '' for none)")
    p.add_argument("--ignore", action="append", default=None, metavar="PATH",
                   help=f"pytest --ignore paths (default: {', '.join(DEFAULT_IGNORE)}: no benchmarks)")
    p.add_argument("--tests", action="append", default=None, metavar="PATH",
                   help=f"test paths (default: {', '.join(DEFAULT_PATHS)})")
    p.add_argument("pytest_args", nargs="*", metavar="-- PYTEST_ARGS",
                   help="after '--': passed to every pytest run (e.g. --refit-data-dir=DIR -p no:cacheprovider)")


def cmd_selfcheck(args: Any) -> int:
    from .errors import RefitCoreError
    if args.list:
        from .fault_catalog import describe
        print(describe())
        return 0
    if args.timeout <= 0:
        raise RefitCoreError(f"--timeout must be > 0 seconds (got {args.timeout:g})")
    if args.jobs < 1:
        raise RefitCoreError(f"--jobs must be >= 1 (got {args.jobs})")
    try:
        faults = select_faults(args.faults)
    except KeyError as exc:
        raise RefitCoreError(str(exc.args[0])) from None
    if args.work_dir:
        work = Path(args.work_dir)
    else:
        import tempfile
        work = Path(tempfile.mkdtemp(prefix="refit-selfcheck-"))
    opts = SelfcheckOptions(faults=faults, baseline=args.baseline, timeout_s=float(args.timeout),
                            select=args.select, ignore=tuple(args.ignore if args.ignore is not None else DEFAULT_IGNORE),
                            paths=tuple(args.tests or DEFAULT_PATHS), pytest_args=tuple(args.pytest_args or ()),
                            work_dir=work, jobs=int(args.jobs))
    print(f"refit_core selfcheck: {len(faults)} faults{', baseline first' if opts.baseline else ', no baseline'}; "
          f"logs in {work}")
    return run_selfcheck(opts, Path(args.json) if args.json else None, argv=sys.argv)
