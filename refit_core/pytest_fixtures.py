"""The fixtures refit_core's plugin provides: data (CPU), the GPU session, logger, plan cache and
results recorder, and one engine per registered case (built once per session).

pytest finds them through refit_core.pytest_plugin, which imports them.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from .config import DATA_DIR_ENV, cache_dir, plan_cache_dir
from .errors import DataError
from .pytest_session import gpu_skip_reason, in_ci, provenance_of, refit_session

# --------------------------------------------------------------------------------------
# Fixtures: data (CPU)
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def mnist_dir(pytestconfig: Any) -> Path:
    """The MNIST directory the user named; skip without it (fail in CI, where it must exist)."""
    from .config import resolve_data_dir
    from .samples.mnist.data import find_mnist_files
    try:
        path = resolve_data_dir(pytestconfig.getoption("--refit-data-dir"))
        find_mnist_files(path)
    except DataError as exc:
        if in_ci():
            pytest.fail(f"CI must run the MNIST tests, but: {exc}", pytrace=False)
        pytest.skip(f"MNIST data not available: {exc}")
    return path


@pytest.fixture(scope="session")
def trained_lenet() -> Any:
    """The committed LeNet weights (refit_core/assets/lenet_weights.npz), checked against their
    sha256: the same on every machine; a damaged file is an error, never retrained."""
    from .samples.mnist.weights import committed_lenet
    return committed_lenet()


@pytest.fixture(scope="session")
def mnist_test_set(mnist_dir: Path) -> Dict[str, Any]:
    """The 10,000 test images, normalised as the sample does, and their labels."""
    import numpy as np
    from .samples.mnist.data import load_mnist, normalize_images
    test = load_mnist(mnist_dir, "test")
    return {"images": normalize_images(test.images), "labels": test.labels.astype(np.int64)}


@pytest.fixture(scope="session")
def mnist_reference_logits(trained_lenet: Any, mnist_test_set: Dict[str, Any]) -> Any:
    """float64-accumulated numpy logits of the trained net on the test set (no PyTorch needed)."""
    from .samples.mnist.lenet import lenet_forward
    return lenet_forward(trained_lenet.weights, mnist_test_set["images"])


# --------------------------------------------------------------------------------------
# Fixtures: GPU session, logger, plan cache, results
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def cuda_session() -> Any:
    """The process's CUDA context; every TensorRT object is released before it closes. While it
    is open, the session's builds share one Builder and, where they are not the thing timed,
    the timing caches kept beside the plans (trt.engine.shared_builds)."""
    reason = gpu_skip_reason()
    if reason is not None:
        pytest.skip(f"GPU tier: {reason}")
    from .trt.cuda import CudaSession
    from .trt.engine import shared_builds
    from .trt.plan_cache import TimingCacheStore
    session = CudaSession()
    try:
        with shared_builds(TimingCacheStore(plan_cache_dir(), session.gpu_name)):
            yield session
    finally:
        session.close()


@pytest.fixture(scope="session")
def trt_logger(cuda_session: Any) -> Any:
    """The session's TensorRT logger (warnings and errors, kept so tests can assert on them)."""
    from .trt.recorders import make_logger
    return make_logger()


@pytest.fixture(scope="session")
def plan_cache(cuda_session: Any) -> Any:
    """Serialized engines on disk ($REFIT_CACHE_DIR/plans), keyed by model, TensorRT version, GPU
    and build options; a damaged or foreign plan is rebuilt with a warning."""
    from .trt.plan_cache import PlanCache
    return PlanCache(plan_cache_dir())


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
            compute_capability=cuda_session.compute_capability,
            cuda_driver_version=cuda_session.driver_version, cuda_runtime_version=cuda_session.runtime_version,
            python_version=".".join(map(str, sys.version_info[:3])), numpy_version=np.__version__,
            tactic_sources=compat.tactic_setting())
        rec.record_provenance(**provenance_of(state))
    return rec


# --------------------------------------------------------------------------------------
# Fixtures: cases (one engine per case per session)
# --------------------------------------------------------------------------------------
def case_names() -> List[str]:
    from .cases import registry
    return registry.names()


@pytest.fixture(scope="session")
def case_resources(pytestconfig: Any, tmp_path_factory: Any) -> Any:
    """What a case may read and write: the data directory (or None), the cache root and a temp dir."""
    from .cases.base import CaseResources
    chosen = pytestconfig.getoption("--refit-data-dir") or os.environ.get(DATA_DIR_ENV)
    data_dir = Path(chosen).expanduser() if chosen and Path(chosen).expanduser().is_dir() else None
    return CaseResources(data_dir=data_dir, cache_root=cache_dir(), tmp_dir=tmp_path_factory.mktemp("cases"))


@pytest.fixture(scope="session")
def refit_case(request: Any) -> Any:
    """The registered case (refit_core.cases.registry) a test is parametrized with; no engine built."""
    from .cases import registry
    return registry.get(request.param)


@pytest.fixture(scope="session")
def case_engine(request: Any, pytestconfig: Any, case_resources: Any, cuda_session: Any, trt_logger: Any,
                plan_cache: Any) -> Any:
    """The registered case's engine (built with its build weights), shared for the session."""
    from .cases import registry
    from .cases.mnist import MnistCase
    case = registry.get(request.param)
    inputs: Dict[str, Any] = {}
    if isinstance(case, MnistCase):  # through the MNIST fixtures: CI fails on missing data, training skips
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
    """ONNX Runtime running the prepared BiDAF model: the reference TensorRT's answers are compared with."""
    from .samples.bidaf.ort_reference import OrtPreparedBidaf
    return OrtPreparedBidaf(bidaf_prepared)


@pytest.fixture(scope="session")
def bidaf_engine(pytestconfig: Any, bidaf_model: Any, bidaf_prepared: Any, case_resources: Any, cuda_session: Any,
                 trt_logger: Any, plan_cache: Any) -> Any:
    """The BiDAF case's engine (REFIT, plan cached on disk: the sample's engine file)."""
    from .cases import registry
    return refit_session(pytestconfig).open_case(registry.get(f"bidaf-{bidaf_model[0]}"), case_resources,
                                                 cuda_session, trt_logger, plan_cache, prepared=bidaf_prepared)
