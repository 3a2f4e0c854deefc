"""Suite-wide options, markers and the session fixtures that build and share engines.

CPU fixtures: `mnist_dir`, `trained_lenet`, `mnist_test_set`.
GPU fixtures (each built once per session, released before the CUDA context goes):
`cuda_session` -> `trt_logger`, `plan_cache` -> `mnist_engine` (zero conv1, REFIT),
`bidaf_prepared` / `bidaf_engine` (see tests/flows/conftest.py).
Without TensorRT, pycuda or a GPU every `gpu` test skips with the reason; in CI
(`CI=true`) missing MNIST data is an error, not a skip.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import pytest

from refit_core.config import DATA_DIR_ENV, cache_dir
from refit_core.errors import DataError

try:  # Hypothesis profiles: `ci` (few examples) and `thorough`; pick with --hypothesis-profile
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", max_examples=8, deadline=None,
                              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.register_profile("thorough", max_examples=150, deadline=None,
                              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # pragma: no cover
    pass


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("refit_core")
    group.addoption("--data-dir", default=None,
                    help=f"directory with the MNIST IDX files (or an mnist/ folder); default ${DATA_DIR_ENV}")
    group.addoption("--refit-results", default=None, metavar="PATH",
                    help="where a GPU run writes its results JSON (default: results/<tensorrt>-<gpu>-<time>.json)")
    group.addoption("--refit-baseline", default=None, metavar="FILE",
                    help="compare this run's results with FILE at the end and fail the session on a regression")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


# --------------------------------------------------------------------------------------
# CPU: data and trained weights
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def mnist_dir(pytestconfig: Any) -> Path:
    """The MNIST directory the user named; skip without it (fail in CI, where it must exist)."""
    from refit_core.config import resolve_data_dir
    from refit_core.data.mnist import find_mnist_files
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
    from refit_core.errors import TrainingUnavailable
    from refit_core.models.lenet_weights import load_or_train
    try:
        return load_or_train(mnist_dir, progress=True)
    except TrainingUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def mnist_test_set(mnist_dir: Path) -> Dict[str, np.ndarray]:
    """The 10,000 test images, normalised as the sample does, and their labels."""
    from refit_core.data.mnist import load_mnist, normalize_images
    test = load_mnist(mnist_dir, "test")
    return {"images": normalize_images(test.images), "labels": test.labels.astype(np.int64)}


@pytest.fixture(scope="session")
def mnist_reference_logits(trained_lenet: Any, mnist_test_set: Dict[str, np.ndarray]) -> np.ndarray:
    """float64-accumulated numpy logits of the trained net on the test set (no PyTorch needed)."""
    from refit_core.models.lenet_reference import lenet_forward
    return lenet_forward(trained_lenet.weights, mnist_test_set["images"])


# --------------------------------------------------------------------------------------
# GPU: CUDA context, logger, plan cache, the shared MNIST engine
# --------------------------------------------------------------------------------------
_GPU_REASON: Dict[str, Optional[str]] = {}


def gpu_skip_reason() -> Optional[str]:
    if "reason" not in _GPU_REASON:
        from refit_core.trt.cuda import gpu_unavailable_reason
        _GPU_REASON["reason"] = gpu_unavailable_reason()
    return _GPU_REASON["reason"]


def pytest_runtest_setup(item: Any) -> None:
    if item.get_closest_marker("gpu") is not None:
        reason = gpu_skip_reason()
        if reason is not None:
            pytest.skip(f"GPU tier: {reason}")


@pytest.fixture(scope="session")
def cuda_session() -> Any:
    """The process's CUDA context; every TensorRT object is released before it closes."""
    reason = gpu_skip_reason()
    if reason is not None:
        pytest.skip(f"GPU tier: {reason}")
    from refit_core.trt.cuda import CudaSession
    session = CudaSession()
    yield session
    session.close()


@pytest.fixture(scope="session")
def trt_logger(cuda_session: Any) -> Any:
    from refit_core.trt import compat
    return compat.make_logger()


@pytest.fixture(scope="session")
def plan_cache(cuda_session: Any) -> Any:
    from refit_core.trt.engine import PlanCache
    return PlanCache(cache_dir() / "plans")


class MnistEngine:
    """The shared zero-conv1 LeNet engine with one runner and one refitter.

    Tests that refit put the weights they need in place first (`refit_to`), so test order
    does not matter; `fresh_logits` are the outputs before any refit.
    """

    def __init__(self, session: Any, logger: Any, trained: Any, images: np.ndarray) -> None:
        from refit_core.flows import mnist as flow
        from refit_core.refit.refitter import EngineRefitter
        from refit_core.trt.engine import BuildOptions
        from refit_core.trt.runner import TrtRunner
        self.flow = flow
        self.trained = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in trained.weights.items()}
        self.start_weights = flow.dummy_conv1(self.trained)
        self.options = BuildOptions()
        # built, not read from the plan cache: this fixture measures a real build
        self.handle, built = flow.build_lenet_engine(self.start_weights, self.options, logger, None,
                                                     session.gpu_name)
        self.build_seconds = built.seconds if built else None
        session.on_close(self.handle.close)
        self.runner = TrtRunner(self.handle)
        self.refitter = EngineRefitter(self.handle, flow.weight_specs(), self.start_weights, session.synchronize)
        self.fresh_logits = flow.run_lenet(self.runner, images)

    def logits(self, images: np.ndarray) -> np.ndarray:
        return self.flow.run_lenet(self.runner, images)

    def refit_to(self, weights: Dict[str, np.ndarray]) -> float:
        return self.refitter.refit_with(weights)


@pytest.fixture(scope="session")
def mnist_engine(cuda_session: Any, trt_logger: Any, trained_lenet: Any,
                 mnist_test_set: Dict[str, np.ndarray]) -> MnistEngine:
    """One REFIT LeNet engine (conv1 zero) shared by every MNIST GPU test."""
    return MnistEngine(cuda_session, trt_logger, trained_lenet, mnist_test_set["images"])


# --------------------------------------------------------------------------------------
# BiDAF: the models under test (stand-in always, the original where the user has it),
# their prepared forms (CPU) and one shared engine per model (GPU)
# --------------------------------------------------------------------------------------
BIDAF_MODELS = ["standin", "original"]


@pytest.fixture(scope="session", params=BIDAF_MODELS)
def bidaf_model(request: Any, pytestconfig: Any) -> Any:
    """(key, path) of a BiDAF model; "original" skips saying where it looked."""
    from refit_core.flows.bidaf import default_model_path
    if request.param == "standin":
        return "standin", default_model_path()
    from refit_core.onnx_prep.bidaf import find_original_bidaf, original_bidaf_candidates
    data_dir = pytestconfig.getoption("--data-dir") or os.environ.get(DATA_DIR_ENV)
    found = find_original_bidaf(data_dir) if data_dir else None
    if found is None:
        looked = [str(p) for p in original_bidaf_candidates(data_dir)] if data_dir else []
        pytest.skip(f"original bidaf-9 model not found (looked at: {', '.join(looked) or 'no data dir given'})")
    return "original", Path(found)


@pytest.fixture(scope="session")
def bidaf_prepared(bidaf_model: Any, tmp_path_factory: Any) -> Any:
    """The model after graph surgery (maps, refit weights, modified ONNX), made once per session."""
    from refit_core.onnx_prep.bidaf import prepare_bidaf
    key, path = bidaf_model
    return prepare_bidaf(path, tmp_path_factory.mktemp(f"bidaf-{key}"))


@pytest.fixture(scope="session")
def bidaf_ort(bidaf_prepared: Any) -> Any:
    from refit_core.onnx_prep.ort_reference import OrtPreparedBidaf
    return OrtPreparedBidaf(bidaf_prepared)


@pytest.fixture(scope="session")
def bidaf_engine(bidaf_prepared: Any, cuda_session: Any, trt_logger: Any, plan_cache: Any) -> Any:
    """One REFIT BiDAF engine per model, its plan cached on disk (the sample's engine file)."""
    from refit_core.flows.bidaf import BidafTrt, build_bidaf_engine
    from refit_core.trt.engine import BuildOptions
    handle, built = build_bidaf_engine(bidaf_prepared, BuildOptions(), trt_logger, plan_cache,
                                       cuda_session.gpu_name)
    cuda_session.on_close(handle.close)
    engine = BidafTrt(bidaf_prepared, handle, cuda_session.synchronize)
    engine.build_seconds = built.seconds if built else None
    return engine


# --------------------------------------------------------------------------------------
# Results record (one JSON per GPU run) and the regression gate at the end of a session
# --------------------------------------------------------------------------------------
_RESULTS_KEY = "refit_core_results"


def _recorder(config: Any) -> Any:
    rec = getattr(config, _RESULTS_KEY, None)
    if rec is None:
        from refit_core.reporting.results import ResultsRecorder
        rec = ResultsRecorder()
        rec.gpu_used = False  # type: ignore[attr-defined]
        setattr(config, _RESULTS_KEY, rec)
    return rec


@pytest.fixture(scope="session")
def results(pytestconfig: Any, cuda_session: Any) -> Any:
    """This run's ResultsRecorder; asking for it marks the run as a GPU run (file written)."""
    from refit_core.trt import compat
    rec = _recorder(pytestconfig)
    if not rec.gpu_used:
        rec.gpu_used = True
        rec.record_environment(
            tensorrt_version=compat.trt_version_string(), gpu_name=cuda_session.gpu_name,
            cuda_driver_version=cuda_session.driver_version, cuda_runtime_version=cuda_session.runtime_version,
            python_version=".".join(map(str, __import__("sys").version_info[:3])),
            numpy_version=np.__version__, tactic_sources=compat.tactic_setting())
    return rec


def pytest_runtest_logreport(report: Any) -> None:
    config = getattr(report, "config", None) or _CONFIG.get("config")
    if config is None:
        return
    outcome = report.outcome
    if report.when == "call" or outcome != "passed":
        _recorder(config).record_test(report.nodeid, "failed" if outcome == "failed" else outcome)


_CONFIG: Dict[str, Any] = {}


def pytest_configure(config: Any) -> None:
    _CONFIG["config"] = config


def _results_path(config: Any, rec: Any) -> Path:
    explicit = config.getoption("--refit-results")
    if explicit:
        return Path(explicit)
    env = rec.get(("environment",), {}) or {}
    gpu = "".join(c if c.isalnum() else "-" for c in str(env.get("gpu_name", "gpu"))).strip("-")
    import time
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return Path(config.rootpath) / "results" / f"trt{env.get('tensorrt_version', 'unknown')}-{gpu}-{stamp}.json"


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    rec = getattr(session.config, _RESULTS_KEY, None)
    if rec is None or not getattr(rec, "gpu_used", False):
        return
    path = rec.write(_results_path(session.config, rec))
    _CONFIG["results_path"] = path
    baseline = session.config.getoption("--refit-baseline")
    if baseline:
        from refit_core.errors import RefitCoreError
        from refit_core.reporting.gate import Tolerances, compare, format_table
        from refit_core.reporting.results import load_results
        try:
            base = load_results(baseline)
        except RefitCoreError as exc:  # an unreadable baseline fails the session, without a traceback
            _CONFIG["gate_table"] = f"cannot compare: {exc}"
            _CONFIG["gate_failed"] = True
            session.exitstatus = 2
            return
        result = compare(base, rec.to_dict(), Tolerances())
        _CONFIG["gate_table"] = format_table(result)
        _CONFIG["gate_failed"] = not result.passed
        if not result.passed:
            session.exitstatus = 1


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    rec = getattr(config, _RESULTS_KEY, None)
    if rec is None or not getattr(rec, "gpu_used", False):
        return
    data = rec.to_dict()
    tr = terminalreporter
    basis = data.get("ratio_basis", {})
    if basis:
        tr.section("refit vs rebuild (medians of this run)")
        timings = data.get("timings", {})
        for model, (rebuild, refit) in basis.items():
            r, b = timings[refit], timings[rebuild]
            first = f", first refit {r['first_s'] * 1e3:.1f} ms" if "first_s" in r else ""
            tr.write_line(f"{model}: rebuild {b['median_s'] * 1e3:.1f} ms / refit {r['median_s'] * 1e3:.3f} ms "
                          f"= {b['median_s'] / r['median_s']:.0f}x  ({rebuild} vs {refit}{first})")
    if "results_path" in _CONFIG:
        tr.write_line(f"refit_core results written to {_CONFIG['results_path']}")
    if "gate_table" in _CONFIG:
        tr.section("regression gate against --refit-baseline")
        tr.write_line(_CONFIG["gate_table"])
        tr.write_line("gate: REGRESSION" if _CONFIG.get("gate_failed") else "gate: passed")
