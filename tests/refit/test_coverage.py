"""The weight-coverage map: classification from lists (CPU tier, no TensorRT).

The TensorRT lists here are written the way each version returns them from
`Refitter.get_all_weights()`: 8.5 gives None for weights nobody named, 8.6 gives
"(Unnamed Layer* N) [Kind]_weights" strings, and 10.x can also say each weight's size
(`get_weights_prototype`). These are hand-written lists, not TensorRT output.
"""
from __future__ import annotations

import numpy as np
import pytest

from refit_core.errors import WeightValidationError
from refit_core.refit import coverage as cov
from refit_core.refit.validation import WeightSpec, validate_weight
from refit_core.reporting.results import ResultsRecorder
from refit_core.reporting.schema import validate_results

# A mobilenet-like model: two convs by name, a squeeze-excite fc weight that the exporter
# named onnx::Conv_193 and TensorRT folded into a tmp weight, and BatchNorm parameters
# TensorRT folded into its scale layer.
INITS = [
    cov.Initializer("features.0.weight", "float32", (16, 3, 3, 3)),
    cov.Initializer("features.0.bias", "float32", (16,)),
    cov.Initializer("onnx::Conv_193", "float32", (8, 16, 1, 1)),
    cov.Initializer("bn.running_var", "float32", (16,)),
    cov.Initializer("bn.scale", "float32", (16,)),
]
NAMED = ["features.0.weight", "features.0.bias"]


def test_tensorrt_85_none_entries_are_unmatched():
    c = cov.classify(INITS, NAMED + [None, None, None])
    assert c.names(cov.BY_NAME) == NAMED
    assert c.names(cov.UNMATCHED) == ["onnx::Conv_193", "bn.running_var", "bn.scale"]
    assert c.names(cov.OTHER_NAME) == [] and c.names(cov.NOT_REFITTABLE) == []
    assert [w.kind for w in c.trt_only] == ["unnamed"] * 3
    assert not c.prototypes_known and c.trt_weight_count == 5


def test_tensorrt_86_unnamed_layer_strings_are_unnamed_not_initializer_names():
    names = NAMED + ["(Unnamed Layer* 12) [Convolution]_weights", "(Unnamed Layer* 13) [Scale]_shift"]
    c = cov.classify(INITS, names)
    assert c.counts() == {cov.BY_NAME: 2, cov.OTHER_NAME: 0, cov.UNMATCHED: 3, cov.NOT_REFITTABLE: 0}
    assert {w.shown for w in c.trt_only} == {cov.UNNAMED}


def test_without_tensorrt_only_weights_the_rest_was_folded_away():
    c = cov.classify(INITS, NAMED)
    assert c.names(cov.NOT_REFITTABLE) == ["onnx::Conv_193", "bn.running_var", "bn.scale"]


def test_prototypes_match_by_count_and_dtype():
    names = NAMED + ["tmp_weight_4", "/Constant_output_0", "tmp_weight_9"]
    protos = {"tmp_weight_4": (128, "float32"),       # onnx::Conv_193 has 8*16 = 128 elements
              "/Constant_output_0": (16, "float16"),  # 16 elements, but another dtype
              "tmp_weight_9": (7, "float32")}
    c = cov.classify(INITS, names, protos, constants=["/Constant_output_0"])
    assert c.category["onnx::Conv_193"] == cov.OTHER_NAME
    assert c.candidates["onnx::Conv_193"] == ["tmp_weight_4"]
    assert c.category["bn.running_var"] == cov.NOT_REFITTABLE  # dtype differs: no match
    assert {w.name: w.kind for w in c.trt_only} == {"tmp_weight_4": "generated", "/Constant_output_0": "constant",
                                                   "tmp_weight_9": "generated"}


def test_prototypes_with_an_unnamed_weight_leave_unmatched_ones_open():
    c = cov.classify(INITS, NAMED + ["tmp_weight_4", None], {"tmp_weight_4": (128, "float32")})
    assert c.category["onnx::Conv_193"] == cov.OTHER_NAME
    assert c.category["bn.scale"] == cov.UNMATCHED  # the None weight's size is unknown


def test_a_name_listed_twice_and_duplicate_nones_are_counted():
    c = cov.classify(INITS[:1], ["features.0.weight", None, None])
    assert c.trt_weight_count == 3 and len(c.trt_only) == 2


def _model_with_conv_bn_and_constant():
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv.weight"),
             numpy_helper.from_array(np.ones(4, np.float32), "bn.scale"),
             numpy_helper.from_array(np.zeros(4, np.float32), "bn.bias"),
             numpy_helper.from_array(np.zeros(4, np.float32), "bn.mean"),
             numpy_helper.from_array(np.ones(4, np.float32), "bn.var"),
             numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
             numpy_helper.from_array(np.ones(2, np.float16), "half")]
    nodes = [helper.make_node("Conv", ["x", "conv.weight"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["b"]),
             helper.make_node("Constant", [], ["/Constant_output_0"],
                              value=numpy_helper.from_array(np.float32(2.0).reshape(()), "v")),
             helper.make_node("Mul", ["b", "/Constant_output_0"], ["m"]),
             helper.make_node("Reshape", ["m", "shape"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_model_reading_takes_float_initializers_and_constant_outputs(tmp_path):
    import onnx
    model = _model_with_conv_bn_and_constant()
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    inits, constants = cov.onnx_float_initializer_info(path)
    assert [(i.name, i.dtype, i.shape) for i in inits] == [
        ("conv.weight", "float32", (4, 3, 3, 3)), ("bn.scale", "float32", (4,)), ("bn.bias", "float32", (4,)),
        ("bn.mean", "float32", (4,)), ("bn.var", "float32", (4,)), ("half", "float16", (2,))]
    assert constants == ["/Constant_output_0"]
    c = cov.coverage_of_model(model, ["conv.weight", "/Constant_output_0", None])
    assert c.names(cov.BY_NAME) == ["conv.weight"]
    assert [w.kind for w in c.trt_only] == ["constant", "unnamed"]


def test_record_entry_passes_the_results_schema_and_keeps_names():
    c = cov.classify(INITS, NAMED + ["tmp_weight_4", None], {"tmp_weight_4": (128, "float32")})
    rec = ResultsRecorder()
    rec.record_case_inputs("model-x-fp32", "a" * 64)
    rec.record_case_coverage("model-x-fp32", c.to_record())
    data = validate_results(rec.to_dict()).model_dump()
    entry = data["cases"]["model-x-fp32"]["coverage"]
    assert entry["by_name"] == sorted(NAMED)
    assert entry["other_name"] == ["onnx::Conv_193"]
    assert entry["trt_only"] == ["<unnamed>", "tmp_weight_4"]
    assert entry["other_name_candidates"] == ["onnx::Conv_193 -> tmp_weight_4"]
    assert entry["initializers"] == 5 and entry["trt_weights"] == 4 and entry["prototypes_known"] is True


def test_table_is_aligned_and_summarises():
    c = cov.classify(INITS, NAMED + ["tmp_weight_4", None], {"tmp_weight_4": (128, "float32")})
    lines = cov.format_table(c).splitlines()
    body = lines[2:-1]
    assert len(body) == len(INITS) + 2
    columns = {line.index("float32") if "float32" in line else line.index("?") for line in body}
    assert len(columns) == 1, lines  # the dtype column starts at one offset in every row
    assert lines[2].startswith("features.0.bias")  # refittable by name first
    assert "TensorRT-only weight (generated)" in lines[-3] or "TensorRT-only weight (generated)" in lines[-2]
    assert lines[-1].startswith("5 float initializers: 2 by name, 1 only through another name, 2 unmatched")


def test_table_says_when_sizes_cannot_be_told():
    assert "cannot report their sizes" in cov.format_table(cov.classify(INITS, NAMED + [None]))


@pytest.mark.parametrize("names, protos, weight, fragment", [
    (NAMED, None, "bn.scale", "folded or fused it away"),
    (NAMED + [None], None, "bn.scale", "cannot report"),
    (NAMED + ["tmp_weight_4"], {"tmp_weight_4": (128, "float32")}, "onnx::Conv_193", "'tmp_weight_4'"),
])
def test_asking_for_an_unreachable_weight_says_why_and_what_to_do(names, protos, weight, fragment):
    c = cov.classify(INITS, names, protos)
    specs = {n: WeightSpec(n, i.shape) for n, i in ((i.name, i) for i in INITS) if n in NAMED}
    arr = np.zeros(next(i.shape for i in INITS if i.name == weight), np.float32)
    with pytest.raises(WeightValidationError) as info:
        validate_weight(specs, weight, arr, unreachable=c.explanations())
    text = str(info.value)
    assert weight in text and fragment in text, text
    assert "do_constant_folding=False" in text and "not a refittable weight of this engine" in text


def test_unknown_names_without_a_map_keep_the_old_message():
    specs = {"features.0.weight": WeightSpec("features.0.weight", (16, 3, 3, 3))}
    with pytest.raises(WeightValidationError, match="did you mean 'features.0.weight'"):
        validate_weight(specs, "features.0.weights", np.zeros((16, 3, 3, 3), np.float32),
                        unreachable={"bn.scale": "folded"})


def test_explanations_cover_exactly_the_weights_not_refittable_by_name():
    c = cov.classify(INITS, NAMED + [None])
    assert set(c.explanations()) == {"onnx::Conv_193", "bn.running_var", "bn.scale"}
