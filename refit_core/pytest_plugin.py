"""refit_core's pytest plugin: options, markers, Hypothesis profiles, the session fixtures that
build and share engines, the results recorder and the regression gate.

Load it with `pytest_plugins = ["refit_core.pytest_plugin"]` in a root conftest.py, or install
the package: its `pytest11` entry point (named after this module, so both ways load it once)
loads it in every pytest run. Importing it imports no TensorRT, pycuda, onnx or torch.

State lives in one `RefitSession` per pytest run, kept in `config.stash`.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from .config import DATA_DIR_ENV, cache_dir
from .errors import DataError, RefitCoreError, TrainingUnavailable

MARKERS = {
    "gpu": "needs a CUDA GPU, TensorRT and pycuda (run with `pytest -m gpu`); skipped with the reason otherwise",
    "slow": "takes more than a few seconds on 2 CPU cores (training, regenerating the BiDAF stand-in)",
    "serial": "must not run concurrently with other GPU work (timing, streams)",
    "trt_feature(name)": "needs a TensorRT feature (refit_core.trt.compat.FEATURES); skipped naming the version",
}
PATH_OPTIONS = ("--refit-baseline", "--refit-results")
HYPOTHESIS_PROFILE_ENV = "HYPOTHESIS_PROFILE"
DEFAULT_HYPOTHESIS_PROFILE = "ci"

try:  # profiles: `ci` (few examples) and `thorough` derived from it; pick with --hypothesis-profile
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", max_examples=8, deadline=None,
                              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("thorough", settings.get_profile("ci"), max_examples=150)
except ImportError:  # pragma: no cover - hypothesis is in both requirement sets
    settings = None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# --------------------------------------------------------------------------------------
# Options and configuration
# --------------------------------------------------------------------------------------
def pytest_addoption(parser: Any) -> None:
    from .reporting.tolerances import add_tolerance_options
    group = parser.getgroup("refit_core", "refit_core (TensorRT refit verification)")
    group.addoption("--data-dir", default=None,
                    help=f"directory with the MNIST IDX files (or an mnist/ folder); default ${DATA_DIR_ENV}")
    group.addoption("--refit-results", default=None, metavar="PATH",
                    help="where a GPU run writes its results JSON (default: results/trt<version>-<gpu>-<time>.json)")
    group.addoption("--refit-baseline", default=None, metavar="FILE",
                    help="compare this run's results with FILE at the end; exit 1 on a regression, 2 when "
                         "there is nothing to compare. Write --refit-baseline=FILE when FILE lies outside the project")
    group.addoption("--refit-gate-allow-missing", action="append", default=[], metavar="PATTERN",
                    help="gate: a baseline metric/test matching PATTERN (fnmatch) may be missing (repeatable)")
    group.addoption("--refit-gate-compare-timings-across-gpus", action="store_true", default=False,
                    help="gate: compare timings even when the two runs used different GPU models or drivers")
    add_tolerance_options(group.addoption, prefix="refit-gate-")


def _separate_form_values(config: Any) -> List[Path]:
    """Existing paths given to our path options as a separate argument (`--opt PATH`)."""
    args = list(config.invocation_params.args)
    out = []
    for i, arg in enumerate(args[:-1]):
        if arg in PATH_OPTIONS:
            value = Path(args[i + 1]).expanduser()
            path = value if value.is_absolute() else Path(config.invocation_params.dir) / value
            if path.exists():
                out.append(path.resolve())
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
        self.engines: Dict[str, Any] = {}
        self.recorder: Any = None
        self.gpu_used = False
        self.results_path: Optional[Path] = None
        self.gate_lines: List[str] = []
        self.problem: Optional[str] = None  # a sentence that makes the session exit 2
        self.hypothesis_profile = DEFAULT_HYPOTHESIS_PROFILE

    # ---- results ----------------------------------------------------------------------
    def get_recorder(self) -> Any:
        if self.recorder is None:
            from .reporting.results import ResultsRecorder
            self.recorder = ResultsRecorder()
        return self.recorder

    def stable_id(self, nodeid: str) -> str:
        if nodeid in self.stable_ids:
            return self.stable_ids[nodeid]
        from .reporting.results import canonical_test_id
        return canonical_test_id(nodeid)

    # ---- hooks (this object is registered as a plugin, as pytest-benchmark does) -------------
    def pytest_collectreport(self, report: Any) -> None:
        """A module that fails to import, or skips as a whole, is evidence too."""
        if report.failed or report.skipped:
            self.get_recorder().record_test(self.stable_id(report.nodeid), report.outcome, _reason(report))

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or report.outcome != "passed":
            outcome = "failed" if report.outcome == "failed" else report.outcome
            self.get_recorder().record_test(self.stable_id(report.nodeid), outcome, _reason(report))

    # ---- engines ----------------------------------------------------------------------
    def open_case(self, case: Any, resources: Any, cuda_session: Any, logger: Any, plan_cache: Any,
                  **inputs: Any) -> Any:
        """The case's engine, built once per session (skips with the reason when it cannot be)."""
        if case.name not in self.engines:
            reason = case.unavailable_reason(resources)
            if reason is not None:
                pytest.skip(f"case {case.name}: {reason}")
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


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: Any) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    session = RefitSession(config)
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "refit_core-session")
    if settings is not None:
        chosen = config.getoption("hypothesis_profile", None) or os.environ.get(HYPOTHESIS_PROFILE_ENV) \
            or DEFAULT_HYPOTHESIS_PROFILE
        session.hypothesis_profile = chosen
        if not config.getoption("hypothesis_profile", None):
            settings.load_profile(chosen)
    anchors = [Path(a.split("::")[0]) for a in config.args] or [Path(config.invocation_params.dir)]
    anchors = [a if a.is_absolute() else Path(config.invocation_params.dir) / a for a in anchors]
    moved = rootdir_hijacked(Path(config.rootpath), config.inipath, Path(config.invocation_params.dir), anchors,
                             _separate_form_values(config))
    if moved is not None:
        raise pytest.UsageError(
            f"refit_core: pytest took its rootdir ({config.rootpath}) from the path {moved} given after "
            f"{'/'.join(PATH_OPTIONS)}, so the project's configuration was not read; write the option as "
            f"--refit-baseline={moved} (with '=') or add --rootdir=<the project directory>")


# --------------------------------------------------------------------------------------
# Collection, skipping, outcomes
# --------------------------------------------------------------------------------------
def pytest_collection_modifyitems(session: Any, config: Any, items: List[Any]) -> None:
    from .reporting.results import canonical_test_id
    state = refit_session(config)
    for item in items:
        rest = item.nodeid.split("::", 1)[1] if "::" in item.nodeid else ""
        candidate = canonical_test_id(f"{Path(item.path).as_posix()}::{rest}" if rest else Path(item.path).as_posix())
        state.stable_ids[item.nodeid] = candidate if candidate.startswith("tests/") else canonical_test_id(item.nodeid)


_GPU_REASON: Dict[str, Optional[str]] = {}


def gpu_skip_reason() -> Optional[str]:
    """None when the GPU tier can run here, else one sentence saying what is missing (cached)."""
    if "reason" not in _GPU_REASON:
        from .trt.cuda import gpu_unavailable_reason
        _GPU_REASON["reason"] = gpu_unavailable_reason()
    return _GPU_REASON["reason"]


def pytest_runtest_setup(item: Any) -> None:
    if item.get_closest_marker("gpu") is not None:
        reason = gpu_skip_reason()
        if reason is not None:
            pytest.skip(f"GPU tier: {reason}")
    for mark in item.iter_markers("trt_feature"):
        from .trt import compat
        if not compat.has_feature(mark.args[0]):
            pytest.skip(compat.feature_unavailable_reason(mark.args[0]))


def _reason(report: Any) -> Optional[str]:
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


def _run_gate(state: RefitSession, baseline: str, candidate: Dict[str, Any]) -> int:
    from .reporting.formatting import format_table
    from .reporting.results import load_results
    from .reporting.rules import compare
    from .reporting.tolerances import tolerances_from_options
    try:
        base = load_results(baseline)
    except RefitCoreError as exc:
        state.problem = f"cannot compare with --refit-baseline: {exc}"
        return 2
    config = state.config
    tolerances = tolerances_from_options(config.getoption, prefix="refit-gate-")
    result = compare(base, candidate, tolerances,
                     allow_missing=config.getoption("--refit-gate-allow-missing") or (),
                     compare_timings_across_gpus=bool(config.getoption("--refit-gate-compare-timings-across-gpus")))
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
    rec.record_provenance(**_provenance(state), finished=now_iso())
    try:
        state.results_path = rec.write(_results_path(config, rec.get(("environment",), {}) or {}))
    except (OSError, RefitCoreError) as exc:
        state.problem = f"could not write the results record: {exc}"
        session.exitstatus = 2
        return
    if baseline:
        code = _run_gate(state, baseline, rec.to_dict())
        if code:
            session.exitstatus = max(int(session.exitstatus), code) if code == 1 else code


def _provenance(state: RefitSession) -> Dict[str, Any]:
    from . import __version__
    from .provenance import git_state, source_sha256
    from .trt import compat
    commit, dirty = git_state()
    return {"suite_version": __version__, "git_commit": commit, "git_dirty": dirty,
            "source_sha256": source_sha256(), "command_line": ["pytest"] + list(state.config.invocation_params.args),
            "hypothesis_profile": state.hypothesis_profile, "tensorrt_build": compat.build_info(),
            "tactic_setting": compat.tactic_setting(), "started": state.started}


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
    if state.results_path is not None:
        tr.write_line(f"refit_core results written to {state.results_path}")
    if state.gate_lines:
        tr.section("regression gate against --refit-baseline")
        for line in state.gate_lines:
            tr.write_line(line)
    if state.problem:
        tr.write_line(f"refit_core: {state.problem}", red=True)


# --------------------------------------------------------------------------------------
# Fixtures: data (CPU)
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def mnist_dir(pytestconfig: Any) -> Path:
    """The MNIST directory the user named; skip without it (fail in CI, where it must exist)."""
    from .config import resolve_data_dir
    from .data.mnist import find_mnist_files
    try:
        path = resolve_data_dir(pytestconfig.getoption("--data-dir"))
        find_mnist_files(path)
    except DataError as exc:
        if in_ci():
            pytest.fail(f"CI must run the MNIST tests, but: {exc}", pytrace=False)
        pytest.skip(f"MNIST data not available: {exc}")
    return path


@pytest.fixture(scope="session")
def trained_lenet(mnist_dir: Path) -> Any:
    """LeNet weights trained once (PyTorch) and cached; on the GPU kit read from the cache."""
    from .models.lenet_weights import load_or_train
    try:
        return load_or_train(mnist_dir, progress=True)
    except TrainingUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def mnist_test_set(mnist_dir: Path) -> Dict[str, Any]:
    """The 10,000 test images, normalised as the sample does, and their labels."""
    import numpy as np
    from .data.mnist import load_mnist, normalize_images
    test = load_mnist(mnist_dir, "test")
    return {"images": normalize_images(test.images), "labels": test.labels.astype(np.int64)}


@pytest.fixture(scope="session")
def mnist_reference_logits(trained_lenet: Any, mnist_test_set: Dict[str, Any]) -> Any:
    """float64-accumulated numpy logits of the trained net on the test set (no PyTorch needed)."""
    from .models.lenet_reference import lenet_forward
    return lenet_forward(trained_lenet.weights, mnist_test_set["images"])


# --------------------------------------------------------------------------------------
# Fixtures: GPU session, logger, plan cache, results
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def cuda_session() -> Any:
    """The process's CUDA context; every TensorRT object is released before it closes."""
    reason = gpu_skip_reason()
    if reason is not None:
        pytest.skip(f"GPU tier: {reason}")
    from .trt.cuda import CudaSession
    session = CudaSession()
    yield session
    session.close()


@pytest.fixture(scope="session")
def trt_logger(cuda_session: Any) -> Any:
    from .trt.recorders import make_logger
    return make_logger()


@pytest.fixture(scope="session")
def plan_cache(cuda_session: Any) -> Any:
    from .trt.engine import PlanCache
    return PlanCache(cache_dir() / "plans")


@pytest.fixture(scope="session")
def results(pytestconfig: Any, cuda_session: Any) -> Any:
    """This run's ResultsRecorder; asking for it marks the run as a GPU run (record written)."""
    import numpy as np
    from .trt import compat
    state = refit_session(pytestconfig)
    rec = state.get_recorder()
    if not state.gpu_used:
        state.gpu_used = True
        rec.record_environment(
            tensorrt_version=compat.trt_version_string(), gpu_name=cuda_session.gpu_name,
            cuda_driver_version=cuda_session.driver_version, cuda_runtime_version=cuda_session.runtime_version,
            python_version=".".join(map(str, sys.version_info[:3])), numpy_version=np.__version__,
            tactic_sources=compat.tactic_setting())
        rec.record_provenance(**_provenance(state))
    return rec


# --------------------------------------------------------------------------------------
# Fixtures: cases (one engine per case per session)
# --------------------------------------------------------------------------------------
def _case_names() -> List[str]:
    from .cases import registry
    return registry.names()


@pytest.fixture(scope="session")
def case_resources(pytestconfig: Any, tmp_path_factory: Any) -> Any:
    from .cases.base import CaseResources
    chosen = pytestconfig.getoption("--data-dir") or os.environ.get(DATA_DIR_ENV)
    data_dir = Path(chosen).expanduser() if chosen and Path(chosen).expanduser().is_dir() else None
    return CaseResources(data_dir=data_dir, cache_root=cache_dir(), tmp_dir=tmp_path_factory.mktemp("cases"))


def pytest_generate_tests(metafunc: Any) -> None:
    """Every test that asks for `case_engine` (or `refit_case`) runs once per registered case;
    every test that uses a BiDAF fixture once per BiDAF case (the registry is read here, not
    when the plugin is imported)."""
    for name in ("case_engine", "refit_case"):
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, _case_names(), indirect=True, scope="session")
    if "bidaf_model" in metafunc.fixturenames:
        keys = [n[len("bidaf-"):] for n in _case_names() if n.startswith("bidaf-")]
        metafunc.parametrize("bidaf_model", keys, indirect=True, scope="session")


@pytest.fixture(scope="session")
def refit_case(request: Any) -> Any:
    from .cases import registry
    return registry.get(request.param)


@pytest.fixture(scope="session")
def case_engine(request: Any, pytestconfig: Any, case_resources: Any, cuda_session: Any, trt_logger: Any,
                plan_cache: Any) -> Any:
    """The registered case's engine (built with its build weights), shared for the session."""
    from .cases import registry
    case = registry.get(request.param)
    inputs: Dict[str, Any] = {}
    if case.name == "mnist":  # through the MNIST fixtures: CI fails on missing data, training skips
        trained = request.getfixturevalue("trained_lenet")
        inputs = {"inputs": {"trained": trained, "images": request.getfixturevalue("mnist_test_set")["images"]}}
    return refit_session(pytestconfig).open_case(case, case_resources, cuda_session, trt_logger, plan_cache,
                                                 **inputs)


@pytest.fixture(scope="session")
def mnist_engine(pytestconfig: Any, case_resources: Any, cuda_session: Any, trt_logger: Any, plan_cache: Any,
                 trained_lenet: Any, mnist_test_set: Dict[str, Any]) -> Any:
    """The mnist case's engine (zero conv1, REFIT), shared by every MNIST GPU test."""
    from .cases import registry
    return refit_session(pytestconfig).open_case(
        registry.get("mnist"), case_resources, cuda_session, trt_logger, plan_cache,
        inputs={"trained": trained_lenet, "images": mnist_test_set["images"]})


@pytest.fixture(scope="session")
def bidaf_model(request: Any, case_resources: Any) -> Any:
    """(key, path) of a BiDAF model; "original" skips saying where it looked."""
    from .cases import registry
    case = registry.get(f"bidaf-{request.param}")
    reason = case.unavailable_reason(case_resources)
    if reason is not None:
        pytest.skip(reason)
    return case.key, case.model_path(case_resources)


@pytest.fixture(scope="session")
def bidaf_prepared(bidaf_model: Any, case_resources: Any) -> Any:
    """The model after graph surgery (maps, refit weights, modified ONNX), made once per session."""
    from .cases import registry
    return registry.get(f"bidaf-{bidaf_model[0]}").prepare(case_resources)


@pytest.fixture(scope="session")
def bidaf_ort(bidaf_prepared: Any) -> Any:
    from .onnx_prep.ort_reference import OrtPreparedBidaf
    return OrtPreparedBidaf(bidaf_prepared)


@pytest.fixture(scope="session")
def bidaf_engine(pytestconfig: Any, bidaf_model: Any, bidaf_prepared: Any, case_resources: Any, cuda_session: Any,
                 trt_logger: Any, plan_cache: Any) -> Any:
    """The BiDAF case's engine (REFIT, plan cached on disk: the sample's engine file)."""
    from .cases import registry
    return refit_session(pytestconfig).open_case(registry.get(f"bidaf-{bidaf_model[0]}"), case_resources,
                                                 cuda_session, trt_logger, plan_cache, prepared=bidaf_prepared)
