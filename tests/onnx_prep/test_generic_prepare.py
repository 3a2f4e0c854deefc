"""`prepare` (onnx_prep.generic), the model `check` builds: shapes fixed from --shapes,
Constant-node weights moved to initializers, nothing else changed, ONNX Runtime outputs
identical; and every refusal before a build, in one sentence (CPU tier, no TensorRT)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from refit_core.cli import main
from refit_core.onnx_prep.generic import describe_parser_rejection
from refit_core.onnx_prep.ort_agreement import compare_with_ort, seeded_feeds
from refit_core.onnx_prep.source import ModelInputError, fit_shapes, load_model, model_inputs, parse_shapes

from .generic_models import dynamic_quantized, paddle_like


@pytest.fixture
def paddle(tmp_path):
    return paddle_like(tmp_path / "paddle_like.onnx")


def _run(model_path: Path, feeds):
    import onnxruntime as ort
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_constant_weights_and_repeated_dim_symbols_become_a_model_with_identical_outputs(paddle, tmp_path, capsys):
    out = tmp_path / "prepared.onnx"
    assert main(["prepare", str(paddle), "--shapes", "x:2x3x8x12", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "input 'x': (?x3x?x?) -> 2x3x8x12" in printed
    assert "moved 8 float weights" in printed and "1 other Constant nodes" in printed
    assert "ONNX Runtime outputs identical" in printed and f"wrote {out}" in printed
    original, prepared = onnx.load(str(paddle)), onnx.load(str(out))
    onnx.checker.check_model(prepared)
    # the two dims both named '?' got their own values; every dim is fixed
    dims = [d.dim_value for d in prepared.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [2, 3, 8, 12]
    # the float weights are initializers under the Constant outputs' names, with the same values
    constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in original.graph.node
                 if n.op_type == "Constant"}
    inits = {i.name: numpy_helper.to_array(i) for i in prepared.graph.initializer}
    assert set(inits) == {name for name, a in constants.items() if a.dtype == np.float32}
    for name, array in inits.items():
        np.testing.assert_array_equal(array, constants[name])
        assert array.shape == constants[name].shape
    # nothing else changed: the other nodes, in order, and the outputs
    kept = [n for n in original.graph.node if not (n.op_type == "Constant" and n.output[0] in inits)]
    assert list(prepared.graph.node) == kept
    assert list(prepared.graph.output) == list(original.graph.output)
    # ONNX Runtime, run here independently of prepare's own proof: identical outputs
    feeds = {"x": np.random.default_rng(11).standard_normal((2, 3, 8, 12)).astype(np.float32)}
    for a, b in zip(_run(paddle, feeds), _run(out, feeds)):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_the_proof_catches_a_prepared_model_that_computes_something_else(paddle):
    model = load_model(paddle)
    shapes = fit_shapes(model, {"x": (1, 3, 6, 6)})
    other = onnx.ModelProto()
    other.CopyFrom(model)
    for node in other.graph.node:
        if node.output[0] == "fc_b":
            node.attribute[0].t.CopyFrom(numpy_helper.from_array(np.zeros((1, 5), np.float32), "fc_b_value"))
    agreement = compare_with_ort(model, other, shapes)
    assert not agreement.identical and not agreement.ok
    assert compare_with_ort(model, model, shapes).identical


@pytest.mark.parametrize("shapes, fragment", [
    ({"image": (1, 3, 8, 8)}, "'image', which the model does not have as an input (inputs: 'x')"),
    ({"x": (1, 3, 8)}, "3 dims, input 'x' of the model has 4"),
    ({"x": (1, 4, 8, 8)}, "fixes dim 1 to 3, not 4"),
    ({}, "input of the model with a dynamic shape and no --shapes: 'x' (?x3x?x?); give it, e.g. --shapes x:1x3x1x1"),
])
def test_shapes_that_do_not_fit_are_refused(paddle, shapes, fragment):
    with pytest.raises(ModelInputError) as info:
        fit_shapes(load_model(paddle), shapes)
    assert fragment in str(info.value)


def test_every_dynamic_input_without_a_shape_is_named_with_one_example():
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])], "two",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, "batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    model = helper.make_model(graph)
    with pytest.raises(ModelInputError) as info:
        fit_shapes(model, {})
    assert str(info.value).endswith("with a dynamic shape and no --shapes: 'a' (?x4; dims 'batch', 4); 'b' "
                                    "(2x?x4; dims 2, 'batch', 4); give each, e.g. --shapes a:1x4 b:2x1x4"), info.value
    with pytest.raises(ModelInputError, match=r"no --shapes: 'b' .*give it, e.g. --shapes b:2x1x4$"):
        fit_shapes(model, {"a": (1, 4)})


@pytest.mark.parametrize("argv, fragment", [
    (["--shapes", "x:1x3x8"], "3 dims"),
    (["--shapes", "y:1x3x8x8"], "'y'"),
    (["--shapes", "x:1x3xx8"], "'x:1x3xx8' is not NAME:DIMS"),
    ([], "dynamic shape"),
])
def test_the_cli_refuses_in_one_line_and_writes_nothing(paddle, tmp_path, capsys, argv, fragment):
    out = tmp_path / "never.onnx"
    assert main(["prepare", str(paddle), *argv, "-o", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("refit_core: ") and fragment in err[0], err
    assert not out.exists()


def _with_external_data(tmp_path: Path, location: str) -> Path:
    """A model whose one initializer keeps its data in `location` (relative to the model)."""
    from onnx import TensorProto, helper
    weight = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    data = (folder / location).resolve()
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_bytes(np.ones((4, 4), np.float32).tobytes())
    init = model.graph.initializer[0]
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(data.stat().st_size))):
        entry = init.external_data.add()
        entry.key, entry.value = key, value
    path = folder / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_external_data_beside_the_model_is_read(tmp_path):
    model = load_model(_with_external_data(tmp_path, "weights/m.bin"))
    np.testing.assert_array_equal(numpy_helper.to_array(model.graph.initializer[0]), np.ones((4, 4), np.float32))


@pytest.mark.parametrize("location", ["../outside.bin", "weights/../../outside.bin"])
def test_external_data_outside_the_models_folder_is_refused_before_anything_is_read(tmp_path, location, capsys):
    path = _with_external_data(tmp_path, location)
    with pytest.raises(ModelInputError, match="outside the model's own folder"):
        load_model(path)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'W'" in err[0] and "outside the model's own folder" in err[0], err


def test_dynamic_quantization_is_named_by_prepare_and_in_a_parser_rejection(tmp_path, capsys):
    path = dynamic_quantized(tmp_path / "dq.onnx")
    assert main(["prepare", str(path), "--shapes", "x:1x1x8x16", "-o", str(tmp_path / "p.onnx")]) == 0
    out = capsys.readouterr().out
    assert "ConvInteger (x1), DynamicQuantizeLinear (x1): dynamic quantization" in out
    # TensorRT 8.6's words for it (measured on the quantized CRNN), mapped to the model's nodes
    said = ("TensorRT's ONNX parser rejected dq.onnx: In node 0 (importFallbackPluginImporter): UNSUPPORTED_NODE: "
            "Assertion failed: creator && \"Plugin not found, are the plugin name, version, and namespace correct?\"")
    text = describe_parser_rejection(load_model(path), said)
    assert text.startswith("TensorRT could not import DynamicQuantizeLinear (node 0)")
    assert "which TensorRT cannot import" in text


def test_a_rejected_slice_whose_axes_are_computed_from_constants_is_told_to_fold_them():
    """TensorRT 8.5 refused silero-vad's Slice ("does not support dynamic axes"): its axes come
    from an Unsqueeze of a Constant. Inputs computed from constants (or from the fixed input's
    Shape) are named with how to fold them; one computed from the input's values is not."""
    from onnx import TensorProto, helper
    const = helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(1, np.int64)))
    nodes = [const, helper.make_node("Unsqueeze", ["c", "zero"], ["axes"]),
             helper.make_node("Shape", ["x"], ["shape"]), helper.make_node("Gather", ["shape", "one"], ["width"]),
             helper.make_node("Unsqueeze", ["width", "zero"], ["end"]),
             helper.make_node("ReduceMax", ["x"], ["top"], keepdims=0), helper.make_node("Cast", ["top"], ["top_i"], to=7),
             helper.make_node("Unsqueeze", ["top_i", "zero"], ["start"]),
             helper.make_node("Slice", ["x", "start", "end", "axes"], ["y"])]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "zero"), numpy_helper.from_array(np.array(1, np.int64), "one")]
    graph = helper.make_graph(nodes, "s", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    text = describe_parser_rejection(model, "In node 8 (importSlice): UNSUPPORTED_NODE: Assertion failed: "
                                            "(axes.allValuesKnown()) && \"This version of TensorRT does not support dynamic axes.\"")
    assert text.startswith("TensorRT could not import Slice (node 8); its inputs 'end', 'axes' are computed in the graph "
                           "from constants alone"), text
    assert "fold constants first" in text and "'start'" not in text
    assert "fold" not in describe_parser_rejection(model, "In node 6 (importCast): UNSUPPORTED_NODE")


def test_check_keeps_the_prepared_model_where_asked(paddle, tmp_path, capsys):
    from refit_core.check.plan import plan_from_args
    from refit_core.cli import build_parser
    saved = tmp_path / "kept.onnx"
    args = build_parser().parse_args(["check", "--shapes", "x:1x3x16x16", str(paddle), "--save-prepared", str(saved)])
    plan = plan_from_args(args)
    try:
        assert plan.prepared == saved.resolve() and saved.is_file()
        assert plan.case.make_model(tmp_path) == saved.resolve()
        assert plan.case.input_shapes == {"x": (1, 3, 16, 16)}
        assert not [n for n in onnx.load(str(saved)).graph.node if n.op_type == "Constant"
                    and n.attribute[0].t.data_type == onnx.TensorProto.FLOAT]
    finally:
        plan.cleanup()
    assert saved.is_file()  # kept: it is the user's file now
    args = build_parser().parse_args(["check", str(paddle), "--shapes", "x:1x3x16x16"])
    plan = plan_from_args(args)
    temporary = plan.prepared
    assert temporary.is_file()
    plan.cleanup()
    assert not temporary.exists()


def test_seeded_feeds_follow_the_input_types(tmp_path):
    path = dynamic_quantized(tmp_path / "dq.onnx")
    model = load_model(path)
    feeds = seeded_feeds(model, {"x": (1, 1, 8, 4)}, seed=0)
    assert feeds["x"].dtype == np.float32 and feeds["x"].shape == (1, 1, 8, 4)
    assert [i.name for i in model_inputs(model)] == ["x"]
    assert parse_shapes(["x:1x2,y:3"]) == {"x": (1, 2), "y": (3,)}


def test_boolean_inputs_get_both_values_in_every_row_and_integers_zeros():
    """A mask of all False (or all True) masks everything, or picks one branch of a Where, in one
    of the two conventions; a checkerboard holds both values in every row of two or more."""
    from refit_core.onnx_prep.ort_agreement import seeded_inputs
    feeds = seeded_inputs({"mask": ((2, 3, 5), np.bool_), "flag": ((), np.bool_), "ids": ((2, 7), np.int64),
                           "x": ((2, 7), np.float16)}, seed=3)
    mask = feeds["mask"]
    assert mask.dtype == np.bool_ and mask.any(axis=-1).all() and (~mask).any(axis=-1).all()
    assert feeds["flag"].dtype == np.bool_ and feeds["flag"].shape == ()
    assert feeds["ids"].dtype == np.int64 and not feeds["ids"].any()
    assert feeds["x"].dtype == np.float16 and feeds["x"].any()
    again = seeded_inputs({"mask": ((2, 3, 5), np.bool_)}, seed=9)["mask"]
    assert np.array_equal(again, mask)  # a pattern, not a draw: the same for every seed


def test_a_masked_models_weights_reach_the_probe(tmp_path):
    """Where(mask, x @ W + b, 0): a probe of all-False masks would give zeros whatever W, and the
    check "perturbation_changes_reference" would fail for the tool's own inputs."""
    from onnx import TensorProto, helper, numpy_helper

    from refit_core.cases.base import NO_OP_MARGIN, compare_outputs
    from refit_core.cases.onnx_model import ort_rows
    from refit_core.cases.user_model import user_model_case
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
             numpy_helper.from_array(np.zeros(1, np.float32), "zero")]
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W", "b"], ["g"]), helper.make_node("Where", ["mask", "g", "zero"], ["y"])],
        "masked", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8]),
                   helper.make_tensor_value_info("mask", TensorProto.BOOL, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])], inits)
    path = tmp_path / "masked.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    case = user_model_case(path, {"x": (2, 8), "mask": (2, 4)})
    built = Path(case.make_model(tmp_path / "built"))
    build = {i.name: numpy_helper.to_array(i).copy() for i in onnx.load(str(built)).graph.initializer}
    feeds, margin = case.probe_feeds(built), case.tolerance.scaled(NO_OP_MARGIN)
    target = case.target_weights(build, built)
    assert not compare_outputs(ort_rows(built, build, feeds), ort_rows(built, target, feeds), margin).ok
    all_false = dict(feeds, mask=np.zeros((2, 4), bool))  # what the probe fed before
    assert compare_outputs(ort_rows(built, build, all_false), ort_rows(built, target, all_false), margin).ok


def test_a_model_given_to_the_gpu_tier_is_built_prepared_too(paddle, tmp_path):
    """`pytest -m gpu --refit-model M --refit-shapes ...` builds what `check` builds."""
    from refit_core.cases.user_model import user_model_case
    case = user_model_case(paddle, {"x": (1, 3, 8, 8)})
    built = Path(case.make_model(tmp_path))
    assert built != paddle and built.parent == tmp_path
    model = onnx.load(str(built))
    assert len(model.graph.initializer) == 8
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 8, 8]
    assert case.profiles(built) == []  # every input fixed: no optimization profile needed


def test_prepare_says_before_a_build_when_an_op_makes_sizes_depend_on_the_data(tmp_path, capsys):
    """NonZero's output size depends on the values: prepare says so (the runner refuses such an
    engine output after the build); a model without one hears nothing of it."""
    from onnx import TensorProto, helper

    from refit_core.onnx_prep.generic import prepare_file
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"]), helper.make_node("NonZero", ["y"], ["nz"])],
        "nz", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4]),
         helper.make_tensor_value_info("nz", TensorProto.INT64, [2, "n"])], [w])
    path = tmp_path / "nz.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    prepare_file(path, {}, tmp_path / "p.onnx")
    out = capsys.readouterr().out
    assert "prepare: the model uses NonZero (x1), whose output size depends on the data" in out
    prepare_file(paddle_like(tmp_path / "plain.onnx"), {"x": (1, 3, 8, 8)}, tmp_path / "p2.onnx")
    assert "depends on the data" not in capsys.readouterr().out
