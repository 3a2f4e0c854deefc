"""The user's ONNX model as given, before anything is changed: reading the file, its inputs,
and the shapes (`--shapes NAME:DIMS`) that fix their dynamic dimensions.

Refused in one sentence (ModelInputError, no traceback, exit 2): a file that is not ONNX,
external data stored outside the model's own folder, a `--shapes` entry for an input the
model lacks, of the wrong rank, or contradicting a fixed dimension, and a dynamic input
without a shape. Needs onnx, never TensorRT (Python 3.9).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from ..errors import RefitCoreError

__all__ = ["Shape", "SHAPE_RE", "ModelInputError", "is_shape_item", "parse_shapes", "external_data_problem",
           "load_model", "ModelInput", "model_inputs", "fit_shapes", "model_inputs_shown"]

Shape = Tuple[int, ...]

#: NAME:DIMS, trtexec style ("x:1x3x48x192").
SHAPE_RE = re.compile(r"^(?P<name>.+):(?P<dims>\d+(?:x\d+)*)$")


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
    missing = [inp for inp in inputs if inp.dynamic and inp.name not in given]
    if missing:
        said = "; ".join(f"{inp.name!r} {inp.shown()}" for inp in missing)
        example = " ".join(f"{inp.name}:" + "x".join(str(d) if isinstance(d, int) else "1" for d in inp.dims)
                           for inp in missing)
        one = len(missing) == 1
        raise ModelInputError(f"input{'' if one else 's'} of {model_name} with a dynamic shape and no "
                              f"{shapes_option}: {said}; give {'it' if one else 'each'}, e.g. {shapes_option} {example}")
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
        else:
            shapes[inp.name] = tuple(int(d) for d in inp.dims)
    return shapes


def model_inputs_shown(inp: Any) -> str:
    """A graph input's (ValueInfoProto's) dims, written as ModelInput.shown() writes them."""
    return _dims_shown([int(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or "?")
                        for d in inp.type.tensor_type.shape.dim])
