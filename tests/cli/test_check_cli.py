"""`python -m refit_core check MODEL.onnx`: arguments and every way it refuses to run, in one
sentence with exit status 2 and no traceback (CPU tier; the GPU run itself is the lead's)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refit_core import check
from refit_core.check import build_times, gpu_run
from refit_core.check.plan import CheckUnusable, model_and_shapes, plan_from_args
from refit_core.check.progress import Step
from refit_core.cli import build_parser, main
from refit_core.trt.cuda import gpu_unavailable_reason
from refit_core.trt.engine import OnnxParseError


def run_check(*args: str):
    return subprocess.run([sys.executable, "-m", "refit_core", "check", *args], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ))


def one_sentence(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("refit_core: ")
    return lines[0]


def _write_model(path: Path, batch="N") -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "W")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    graph = helper.make_graph([helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])], [w, b])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


@pytest.fixture
def dynamic_model(tmp_path):
    return _write_model(tmp_path / "dyn.onnx")


@pytest.fixture
def static_model(tmp_path):
    return _write_model(tmp_path / "static.onnx", batch=2)


def test_help_lists_check_and_its_options():
    proc = subprocess.run([sys.executable, "-m", "refit_core", "check", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for option in ("--precision", "--shapes", "--results", "--rounds", "--allow-fp16-range", "--skip-builds"):
        assert option in proc.stdout


def test_arguments_parse():
    args = build_parser().parse_args(["check", "m.onnx", "--precision", "fp16", "--shapes", "x:1x3", "y:2x3",
                                      "--results", "out.json", "--rounds", "7"])
    assert (args.model, args.precision, args.results, args.rounds) == ("m.onnx", "fp16", "out.json", 7)
    assert model_and_shapes(args) == (Path("m.onnx"), {"x": (1, 3), "y": (2, 3)})
    assert args.func is check.run_check
    defaults = build_parser().parse_args(["check", "m.onnx"])
    assert (defaults.precision, defaults.shapes, defaults.results, defaults.allow_fp16_range) == ("fp32", [], None, False)
    assert (defaults.builder_optimization_level, defaults.save_prepared) == (None, None)


@pytest.mark.parametrize("argv", [
    ["check", "m.onnx", "--shapes", "x:1x3", "y:2x3"],
    ["check", "--shapes", "x:1x3", "y:2x3", "m.onnx"],
    ["check", "--shapes", "x:1x3", "--shapes", "y:2x3", "m.onnx", "--precision", "fp16"],
    ["check", "--shapes", "x:1x3,y:2x3", "--", "m.onnx"],
    ["prepare", "--shapes", "x:1x3", "y:2x3", "m.onnx", "-o", "p.onnx"],
    ["prepare", "-o", "p.onnx", "m.onnx", "--shapes", "x:1x3", "y:2x3"],
])
def test_shapes_before_or_after_the_model(argv):
    args = build_parser().parse_args(argv)
    assert model_and_shapes(args) == (Path("m.onnx"), {"x": (1, 3), "y": (2, 3)})


@pytest.mark.parametrize("argv, fragment", [
    (["check", "--shapes", "x:1x3"], "give the ONNX model file"),
    (["check", "m.onnx", "--shapes", "x:1x3", "junk"], "'junk' is not NAME:DIMS"),
    (["check", "--shapes", "a.onnx", "b.onnx"], "'a.onnx' is not NAME:DIMS"),
])
def test_shapes_and_model_mistakes_are_one_sentence(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err


def test_builder_optimization_level_is_0_to_5():
    assert build_parser().parse_args(["check", "m.onnx", "--builder-optimization-level", "2"]).builder_optimization_level == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["check", "m.onnx", "--builder-optimization-level", "6"])


@pytest.mark.parametrize("bad", [["--precision", "int8"], ["--rounds", "0"], ["--rounds", "x"]])
def test_bad_option_values_are_usage_errors(bad):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["check", "m.onnx", *bad])
    assert info.value.code == 2


def test_a_missing_file(tmp_path):
    line = one_sentence(run_check(str(tmp_path / "nowhere.onnx")))
    assert "nowhere.onnx does not exist" in line


def test_a_file_that_is_not_onnx(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00 not a model \xff" * 10)
    assert "is not a readable ONNX model" in one_sentence(run_check(str(junk)))


def test_a_dynamic_model_without_shapes_names_the_input_and_the_option(dynamic_model):
    line = one_sentence(run_check(str(dynamic_model)))
    assert "with a dynamic shape and no --shapes: 'x' (?x3; dims 'N', 3)" in line and "--shapes x:1x3" in line
    assert "--refit-shapes" not in line


def test_a_shape_for_an_input_the_model_lacks(dynamic_model):
    line = one_sentence(run_check(str(dynamic_model), "--shapes", "x:2x3", "mask:1x4"))
    assert "'mask'" in line and "inputs: 'x'" in line


def test_a_shape_that_does_not_fit(dynamic_model):
    assert "does not fit the model's ?x3" in one_sentence(run_check(str(dynamic_model), "--shapes", "x:2x4"))


def test_results_must_be_a_file_name(static_model, tmp_path):
    line = one_sentence(run_check(str(static_model), "--results", str(tmp_path)))
    assert "is a directory" in line


@pytest.mark.skipif(gpu_unavailable_reason() is None, reason="this machine has a GPU and TensorRT")
def test_without_a_gpu_it_says_what_is_missing(dynamic_model):
    """No TensorRT (CI), or TensorRT without a CUDA driver (the GPU kit on a CPU machine): the
    one sentence names what is missing here."""
    line = one_sentence(run_check(str(dynamic_model), "--shapes", "x:2x3"))
    assert line.startswith("refit_core: cannot run on this machine: ")
    assert gpu_unavailable_reason().rstrip(".") in line and line.endswith(".")


def test_model_errors_come_before_machine_errors(tmp_path):
    """A user without a GPU still learns what is wrong with the model first."""
    line = one_sentence(run_check(str(tmp_path / "nowhere.onnx")))
    assert "cannot run on this machine" not in line


def test_plan_takes_comma_separated_shapes_and_states_the_tolerance(dynamic_model):
    args = build_parser().parse_args(["check", str(dynamic_model), "--shapes", "x:5x3", "--precision", "fp16"])
    plan = plan_from_args(args)
    assert plan.case.input_shapes == {"x": (5, 3)}
    assert plan.key == "model-dyn-fp16" and plan.case.precision == "fp16"
    from refit_core.cases.onnx_model import PRECISION_TOLERANCES
    assert plan.case.tolerance == PRECISION_TOLERANCES["fp16"]
    assert PRECISION_TOLERANCES["fp16"].rtol > PRECISION_TOLERANCES["tf32"].rtol > PRECISION_TOLERANCES["fp32"].rtol
    assert plan.case.build_options().key_parts()["precision"] == "fp16"
    assert plan.case.build_options(refit=False).key_parts() == {**plan.case.build_options().key_parts(), "refit": False}
    args = build_parser().parse_args(["check", str(dynamic_model), "--shapes", "x:5x3,x:6x3"])
    with pytest.raises(CheckUnusable, match="given two shapes"):
        plan_from_args(args)


def test_a_model_tensorrt_cannot_parse_is_one_sentence(static_model, monkeypatch, capsys):
    """The parser's error (OnnxParseError, what build_plan_from_onnx raises) becomes exit 2.
    The case's open() is replaced by one raising that error: no TensorRT here, so this tests
    the mapping, not TensorRT's parser."""
    def fake_gpu_run(plan):
        def reject(*_args):
            raise OnnxParseError(f"TensorRT's ONNX parser rejected {plan.model}: In node 0 (importFoo): "
                                 "UNSUPPORTED_NODE: No importer registered for op: Foo")
        plan.case.open = reject
        return gpu_run._open_engine(plan, None, None, None, Path("."))

    monkeypatch.setattr(check, "gpu_unavailable_reason", lambda: None)
    monkeypatch.setattr(gpu_run, "run_on_gpu", fake_gpu_run)
    assert main(["check", str(static_model)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "UNSUPPORTED_NODE" in err[0] and "cannot parse" in err[0], err
    assert "TensorRT could not import Gemm (node 0)" in err[0], err  # the node the parser named, by op type


def test_a_failed_build_is_one_sentence_and_other_errors_are_not_hidden(static_model, monkeypatch):
    args = build_parser().parse_args(["check", str(static_model)])
    plan = plan_from_args(args)
    plan.case.open = lambda *a: (_ for _ in ()).throw(RuntimeError("TensorRT could not build the engine (x\ny)"))
    with pytest.raises(CheckUnusable, match=r"could not build the engine \(x y\); check cannot run"):
        gpu_run._open_engine(plan, None, None, None, Path("."))
    plan.case.open = lambda *a: (_ for _ in ()).throw(RuntimeError("a bug"))
    with pytest.raises(RuntimeError, match="a bug"):
        gpu_run._open_engine(plan, None, None, None, Path("."))


def test_step_reports_progress_and_duration():
    out = io.StringIO()
    with Step("building", every=0.05, out=out):
        import time
        time.sleep(0.2)
    lines = out.getvalue().splitlines()
    assert lines[0] == "building ..." and any(line.startswith("building ... ") and line.endswith(" s")
                                              for line in lines[1:-1])
    assert lines[-1].startswith("building: done (")


def test_build_estimates_use_this_models_builds_then_the_range_of_others_then_what_was_measured(tmp_path):
    history = [dict(kind="REFIT", sha256="aa", bytes=10_000_000, tensorrt="8.6.0", gpu="H200", seconds=100.0),
               dict(kind="REFIT", sha256="aa", bytes=10_000_000, tensorrt="8.6.0", gpu="H200", seconds=120.0),
               dict(kind="REFIT", sha256="bb", bytes=20_000_000, tensorrt="8.6.0", gpu="H200", seconds=300.0),
               dict(kind="without REFIT", sha256="aa", bytes=10_000_000, tensorrt="8.6.0", gpu="H200", seconds=50.0)]
    assert build_times.estimate_build(history, "aa", "REFIT", "8.6.0", "H200").startswith(
        "about 110 s (this model's REFIT build measured here before)")
    other = build_times.estimate_build(history, "cc", "REFIT", "8.6.0", "H200")
    assert other.startswith("100 s to 5.0 min (what 3 earlier REFIT builds of other models took") and "rough guide" in other
    assert build_times.estimate_build(history, "aa", "REFIT", "8.5.3.1", "H200") == build_times.NO_HISTORY_HINT
    path = tmp_path / "times.json"
    path.write_text("{not json")
    assert build_times.load_build_times(path) == []  # damaged history: no estimate, no failure
    for entry in history:
        build_times.record_build_time(path, entry)
    assert build_times.load_build_times(path) == history


def test_the_optimization_level_on_a_tensorrt_without_it_is_refused_naming_the_version(static_model, monkeypatch):
    """TensorRT 8.5 has no builder optimization level: refused before anything is built (the
    version seam, compat, answers; faked here, TensorRT is not importable on this machine)."""
    from refit_core.trt import compat
    plan = plan_from_args(build_parser().parse_args(["check", str(static_model),
                                                           "--builder-optimization-level", "1"]))
    monkeypatch.setattr(compat, "has_feature", lambda name: name != "builder_optimization_level")
    monkeypatch.setattr(compat, "trt_version_string", lambda: "8.5.3.1")
    with pytest.raises(CheckUnusable, match=r"needs TensorRT >= 8\.6; this is TensorRT 8\.5\.3\.1"):
        gpu_run.run_on_gpu(plan)
    plan.cleanup()
    assert plan.case.build_options().key_parts()["optimization_level"] == 1
    assert "optimization_level" not in plan_from_args(
        build_parser().parse_args(["check", str(static_model)])).case.build_options().key_parts()


def test_a_model_with_only_float16_weights_is_refused_before_any_build(tmp_path):
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.ones((4, 2), np.float16), "fc.weight")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "fc.weight"], ["y"])], "half",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 2])], [w])
    path = tmp_path / "half.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    line = one_sentence(run_check(str(path)))
    assert "half.onnx holds its weights as 1 float16 tensors and none as float32" in line, line
