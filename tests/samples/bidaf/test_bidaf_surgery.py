"""The BiDAF preparation on the tiny look-alike: graph invariants, files, errors, lookup."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from refit_core.errors import DataError, ModelPatternError
from refit_core.samples.bidaf import original as original_model
from refit_core.samples.bidaf.original import ORIGINAL_BIDAF_LOCATIONS, find_original_bidaf, original_bidaf_candidates
from refit_core.samples.bidaf.prepared import load_prepared
from refit_core.samples.bidaf.prepare import (BIDAF_INPUT_NAMES, MANIFEST_NAME, PREPARED_MODEL_NAME,
                                        REFIT_WEIGHT_NAMES, CategoryMap, PreparedBidaf, prepare_bidaf)


def _ops(model: onnx.ModelProto) -> List[str]:
    return [n.op_type for n in model.graph.node]


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def _attr(node: onnx.NodeProto, name: str) -> object:
    return next(helper.get_attribute_value(a) for a in node.attribute if a.name == name)


def _check_invariants(prepared: PreparedBidaf, expect_axis: int) -> onnx.ModelProto:
    model = onnx.load(str(prepared.model_path))
    onnx.checker.check_model(model)
    ops = _ops(model)
    for gone in ("CategoryMapper", "Hardmax", "Compress"):
        assert gone not in ops, f"{gone} left in the prepared graph"
    assert not any(n.op_type == "Cast" and _attr(n, "to") == TensorProto.BOOL for n in model.graph.node)

    consumers: Dict[str, List[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    replaced = [n for n in model.graph.node if n.op_type == "ArgMax" and n.name.startswith("ArgMax(from")]
    assert len(replaced) == 1
    argmax = replaced[0]
    assert _attr(argmax, "axis") == 1 and _attr(argmax, "keepdims") == 0
    readers = consumers[argmax.output[0]]
    assert [r.op_type for r in readers] == ["Gather"]
    gather = readers[0]
    assert list(gather.input)[1] == argmax.output[0]
    assert _attr(gather, "axis") == expect_axis

    # the graph inputs are the CategoryMappers' int64 outputs, same shapes as the strings
    inputs = {i.name: i for i in model.graph.input}
    assert list(prepared.input_names) == list(BIDAF_INPUT_NAMES)
    for original, new in prepared.input_names.items():
        assert new in inputs
        assert inputs[new].type.tensor_type.elem_type == TensorProto.INT64
        dims = [d.dim_param or d.dim_value for d in inputs[new].type.tensor_type.shape.dim]
        assert dims == ([original[0], 1] if original.endswith("word") else [original[0], 1, 1, 16])
    outputs = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    assert outputs == {"start_pos": TensorProto.INT32, "end_pos": TensorProto.INT32,
                       "start_scores": TensorProto.FLOAT, "end_scores": TensorProto.FLOAT}
    # each score output is an Identity of what the ArgMax of its answer output reads
    producer = {o: n for n in model.graph.node for o in n.output}
    for pos, scores in (("start_pos", "start_scores"), ("end_pos", "end_scores")):
        expose = producer[scores]
        assert expose.op_type == "Identity"
        cast = producer[pos]
        argmax = producer[cast.input[0]]
        assert cast.op_type == "Cast" and argmax.op_type == "ArgMax"
        assert expose.input[0] == argmax.input[0], f"{scores} exposes {expose.input[0]}, {pos} reads {argmax.input[0]}"
    return model


def test_prepared_graph_has_argmax_gather_and_no_unsupported_ops(tiny_bidaf, tmp_path: Path) -> None:
    prepared = prepare_bidaf(tiny_bidaf.model, tmp_path)
    model = _check_invariants(prepared, expect_axis=1)
    gather = next(n for n in model.graph.node if n.op_type == "Gather" and n.name.startswith("Gather(from"))
    assert gather.input[0] == "c_T3", "Gather must read the Compress's data input unchanged"
    assert prepared.model_path == tmp_path / PREPARED_MODEL_NAME


@pytest.mark.parametrize("opset,compress_axis,expect_axis", [(13, True, 1), (11, False, 0)],
                         ids=["opset13-hardmax-default-axis", "compress-without-axis"])
def test_variants_are_prepared(make_tiny_bidaf: Callable, tmp_path: Path, opset: int,
                               compress_axis: bool, expect_axis: int) -> None:
    prepared = prepare_bidaf(make_tiny_bidaf(opset=opset, compress_axis=compress_axis).model, tmp_path)
    _check_invariants(prepared, expect_axis=expect_axis)


def test_files_maps_and_weights(tiny_bidaf, tiny_bidaf_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    prepared = prepare_bidaf(tiny_bidaf_path, out)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([PREPARED_MODEL_NAME, MANIFEST_NAME, "Parameter576_B_0.npy", "W_0.npy"]
                           + [f"{n}.json" for n in BIDAF_INPUT_NAMES])

    nodes = {n.input[0]: n for n in tiny_bidaf.model.graph.node if n.op_type == "CategoryMapper"}
    for input_name in BIDAF_INPUT_NAMES:
        raw = json.loads((out / f"{input_name}.json").read_text(encoding="utf-8"))
        node = nodes[input_name]
        assert raw["node_name"] == node.name
        assert raw["input_name"] == input_name
        assert raw["output_name"] == node.output[0] == prepared.input_names[input_name]
        assert raw["cats_strings"] == [s.decode() for s in _attr(node, "cats_strings")]
        assert raw["cats_int64s"] == list(_attr(node, "cats_int64s"))
        assert raw["default_int64"] == _attr(node, "default_int64")
        cmap = prepared.maps[input_name]
        assert CategoryMap.from_json(cmap.to_json()) == cmap

    inits = {t.name: numpy_helper.to_array(t) for t in tiny_bidaf.model.graph.initializer}
    for name in REFIT_WEIGHT_NAMES:
        np.testing.assert_array_equal(np.load(str(out / f"{name}.npy")), inits[name])
        np.testing.assert_array_equal(prepared.refit_weights[name], inits[name])

    assert prepared.source_sha256 == hashlib.sha256(tiny_bidaf_path.read_bytes()).hexdigest()
    back = load_prepared(out)
    assert back.model_path == prepared.model_path
    assert back.maps == prepared.maps
    assert back.input_names == prepared.input_names
    assert back.source_sha256 == prepared.source_sha256
    assert back.refit_weights.keys() == prepared.refit_weights.keys()
    for name in REFIT_WEIGHT_NAMES:
        np.testing.assert_array_equal(back.refit_weights[name], prepared.refit_weights[name])
    assert back.prepared_input("query_char") == "CategoryMapper_7:0"


def test_caller_model_is_left_alone_and_weights_are_a_parameter(tiny_bidaf, tmp_path: Path) -> None:
    before = tiny_bidaf.model.SerializeToString()
    prepared = prepare_bidaf(tiny_bidaf.model, tmp_path, refit_weight_names=("W_end", "v_end"))
    assert tiny_bidaf.model.SerializeToString() == before
    assert sorted(prepared.refit_weights) == ["W_end", "v_end"]
    assert (tmp_path / "W_end.npy").is_file() and not (tmp_path / "W_0.npy").exists()


def test_load_prepared_errors(tiny_bidaf, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="prepare_bidaf first"):
        load_prepared(tmp_path)
    prepare_bidaf(tiny_bidaf.model, tmp_path)
    (tmp_path / "W_0.npy").unlink()
    with pytest.raises(DataError, match="W_0.npy"):
        load_prepared(tmp_path)


def test_unreadable_model_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        prepare_bidaf(tmp_path / "nope.onnx", tmp_path)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not an onnx file" * 10)
    with pytest.raises(DataError, match="not a readable ONNX model"):
        prepare_bidaf(bad, tmp_path / "out")


# --------------------------------------------------------------------------- missing patterns

def _replace_node(model: onnx.ModelProto, old: onnx.NodeProto, new: onnx.NodeProto) -> None:
    nodes = list(model.graph.node)
    nodes[nodes.index(old)] = new
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _mapper_is_label_encoder(m: onnx.ModelProto) -> None:
    old = next(n for n in m.graph.node if n.op_type == "CategoryMapper" and n.input[0] == "query_word")
    new = helper.make_node("LabelEncoder", list(old.input), list(old.output), name=old.name,
                           domain="ai.onnx.ml", keys_strings=["fox"], values_int64s=[1],
                           default_int64=0)
    _replace_node(m, old, new)


def _input_absent(m: onnx.ModelProto) -> None:
    old = next(n for n in m.graph.node if n.op_type == "CategoryMapper" and n.input[0] == "query_char")
    m.graph.node.remove(old)
    idx = [i.name for i in m.graph.input].index("query_char")
    del m.graph.input[idx]
    m.graph.input.append(helper.make_tensor_value_info(old.output[0], TensorProto.INT64, ["q", 1, 1, 16]))


def _input_feeds_two_nodes(m: onnx.ModelProto) -> None:
    m.graph.node.append(helper.make_node("Identity", ["context_word"], ["cw_copy"]))
    m.graph.output.append(helper.make_tensor_value_info("cw_copy", TensorProto.STRING, None))


def _no_hardmax(m: onnx.ModelProto) -> None:
    old = _node(m, "Hardmax_1")
    _replace_node(m, old, helper.make_node("Softmax", list(old.input), list(old.output), name=old.name, axis=1))


def _cast_to_int(m: onnx.ModelProto) -> None:
    old = _node(m, "Cast_2")
    _replace_node(m, old, helper.make_node("Cast", list(old.input), list(old.output), name=old.name,
                                           to=TensorProto.INT32))


def _no_reshape(m: onnx.ModelProto) -> None:
    m.graph.node.remove(_node(m, "Reshape_3"))
    _node(m, "Compress_4").input[1] = "hm_bool"


def _no_compress(m: onnx.ModelProto) -> None:
    old = _node(m, "Compress_4")
    _replace_node(m, old, helper.make_node("Gather", list(old.input), list(old.output), name=old.name, axis=1))


def _condition_is_data(m: onnx.ModelProto) -> None:
    node = _node(m, "Compress_4")
    a, b = node.input[0], node.input[1]
    node.input[0], node.input[1] = b, a


def _hardmax_read_twice(m: onnx.ModelProto) -> None:
    m.graph.output.append(helper.make_tensor_value_info("hm", TensorProto.FLOAT, [1, "c"]))


def _end_pos_without_argmax(m: onnx.ModelProto) -> None:
    node = next(n for n in m.graph.node if list(n.output) == ["end_i64"])
    node.op_type = "ArgMin"


def _score_name_taken(m: onnx.ModelProto) -> None:
    for n in m.graph.node:
        n.input[:] = ["start_scores" if x == "sim_max" else x for x in n.input]
        n.output[:] = ["start_scores" if x == "sim_max" else x for x in n.output]


def _rename_initializer(name: str) -> Callable[[onnx.ModelProto], None]:
    def edit(m: onnx.ModelProto) -> None:
        for t in m.graph.initializer:
            if t.name == name:
                t.name = name + "_renamed"
        for n in m.graph.node:
            for i, x in enumerate(n.input):
                if x == name:
                    n.input[i] = name + "_renamed"
    return edit


@pytest.mark.parametrize("edit,message", [
    (_mapper_is_label_encoder, "no CategoryMapper on input 'query_word': it feeds LabelEncoder"),
    (_input_absent, "no CategoryMapper on input 'query_char': the model has no graph input"),
    (_input_feeds_two_nodes, "input 'context_word' alone: the input feeds 2 nodes"),
    (_no_hardmax, "no Hardmax node"),
    (_cast_to_int, "not followed by Cast\\(to=bool\\) -> Reshape -> Compress: Cast 'Cast_2' casts to INT32, not BOOL"),
    (_no_reshape, "not followed by .*: the Cast feeds Compress, not one Reshape"),
    (_no_compress, "not followed by .*: the Reshape feeds Gather, not one Compress"),
    (_condition_is_data, "not the condition \\(second input\\) of Compress 'Compress_4'"),
    (_hardmax_read_twice, "its output feeds several nodes or a graph output, not one Cast"),
    (_rename_initializer("W_0"), "refit weight 'W_0' missing"),
    (_rename_initializer("Parameter576_B_0"), "refit weight 'Parameter576_B_0' missing"),
    (_end_pos_without_argmax, "no ArgMax upstream of output 'end_pos'"),
    (_score_name_taken, "already has a tensor named 'start_scores'"),
], ids=["category-mapper-replaced", "input-absent", "input-feeds-two", "no-hardmax", "cast-not-bool",
        "no-reshape", "no-compress", "reshape-is-data", "hardmax-read-twice", "no-W_0",
        "no-Parameter576_B_0", "end-pos-without-argmax", "score-name-taken"])
def test_missing_pattern_is_named(tiny_bidaf, tmp_path: Path, edit: Callable, message: str) -> None:
    model = copy.deepcopy(tiny_bidaf.model)
    edit(model)
    with pytest.raises(ModelPatternError, match=message):
        prepare_bidaf(model, tmp_path)
    assert not (tmp_path / PREPARED_MODEL_NAME).exists(), "nothing is written for a refused model"


# --------------------------------------------------------------------------- CategoryMap

def test_category_map_lookup_and_json() -> None:
    cmap = CategoryMap(["fox", "dog", "fox", ""], [3, 4, 9, 0], default_int64=-1, node_name="CM")
    strings = np.array([["fox"], ["cat"], [""], ["Dog"]], dtype=object)
    ids = cmap.lookup(strings)
    assert ids.dtype == np.int64 and ids.shape == (4, 1)
    assert ids.ravel().tolist() == [3, -1, 0, -1], "first duplicate wins; lookup is case-sensitive"
    assert cmap.lookup(np.array([b"dog"], dtype=object)).tolist() == [4]
    assert cmap.lookup(np.array(["fox", "dog"])).tolist() == [3, 4], "numpy str arrays work too"
    assert cmap.lookup(np.empty((0, 1, 1, 16), dtype=object)).shape == (0, 1, 1, 16)
    back = CategoryMap.from_json(cmap.to_json())
    assert back == cmap and back.node_name == "CM"
    # the TensorRT sample's files hold the bare attributes: accepted too
    sample = CategoryMap.from_json(json.dumps({"cats_strings": ["a"], "cats_int64s": [1], "default_int64": 0}))
    assert sample.lookup(np.array(["a", "b"], dtype=object)).tolist() == [1, 0]
    with pytest.raises(DataError):
        CategoryMap.from_json("{}")
    with pytest.raises(DataError, match="equal length"):
        CategoryMap(["a"], [1, 2], 0, "bad")


# --------------------------------------------------------------------------- original model lookup

def test_find_original_bidaf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REFIT_DATA_DIR", raising=False)
    assert find_original_bidaf(None) is None
    assert original_bidaf_candidates(None) == []
    assert find_original_bidaf(tmp_path) is None
    looked = original_bidaf_candidates(tmp_path)
    assert looked == [tmp_path / rel for rel in ORIGINAL_BIDAF_LOCATIONS]
    assert tmp_path / "bidaf" / "bidaf-original.onnx" in looked
    assert tmp_path / "samples/python/engine_refit_onnx_bidaf/bidaf-original.onnx" in looked
    assert original_model.ORIGINAL_BIDAF_MD5 == "cf11f1eceb4731f8dd39345467fe94a1"

    second = tmp_path / "samples/python/engine_refit_onnx_bidaf/bidaf-original.onnx"
    second.parent.mkdir(parents=True)
    second.write_bytes(b"not really bidaf")
    with pytest.raises(DataError, match="MD5"):
        find_original_bidaf(tmp_path)
    assert find_original_bidaf(tmp_path, check_md5=False) == second
    monkeypatch.setattr(original_model, "ORIGINAL_BIDAF_MD5", hashlib.md5(b"not really bidaf").hexdigest())
    assert find_original_bidaf(tmp_path) == second

    first = tmp_path / "bidaf" / "bidaf-original.onnx"
    first.parent.mkdir()
    first.write_bytes(b"not really bidaf")
    assert find_original_bidaf(tmp_path) == first, "bidaf/ is looked at first"
    monkeypatch.setenv("REFIT_DATA_DIR", str(tmp_path))
    assert find_original_bidaf() == first
