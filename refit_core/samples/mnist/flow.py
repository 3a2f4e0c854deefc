"""The engine_refit_mnist flow: LeNet through the network API with zero conv1, then refit.

The sample (last shipped with TensorRT 8.4) used implicit batch, `add_convolution` and
`add_fully_connected`; this is its explicit-batch form with `_nd` layers and fully connected
as matrix multiply + sum, which runs on 8.5 through 11, with a dynamic batch dimension so
the 10,000 test images go through in batches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ...fileio import sha256_bytes
from . import LENET_INPUT as INPUT_NAME, LENET_OUTPUT as OUTPUT_NAME, LENET_SHAPES
from . import MNIST_REFIT_TARGETS as REFIT_TARGETS
from ...refit.validation import WeightSpec
from ...trt import compat
from ...trt.engine import BuildOptions, BuildResult, EngineHandle, build_plan, load_or_build, plan_key_parts
from ...trt.plan_cache import PlanCache

MAX_BATCH = 1000
OPT_BATCH = 1000
LAYER_OF = {"conv1": "conv_1", "conv2": "conv_2", "fc1": "fc_1", "fc2": "fc_2"}
UNNAMED_BIAS_KEY = "conv_1:BIAS"


def weight_specs(name_conv1_bias: bool = True) -> Dict[str, WeightSpec]:
    """The refittable weights of the LeNet engine; kernel and bias of a layer form a group.

    With `name_conv1_bias=False` (the sample's own path) conv1's bias has no name and is
    addressed as layer "conv_1", role BIAS.
    """
    specs = {}
    for name, shape in LENET_SHAPES.items():
        group = name.split(".")[0]
        if name == "conv1.bias" and not name_conv1_bias:
            specs[UNNAMED_BIAS_KEY] = WeightSpec(UNNAMED_BIAS_KEY, shape, layer="conv_1", role="BIAS", group=group)
        else:
            specs[name] = WeightSpec(name, shape, group=group)
    return specs


def dummy_conv1(weights: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The sample's starting point: the trained net with conv1 kernel and bias set to zero."""
    out = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in weights.items()}
    out["conv1.weight"] = np.zeros(LENET_SHAPES["conv1.weight"], np.float32)
    out["conv1.bias"] = np.zeros(LENET_SHAPES["conv1.bias"], np.float32)
    return out


def _convolution(network: Any, inp: Any, out_maps: int, kernel: np.ndarray, bias: np.ndarray, name: str) -> Any:
    layer = network.add_convolution_nd(inp, out_maps, tuple(kernel.shape[2:]), kernel, bias)
    layer.stride_nd = (1, 1)
    layer.name = name
    return layer


def _max_pool(network: Any, inp: Any, name: str) -> Any:
    trt = compat.import_tensorrt()
    layer = network.add_pooling_nd(inp, trt.PoolingType.MAX, (2, 2))
    layer.stride_nd = (2, 2)
    layer.name = name
    return layer


def _fully_connected(network: Any, inp: Any, weight: np.ndarray, bias: np.ndarray, name: str) -> Any:
    """y = x W^T + b as matrix multiply + elementwise sum: the form every version 8.5 .. 11 has
    (add_fully_connected is gone from 10.x). The matmul layer gets `name`."""
    trt = compat.import_tensorrt()
    out_features, in_features = weight.shape
    w_const = network.add_constant((out_features, in_features), weight)
    b_const = network.add_constant((1, out_features), bias)
    mm = network.add_matrix_multiply(inp, trt.MatrixOperation.NONE, w_const.get_output(0), trt.MatrixOperation.TRANSPOSE)
    mm.name = name
    return network.add_elementwise(mm.get_output(0), b_const.get_output(0), trt.ElementWiseOperation.SUM)


def populate_lenet(network: Any, weights: Mapping[str, np.ndarray], name_conv1_bias: bool = True) -> List[Any]:
    """Fill `network` with LeNet; every weight named except (optionally) conv1's bias.

    Returns the arrays TensorRT reads by pointer: they must outlive the build.
    """
    trt = compat.import_tensorrt()
    w = {k: np.ascontiguousarray(weights[k], dtype=np.float32) for k in LENET_SHAPES}
    x = network.add_input(INPUT_NAME, trt.float32, (-1, 1, 28, 28))
    conv1 = _convolution(network, x, 20, w["conv1.weight"], w["conv1.bias"], LAYER_OF["conv1"])
    pool1 = _max_pool(network, conv1.get_output(0), "pool_1")
    conv2 = _convolution(network, pool1.get_output(0), 50, w["conv2.weight"], w["conv2.bias"], LAYER_OF["conv2"])
    pool2 = _max_pool(network, conv2.get_output(0), "pool_2")
    flat = network.add_shuffle(pool2.get_output(0))
    flat.reshape_dims = (0, 800)  # 0 keeps the (dynamic) batch dimension; NCHW order, as torch flattens
    flat.name = "flatten"
    fc1 = _fully_connected(network, flat.get_output(0), w["fc1.weight"], w["fc1.bias"], LAYER_OF["fc1"])
    relu = network.add_activation(fc1.get_output(0), trt.ActivationType.RELU)
    relu.name = "relu_1"
    fc2 = _fully_connected(network, relu.get_output(0), w["fc2.weight"], w["fc2.bias"], LAYER_OF["fc2"])
    out = fc2.get_output(0)
    out.name = OUTPUT_NAME
    network.mark_output(out)
    for name, arr in w.items():
        if name == "conv1.bias" and not name_conv1_bias:
            continue
        if not network.set_weights_name(trt.Weights(arr), name):
            raise RuntimeError(f"TensorRT did not accept the weight name {name!r}")
    return list(w.values())


def mnist_profile(max_batch: int = MAX_BATCH) -> Dict[str, Tuple[Tuple[int, ...], ...]]:
    return {INPUT_NAME: ((1, 1, 28, 28), (min(OPT_BATCH, max_batch), 1, 28, 28), (max_batch, 1, 28, 28))}


def build_lenet_plan(weights: Mapping[str, np.ndarray], options: BuildOptions, logger: Any,
                     name_conv1_bias: bool = True, timing_cache: Optional[bytes] = None) -> BuildResult:
    return build_plan(lambda net: populate_lenet(net, weights, name_conv1_bias), options,
                      [mnist_profile()], logger, timing_cache)


def lenet_cache_key(weights: Mapping[str, np.ndarray], options: BuildOptions, gpu_name: str,
                    name_conv1_bias: bool) -> Dict[str, Any]:
    blob = b"".join(np.ascontiguousarray(weights[k], dtype=np.float32).tobytes() for k in sorted(LENET_SHAPES))
    return plan_key_parts("lenet", options, gpu_name, weights_sha256=sha256_bytes(blob),
                          name_conv1_bias=name_conv1_bias, profile=[list(s) for s in mnist_profile()[INPUT_NAME]])


def build_lenet_engine(weights: Mapping[str, np.ndarray], options: BuildOptions, logger: Any,
                       cache: Optional[PlanCache] = None, gpu_name: str = "",
                       name_conv1_bias: bool = True, progress: Callable[[str], None] = print
                       ) -> Tuple[EngineHandle, Optional[BuildResult]]:
    key = lenet_cache_key(weights, options, gpu_name, name_conv1_bias)
    return load_or_build(cache, key, lambda: build_lenet_plan(weights, options, logger, name_conv1_bias),
                         logger, progress)


def run_lenet(runner: Any, images: np.ndarray, batch: int = MAX_BATCH) -> np.ndarray:
    """Logits of `images` (float32 [N,1,28,28]) in batches of at most `batch`."""
    out = []
    for start in range(0, len(images), batch):
        chunk = np.ascontiguousarray(images[start:start + batch], dtype=np.float32)
        out.append(runner.infer({INPUT_NAME: chunk})[OUTPUT_NAME])
    return np.concatenate(out, axis=0)


def accuracy_line(correct: int, total: int) -> str:
    return f"Got {correct} correct predictions out of {total} ({100.0 * correct / total:.1f}%)"


@dataclass
class MnistFlowResult:
    accuracy_before: float
    accuracy_after: float
    accuracy_reference: float
    predictions_before: np.ndarray
    predictions_after: np.ndarray
    build_seconds: Optional[float]
    refit_seconds: float
    lines: List[str] = field(default_factory=list)


def run_mnist_flow(data_dir: Any, progress: Callable[[str], None] = print) -> MnistFlowResult:
    """The whole sample, as the CLI runs it: build with zero conv1, measure, refit, measure."""
    from .data import load_mnist, normalize_images
    from .lenet import accuracy, lenet_forward
    from .weights import committed_lenet
    from ...refit.refitter import EngineRefitter
    from ...config import plan_cache_dir
    from ...trt.cuda import CudaSession
    from ...trt.recorders import make_logger
    from ...trt.runner import TrtRunner

    trained = committed_lenet()
    test = load_mnist(data_dir, "test")
    images = normalize_images(test.images)
    labels = test.labels.astype(np.int64)
    ref_acc = accuracy(lenet_forward(trained.weights, images), labels)
    lines: List[str] = []

    def say(line: str) -> None:
        lines.append(line)
        progress(line)

    session = CudaSession()
    try:
        logger = make_logger()
        start_weights = dummy_conv1(trained.weights)
        handle, built = build_lenet_engine(start_weights, BuildOptions(), logger,
                                           PlanCache(plan_cache_dir()), session.gpu_name, progress=progress)
        session.on_close(handle.close)
        runner = TrtRunner(handle)
        before = run_lenet(runner, images).argmax(axis=1)
        say("Accuracy Before Engine Refit")
        say(accuracy_line(int((before == labels).sum()), len(labels)))
        refitter = EngineRefitter(handle, weight_specs(), start_weights, session.synchronize)
        say("Refitting engine...")
        seconds = refitter.refit_with({k: trained.weights[k] for k in REFIT_TARGETS})
        after = run_lenet(runner, images).argmax(axis=1)
        say(f"Accuracy After Engine Refit (expecting {100.0 * ref_acc:.1f}% correct predictions)")
        say(accuracy_line(int((after == labels).sum()), len(labels)))
        return MnistFlowResult(float((before == labels).mean()), float((after == labels).mean()), ref_acc,
                               before, after, built.seconds if built else None, seconds, lines)
    finally:
        session.close()
