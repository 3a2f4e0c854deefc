"""refit_core's pytest plugin: options, markers, Hypothesis profiles, the session fixtures that
build and share engines, the results recorder and the regression gate.

Load it with `pytest_plugins = ["refit_core.pytest_plugin"]` in a root conftest.py, or install
the package: its `pytest11` entry point (named after this module, so both ways load it once)
loads it in every pytest run. Importing it imports no TensorRT, pycuda, onnx or torch.

State lives in one `RefitSession` per pytest run, kept in `config.stash`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from .config import DATA_DIR_ENV
from .cases.registry import DEFAULT_PROFILE, PROFILE_ENV, PROFILES
from .errors import RefitCoreError
# the fixtures: pytest collects them from this module's namespace
from .pytest_fixtures import (bidaf_engine, bidaf_model, bidaf_ort, bidaf_prepared, case_engine,  # noqa: F401
                              case_names, case_resources, cuda_session, mnist_dir, mnist_engine,
                              mnist_reference_logits, mnist_test_set, plan_cache, refit_case, results,
                              trained_lenet, trt_logger)
from .pytest_session import (BENCHMARK_PHASE, BUILDS_AHEAD_PHASE, CASE_PHASE_PREFIX, OTHER_PHASE,  # noqa: F401
                             TOTAL_PHASE, DEFAULT_HYPOTHESIS_PROFILE, PATH_OPTIONS, SESSION_KEY, RefitSession,
                             cases_of_item, gpu_skip_reason, provenance_of, record_case_inputs, refit_session,
                             rootdir_hijacked, separate_form_paths)

MARKERS = {
    "full_profile": "runs only under --refit-profile full (a slow build or a slow benchmark)",
    "gpu": "needs a CUDA GPU, TensorRT and pycuda (run with `pytest -m gpu`); skipped with the reason otherwise",
    "slow": "takes more than a few seconds on 2 CPU cores (training, regenerating the BiDAF stand-in)",
    "serial": "must not run concurrently with other GPU work (timing, streams)",
    "trt_feature(name)": "needs a TensorRT feature (refit_core.trt.compat.FEATURES); skipped naming the version",
}
HYPOTHESIS_PROFILE_ENV = "HYPOTHESIS_PROFILE"

try:  # profiles: `ci` (few examples) and `thorough` derived from it; pick with --hypothesis-profile
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", max_examples=8, deadline=None,
                              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("thorough", settings.get_profile("ci"), max_examples=150)
except ImportError:  # pragma: no cover - hypothesis is in both requirement sets
    settings = None


# --------------------------------------------------------------------------------------
# Options and configuration
# --------------------------------------------------------------------------------------
def pytest_addoption(parser: Any) -> None:
    from .reporting.tolerances import add_tolerance_options
    group = parser.getgroup("refit_core", "refit_core (TensorRT refit verification)")
    group.addoption("--refit-data-dir", "--data-dir", dest="refit_data_dir", default=None, metavar="DIR",
                    help=f"directory with the MNIST IDX files (or an mnist/ folder); default ${DATA_DIR_ENV} "
                         "(--data-dir: the same option's former name)")
    group.addoption("--refit-results", default=None, metavar="PATH",
                    help="where a GPU run writes its results JSON (default: results/trt<version>-<gpu>-<time>.json)")
    group.addoption("--refit-baseline", default=None, metavar="FILE",
                    help="compare this run's results with FILE at the end; exit 1 on a regression, 2 when "
                         "there is nothing to compare. Write --refit-baseline=FILE when FILE lies outside the project")
    group.addoption("--refit-gate-allow-missing", action="append", default=[], metavar="PATTERN",
                    help="gate: a baseline metric/test matching PATTERN (fnmatch) may be missing (repeatable)")
    group.addoption("--refit-gate-allow-different-inputs", action="store_true", default=False,
                    help="gate: compare the cases whose inputs match the baseline's and list the others as not "
                         "compared (default: a case run on different inputs refuses the comparison, exit 2)")
    group.addoption("--refit-gate-compare-timings-across-gpus", action="store_true", default=False,
                    help="gate: compare timings even when the two runs used different GPU models or drivers")
    add_tolerance_options(group.addoption, prefix="refit-gate-")
    group.addoption("--refit-model", action="append", default=[], metavar="MODEL.onnx",
                    help="add your ONNX model as a case of the generic refit checks (repeatable); "
                         "write --refit-model=PATH when PATH lies outside the project")
    from .cases.prewarm import DEFAULT_JOBS_TEXT
    group.addoption("--refit-build-jobs", type=int, default=None, metavar="N",
                    help="build the case engines the selected tests need before the first one is used "
                         f"(default: {DEFAULT_JOBS_TEXT}; sharing one Builder and the timing caches; "
                         "N > 1: N at a time in worker processes)")
    group.addoption("--refit-profile", default=None, metavar="NAME",
                    help="which GPU tests run: 'default' (every check on every FP32 case, one representative "
                         "case per other precision, no slow builds) or 'full' (the whole case x precision "
                         f"matrix and the slow builds); default ${PROFILE_ENV}, else 'default'")
    group.addoption("--refit-shapes", action="append", default=[], metavar="NAME:DIMS",
                    help="probe shape of a --refit-model input with dynamic dimensions, trtexec style: "
                         "input:1x3x224x224 (repeatable)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: Any) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    session = RefitSession(config)
    config.stash[SESSION_KEY] = session
    session.profile = chosen_profile(config)
    config.pluginmanager.register(session, "refit_core-session")
    if settings is not None:
        chosen = config.getoption("hypothesis_profile", None) or os.environ.get(HYPOTHESIS_PROFILE_ENV) \
            or DEFAULT_HYPOTHESIS_PROFILE
        session.hypothesis_profile = chosen
        if not config.getoption("hypothesis_profile", None):
            settings.load_profile(chosen)
    _register_user_models(config)
    anchors = [Path(a.split("::")[0]) for a in config.args] or [Path(config.invocation_params.dir)]
    anchors = [a if a.is_absolute() else Path(config.invocation_params.dir) / a for a in anchors]
    separate = separate_form_paths(config)
    moved = rootdir_hijacked(Path(config.rootpath), config.inipath, Path(config.invocation_params.dir), anchors,
                             list(separate))
    if moved is not None:
        option = separate.get(moved, PATH_OPTIONS[0])
        raise pytest.UsageError(
            f"refit_core: pytest took its rootdir ({config.rootpath}) from the path {moved} given after "
            f"{option}, so the project's configuration was not read; write the option as "
            f"{option}={moved} (with '=') or add --rootdir=<the project directory>")


def chosen_profile(config: Any) -> str:
    """--refit-profile, else $REFIT_PROFILE, else "default".
    An unknown name is a usage error naming where it came from."""
    explicit = config.getoption("--refit-profile", None)
    if explicit is not None:
        value, source = explicit, "--refit-profile"
    else:
        value, source = os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE, f"${PROFILE_ENV}"
    if value not in PROFILES:
        raise pytest.UsageError(f"refit_core: {source} {value!r} is not a profile; choose one of {', '.join(PROFILES)}")
    return value


def _register_user_models(config: Any) -> None:
    """--refit-model files become cases for this session (checked now: a bad file or shape is
    a usage error in one sentence); pytest_unconfigure forgets them again."""
    paths = config.getoption("--refit-model") or []
    if not paths:
        return
    from .cases import registry
    from .cases.user_model import parse_shapes, user_model_cases
    state = refit_session(config)
    try:
        for case in user_model_cases(paths, parse_shapes(config.getoption("--refit-shapes") or [])):
            registry.register(case)
            state.user_cases.append(case.name)
    except (RefitCoreError, ValueError) as exc:
        raise pytest.UsageError(f"refit_core: {exc}") from None


def pytest_unconfigure(config: Any) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is not None and state.user_cases:
        from .cases import registry
        for name in state.user_cases:
            registry.unregister(name)


# --------------------------------------------------------------------------------------
# Collection, skipping, outcomes
# --------------------------------------------------------------------------------------
@pytest.hookimpl(trylast=True)  # after -m/-k: the summary counts only tests they left
def pytest_collection_modifyitems(session: Any, config: Any, items: List[Any]) -> None:
    from .reporting.schema import canonical_test_id
    state = refit_session(config)
    kept, left = select_profile(state.profile, items)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = kept
    state.left_to_full = len(left)
    _deselect_non_benchmarks(config, items)
    for item in items:
        rest = item.nodeid.split("::", 1)[1] if "::" in item.nodeid else ""
        candidate = canonical_test_id(f"{Path(item.path).as_posix()}::{rest}" if rest else Path(item.path).as_posix())
        state.stable_ids[item.nodeid] = candidate if candidate.startswith("tests/") else canonical_test_id(item.nodeid)
        state.test_cases[item.nodeid] = cases_of_item(item)


def pytest_collection_finish(session: Any) -> None:
    """The final selection (after every plugin's deselection): what the builds ahead build,
    and which phase each test's time belongs to."""
    state = refit_session(session.config)
    state.needed_cases = needed_cases(session.config, session.items)
    state.item_phase = {item.nodeid: phase_of(item) for item in session.items}


def pytest_report_collectionfinish(config: Any, items: List[Any]) -> List[str]:
    state = refit_session(config)
    if state.profile == "full":
        return ["refit_core: profile full: the whole case x precision matrix and the slow builds"]
    if state.left_to_full:
        return [f"refit_core: profile {state.profile}: {state.left_to_full} GPU test(s) deselected, "
                "left to --refit-profile full"]
    return []


def profile_exclusion(profile: str, item: Any) -> Optional[str]:
    """None when `profile` runs this GPU test, else why not. Only tests marked gpu are chosen
    between: the case's own profile membership (cases.registry.profile_exclusion), a test
    parametrized over `precision` runs FP32 only in the default profile, and a test marked
    `full_profile` runs only in the full one."""
    if profile == "full" or item.get_closest_marker("gpu") is None:
        return None
    if item.get_closest_marker("full_profile") is not None:
        return "marked full_profile"
    from .cases import registry
    for name in cases_of_item(item):
        if name in registry.CASES:
            reason = registry.profile_exclusion(registry.get(name), profile)
            if reason is not None:
                return f"case {name}: {reason}"
    spec = getattr(item, "callspec", None)
    if spec is not None and str(spec.params.get("precision", "fp32")) != "fp32":
        return f"precision {spec.params['precision']}"
    return None


def select_profile(profile: str, items: List[Any]) -> Tuple[List[Any], List[Any]]:
    """(kept, left to the full profile), each in collection order."""
    kept: List[Any] = []
    left: List[Any] = []
    for item in items:
        (left if profile_exclusion(profile, item) is not None else kept).append(item)
    return kept, left


def phase_of(item: Any) -> str:
    """Where a test's time is booked: benchmarks, the case it checks, or other tests."""
    if "benchmark" in getattr(item, "fixturenames", ()):
        return BENCHMARK_PHASE
    cases = cases_of_item(item)
    if cases:
        return CASE_PHASE_PREFIX + cases[0]
    return OTHER_PHASE


def _deselect_non_benchmarks(config: Any, items: List[Any]) -> None:
    """Under --benchmark-only the tests without a benchmark are deselected, not skipped one by one
    (pytest-benchmark marks each skipped, and -ra would list every one); pytest counts them as
    deselected and one line says why."""
    if not config.getoption("benchmark_only", False):
        return
    keep = [item for item in items if "benchmark" in getattr(item, "fixturenames", ())]
    dropped = [item for item in items if "benchmark" not in getattr(item, "fixturenames", ())]
    if not dropped:
        return
    config.hook.pytest_deselected(items=dropped)
    items[:] = keep
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"refit_core: --benchmark-only: deselected {len(dropped)} test(s) that use no "
                            "benchmark fixture")


def needed_cases(config: Any, items: List[Any]) -> List[str]:
    """The registered cases whose engines the selected GPU tests open, in test order: the
    `case_engine` parameter, and `bidaf-<key>` for the BiDAF fixtures. Under --benchmark-only,
    the benchmarks' only (the other tests are deselected by then)."""
    benchmark_only = bool(config.getoption("benchmark_only", False))
    out: Dict[str, None] = {}
    for item in items:
        spec = getattr(item, "callspec", None)
        if spec is None or item.get_closest_marker("gpu") is None:
            continue
        if benchmark_only and "benchmark" not in getattr(item, "fixturenames", ()):
            continue
        if "case_engine" in spec.params:
            out[str(spec.params["case_engine"])] = None
        if "bidaf_model" in spec.params and "bidaf_engine" in getattr(item, "fixturenames", ()):
            out[f"bidaf-{spec.params['bidaf_model']}"] = None
    return list(out)


def pytest_runtest_setup(item: Any) -> None:
    if item.get_closest_marker("gpu") is not None:
        reason = gpu_skip_reason()
        if reason is not None:
            pytest.skip(f"GPU tier: {reason}")
    for mark in item.iter_markers("trt_feature"):
        from .trt import compat
        if not compat.has_feature(mark.args[0]):
            pytest.skip(compat.feature_unavailable_reason(mark.args[0]))


# --------------------------------------------------------------------------------------
# End of session: write the record, run the gate
# --------------------------------------------------------------------------------------
def _results_path(config: Any, env: Dict[str, Any]) -> Path:
    explicit = config.getoption("--refit-results")
    if explicit:
        return Path(explicit)
    import time
    gpu = "".join(c if c.isalnum() else "-" for c in str(env.get("gpu_name", "gpu"))).strip("-")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return Path(config.rootpath) / "results" / f"trt{env.get('tensorrt_version', 'unknown')}-{gpu}-{stamp}.json"


def _run_gate(state: RefitSession, baseline: str, candidate: Any) -> int:
    from .reporting.gate_table import format_table
    from .reporting.rules import compare
    from .reporting.schema import load_results
    from .reporting.tolerances import tolerances_from_options
    config = state.config
    try:
        base = load_results(baseline)
        tolerances = tolerances_from_options(config.getoption, prefix="refit-gate-")
        result = compare(base, candidate, tolerances,
                         allow_missing=config.getoption("--refit-gate-allow-missing") or (),
                         compare_timings_across_gpus=bool(config.getoption("--refit-gate-compare-timings-across-gpus")),
                         allow_different_inputs=bool(config.getoption("--refit-gate-allow-different-inputs")))
    except (RefitCoreError, ValueError) as exc:
        state.problem = f"cannot compare with --refit-baseline {baseline}: {exc}"
        return 2
    state.gate_lines = [format_table(result), result.verdict_line()]
    return 0 if result.passed else 1


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    config = session.config
    state = config.stash.get(SESSION_KEY, None)
    if state is None:
        return
    baseline = config.getoption("--refit-baseline")
    if not state.gpu_used:
        if baseline:
            reason = gpu_skip_reason() or "no test marked gpu ran (deselected, or every one skipped)"
            state.problem = (f"--refit-baseline was given, but no GPU test ran ({reason}): there is no "
                             "evidence to compare with the baseline")
            session.exitstatus = 2
        return
    from .provenance import now_iso
    rec = state.get_recorder()
    rec.record_provenance(**provenance_of(state), finished=now_iso())
    rec.record_profile(state.profile)
    for name, seconds in state.phases().items():
        rec.record_phase(name, seconds)
    try:
        record_case_inputs(rec)
        state.results_path = rec.write(_results_path(config, rec.get(("environment",), {}) or {}))
    except (OSError, RefitCoreError, ValueError) as exc:
        state.problem = f"could not write the results record: {exc}"
        session.exitstatus = 2
        return
    if baseline:
        code = _run_gate(state, baseline, rec.to_model())
        if code:
            session.exitstatus = max(int(session.exitstatus), code) if code == 1 else code


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is None:
        return
    tr = terminalreporter
    if state.gpu_used and state.recorder is not None:
        data = state.recorder.to_dict()
        basis, timings = data.get("ratio_basis", {}), data.get("timings", {})
        if basis:
            tr.section("refit vs rebuild (medians of this run)")
            for model, (rebuild, refit) in basis.items():
                if rebuild not in timings or refit not in timings:
                    continue
                r, b = timings[refit], timings[rebuild]
                first = f", first refit {r['first_s'] * 1e3:.1f} ms" if r.get("first_s") is not None else ""
                tr.write_line(f"{model}: rebuild {b['median_s'] * 1e3:.1f} ms / refit {r['median_s'] * 1e3:.3f} ms "
                              f"= {b['median_s'] / r['median_s']:.0f}x  ({rebuild} vs {refit}{first})")
    if state.gpu_used:
        phases = state.phases()
        tr.section(f"refit_core: where the time went (profile {state.profile})")
        for name, seconds in phases.items():
            tr.write_line(f"{name:<40} {seconds:8.1f} s")
        if state.profile == "full":
            tr.write_line(f"refit_core: --refit-profile full took {phases[TOTAL_PHASE]:.1f} s")
    if state.results_path is not None:
        tr.write_line(f"refit_core results written to {state.results_path}")
    if state.gate_lines:
        tr.section("regression gate against --refit-baseline")
        for line in state.gate_lines:
            tr.write_line(line)
    if state.problem:
        tr.write_line(f"refit_core: {state.problem}", red=True)


def pytest_generate_tests(metafunc: Any) -> None:
    """Every test that asks for `case_engine` (or `refit_case`) runs once per registered case;
    every test that uses a BiDAF fixture once per BiDAF case (the registry is read here, not
    when the plugin is imported)."""
    for name in ("case_engine", "refit_case"):
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, case_names(), indirect=True, scope="session")
    if "bidaf_model" in metafunc.fixturenames:
        from .cases import registry
        from .cases.bidaf import BidafCase
        # the sample flows and benchmarks run each BiDAF model once, in FP32 (the matrix runs the rest)
        keys = [c.key for c in map(registry.get, case_names()) if isinstance(c, BidafCase) and c.precision == "fp32"]
        metafunc.parametrize("bidaf_model", keys, indirect=True, scope="session")


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_json(config: Any, benchmarks: Any, output_json: Dict[str, Any]) -> None:
    """pytest-benchmark's JSON gets the suite's commit and source hash too: its own commit_info
    reads whatever .git the tree carries, which on a copied tree is not the code that ran."""
    from .provenance import suite_identity
    output_json["refit_core"] = suite_identity()
