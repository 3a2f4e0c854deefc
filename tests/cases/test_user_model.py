"""Your own ONNX model as a case (`--refit-model`, `--refit-shapes`), CPU tier.

What can be known without TensorRT is refused up front in one sentence; a good file becomes
one more parametrization of every generic check. The GPU side is the generic checks
themselves (tests/cases/test_refit_checks_gpu.py) on the case this builds.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from refit_core.cases import registry
from refit_core.cases.user_model import (ModelInputError, case_name_for, parse_shapes, user_model_case,
                                         user_model_cases)

PROJECT = Path(__file__).resolve().parents[2]


def _save(directory: Path, name: str, nodes, inputs, outputs, inits) -> Path:
    """An opset-13 model of `nodes` written to directory/name."""
    from onnx import helper
    graph = helper.make_graph(nodes, Path(name).stem, inputs, outputs, inits)
    path = directory / name
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    return path


def _model(directory: Path, name: str = "net.onnx", dims=("N", 16), elem=None) -> Path:
    from onnx import TensorProto, helper, numpy_helper
    elem = TensorProto.FLOAT if elem is None else elem
    w = numpy_helper.from_array(np.ones((16, 4), np.float32), "fc.weight")
    return _save(directory, name, [helper.make_node("MatMul", ["x", "fc.weight"], ["y"])],
                 [helper.make_tensor_value_info("x", elem, list(dims))],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [dims[0], 4])], [w])


def test_shapes_are_parsed_trtexec_style():
    assert parse_shapes(["x:1x3x224x224", "mask:1x128"]) == {"x": (1, 3, 224, 224), "mask": (1, 128)}
    assert parse_shapes(["input:0:4x2"]) == {"input:0": (4, 2)}  # names may hold colons


@pytest.mark.parametrize("bad, words", [("x", "NAME:DIMS"), ("x:1,3", "NAME:DIMS"), ("x:2x0", "dimension of 0"),
                                        ("x:", "NAME:DIMS")])
def test_bad_shapes_are_refused_in_one_sentence(bad, words):
    with pytest.raises(ModelInputError, match=words):
        parse_shapes([bad])


def test_a_shape_given_twice_is_refused():
    with pytest.raises(ModelInputError, match="two shapes"):
        parse_shapes(["x:1x2", "x:1x3"])


def test_a_dynamic_input_needs_a_shape_and_the_message_shows_one(tmp_path):
    path = _model(tmp_path)
    with pytest.raises(ModelInputError) as info:
        user_model_case(path)
    assert "'x'" in str(info.value) and "?x16" in str(info.value) and "--refit-shapes x:1x16" in str(info.value)
    case = user_model_case(path, {"x": (8, 16)})
    assert case.input_shapes == {"x": (8, 16)} and case.name == "model-net"
    assert case.profiles(path) == [{"x": ((8, 16), (8, 16), (8, 16))}]


def test_a_static_model_needs_no_shapes(tmp_path):
    case = user_model_case(_model(tmp_path, dims=(2, 16)))
    assert case.input_shapes == {"x": (2, 16)} and case.profiles(tmp_path / "net.onnx") == []


def test_a_shape_that_contradicts_the_model_is_refused(tmp_path):
    path = _model(tmp_path)
    for shape in ((8, 15), (8, 16, 1)):
        with pytest.raises(ModelInputError, match="does not fit the model's"):
            user_model_case(path, {"x": shape})


def test_missing_file_not_onnx_and_inputs_no_probe_can_feed_are_refused(tmp_path):
    from onnx import TensorProto
    with pytest.raises(ModelInputError, match="does not exist"):
        user_model_case(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 this is not protobuf \xff" * 10)
    with pytest.raises(ModelInputError, match="not a readable ONNX model|no nodes"):
        user_model_case(junk)
    with pytest.raises(ModelInputError, match="'x' of doubles.onnx is DOUBLE; the probes feed FLOAT, FLOAT16"):
        user_model_case(_model(tmp_path, "doubles.onnx", dims=(2, 16), elem=TensorProto.DOUBLE))
    with pytest.raises(ModelInputError, match="is STRING"):
        user_model_case(_model(tmp_path, "strings.onnx", dims=(2, 16), elem=TensorProto.STRING))


def _embedding_model(directory: Path) -> Path:
    """Token ids (INT64) and a sample rate (INT64 scalar) beside float features; two outputs of
    different first dims (a state beside the output), as a recurrent model exports them."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "emb.weight"),
             numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "fc.weight")]
    nodes = [helper.make_node("Gather", ["emb.weight", "ids"], ["e"]),
             helper.make_node("Add", ["e", "feat"], ["h"]),
             helper.make_node("MatMul", ["h", "fc.weight"], ["y"]),
             helper.make_node("Cast", ["rate"], ["rate_f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["y", "rate_f"], ["y_scaled"]),
             helper.make_node("Transpose", ["h"], ["state"], perm=[1, 0, 2])]
    return _save(directory, "emb.onnx", nodes, [
        helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("feat", TensorProto.FLOAT, ["batch", "seq", 4]),
        helper.make_tensor_value_info("rate", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y_scaled", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, None)], inits)


def test_integer_inputs_are_fed_zeros_of_their_type_and_outputs_of_other_first_dims_make_one_row(tmp_path):
    import onnx
    from onnx import numpy_helper

    from refit_core.cases.onnx_model import ort_rows
    path = _embedding_model(tmp_path)
    case = user_model_case(path, {"ids": (1, 3), "feat": (1, 3, 4)})
    feeds = case.probe_feeds(path)
    assert feeds["ids"].dtype == np.int64 and not feeds["ids"].any() and feeds["ids"].shape == (1, 3)
    assert feeds["rate"].dtype == np.int64 and feeds["rate"].shape == ()
    # the float inputs draw what they drew before integer inputs were fed (the same seed, name order)
    rng = np.random.default_rng(case.seed + 1)
    np.testing.assert_array_equal(feeds["feat"], rng.standard_normal((1, 3, 4)).astype(np.float32))
    build = {i.name: numpy_helper.to_array(i).copy() for i in onnx.load(str(path)).graph.initializer}
    rows = ort_rows(path, build, feeds)
    assert rows.shape == (1, 3 * 4 + 3 * 4)  # y_scaled (1, 3, 4) and state (3, 1, 4): one row
    assert not np.array_equal(rows, ort_rows(path, case.target_weights(build, path), feeds))


def test_a_model_whose_weights_are_all_float16_is_refused_even_in_constant_nodes(tmp_path):
    from onnx import TensorProto, helper, numpy_helper
    half = helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(np.ones((4, 2), np.float16), "w"))
    nodes = [half, helper.make_node("MatMul", ["x", "w"], ["y"])]
    io = ([helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 4])],
          [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 2])])
    with pytest.raises(ModelInputError, match=r"half\.onnx holds its weights as 1 float16 tensors and none as float32"):
        user_model_case(_save(tmp_path, "half.onnx", nodes, *io, []))
    single = _save(tmp_path, "mixed.onnx", nodes + [helper.make_node("Add", ["y", "b"], ["z"])], io[0],
                   [helper.make_tensor_value_info("z", TensorProto.FLOAT16, [1, 2])],
                   [numpy_helper.from_array(np.zeros((1, 2), np.float32), "b")])
    assert user_model_case(single).name == "model-mixed"  # one float32 weight: something to refit


def test_a_weight_the_model_holds_inf_in_keeps_it_and_only_it_may_carry_it_into_a_refit(tmp_path):
    """A -inf a Max starts from (magika's jax2tf export holds one) is the model's own value: the
    perturbation moves the finite entries only, and refit_to lets NaN/Inf through in that weight
    and no other (the refit wrapper refused the model's own -inf: check failed for its own reason)."""
    from refit_core.cases.base import CaseEngine
    from refit_core.cases.onnx_model import OnnxModelCase
    floor = np.array([-np.inf] * 8 + [0.5] + [np.inf] * 8, np.float32)  # noise 2: some factors 1 + 2z are < 0
    build = {"floor": floor, "scale": np.full(3, 2.0, np.float32)}
    case = OnnxModelCase("floored", lambda d: d, {"x": (1, 3)}, noise=2.0)
    target = case.target_weights(build)
    inf = ~np.isfinite(floor)
    np.testing.assert_array_equal(target["floor"][inf], floor[inf])
    assert target["floor"][8] != 0.5
    assert np.isfinite(target["scale"]).all() and not np.array_equal(target["scale"], build["scale"])

    class Recorder:  # the refit wrapper's call, as the engine makes it (the wrapper itself is GPU-tested)
        def refit_with(self, weights, allow_nonfinite=False, fill_missing=False, allow_fp16_range=False):
            self.allowed = allow_nonfinite
            return 0.0

    class Engine(CaseEngine):
        probe = reference = None

    engine = object.__new__(Engine)
    engine.build_weights, engine.refitter = build, Recorder()
    engine.refit_to(target)
    assert engine.refitter.allowed == frozenset({"floor"})


def test_integer_outputs_are_left_out_of_the_comparisons_where_a_float_one_is_there(tmp_path):
    """An ArgMax beside its scores: a near-tie flips the index by a whole class from one engine to
    another, which no tolerance fits; the scores are compared, the index is left out and named."""
    from onnx import TensorProto, helper, numpy_helper
    from refit_core.cases.onnx_model import compared_outputs, ort_rows
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["scores"]),
             helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    label = helper.make_tensor_value_info("label", TensorProto.INT64, [2])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, [2, 3])
    both = _save(tmp_path, "both.onnx", nodes, [x], [label, scores], [w])
    assert compared_outputs(both) == (["scores"], ["label"])
    assert compared_outputs(both, ["scores", "label"]) == (["scores"], ["label"])
    only = _save(tmp_path, "only.onnx", nodes, [x], [label], [w])
    assert compared_outputs(only) == (["label"], [])  # nothing else to compare: kept
    case = user_model_case(both)
    feeds = case.probe_feeds(both)
    assert ort_rows(both, {}, feeds, compared_outputs(both)[0]).shape == (2, 3)
    target = case.target_weights({"w": numpy_helper.to_array(w)}, both)
    assert not np.array_equal(target["w"], numpy_helper.to_array(w))


def test_shapes_no_model_uses_and_clashing_names_are_refused(tmp_path):
    path = _model(tmp_path)
    with pytest.raises(ModelInputError, match="'y'.*no given model has"):
        user_model_cases([str(path)], {"x": (8, 16), "y": (1, 1)})
    other = tmp_path / "sub"
    other.mkdir()
    with pytest.raises(ModelInputError, match="same case name"):
        user_model_cases([str(path), str(_model(other))], {"x": (8, 16)})


def test_case_names_are_valid_registry_names():
    for raw in ("my model.v2.onnx", "résumé.onnx", "...onnx", "a-b_c.onnx"):
        name = case_name_for(Path(raw))
        assert name.startswith("model-") and name.replace("-", "").replace("_", "").isalnum(), name


# ---- through pytest ------------------------------------------------------------------------
@pytest.fixture
def project(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(PROJECT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pytester.makeini("[pytest]\naddopts = -p refit_core.pytest_plugin\n")
    pytester.makepyfile(test_cases="def test_case(refit_case):\n    print('CASE', refit_case.name)\n")
    return pytester


def test_refit_model_adds_one_case_to_every_generic_check(project, tmp_path):
    path = _model(tmp_path)
    result = project.runpytest_subprocess(f"--refit-model={path}", "--refit-shapes", "x:8x16", "-v")
    result.assert_outcomes(passed=len(registry.names()) + 1)
    result.stdout.fnmatch_lines(["*test_case?model-net? PASSED*"])


def test_a_bad_model_stops_pytest_with_one_sentence(project, tmp_path):
    result = project.runpytest_subprocess(f"--refit-model={_model(tmp_path)}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "refit_core: input of net.onnx with a dynamic shape and no --refit-shapes: 'x'" in result.stderr.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


def test_cases_given_on_the_command_line_are_forgotten_afterwards(project, tmp_path):
    before = registry.names()
    result = project.runpytest_inprocess(f"--refit-model={_model(tmp_path, dims=(2, 16))}")
    result.assert_outcomes(passed=len(before) + 1)
    assert registry.names() == before


def test_a_model_outside_the_project_in_the_separate_form_is_refused_naming_the_option(project, tmp_path):
    path = _model(tmp_path, dims=(2, 16))
    result = project.runpytest_subprocess("-p", "refit_core.pytest_plugin", "--refit-model", str(path))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"write the option as --refit-model={path} (with '=')" in result.stderr.str()


def test_target_weights_keep_positive_weights_positive_and_change_every_weight(tmp_path):
    """A BatchNorm variance pushed below zero would make ONNX Runtime and TensorRT both output
    NaN, and the checks would fail for the wrong reason."""
    case = user_model_case(_model(tmp_path, dims=(2, 16)))
    rng = np.random.default_rng(3)
    build = {"bn.running_var": np.abs(rng.standard_normal(4096)).astype(np.float32) + 1e-3,
             "conv.weight": rng.standard_normal((8, 3, 3, 3)).astype(np.float32)}
    target = case.target_weights(build)
    assert np.all(target["bn.running_var"] > 0)
    assert (target["conv.weight"] < 0).mean() > 0.3  # signed weights keep both signs (and may flip)
    for name in build:
        assert target[name].dtype == build[name].dtype and target[name].shape == build[name].shape
        assert np.mean(target[name] != build[name]) > 0.99
    assert all(np.array_equal(target[n], again) for n, again in case.target_weights(build).items())


def _saturated_model(directory: Path, bias: float) -> Path:
    """x (2, 16) -> MatMul(W) + b -> Sigmoid: with a bias of -10 the outputs are ~5e-5, well
    inside any tolerance, however W moves a little (a detector's probability map under random probes)."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array((rng.standard_normal((16, 4)) * 0.25).astype(np.float32), "fc.weight")
    b = numpy_helper.from_array(np.full((4,), bias, np.float32), "fc.bias")
    return _save(directory, f"saturated{bias:g}.onnx", [helper.make_node("MatMul", ["x", "fc.weight"], ["h"]),
                                                        helper.make_node("Add", ["h", "fc.bias"], ["z"]),
                                                        helper.make_node("Sigmoid", ["z"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [w, b])


@pytest.mark.parametrize("bias, grows", [(-10.0, True), (0.0, False)])
def test_the_perturbation_grows_until_the_reference_moves(tmp_path, bias, grows):
    """Saturated outputs: the starting noise leaves ONNX Runtime's reference within the no-op margin
    (a refit that did nothing would pass); given the model, the noise doubles until it moves. A model
    that moves at the starting size keeps it."""
    from onnx import numpy_helper

    from refit_core.cases.base import NO_OP_MARGIN, compare_outputs
    from refit_core.cases.onnx_model import MAX_NOISE, ort_rows
    import onnx
    path = _saturated_model(tmp_path, bias)
    case = user_model_case(path)
    build = {i.name: numpy_helper.to_array(i).copy() for i in onnx.load(str(path)).graph.initializer}
    feeds, margin = case.probe_feeds(), case.tolerance.scaled(NO_OP_MARGIN)
    before = ort_rows(path, build, feeds)

    def moved(target):
        return not compare_outputs(before, ort_rows(path, target, feeds), margin).ok

    start = case.target_weights(build)  # no model: the starting size
    assert moved(start) is not grows
    chosen = case.target_weights(build, path)
    assert moved(chosen)
    assert all(np.array_equal(chosen[n], again) for n, again in case.target_weights(build, path).items())
    factor = np.max(np.abs(chosen["fc.weight"] / build["fc.weight"] - 1))
    start_factor = np.max(np.abs(start["fc.weight"] / build["fc.weight"] - 1))
    assert bool(factor > 1.9 * start_factor) is grows and factor <= MAX_NOISE * 5  # |z| < 5 for 64 draws


def _layernorm_model(directory: Path) -> Path:
    """x (2, 16) -> MatMul(W) -> a LayerNorm written out as exported graphs write it:
    (h - mean) / sqrt(mean((h - mean) ** 2) + eps) * gamma + beta, every constant an initializer."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "fc.weight"),
             numpy_helper.from_array(np.array([2.0], np.float32), "ln.pow_exponent"),
             numpy_helper.from_array(np.array([1e-5], np.float32), "ln.eps"),
             numpy_helper.from_array(np.ones(8, np.float32), "ln.gamma"),
             numpy_helper.from_array(np.zeros(8, np.float32) + 0.1, "ln.beta")]
    nodes = [helper.make_node("MatMul", ["x", "fc.weight"], ["h"]),
             helper.make_node("ReduceMean", ["h"], ["mean"], axes=[-1]),
             helper.make_node("Sub", ["h", "mean"], ["d"]),
             helper.make_node("Pow", ["d", "ln.pow_exponent"], ["d2"]),
             helper.make_node("ReduceMean", ["d2"], ["var"], axes=[-1]),
             helper.make_node("Add", ["var", "ln.eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["sd"]),
             helper.make_node("Div", ["d", "sd"], ["n"]),
             helper.make_node("Mul", ["n", "ln.gamma"], ["g"]),
             helper.make_node("Add", ["g", "ln.beta"], ["y"])]
    return _save(directory, "layernorm.onnx", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], inits)


def test_a_pow_exponent_keeps_its_value_and_the_model_stays_defined(tmp_path):
    """x ** 2.08 is NaN for a negative x: the target keeps a Pow exponent (DOMAIN_INPUTS), perturbs
    the rest, and ONNX Runtime with its graph optimizations off (no fusion to hide a NaN) gives
    finite outputs for it."""
    import onnx
    from onnx import numpy_helper

    from refit_core.cases.onnx_model import domain_weights, with_initializers
    from refit_core.models.ort_session import ort_session
    path = _layernorm_model(tmp_path)
    case = user_model_case(path)
    build = {i.name: numpy_helper.to_array(i).copy() for i in onnx.load(str(path)).graph.initializer}
    assert domain_weights(path) == {"ln.pow_exponent"}
    target = case.target_weights(build, path)
    assert np.array_equal(target["ln.pow_exponent"], build["ln.pow_exponent"])
    assert all(not np.array_equal(target[n], build[n]) for n in build if n != "ln.pow_exponent")
    session = ort_session(with_initializers(path, target), optimize=False)
    assert np.isfinite(session.run(None, case.probe_feeds(path))[0]).all()


def _anchor_model(directory: Path) -> Path:
    """A detector head's anchors as ultralytics exports write them: Range(0.0, width + offset,
    1.0) + 0.5 added to the head's output, width read with Shape of the head's output; start, offset and delta are
    float initializers. Perturbed, the range has another length and the Add is undefined."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 6)).astype(np.float32), "head.weight"),
             numpy_helper.from_array(np.array(0.0, np.float32), "range.start"),
             numpy_helper.from_array(np.array(0.0, np.float32), "range.offset"),
             numpy_helper.from_array(np.array(1.0, np.float32), "range.delta"),
             numpy_helper.from_array(np.array(0.5, np.float32), "anchor.shift"),
             numpy_helper.from_array(np.array(1, np.int64), "axis1")]
    nodes = [helper.make_node("MatMul", ["x", "head.weight"], ["h"]),
             helper.make_node("Shape", ["h"], ["s"]),
             helper.make_node("Gather", ["s", "axis1"], ["w"]),
             helper.make_node("Cast", ["w"], ["wf"], to=TensorProto.FLOAT),
             helper.make_node("Add", ["wf", "range.offset"], ["limit"]),
             helper.make_node("Range", ["range.start", "limit", "range.delta"], ["r"]),
             helper.make_node("Add", ["r", "anchor.shift"], ["anchors"]),
             helper.make_node("Add", ["h", "anchors"], ["y"])]
    return _save(directory, "anchors.onnx", nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6])], inits)


def test_weights_a_range_is_computed_from_keep_their_values_and_the_model_stays_defined(tmp_path):
    import onnx
    from onnx import numpy_helper

    from refit_core.cases.onnx_model import domain_weights, ort_rows
    path = _anchor_model(tmp_path)
    case = user_model_case(path)
    build = {i.name: numpy_helper.to_array(i).copy() for i in onnx.load(str(path)).graph.initializer
             if i.data_type == onnx.TensorProto.FLOAT}
    # through Add, Cast and Gather, not through Shape: the head's weight, upstream of Shape only, is not one
    assert domain_weights(path) == {"range.start", "range.offset", "range.delta", "axis1"}
    target = case.target_weights(build, path)
    assert all(np.array_equal(target[n], build[n]) for n in ("range.start", "range.offset", "range.delta"))
    assert not np.array_equal(target["head.weight"], build["head.weight"])
    feeds = case.probe_feeds(path)
    assert not np.array_equal(ort_rows(path, build, feeds), ort_rows(path, target, feeds))
