"""Each version-gated TensorRT feature (refit_core.trt.compat.FEATURES) exercised where the
installed TensorRT has it; elsewhere the `trt_feature` marker skips naming the version
("... needs TensorRT >= 10.0; this is TensorRT 8.5.3.1")."""
from __future__ import annotations

import numpy as np
import pytest

from refit_core.trt import compat

pytestmark = pytest.mark.gpu

CONV1 = ("conv1.weight", "conv1.bias")


def test_every_feature_has_a_test_here():
    """Each feature in compat.FEATURES has a test marked trt_feature (the builder optimization
    level's is check's: tests/cli/test_check_gpu.py)."""
    tested = {"device_weights", "async_refit", "onnx_refitter", "strip_plan", "refit_identical",
              "weights_prototype", "unset_weights", "builder_optimization_level"}
    assert tested == set(compat.FEATURES)


@pytest.mark.trt_feature("device_weights")
def test_refit_from_device_memory_equals_host_refit(mnist_engine):
    from refit_core.trt.cuda import to_device
    r = mnist_engine.refitter
    mnist_engine.refit_to({k: mnist_engine.trained[k] for k in CONV1})
    host = mnist_engine.probe()
    mnist_engine.refit_to({k: mnist_engine.start_weights[k] for k in CONV1})
    bufs = {n: to_device(mnist_engine.trained[n]) for n in CONV1}
    try:
        for n, buf in bufs.items():
            assert compat.set_named_weights(r.refitter, n, None, buf.ptr, mnist_engine.trained[n].size)
        r.synchronize()
        assert compat.refit_engine(r.refitter)
        np.testing.assert_array_equal(mnist_engine.probe(), host)
    finally:
        for buf in bufs.values():
            buf.free()
        r.current.update({n: mnist_engine.trained[n].copy() for n in CONV1})
        mnist_engine.refit_to({k: mnist_engine.start_weights[k] for k in CONV1})


@pytest.mark.trt_feature("async_refit")
def test_async_refit_on_a_stream_equals_the_synchronous_refit(mnist_engine):
    mnist_engine.refit_to({k: mnist_engine.trained[k] for k in CONV1})
    sync = mnist_engine.probe()
    mnist_engine.refit_to({k: mnist_engine.start_weights[k] for k in CONV1})
    r = mnist_engine.refitter
    r.set_many({k: mnist_engine.trained[k] for k in CONV1})
    r.refit(stream=mnist_engine.runner.stream)
    np.testing.assert_array_equal(mnist_engine.probe(), sync)
    mnist_engine.refit_to({k: mnist_engine.start_weights[k] for k in CONV1})


@pytest.mark.trt_feature("onnx_refitter")
def test_onnx_parser_refitter_restores_the_model_weights(bidaf_engine):
    from refit_core.samples.bidaf import flow
    trt = compat.import_tensorrt()
    bidaf_engine.refitter.refit_with(flow.fake_weights(bidaf_engine.prepared))
    assert not np.array_equal(bidaf_engine.probe(), bidaf_engine.built_outputs)
    parser_refitter = trt.OnnxParserRefitter(bidaf_engine.refitter.refitter, bidaf_engine.handle.logger)
    assert parser_refitter.refit_from_file(str(bidaf_engine.prepared.model_path))
    assert compat.refit_engine(bidaf_engine.refitter.refitter)
    np.testing.assert_array_equal(bidaf_engine.probe(), bidaf_engine.built_outputs)
    bidaf_engine.refitter.current.update({n: a.copy() for n, a in bidaf_engine.initial.items()})


def _lenet_with_flags(mnist_engine, trt_logger, cuda_session, **options):
    from refit_core.refit.refitter import EngineRefitter
    from refit_core.trt.engine import BuildOptions
    from refit_core.trt.runner import TrtRunner
    handle, _ = mnist_engine.flow.build_lenet_engine(mnist_engine.trained, BuildOptions(**options), trt_logger,
                                                     None, cuda_session.gpu_name, progress=lambda s: None)
    runner = TrtRunner(handle)
    refitter = EngineRefitter(handle, mnist_engine.flow.weight_specs(), mnist_engine.trained, cuda_session.synchronize)
    return handle, runner, refitter


@pytest.mark.trt_feature("strip_plan")
def test_weight_stripped_plan_refitted_with_its_weights_runs_like_a_full_one(mnist_engine, trt_logger, cuda_session):
    handle, runner, refitter = _lenet_with_flags(mnist_engine, trt_logger, cuda_session, extra_flags=("STRIP_PLAN",))
    try:
        refitter.refit_with(dict(mnist_engine.trained))
        got = mnist_engine.flow.run_lenet(runner, mnist_engine.probe_images).astype(np.float64)
        ref = mnist_engine.reference(dict(mnist_engine.trained))
        assert float(np.abs(got - ref).max()) <= 1e-3 + 1e-5 * float(np.abs(ref).max())
    finally:
        handle.close()


@pytest.mark.trt_feature("refit_identical")
def test_refit_identical_engine_takes_its_own_weights(mnist_engine, trt_logger, cuda_session):
    handle, runner, refitter = _lenet_with_flags(mnist_engine, trt_logger, cuda_session, refit=False,
                                                 extra_flags=("REFIT_IDENTICAL",))
    try:
        before = mnist_engine.flow.run_lenet(runner, mnist_engine.probe_images)
        refitter.refit_with(dict(mnist_engine.trained))
        np.testing.assert_array_equal(mnist_engine.flow.run_lenet(runner, mnist_engine.probe_images), before)
    finally:
        handle.close()


@pytest.mark.trt_feature("weights_prototype")
def test_weights_prototype_matches_the_spec(mnist_engine):
    r = mnist_engine.refitter
    for name, spec in r.specs.items():
        proto = r.refitter.get_weights_prototype(name)
        assert int(proto.size) == spec.count, name


@pytest.mark.trt_feature("unset_weights")
def test_unset_weights_are_not_refitted(mnist_engine):
    mnist_engine.refit_to({k: mnist_engine.start_weights[k] for k in CONV1})
    r = mnist_engine.refitter
    r.set_many({k: mnist_engine.trained[k] for k in CONV1})
    r.discard()  # unsets them (compat.unset_named_weights) where TensorRT can
    assert not r.missing()
    assert compat.refit_engine(r.refitter)
    np.testing.assert_array_equal(mnist_engine.probe(), mnist_engine.built_outputs)
