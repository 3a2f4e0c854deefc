"""The graph surgery that lets TensorRT parse the ONNX model zoo's BiDAF (bidaf-9.onnx).

Why: TensorRT cannot take string inputs, nor the Hardmax and Compress operators that
bidaf-9 uses to pick the answer's start. NVIDIA's engine_refit_onnx_bidaf sample
therefore edits the graph with onnx-graphsurgeon; :func:`edit_graph` does the same:

* each string input feeds one ``CategoryMapper`` (ai.onnx.ml) that turns words or
  characters into int64 ids. The node is removed and its int64 output becomes the graph
  input; its table comes back as a :class:`CategoryMap` so the preprocessing can do the
  lookup itself;
* ``Hardmax -> Cast(bool) -> Reshape -> Compress`` selects one slice of a tensor at the
  position of the largest logit. It becomes ``ArgMax(axis=1, keepdims=0) -> Gather``,
  which computes the same slice with operators TensorRT supports;
* (not in the sample) the scores that the ArgMax of each answer output reads, the [1, c]
  start and end pointer logits, become extra graph outputs (``start_scores``,
  ``end_scores``; samples.bidaf.BIDAF_SCORE_OUTPUTS), so that TensorRT and ONNX Runtime can be
  compared on numbers: two engines can agree on every arg-max span and still differ in
  the scores, and a refit that changed nothing can keep most spans. Marking them as
  outputs may change what TensorRT fuses; the prepared model is what gets built.

Everything is found by graph pattern, never by node name, so the same code prepares the
original model and the project's stand-in. A model that lacks a pattern raises
:class:`~refit_core.errors.ModelPatternError` naming the missing pattern.
:mod:`refit_core.samples.bidaf.prepare` runs it and writes the files.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ...errors import ModelPatternError
from . import BIDAF_OUTPUTS, BIDAF_SCORE_OUTPUTS
from .category_map import CategoryMap

__all__ = ["edit_graph"]

_ML_DOMAIN = "ai.onnx.ml"


def edit_graph(model: onnx.ModelProto,
               required_inputs: Sequence[str]) -> Tuple[onnx.ModelProto, Dict[str, CategoryMap], Dict[str, str]]:
    """The edited, checked copy of ``model``, the CategoryMapper tables (keyed by original
    input name) and original -> prepared input names; ``model`` itself is not touched.

    ``required_inputs`` must each feed one CategoryMapper (any other string input too).
    """
    graph = gs.import_onnx(model)
    opset = _default_opset(graph)
    maps, renamed = _drop_category_mappers(graph, required_inputs)
    _replace_hardmaxes(graph, opset)
    _expose_scores(graph)
    graph.cleanup().toposort()

    prepared = gs.export_onnx(graph)
    onnx.checker.check_model(prepared)
    return prepared, maps, renamed


# --------------------------------------------------------------------------- helpers

def _default_opset(graph: gs.Graph) -> int:
    opset = getattr(graph, "opset", None)
    return int(opset) if opset is not None else 0


def _is_string_dtype(dtype: Any) -> bool:
    """True for the dtypes onnx-graphsurgeon gives string tensors (object, str, bytes)."""
    try:
        return dtype is not None and np.dtype(dtype).kind in ("O", "U", "S")
    except TypeError:  # an ONNX-only type such as bfloat16
        return False


def _is_category_mapper(node: gs.Node) -> bool:
    return node.op == "CategoryMapper" and (node.domain or _ML_DOMAIN) == _ML_DOMAIN


# --------------------------------------------------------------------------- the edits

def _drop_category_mappers(graph: gs.Graph,
                           required: Sequence[str]) -> Tuple[Dict[str, CategoryMap], Dict[str, str]]:
    """Replace each string input's CategoryMapper by the node's int64 output.

    Returns the maps (keyed by original input name) and original -> prepared input names.
    """
    by_name = {t.name: t for t in graph.inputs}
    for name in required:
        if name not in by_name:
            raise ModelPatternError(
                f"no CategoryMapper on input {name!r}: the model has no graph input of that "
                f"name (inputs: {[t.name for t in graph.inputs]})")

    maps: Dict[str, CategoryMap] = {}
    renamed: Dict[str, str] = {}
    new_inputs: List[gs.Tensor] = []
    for tensor in graph.inputs:
        consumers = list(tensor.outputs)
        mappers = [n for n in consumers if _is_category_mapper(n)]
        is_string = _is_string_dtype(tensor.dtype)
        if not mappers:
            if tensor.name in required or is_string:
                ops = [n.op for n in consumers] or ["nothing"]
                raise ModelPatternError(
                    f"no CategoryMapper on input {tensor.name!r}: it feeds {', '.join(ops)}")
            new_inputs.append(tensor)
            continue
        if len(consumers) != 1:
            raise ModelPatternError(
                f"no CategoryMapper on input {tensor.name!r} alone: the input feeds "
                f"{len(consumers)} nodes ({', '.join(n.op for n in consumers)}); expected "
                f"exactly one CategoryMapper")
        node = mappers[0]
        if len(node.outputs) != 1:
            raise ModelPatternError(
                f"CategoryMapper {node.name!r} on input {tensor.name!r} has "
                f"{len(node.outputs)} outputs; expected one")
        for attr in ("cats_strings", "cats_int64s"):
            if attr not in node.attrs:
                raise ModelPatternError(
                    f"CategoryMapper {node.name!r} on input {tensor.name!r} lacks {attr!r}")
        out = node.outputs[0]
        out.dtype = np.int64
        out.shape = list(tensor.shape) if tensor.shape is not None else None
        maps[tensor.name] = CategoryMap(
            cats_strings=list(node.attrs["cats_strings"]),
            cats_int64s=list(node.attrs["cats_int64s"]),
            default_int64=int(node.attrs.get("default_int64", -1)),
            node_name=node.name or "",
            input_name=tensor.name,
            output_name=out.name,
        )
        renamed[tensor.name] = out.name
        node.inputs.clear()
        node.outputs.clear()
        new_inputs.append(out)
    graph.inputs = new_inputs
    return maps, renamed


def _single_consumer(tensor: gs.Tensor, graph: gs.Graph) -> Optional[gs.Node]:
    """The only node reading ``tensor``, or None when it has several readers or is an output."""
    if len(tensor.outputs) != 1 or any(o is tensor for o in graph.outputs):
        return None
    return tensor.outputs[0]


def _hardmax_axis(node: gs.Node, opset: int) -> int:
    """Hardmax's axis with the opset's default (1 before opset 13, -1 from 13 on)."""
    return int(node.attrs.get("axis", 1 if opset < 13 else -1))


def _replace_hardmax_chain(graph: gs.Graph, hardmax: gs.Node, opset: int) -> None:
    """Hardmax -> Cast(bool) -> Reshape -> Compress  becomes  ArgMax -> Gather."""
    where = f"Hardmax {hardmax.name!r} is not followed by Cast(to=bool) -> Reshape -> Compress"
    if len(hardmax.inputs) != 1 or len(hardmax.outputs) != 1:
        raise ModelPatternError(f"{where}: it has {len(hardmax.inputs)} inputs and "
                                f"{len(hardmax.outputs)} outputs")
    logits = hardmax.inputs[0]
    rank = len(logits.shape) if logits.shape is not None else None
    axis = _hardmax_axis(hardmax, opset)
    if rank is not None and rank != 2:
        raise ModelPatternError(
            f"Hardmax {hardmax.name!r} reads a rank-{rank} tensor {logits.shape}; the "
            f"replacement by ArgMax needs [1, c] logits")
    if axis not in (1, -1):
        raise ModelPatternError(
            f"Hardmax {hardmax.name!r} has axis={axis}; the replacement by ArgMax needs "
            f"axis 1 on [1, c] logits")
    if rank == 2 and isinstance(logits.shape[0], int) and logits.shape[0] != 1:
        raise ModelPatternError(
            f"Hardmax {hardmax.name!r} reads {logits.shape}; the replacement by ArgMax needs "
            f"a first dimension of 1")

    cast = _single_consumer(hardmax.outputs[0], graph)
    if cast is None or cast.op != "Cast":
        got = "several nodes or a graph output" if cast is None else cast.op
        raise ModelPatternError(f"{where}: its output feeds {got}, not one Cast")
    to = int(cast.attrs.get("to", -1))
    if to != onnx.TensorProto.BOOL:
        try:
            to_name = onnx.TensorProto.DataType.Name(to)
        except ValueError:
            to_name = str(to)
        raise ModelPatternError(f"{where}: Cast {cast.name!r} casts to {to_name}, not BOOL")
    reshape = _single_consumer(cast.outputs[0], graph)
    if reshape is None or reshape.op != "Reshape":
        got = "several nodes or a graph output" if reshape is None else reshape.op
        raise ModelPatternError(f"{where}: the Cast feeds {got}, not one Reshape")
    compress = _single_consumer(reshape.outputs[0], graph)
    if compress is None or compress.op != "Compress":
        got = "several nodes or a graph output" if compress is None else compress.op
        raise ModelPatternError(f"{where}: the Reshape feeds {got}, not one Compress")
    if len(compress.inputs) != 2 or compress.inputs[1] is not reshape.outputs[0]:
        raise ModelPatternError(f"{where}: the Reshape's output is not the condition "
                                f"(second input) of Compress {compress.name!r}")

    data = compress.inputs[0]
    base = hardmax.outputs[0].name
    taken = set(graph.tensors().keys())
    index_name = f"{base}_argmax"
    while index_name in taken:
        index_name += "_"
    index = gs.Variable(index_name, dtype=np.int64, shape=[1])

    # Hardmax becomes ArgMax in place (keeps its position and input).
    hardmax.op = "ArgMax"
    hardmax.name = f"ArgMax(from {hardmax.name or 'Hardmax'})"
    hardmax.attrs.clear()
    hardmax.attrs["axis"] = 1
    hardmax.attrs["keepdims"] = 0
    hardmax.outputs = [index]

    has_axis = "axis" in compress.attrs
    if has_axis:
        gather_axis = int(compress.attrs["axis"])
        gathered_from = data
    else:
        # Compress without an axis selects from the flattened data: flatten, then Gather on 0.
        flat = gs.Variable(f"{index_name}_flat_data", dtype=data.dtype, shape=None)
        graph.nodes.append(gs.Node(
            op="Reshape", name=f"Flatten(for {compress.name})",
            inputs=[data, gs.Constant(f"{index_name}_flat_shape", np.array([-1], np.int64))],
            outputs=[flat]))
        gather_axis = 0
        gathered_from = flat
    compress.op = "Gather"
    compress.name = f"Gather(from {compress.name or 'Compress'})"
    compress.attrs.clear()
    compress.attrs["axis"] = gather_axis
    compress.inputs = [gathered_from, index]
    # Compress's output had a data-dependent size along the axis; Gather's is 1 there.
    out = compress.outputs[0]
    shape = list(gathered_from.shape) if gathered_from.shape is not None else None
    if shape is not None and -len(shape) <= gather_axis < len(shape):
        shape[gather_axis] = 1
        out.shape = shape
    else:
        out.shape = None

    for dead in (cast, reshape):
        dead.inputs.clear()
        dead.outputs.clear()


def _replace_hardmaxes(graph: gs.Graph, opset: int) -> int:
    hardmaxes = [n for n in graph.nodes if n.op == "Hardmax"]
    if not hardmaxes:
        raise ModelPatternError(
            "no Hardmax node: expected Hardmax -> Cast(to=bool) -> Reshape -> Compress "
            "selecting the answer start")
    for node in hardmaxes:
        _replace_hardmax_chain(graph, node, opset)
    return len(hardmaxes)


def _answer_outputs(graph: gs.Graph) -> List[gs.Tensor]:
    """The (start, end) answer outputs: named as samples.bidaf.BIDAF_OUTPUTS, else the first two."""
    by_name = {t.name: t for t in graph.outputs}
    if all(n in by_name for n in BIDAF_OUTPUTS):
        return [by_name[n] for n in BIDAF_OUTPUTS]
    if len(graph.outputs) < 2:
        raise ModelPatternError(f"a BiDAF model has two answer outputs (start, end); this one has "
                                f"{[t.name for t in graph.outputs]}")
    return list(graph.outputs[:2])


#: ops that pass an arg-max index through unchanged in value (between ArgMax and the output)
_INDEX_PASS_THROUGH = ("Cast", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Flatten")


def _argmax_input(output: gs.Tensor) -> gs.Tensor:
    """The tensor whose arg-max ``output`` is: the input of the ArgMax that produces it,
    directly or through _INDEX_PASS_THROUGH ops only (an ArgMax further upstream, such as
    the Hardmax replacement the end pointer reads, computes something else)."""
    tensor = output
    chain: List[str] = []
    while True:
        producers = list(tensor.inputs)
        if len(producers) != 1:
            break
        node = producers[0]
        if node.op == "ArgMax":
            return node.inputs[0]
        if node.op not in _INDEX_PASS_THROUGH or not node.inputs:
            chain.append(node.op)
            break
        chain.append(node.op)
        tensor = node.inputs[0]
    raise ModelPatternError(f"no ArgMax upstream of output {output.name!r} (through {', '.join(_INDEX_PASS_THROUGH)} "
                            f"only; found {' <- '.join(chain) or 'no producer'}): the start/end scores it "
                            "is the arg-max of cannot be exposed")


def _expose_scores(graph: gs.Graph) -> None:
    """Add ``Identity(scores) -> <BIDAF_SCORE_OUTPUTS[i]>`` graph outputs for start and end."""
    taken = set(graph.tensors().keys())
    for answer, out_name in zip(_answer_outputs(graph), BIDAF_SCORE_OUTPUTS):
        if out_name in taken:
            raise ModelPatternError(f"the model already has a tensor named {out_name!r}; the score "
                                    "output cannot be added under that name")
        scores = _argmax_input(answer)
        # a graph output needs a shape; the pointer scores are [1, c] (one row of context
        # positions: what the Hardmax replacement requires too) when the model does not say
        shape = list(scores.shape) if scores.shape is not None else [1, "c"]
        exposed = gs.Variable(out_name, dtype=scores.dtype if scores.dtype is not None else np.float32,
                              shape=shape)
        graph.nodes.append(gs.Node(op="Identity", name=f"Expose({out_name})", inputs=[scores],
                                   outputs=[exposed]))
        graph.outputs.append(exposed)

