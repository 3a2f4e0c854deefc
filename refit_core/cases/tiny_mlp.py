"""A third case, added the way any model is: a two-layer MLP written as ONNX with seeded
weights (x[8,16] -> MatMul+Add -> Relu -> MatMul+Add -> y[8,10]), through OnnxModelCase."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import variant_name
from .onnx_model import OnnxModelCase


def write_tiny_mlp(directory: Path, seed: int = 7) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from ..fileio import atomic_write_bytes
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("fc1.weight", rng.standard_normal((16, 32)) / 4), ("fc1.bias", rng.standard_normal(32) / 4),
        ("fc2.weight", rng.standard_normal((32, 10)) / 4), ("fc2.bias", rng.standard_normal(10) / 4))]
    nodes = [helper.make_node("MatMul", ["x", "fc1.weight"], ["h0"]), helper.make_node("Add", ["h0", "fc1.bias"], ["h1"]),
             helper.make_node("Relu", ["h1"], ["h2"]), helper.make_node("MatMul", ["h2", "fc2.weight"], ["h3"]),
             helper.make_node("Add", ["h3", "fc2.bias"], ["y"])]
    graph = helper.make_graph(nodes, "tiny_mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="refit_core")
    onnx.checker.check_model(model)
    return atomic_write_bytes(directory / "tiny_mlp.onnx", model.SerializeToString())


def tiny_mlp_case(precision: str = "fp32") -> OnnxModelCase:
    return OnnxModelCase(variant_name("tiny-mlp", precision), write_tiny_mlp, {"x": (8, 16)}, noise=0.5,
                         precision=precision)
