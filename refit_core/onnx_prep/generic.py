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
  outputs must be identical (a fixed shape may let ONNX Runtime pick another kernel; then
  they must agree within PREPARE_RTOL and the tolerance is printed).

Refused before anything is built, in one sentence (ModelInputError): a file that is not
ONNX, external data stored outside the model's own folder, a `--shapes` entry for an input
the model lacks, of the wrong rank, or contradicting a fixed dimension, and a dynamic input
without a shape. Needs onnx and onnxruntime, never TensorRT (Python 3.9).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import RefitCoreError

Shape = Tuple[int, ...]

#: NAME:DIMS, trtexec style ("x:1x3x48x192").
SHAPE_RE = re.compile(r"^(?P<name>.+):(?P<dims>\d+(?:x\d+)*)$")

#: Prepared vs original outputs when they are not bit-identical: max|diff| <= PREPARE_RTOL * max(1, max|ref|).
PREPARE_RTOL = 1e-5

#: Op types TensorRT's ONNX parser cannot import, with why (one home for the sentence).
DYNAMIC_QUANTIZATION_OPS = ("DynamicQuantizeLinear", "ConvInteger", "MatMulInteger", "DynamicQuantizeLSTM")
UNIMPORTABLE_REASON = {op: "dynamic quantization (integer ops whose scales are computed while the model "
                           "runs), which TensorRT cannot import; export the float model, or quantize it "
                           "statically (QuantizeLinear/DequantizeLinear pairs)"
                       for op in DYNAMIC_QUANTIZATION_OPS}


class ModelInputError(RefitCoreError):
    """A user's model or its shapes cannot be used (one sentence, no traceback, exit 2)."""


# --------------------------------------------------------------------------------------
# --shapes
# --------------------------------------------------------------------------------------
def is_shape_item(text: str) -> bool:
    """Whether `text` reads as NAME:DIMS (a model path almost never does)."""
    return all(SHAPE_RE.match(part.strip()) for part in text.split(",") if part.strip()) and bool(text.strip(", "))


def parse_shapes(items: Sequence[str]) -> Dict[str, Shape]:
    """["x:1x3x224x224", "mask:1x128"] (or comma-separated) -> {"x": (1, 3, 224, 224), "mask": (1, 128)}."""
    shapes: Dict[str, Shape] = {}
    for item in [s for entry in items for s in entry.split(",") if s.strip()]:
        match = SHAPE_RE.match(item.strip())
        if match is None:
            raise ModelInputError(f"shape {item!r} is not NAME:DIMS with DIMS like 1x3x224x224")
        name = match.group("name")
        if name in shapes:
            raise ModelInputError(f"input {name!r} is given two shapes")
        dims = tuple(int(d) for d in match.group("dims").split("x"))
        if any(d <= 0 for d in dims):
            raise ModelInputError(f"shape {item!r} has a dimension of 0")
        shapes[name] = dims
    return shapes


# --------------------------------------------------------------------------------------
# Reading the model
# --------------------------------------------------------------------------------------
def external_data_problem(model: Any, folder: Path) -> Optional[str]:
    """Why the model's external data cannot be used (a location outside `folder`, absolute, or
    missing), or None. Checked before onnx reads any of it."""
    from onnx import TensorProto
    root = os.path.realpath(str(folder))
    for tensor in _all_tensors(model.graph):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        target = os.path.realpath(os.path.join(root, location))
        if os.path.isabs(location) or os.path.commonpath([root, target]) != root:
            return (f"tensor {tensor.name!r} keeps its data in {location!r}, outside the model's own folder "
                    f"{root}; refit_core reads external data only from beside the model")
        if not os.path.isfile(target):
            return f"tensor {tensor.name!r} keeps its data in {location!r}, which does not exist in {root}"
    return None


def _all_tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _all_tensors(attr.g)
            for sub in attr.graphs:
                yield from _all_tensors(sub)


def load_model(path: Path) -> Any:
    """The ModelProto at `path` with its external data (refused when that lies elsewhere)."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model
    path = Path(path)
    if not path.is_file():
        raise ModelInputError(f"model file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, google.protobuf errors, OSError ...
        raise ModelInputError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    if not model.graph.node:
        raise ModelInputError(f"{path} is not an ONNX model with a graph (no nodes)")
    problem = external_data_problem(model, path.resolve().parent)
    if problem is not None:
        raise ModelInputError(f"{path.name}: {problem}")
    load_external_data_for_model(model, str(path.resolve().parent))
    return model


@dataclass(frozen=True)
class ModelInput:
    name: str
    elem_type: int
    #: each dim: an int when fixed, else its symbol ("?" when it has none)
    dims: Tuple[Any, ...]

    @property
    def dynamic(self) -> bool:
        return any(not isinstance(d, int) for d in self.dims)

    def shown(self) -> str:
        """"(?x3x?x?)", with the dims' symbols when any has one: "(?x3x?x?; dims 'batch', 3, '?', '?')"."""
        return _dims_shown(self.dims)


def _dims_shown(dims: Sequence[Any]) -> str:
    text = "x".join(str(d) if isinstance(d, int) else "?" for d in dims)
    if any(not isinstance(d, int) and d != "?" for d in dims):
        return f"({text}; dims " + ", ".join(str(d) if isinstance(d, int) else repr(d) for d in dims) + ")"
    return f"({text})"


def model_inputs(model: Any) -> List[ModelInput]:
    """The model's real inputs (initializers listed as inputs by old exporters are left out)."""
    initializers = {i.name for i in model.graph.initializer}
    out = []
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        tensor = inp.type.tensor_type
        dims = tuple(int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
                     for d in tensor.shape.dim)
        out.append(ModelInput(inp.name, int(tensor.elem_type), dims))
    return out


def fit_shapes(model: Any, given: Mapping[str, Shape], model_name: str = "the model",
               shapes_option: str = "--shapes") -> Dict[str, Shape]:
    """Every input's shape: the model's own where fixed, `given` where dynamic. Refused: a
    given shape for an input the model lacks, of another rank, contradicting a fixed dim;
    a dynamic input without one."""
    inputs = model_inputs(model)
    names = [i.name for i in inputs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ModelInputError(f"{shapes_option} names {', '.join(map(repr, unknown))}, which {model_name} does not "
                              f"have as an input (inputs: {', '.join(map(repr, names)) or 'none'})")
    shapes: Dict[str, Shape] = {}
    for inp in inputs:
        if inp.name in given:
            shape = tuple(int(d) for d in given[inp.name])
            if len(shape) != len(inp.dims):
                raise ModelInputError(f"shape {'x'.join(map(str, shape))} for {inp.name!r} does not fit the model's "
                                      f"{inp.shown()[1:-1]}: {len(shape)} dims, input {inp.name!r} of {model_name} "
                                      f"has {len(inp.dims)}")
            for axis, (d, s) in enumerate(zip(inp.dims, shape)):
                if isinstance(d, int) and d != s:
                    raise ModelInputError(f"shape {'x'.join(map(str, shape))} for {inp.name!r} does not fit the "
                                          f"model's {inp.shown()[1:-1]}: {model_name} fixes dim {axis} to {d}, "
                                          f"not {s}")
            shapes[inp.name] = shape
        elif inp.dynamic:
            example = "x".join(str(d) if isinstance(d, int) else "1" for d in inp.dims)
            raise ModelInputError(f"input {inp.name!r} of {model_name} has a dynamic shape {inp.shown()}; give it, "
                                  f"e.g. {shapes_option} {inp.name}:{example}")
        else:
            shapes[inp.name] = tuple(int(d) for d in inp.dims)
    return shapes


def unimportable_ops(model: Any) -> Dict[str, int]:
    """Op types of the model (top-level graph) TensorRT's ONNX parser cannot import -> count."""
    counts: Dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in UNIMPORTABLE_REASON:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def unimportable_sentence(counts: Mapping[str, int]) -> str:
    """One sentence naming the op types and why ("" when none)."""
    if not counts:
        return ""
    shown = ", ".join(f"{op} (x{n})" for op, n in sorted(counts.items()))
    reasons = sorted({UNIMPORTABLE_REASON[op] for op in counts})
    return f"the model uses {shown}: {'; '.join(reasons)}"


_NODE_RE = re.compile(r"[Ii]n node (\d+)")


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
    sentence = unimportable_sentence(unimportable_ops(model))
    if sentence:
        parts.append(sentence)
    return "; ".join(parts)


# --------------------------------------------------------------------------------------
# Preparing
# --------------------------------------------------------------------------------------
def _float_types() -> Tuple[int, ...]:
    from onnx import TensorProto
    return (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)


def _constant_weight(node: Any) -> Optional[Any]:
    """The TensorProto a float Constant node holds (value / value_float / value_floats), else None."""
    from onnx import numpy_helper
    for attr in node.attribute:
        if attr.name == "value" and attr.type == attr.TENSOR and attr.t.data_type in _float_types():
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
        tensor = _constant_weight(node) if node.op_type == "Constant" and len(node.output) == 1 else None
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


def model_inputs_shown(inp: Any) -> str:
    return _dims_shown([int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
                        for d in inp.type.tensor_type.shape.dim])


# --------------------------------------------------------------------------------------
# The proof with ONNX Runtime
# --------------------------------------------------------------------------------------
def seeded_feeds(model: Any, shapes: Mapping[str, Shape], seed: int) -> Dict[str, np.ndarray]:
    """Seeded inputs: standard-normal floats, zeros for integer and boolean inputs."""
    from onnx import helper
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in model_inputs(model):
        dtype = helper.tensor_dtype_to_np_dtype(inp.elem_type)
        shape = tuple(shapes[inp.name])
        if dtype.kind == "f":
            feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[inp.name] = np.zeros(shape, dtype=dtype)
    return feeds


@dataclass
class Agreement:
    """Prepared vs original outputs on the same inputs."""

    identical: bool
    max_abs: float
    max_ref: float
    outputs: int
    #: when not identical: whether they are with ONNX Runtime's graph optimizations off
    identical_unoptimized: Optional[bool] = None

    @property
    def ok(self) -> bool:
        return self.identical or self.max_abs <= PREPARE_RTOL * max(1.0, self.max_ref)

    def describe(self) -> str:
        if self.identical:
            return f"ONNX Runtime outputs identical ({self.outputs} outputs, seeded inputs)"
        why = ("identical with ONNX Runtime's graph optimizations off: its optimizer folds and fuses the two "
               "graphs differently" if self.identical_unoptimized else "not identical with the optimizations off either")
        return (f"ONNX Runtime outputs agree within {PREPARE_RTOL:g} x max(1, max|ref|), not bit for bit "
                f"(max|diff| {self.max_abs:.3g}, max|ref| {self.max_ref:.3g}; {why})")


def _ort_run(model: Any, names: List[str], feeds: Mapping[str, np.ndarray], optimize: bool) -> List[Any]:
    import onnxruntime as ort
    from ..models.ort_session import PROVIDERS, _options
    opts = _options()
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), sess_options=opts, providers=PROVIDERS).run(names, dict(feeds))


def _agreement(want: Sequence[Any], got: Sequence[Any]) -> Agreement:
    identical, max_abs, max_ref = True, 0.0, 0.0
    for a, b in zip(want, got):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            return Agreement(False, float("inf"), 0.0, len(want))
        if not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
            identical = False
        if a.dtype.kind == "f" and a.size:
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
            max_abs = max(max_abs, float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0)
            finite = np.abs(a[np.isfinite(a)]).astype(np.float64)
            max_ref = max(max_ref, float(finite.max()) if finite.size else 0.0)
        elif not np.array_equal(a, b):
            max_abs = float("inf")
    return Agreement(identical, max_abs, max_ref, len(want))


def compare_with_ort(original: Any, prepared: Any, shapes: Mapping[str, Shape], seed: int = 0) -> Agreement:
    """Both models on the same seeded inputs, ONNX Runtime's graph optimizations on; when the
    outputs are not identical, again with them off (`identical_unoptimized` says what that gave)."""
    feeds = seeded_feeds(original, shapes, seed)
    names = [o.name for o in original.graph.output]
    try:
        want = _ort_run(original, names, feeds, optimize=True)
    except Exception as exc:  # onnxruntime's own errors are many types
        raise ModelInputError(f"ONNX Runtime cannot run the model with shapes "
                              f"{', '.join(f'{k}:' + 'x'.join(map(str, v)) for k, v in sorted(shapes.items()))} "
                              f"({type(exc).__name__}: {' '.join(str(exc).split())[:300]})") from None
    result = _agreement(want, _ort_run(prepared, names, feeds, optimize=True))
    if not result.identical:
        plain = _agreement(_ort_run(original, names, feeds, optimize=False),
                           _ort_run(prepared, names, feeds, optimize=False))
        result.identical_unoptimized = plain.identical
    return result


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
