"""Small ONNX models with what real exported files bring (for prepare and check tests):

* `paddle_like`: every weight in a `Constant` node (0 initializers), input dims
  [-1, 3, '?', '?'] (two unrelated dims with one symbol), a BatchNormalization, and an int64
  Constant (a Reshape's shape) that must stay a Constant; the shape of PaddlePaddle's exports;
* `dynamic_quantized`: DynamicQuantizeLinear -> ConvInteger (what onnxruntime's
  quantize_dynamic writes), which ONNX Runtime runs and TensorRT's parser cannot import.
Weights are seeded; nothing here is trained.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name + "_value"))


def paddle_like(path: Path, seed: int = 3, channels: int = 4, classes: int = 5) -> Path:
    rng = np.random.default_rng(seed)
    f32 = np.float32
    nodes = [
        _const("conv_w", rng.standard_normal((channels, 3, 3, 3)).astype(f32) * f32(0.3)),
        _const("conv_b", rng.standard_normal(channels).astype(f32) * f32(0.1)),
        _const("bn_scale", (1.0 + 0.1 * rng.standard_normal(channels)).astype(f32)),
        _const("bn_bias", (0.1 * rng.standard_normal(channels)).astype(f32)),
        _const("bn_mean", (0.1 * rng.standard_normal(channels)).astype(f32)),
        _const("bn_var", (1.0 + 0.1 * rng.random(channels)).astype(f32)),
        _const("fc_w", rng.standard_normal((channels, classes)).astype(f32) * f32(0.5)),
        _const("fc_b", rng.standard_normal((1, classes)).astype(f32) * f32(0.1)),
        _const("flat_shape", np.array([-1, channels], np.int64)),
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Reshape", ["p", "flat_shape"], ["f"]),
        helper.make_node("MatMul", ["f", "fc_w"], ["m"]),
        helper.make_node("Add", ["m", "fc_b"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "paddle_like",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 3, "?", "?"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["?", classes])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="test")
    # exporters write -1 for an unknown dim; helper.make_tensor_value_info stores it as dim_value -1
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def dynamic_quantized(path: Path, seed: int = 5) -> Path:
    rng = np.random.default_rng(seed)
    w = rng.integers(108, 148, size=(2, 1, 3, 3), dtype=np.uint8)
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("ConvInteger", ["xq", "w", "xz", "wz"], ["acc"]),
        helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["accf", "xs"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "dynamic_quantized",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, "width"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array(128, np.uint8), "wz")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="test")
    onnx.save(model, str(path))
    return path
