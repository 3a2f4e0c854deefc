"""`python -m refit_core check` as a user runs it, on the GPU (TensorRT, pycuda): the tiny MLP
in FP32 and FP16 passes and writes a record the gate reads; a model TensorRT's parser
rejects is one sentence, exit 2."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from refit_core.cases.tiny_mlp import write_tiny_mlp
from refit_core.reporting.schema import load_results

pytestmark = pytest.mark.gpu


def _run(*args: str):
    return subprocess.run([sys.executable, "-m", "refit_core", *args], capture_output=True, text=True, timeout=540)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_check_passes_on_the_tiny_mlp_and_the_gate_reads_its_record(cuda_session, tmp_path, precision):
    model = write_tiny_mlp(tmp_path)
    record = tmp_path / f"check-{precision}.json"
    proc = _run("check", str(model), "--precision", precision, "--rounds", "5", "--results", str(record))
    print(proc.stdout[-6000:], proc.stderr[-2000:])
    assert proc.returncode == 0, proc.stderr
    assert "weight coverage" in proc.stdout and "CHECK PASSED" in proc.stdout
    data = load_results(record)
    key = f"model-tiny_mlp-{precision}"
    cov = data["cases"][key]["coverage"]
    assert cov["initializers"] == 4 and cov["by_name"], cov
    assert data["cases"][key]["refit_tax"]["ratio"] > 0
    assert {"refit", "rebuild", "inference.refit_engine", "inference.plain_engine"} <= \
        {name[len(key) + 1:] for name in data["timings"]}
    assert all(t["outcome"] == "passed" for t in data["tests"].values()), json.dumps(data["tests"], indent=1)
    gate = _run("gate", str(record), str(record))
    assert gate.returncode == 0, gate.stdout


def test_a_model_the_parser_rejects_is_one_sentence(cuda_session, tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    graph = helper.make_graph([helper.make_node("NoSuchOpAnywhere", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                              [numpy_helper.from_array(np.ones((2, 3), np.float32), "w")])
    path = tmp_path / "unparsable.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    proc = _run("check", str(path))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("[TRT]")]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and "parser rejected" in lines[0] and "cannot parse" in lines[0], proc.stderr
