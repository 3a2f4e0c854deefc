"""The generic prepare step: the ONNX model `check` actually builds, made visible.

`python -m refit_core prepare MODEL.onnx [--shapes NAME:DIMS ...] -o PREPARED.onnx` and
`check` both run `prepare_file`:

* every dynamic dimension of an input is set from its `--shapes` entry, whatever its symbol
  (exporters name unrelated dims alike, e.g. two dims both called '?'; TensorRT then takes
  them for one and refuses other values: "Input dimensions with this name are inconsistent");
* float weights held in top-level `Constant` nodes become initializers under the node's
  output name (PaddlePaddle's exporter can keep every weight in a Constant node, and a
  refit by ONNX name reaches only initializers); nothing else changes;
* ONNX Runtime runs the original and the prepared model on the same seeded inputs and the
  outputs must be identical, or agree within a printed tolerance (onnx_prep.ort_agreement).

This module holds the preparing itself, the op types TensorRT's ONNX parser cannot import,
and the prepared model's float initializers. Reading the model and fitting `--shapes`, with
every refusal before anything is built (ModelInputError), are in onnx_prep.source; the
proof with ONNX Runtime is in onnx_prep.ort_agreement. Needs onnx and onnxruntime, never
TensorRT (Python 3.9).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from ..errors import RefitCoreError
from .ort_agreement import Agreement, compare_with_ort
from .source import Shape, fit_shapes, load_model, model_inputs_shown

#: Op types TensorRT's ONNX parser cannot import, with why (one home for the sentence).
DYNAMIC_QUANTIZATION_OPS = ("DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "DynamicQuantizeLSTM")
UNIMPORTABLE_REASON = {op: "dynamic quantization (integer ops whose scales are computed while the model "
                           "runs), which TensorRT cannot import; export the float model, or quantize it "
                           "statically (QuantizeLinear/DequantizeLinear pairs)"
                       for op in DYNAMIC_QUANTIZATION_OPS}


# --------------------------------------------------------------------------------------
# What TensorRT's ONNX parser cannot import
# --------------------------------------------------------------------------------------
def count_ops(model: Any, op_types: Any) -> Dict[str, int]:
    """Op types of the model's top-level graph that are in `op_types` -> how many nodes."""
    counts: Dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in op_types:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def unimportable_ops(model: Any) -> Dict[str, int]:
    """Op types of the model (top-level graph) TensorRT's ONNX parser cannot import -> count."""
    return count_ops(model, UNIMPORTABLE_REASON)


def unimportable_sentence(counts: Mapping[str, int]) -> str:
    """One sentence naming the op types and why ("" when none)."""
    if not counts:
        return ""
    shown = ", ".join(f"{op} (x{n})" for op, n in sorted(counts.items()))
    reasons = sorted({UNIMPORTABLE_REASON[op] for op in counts})
    return f"the model uses {shown}: {'; '.join(reasons)}"


#: ops whose output size depends on the input's values: an engine output computed from one can
#: have a data-dependent shape, which refit_core's runner refuses (trt.runner.data_dependent_outputs)
DATA_DEPENDENT_OPS = ("NonZero", "NonMaxSuppression", "Unique", "Compress")


def data_dependent_ops(model: Any) -> Dict[str, int]:
    """Op types of the model (top-level graph) whose output size depends on the data -> count."""
    return count_ops(model, DATA_DEPENDENT_OPS)


_NODE_RE = re.compile(r"[Ii]n node (\d+)")

#: ops whose output does not depend on their input's values (with the inputs' shapes fixed, what
#: is computed from them is a constant too)
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})


def computed_constant_inputs(model: Any, node: Any) -> List[str]:
    """The inputs of `node` that another node computes from constants alone (initializers,
    Constant nodes, and the shapes of the model's inputs, which prepare fixes): a constant
    folder turns them into initializers, as older TensorRT parsers need for a Slice's axes."""
    graph = model.graph
    constant = {i.name for i in graph.initializer}
    producer = {}
    for n in graph.node:  # ONNX keeps nodes in topological order
        producer.update((out, n.op_type) for out in n.output)
        if n.op_type in SHAPE_ONLY_OPS or (not n.op_type.startswith("Random")
                                           and all(x in constant for x in n.input if x)):
            constant.update(n.output)
    return [x for x in node.input if x and producer.get(x) not in (None, "Constant") and x in constant]


def describe_parser_rejection(model: Any, message: str) -> str:
    """TensorRT's parser errors say "In node N (...)": name the op types of those nodes of the
    model, and why where it is known (dynamic quantization)."""
    nodes = model.graph.node
    ops = []
    for index in (int(m) for m in _NODE_RE.findall(message)):
        if 0 <= index < len(nodes):
            node = nodes[index]
            label = f"{node.op_type} (node {index}{', ' + repr(node.name) if node.name else ''})"
            if label not in ops:
                ops.append(label)
    parts = []
    if ops:
        parts.append(f"TensorRT could not import {', '.join(ops)}")
        folded = [x for index in (int(m) for m in _NODE_RE.findall(message)) if 0 <= index < len(nodes)
                  for x in computed_constant_inputs(model, nodes[index])]
        if folded:
            many = len(dict.fromkeys(folded)) > 1
            parts.append(f"its input{'s' if many else ''} {', '.join(map(repr, dict.fromkeys(folded)))} "
                         f"{'are' if many else 'is'} computed in the graph from constants alone, and this TensorRT "
                         f"needs {'them' if many else 'it'} as constants: fold constants first (polygraphy surgeon sanitize MODEL.onnx --fold-constants "
                         "-o folded.onnx) and check the folded model")
    sentence = unimportable_sentence(unimportable_ops(model))
    if sentence:
        parts.append(sentence)
    return "; ".join(parts)


# --------------------------------------------------------------------------------------
# Preparing
# --------------------------------------------------------------------------------------
def float_types() -> Tuple[int, ...]:
    """ONNX tensor element types that hold floats (weights, and the outputs the checks compare)."""
    from onnx import TensorProto
    return (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)


def constant_weight(node: Any) -> Optional[Any]:
    """The TensorProto a float Constant node holds (value / value_float / value_floats), else None."""
    from onnx import numpy_helper
    for attr in node.attribute:
        if attr.name == "value" and attr.type == attr.TENSOR and attr.t.data_type in float_types():
            return attr.t
        if attr.name == "value_float":
            return numpy_helper.from_array(np.array(attr.f, dtype=np.float32))
        if attr.name == "value_floats":
            return numpy_helper.from_array(np.array(list(attr.floats), dtype=np.float32))
    return None


@dataclass
class Prepared:
    """The prepared model, the shapes it was fixed to, and what was changed (lines to print)."""

    model: Any
    shapes: Dict[str, Shape]
    changes: List[str] = field(default_factory=list)
    moved_constants: int = 0
    fixed_inputs: int = 0


def prepare_model(model: Any, shapes: Mapping[str, Shape]) -> Prepared:
    """A copy of `model` with its inputs fixed to `shapes` (from fit_shapes) and its float
    Constant-node weights moved to initializers; the original is not touched."""
    import onnx
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    changes: List[str] = []
    fixed = 0
    initializers = {i.name for i in graph.initializer}
    for inp in graph.input:
        if inp.name in initializers or inp.name not in shapes:
            continue
        dims = inp.type.tensor_type.shape.dim
        before = model_inputs_shown(inp)
        changed = False
        for d, size in zip(dims, shapes[inp.name]):
            if not (d.HasField("dim_value") and d.dim_value > 0):
                d.Clear()
                d.dim_value = int(size)
                changed = True
        if changed:
            fixed += 1
            changes.append(f"input {inp.name!r}: {before} -> {'x'.join(map(str, shapes[inp.name]))}")
    outputs = {o.name for o in graph.output}
    keep = []
    moved, elements = 0, 0
    for node in graph.node:
        tensor = constant_weight(node) if node.op_type == "Constant" and len(node.output) == 1 else None
        if tensor is None or node.output[0] in outputs or node.output[0] in initializers:
            keep.append(node)
            continue
        init = graph.initializer.add()
        init.CopyFrom(tensor)
        init.name = node.output[0]
        initializers.add(init.name)
        if out.ir_version < 4:  # initializers had to be listed as inputs then
            graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        moved += 1
        n = 1
        for d in init.dims:
            n *= int(d)
        elements += n
    if moved:
        del graph.node[:]
        graph.node.extend(keep)
        left = sum(1 for n in keep if n.op_type == "Constant")
        changes.append(f"moved {moved} float weights ({elements} values) from Constant nodes to initializers "
                       f"under the nodes' output names; {left} other Constant nodes (integer shapes, indices) kept")
    return Prepared(out, dict(shapes), changes, moved, fixed)


# --------------------------------------------------------------------------------------
# The whole step, and the prepared model's weights
# --------------------------------------------------------------------------------------
@dataclass
class PrepareResult:
    path: Path
    prepared: Prepared
    agreement: Agreement
    unimportable: Dict[str, int]


def prepare_file(source: Path, given: Mapping[str, Shape], out_path: Path, seed: int = 0,
                 shapes_option: str = "--shapes", progress: Any = print) -> PrepareResult:
    """Load, fit the shapes, prepare, prove with ONNX Runtime, write `out_path` atomically."""
    from ..fileio import atomic_write_bytes
    source = Path(source)
    model = load_model(source)
    shapes = fit_shapes(model, given, source.name, shapes_option)
    prepared = prepare_model(model, shapes)
    for line in prepared.changes or ["nothing to change: inputs are fixed and no weight is held in a Constant node"]:
        progress(f"prepare: {line}")
    agreement = compare_with_ort(model, prepared.model, shapes, seed)
    if not agreement.ok:
        raise RefitCoreError(f"prepare changed what {source.name} computes ({agreement.describe()}); "
                             "this is a bug in refit_core's prepare step")
    progress(f"prepare: {agreement.describe()}")
    unimportable = unimportable_ops(model)
    if unimportable:
        progress(f"prepare: TensorRT's ONNX parser is expected to refuse it: {unimportable_sentence(unimportable)}")
    data_dependent = data_dependent_ops(model)
    if data_dependent:
        shown = ", ".join(f"{op} (x{n})" for op, n in sorted(data_dependent.items()))
        progress(f"prepare: the model uses {shown}, whose output size depends on the data: where an output of the "
                 "model does too, check refuses the engine after building it (export without that step, e.g. NMS)")
    atomic_write_bytes(out_path, prepared.model.SerializeToString())
    progress(f"prepare: wrote {out_path}")
    return PrepareResult(Path(out_path), prepared, agreement, unimportable)


def onnx_float_initializers(model_path: Path) -> Dict[str, np.ndarray]:
    """Every float32 initializer of the prepared model: the candidates for "refit every weight"."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(model_path))
    out = {}
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.size > 0:
            out[init.name] = np.array(arr, copy=True, order="C")  # to_array gives read-only views
    return out
