"""A tiny hand-built BiDAF look-alike, so the surgery is tested without the real model.

It has bidaf-9's interface and the patterns the preparation edits: four string inputs,
each read by one CategoryMapper; word and character embeddings; a [1, c] start logit row
that feeds both ArgMax (start_pos) and Hardmax -> Cast(bool) -> Reshape -> Compress, whose
selected row drives the end logits (end_pos); initializers ``Parameter576_B_0`` and
``W_0`` take part in the computation. Weights are random with a fixed seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

WORDS: List[str] = (
    "a quick brown fox jumps over the lazy dog . what color is ? who where when why how "
    "red green blue big small cat runs sleeps under near and or , of in on at to by was "
    "n't 's it he she they do does did not"
).split()
CHARS: List[str] = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,?!'-")

WORD_DIM = 6
CHAR_DIM = 4
FEAT = WORD_DIM + CHAR_DIM


@dataclass
class TinyBidaf:
    """The model and the vocabularies it was built with."""

    model: onnx.ModelProto
    words: List[str]
    chars: List[str]
    word_default: int
    char_default: int


def _unsqueeze0(nodes: List[onnx.NodeProto], inits: List[onnx.TensorProto], opset: int,
                src: str, dst: str) -> None:
    if opset >= 13:
        name = f"{dst}_axes"
        inits.append(numpy_helper.from_array(np.array([0], np.int64), name))
        nodes.append(helper.make_node("Unsqueeze", [src, name], [dst], name=f"Unsqueeze_{dst}"))
    else:
        nodes.append(helper.make_node("Unsqueeze", [src], [dst], name=f"Unsqueeze_{dst}", axes=[0]))


def build_tiny_bidaf(seed: int = 0, opset: int = 11, compress_axis: bool = True) -> TinyBidaf:
    """Build the look-alike; ``compress_axis=False`` leaves Compress without an axis."""
    rng = np.random.default_rng(seed)
    word_ids = rng.permutation(len(WORDS)) + 1          # ids 1..V in shuffled order
    char_ids = rng.permutation(len(CHARS)) + 1
    word_default = len(WORDS) + 1                        # its own embedding row
    char_default = 0                                     # padding '' and unknown chars

    def w(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    def const(name: str, values: List[int]) -> onnx.TensorProto:
        return numpy_helper.from_array(np.array(values, np.int64), name)

    inits = [
        w("word_emb", len(WORDS) + 2, WORD_DIM), w("char_emb", len(CHARS) + 1, CHAR_DIM),
        w("W_0", FEAT, FEAT), w("Parameter576_B_0", FEAT), w("v_start", FEAT),
        w("W_end", FEAT, FEAT), w("v_end", FEAT),
        const("shape_char", [-1, 1, CHAR_DIM]), const("shape_feat", [-1, FEAT]),
        const("shape_flat", [-1]),
    ]
    nodes: List[onnx.NodeProto] = []
    inputs = []
    for k, (side, kind) in enumerate([("context", "word"), ("context", "char"),
                                      ("query", "word"), ("query", "char")]):
        name = f"{side}_{kind}"
        dims = [side[0], 1] if kind == "word" else [side[0], 1, 1, 16]
        inputs.append(helper.make_tensor_value_info(name, TensorProto.STRING, dims))
        vocab, ids, default = ((WORDS, word_ids, word_default) if kind == "word"
                               else (CHARS, char_ids, char_default))
        nodes.append(helper.make_node(
            "CategoryMapper", [name], [f"CategoryMapper_{k + 4}:0"], name=f"CategoryMapper_{k + 4}",
            domain="ai.onnx.ml", cats_strings=vocab, cats_int64s=[int(i) for i in ids],
            default_int64=default))
    for side, w_in, c_in in [("c", "CategoryMapper_4:0", "CategoryMapper_5:0"),
                             ("q", "CategoryMapper_6:0", "CategoryMapper_7:0")]:
        nodes += [
            helper.make_node("Gather", ["word_emb", w_in], [f"{side}_wemb"]),          # [n,1,D]
            helper.make_node("Gather", ["char_emb", c_in], [f"{side}_cemb"]),          # [n,1,1,16,Dc]
            helper.make_node("ReduceMax", [f"{side}_cemb"], [f"{side}_cmax"], axes=[3], keepdims=0),
            helper.make_node("Reshape", [f"{side}_cmax", "shape_char"], [f"{side}_cvec"]),
            helper.make_node("Concat", [f"{side}_wemb", f"{side}_cvec"], [f"{side}_cat"], axis=2),
            helper.make_node("Reshape", [f"{side}_cat", "shape_feat"], [f"{side}_H"]),  # [n,E]
        ]
    nodes += [
        helper.make_node("MatMul", ["c_H", "W_0"], ["att_a"]),                         # [c,E]
        helper.make_node("Transpose", ["q_H"], ["q_HT"], perm=[1, 0]),                  # [E,q]
        helper.make_node("MatMul", ["att_a", "q_HT"], ["sim"]),                         # [c,q]
        helper.make_node("ReduceMax", ["sim"], ["sim_max"], axes=[1], keepdims=0),      # [c]
        helper.make_node("Add", ["c_H", "Parameter576_B_0"], ["c_Hb"]),
        helper.make_node("Tanh", ["c_Hb"], ["c_T"]),                                    # [c,E]
        helper.make_node("MatMul", ["c_T", "v_start"], ["start_b"]),                    # [c]
        helper.make_node("Add", ["sim_max", "start_b"], ["start_1d"]),
    ]
    _unsqueeze0(nodes, inits, opset, "start_1d", "start_logits")                        # [1,c]
    nodes += [
        helper.make_node("ArgMax", ["start_logits"], ["start_i64"], axis=1, keepdims=0),
        helper.make_node("Cast", ["start_i64"], ["start_pos"], to=TensorProto.INT32),
    ]
    hardmax_attrs = {"axis": 1} if opset < 13 else {}
    nodes += [
        helper.make_node("Hardmax", ["start_logits"], ["hm"], name="Hardmax_1", **hardmax_attrs),
        helper.make_node("Cast", ["hm"], ["hm_bool"], name="Cast_2", to=TensorProto.BOOL),
        helper.make_node("Reshape", ["hm_bool", "shape_flat"], ["hm_flat"], name="Reshape_3"),
    ]
    _unsqueeze0(nodes, inits, opset, "c_T", "c_T3")                                    # [1,c,E]
    compress_attrs = {"axis": 1} if compress_axis else {}
    nodes += [
        helper.make_node("Compress", ["c_T3", "hm_flat"], ["picked"], name="Compress_4",
                         **compress_attrs),                                             # [1,1,E] / [1]
        helper.make_node("Reshape", ["picked", "shape_flat"], ["picked_vec"]),          # [E] / [1]
        helper.make_node("MatMul", ["c_H", "W_end"], ["end_h"]),
        helper.make_node("Tanh", ["end_h"], ["end_t"]),                                 # [c,E]
        helper.make_node("Mul", ["end_t", "picked_vec"], ["end_m"]),
        helper.make_node("ReduceMean", ["end_m"], ["end_a"], axes=[1], keepdims=0),     # [c]
        helper.make_node("MatMul", ["c_H", "v_end"], ["end_b"]),                        # [c]
        helper.make_node("Add", ["end_a", "end_b"], ["end_1d"]),
    ]
    _unsqueeze0(nodes, inits, opset, "end_1d", "end_logits")
    nodes += [
        helper.make_node("ArgMax", ["end_logits"], ["end_i64"], axis=1, keepdims=0),
        helper.make_node("Cast", ["end_i64"], ["end_pos"], to=TensorProto.INT32),
    ]
    outputs = [helper.make_tensor_value_info("start_pos", TensorProto.INT32, [1]),
               helper.make_tensor_value_info("end_pos", TensorProto.INT32, [1])]
    graph = helper.make_graph(nodes, "tiny_bidaf", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, producer_name="refit_core tests", opset_imports=[
        helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", 1)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return TinyBidaf(model=model, words=list(WORDS), chars=list(CHARS),
                     word_default=word_default, char_default=char_default)


@pytest.fixture(scope="session")
def tiny_bidaf() -> TinyBidaf:
    """The look-alike at opset 11 (bidaf-9's conventions: Hardmax axis given, Compress axis 1)."""
    return build_tiny_bidaf()


@pytest.fixture(scope="session")
def make_tiny_bidaf() -> Callable[..., TinyBidaf]:
    """The builder, for variants (other opset, Compress without axis, other seed)."""
    return build_tiny_bidaf


@pytest.fixture()
def tiny_bidaf_path(tiny_bidaf: TinyBidaf, tmp_path: Path) -> Path:
    """The look-alike saved to a file, as the real model would be."""
    path = tmp_path / "tiny-bidaf.onnx"
    onnx.save(tiny_bidaf.model, str(path))
    return path
