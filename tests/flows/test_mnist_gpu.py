"""The MNIST refit flow on a real TensorRT engine (GPU tier)."""
from __future__ import annotations

import numpy as np
import pytest

from refit_core.errors import RefitError

pytestmark = pytest.mark.gpu

# README label counts: a constant prediction scores between 892/10000 and 1135/10000
CONSTANT_ACCURACY_RANGE = (0.0892, 0.1135)
REFERENCE_TOLERANCE = 1e-3  # TF32 cleared: plain FP32 vs a float64-accumulated reference


def test_before_refit_every_prediction_is_one_class(mnist_engine, mnist_test_set, results):
    preds = mnist_engine.fresh_logits.argmax(axis=1)
    labels = mnist_test_set["labels"]
    classes = np.unique(preds)
    assert len(classes) == 1, f"zero conv1 should make the output input-independent, got classes {classes}"
    # not only the arg-max: the logits themselves are the same for every image (conv1 is 0)
    logits = mnist_engine.fresh_logits.astype(np.float64)
    spread = float(np.ptp(logits, axis=0).max())
    assert spread <= 1e-5 * max(1.0, float(np.abs(logits).max())), f"logits vary across images by {spread:.3g}"
    acc = float((preds == labels).mean())
    assert CONSTANT_ACCURACY_RANGE[0] <= acc <= CONSTANT_ACCURACY_RANGE[1]
    results.record_mnist(accuracy_before=acc, predicted_class_before=int(classes[0]))


def test_after_refit_accuracy_and_logits_match_reference(mnist_engine, mnist_test_set, mnist_reference_logits,
                                                         results):
    mnist_engine.refit_to({k: mnist_engine.trained[k] for k in ("conv1.weight", "conv1.bias")})
    logits = mnist_engine.logits(mnist_test_set["images"])
    labels = mnist_test_set["labels"]
    acc = float((logits.argmax(axis=1) == labels).mean())
    ref_acc = float((mnist_reference_logits.argmax(axis=1) == labels).mean())
    diff = float(np.abs(logits - mnist_reference_logits).max())
    print(f"after refit: accuracy {acc:.4f}, reference {ref_acc:.4f}, max |logit diff| {diff:.2e}")
    assert acc >= 0.98
    assert acc >= ref_acc
    assert diff <= REFERENCE_TOLERANCE
    results.record_mnist(accuracy_after=acc, accuracy_reference=ref_acc,
                         logits_fixed_batch=logits[:8], argmax_all=logits.argmax(axis=1))
    results.record_case_check("mnist", "test_set_logits_vs_reference", max_abs=diff, tolerance=REFERENCE_TOLERANCE,
                              images=len(labels))


def test_refit_zeros_back_restores_before_outputs_exactly(mnist_engine, mnist_test_set):
    mnist_engine.refit_to({k: mnist_engine.trained[k] for k in ("conv1.weight", "conv1.bias")})
    mnist_engine.refit_to({k: mnist_engine.start_weights[k] for k in ("conv1.weight", "conv1.bias")})
    again = mnist_engine.logits(mnist_test_set["images"])
    np.testing.assert_array_equal(again, mnist_engine.fresh_logits)


def test_refit_without_conv1_bias_names_it_and_engine_keeps_running(mnist_engine, mnist_test_set):
    trained = {k: mnist_engine.trained[k] for k in ("conv1.weight", "conv1.bias")}
    mnist_engine.refit_to(trained)
    before = mnist_engine.logits(mnist_test_set["images"][:1000])
    with pytest.raises(RefitError, match="conv1.bias") as info:
        mnist_engine.refit_to({"conv1.weight": np.ones_like(trained["conv1.weight"])})
    assert "conv1.bias" in info.value.missing
    print(f"TensorRT's get_missing_weights after setting conv1.weight alone: {mnist_engine.refitter.missing()}")
    after = mnist_engine.logits(mnist_test_set["images"][:1000])
    np.testing.assert_array_equal(after, before)


def test_refittable_weights_include_every_named_lenet_weight(mnist_engine, results):
    names = mnist_engine.refitter.trt_weight_names()
    named = {n for n in names if n is not None and not str(n).startswith("(Unnamed")}
    assert set(mnist_engine.flow.LENET_SHAPES) <= named
    results.record_mnist(refittable_weights=names)


def test_sample_unnamed_bias_path(cuda_session, trt_logger, trained_lenet, mnist_test_set):
    """The 8.4 sample's path: conv1's bias has no name and is refitted by layer + role."""
    from refit_core.samples.mnist import flow
    from refit_core.refit.refitter import EngineRefitter
    from refit_core.trt.engine import BuildOptions
    from refit_core.trt.runner import TrtRunner
    start = flow.dummy_conv1(trained_lenet.weights)
    handle, _ = flow.build_lenet_engine(start, BuildOptions(), trt_logger, None, cuda_session.gpu_name,
                                        name_conv1_bias=False)
    try:
        runner = TrtRunner(handle)
        specs = flow.weight_specs(name_conv1_bias=False)
        current = dict(start)
        current[flow.UNNAMED_BIAS_KEY] = current.pop("conv1.bias")
        refitter = EngineRefitter(handle, specs, current, cuda_session.synchronize)
        refitter.refit_with({"conv1.weight": np.ascontiguousarray(trained_lenet.weights["conv1.weight"]),
                             flow.UNNAMED_BIAS_KEY: np.ascontiguousarray(trained_lenet.weights["conv1.bias"])})
        labels = mnist_test_set["labels"]
        acc = float((flow.run_lenet(runner, mnist_test_set["images"]).argmax(axis=1) == labels).mean())
        assert acc >= 0.98
    finally:
        handle.close()


def test_cli_mnist_prints_the_sample_lines(mnist_dir, capsys, monkeypatch, tmp_path):
    """`python -m refit_core mnist` in-process would need a second CUDA context; run it as a
    subprocess, as a user would."""
    import subprocess
    import sys
    import os
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "refit_core", "mnist", "--data-dir", str(mnist_dir)],
                          capture_output=True, text=True, env=env, timeout=600)
    out = proc.stdout
    print(out[-2000:], proc.stderr[-2000:])
    assert proc.returncode == 0
    assert "Accuracy Before Engine Refit" in out
    assert "Accuracy After Engine Refit (expecting" in out
    assert out.count("correct predictions out of 10000") == 2
