"""`python -m refit_core check` as a user runs it, on the GPU (TensorRT, pycuda), in-process
(`main(argv)`: a subprocess pays ~12 s creating a TensorRT Builder): the tiny MLP in FP32 and
FP16 passes and writes a record the gate reads; a dynamically quantized model is refused in
one sentence naming the op types and why; a model ONNX Runtime cannot run is refused before
any build."""
from __future__ import annotations

import json

import pytest

from refit_core.cases.tiny_mlp import write_tiny_mlp
from refit_core.cli import main
from refit_core.reporting.schema import load_results, record_dict

from ..onnx_prep.generic_models import dynamic_quantized, paddle_like

pytestmark = pytest.mark.gpu


def _one_sentence(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("refit_core: ")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_check_passes_on_the_tiny_mlp_and_the_gate_reads_its_record(cuda_session, tmp_path, precision, capsys):
    model = write_tiny_mlp(tmp_path)
    record = tmp_path / f"check-{precision}.json"
    code = main(["check", str(model), "--precision", precision, "--rounds", "5", "--results", str(record)])
    out, err = capsys.readouterr()
    print(out[-6000:], err[-2000:])
    assert code == 0, err
    assert "weight coverage" in out and "CHECK PASSED" in out and "estimate for the REFIT build" in out
    data = record_dict(load_results(record))
    key = f"model-tiny_mlp-{precision}"
    cov = data["cases"][key]["coverage"]
    assert cov["initializers"] == 4 and cov["by_name"], cov
    assert data["cases"][key]["refit_tax"]["ratio"] > 0
    assert data["cases"][key]["checks"]["refit_vs_fresh_build"]["fresh_build"] == "without REFIT"
    assert {"refit", "rebuild", "inference.refit_engine", "inference.plain_engine"} <= \
        {name[len(key) + 1:] for name in data["timings"]}
    assert all(t["outcome"] == "passed" for t in data["tests"].values()), json.dumps(data["tests"], indent=1)
    assert main(["gate", str(record), str(record)]) == 0


@pytest.mark.trt_feature("builder_optimization_level")
def test_check_builds_at_the_builder_optimization_level_asked_for(cuda_session, tmp_path, capsys):
    """--builder-optimization-level reaches TensorRT (8.6+): the engine built at level 1 passes
    every check, and the output says which level built it."""
    model = write_tiny_mlp(tmp_path)
    code = main(["check", str(model), "--builder-optimization-level", "1", "--rounds", "3"])
    out, err = capsys.readouterr()
    assert code == 0, err[-2000:]
    assert "builder optimization level 1" in out and "CHECK PASSED" in out


def test_check_on_constant_weights_and_repeated_dim_symbols(cuda_session, tmp_path, capsys):
    """The shape of PaddlePaddle's exports: prepare fixes both '?' dims and makes the Constant
    weights initializers; then TensorRT refits them by name (or names the ones it cannot)."""
    model = paddle_like(tmp_path / "paddle_like.onnx")
    code = main(["check", "--shapes", "x:1x3x16x24", str(model), "--rounds", "3", "--skip-builds"])
    out, err = capsys.readouterr()
    print(out[-6000:], err[-2000:])
    assert code == 0, err
    assert "moved 8 float weights" in out and "CHECK PASSED" in out


def test_a_dynamically_quantized_model_is_refused_naming_the_op_types(cuda_session, tmp_path, capsys):
    path = dynamic_quantized(tmp_path / "dq.onnx")
    assert main(["check", str(path), "--shapes", "x:1x1x8x16"]) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert "parser rejected" in line and "cannot parse" in line, line
    assert "DynamicQuantizeLinear" in line and "dynamic quantization" in line, line


def test_a_model_onnx_runtime_cannot_run_is_refused_before_a_build(cuda_session, tmp_path, capsys):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph([helper.make_node("NoSuchOpAnywhere", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                              [numpy_helper.from_array(np.ones((2, 3), np.float32), "w")])
    path = tmp_path / "unrunnable.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    assert main(["check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "ONNX Runtime cannot run" in _one_sentence(err) and "building" not in out
