"""Your own model as a case: an ONNX file on disk becomes an `OnnxModelCase`.

`pytest -m gpu --refit-model MODEL.onnx [--refit-shapes NAME:DIMS ...]` registers one with
this module. Everything that can be known without TensorRT is checked here, up front, and
refused in one sentence: the file is missing or not ONNX, an input has a dynamic dimension
and no shape was given, a given shape names no input or disagrees with a fixed dimension,
or an input is not float32 (the probes are seeded standard-normal floats).

Shapes are written the way trtexec takes them: `input:1x3x224x224`.
"""
from __future__ import annotations

import functools

import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import RefitCoreError
from .onnx_model import OnnxModelCase

Shape = Tuple[int, ...]
_SHAPE_RE = re.compile(r"^(?P<name>.+):(?P<dims>\d+(?:x\d+)*)$")


class ModelInputError(RefitCoreError):
    """A user's model or its shapes cannot be used as a case (one sentence, no traceback)."""


def parse_shapes(items: Sequence[str]) -> Dict[str, Shape]:
    """["x:1x3x224x224", "mask:1x128"] -> {"x": (1, 3, 224, 224), "mask": (1, 128)}."""
    shapes: Dict[str, Shape] = {}
    for item in items:
        match = _SHAPE_RE.match(item.strip())
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


def _model_inputs(path: Path) -> List[Tuple[str, int, List[Optional[int]]]]:
    """(name, ONNX element type, dims with None for dynamic ones) of each real input."""
    import onnx
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, google.protobuf errors, OSError ...
        raise ModelInputError(f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    if not model.graph.node:
        raise ModelInputError(f"{path} is not an ONNX model with a graph (no nodes)")
    initializers = {i.name for i in model.graph.initializer}
    out = []
    for inp in model.graph.input:
        if inp.name in initializers:
            continue
        tensor = inp.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim]
        out.append((inp.name, int(tensor.elem_type), dims))
    return out


def input_shapes_for(path: Path, given: Dict[str, Shape], shapes_option: str = "--refit-shapes") -> Dict[str, Shape]:
    """Every input's probe shape: the model's own where fixed, `given` where dynamic
    (shapes in `given` for inputs the model does not have are ignored here). `shapes_option`
    is the option the error message tells the user to give a shape with."""
    from onnx import TensorProto
    shapes: Dict[str, Shape] = {}
    for name, elem_type, dims in _model_inputs(path):
        if elem_type != TensorProto.FLOAT:
            raise ModelInputError(f"input {name!r} of {path.name} is {TensorProto.DataType.Name(elem_type)}; "
                                  "model cases feed seeded float32 inputs, so every input must be FLOAT")
        if name in given:
            shape = given[name]
            if len(shape) != len(dims) or any(d is not None and d != s for d, s in zip(dims, shape)):
                shown = "x".join("?" if d is None else str(d) for d in dims)
                raise ModelInputError(f"shape {'x'.join(map(str, shape))} for {name!r} does not fit the "
                                      f"model's {shown}")
            shapes[name] = shape
        elif any(d is None for d in dims):
            shown = "x".join("?" if d is None else str(d) for d in dims)
            example = "x".join("1" if d is None else str(d) for d in dims)
            raise ModelInputError(f"input {name!r} of {path.name} has a dynamic shape ({shown}); give it, "
                                  f"e.g. {shapes_option} {name}:{example}")
        else:
            shapes[name] = tuple(int(d) for d in dims)  # type: ignore[arg-type]
    return shapes


def case_name_for(path: Path) -> str:
    """"my model.v2.onnx" -> "model-my_model_v2" (a valid, recognisable case id)."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(path).stem).strip("_") or "unnamed"
    return f"model-{stem}"


def user_model_case(path: Path, shapes: Optional[Dict[str, Shape]] = None) -> OnnxModelCase:
    """An OnnxModelCase for the file at `path` (checked now; the engine is built when used)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelInputError(f"model file {path} does not exist")
    resolved = path.resolve()
    input_shapes = input_shapes_for(resolved, dict(shapes or {}))
    return OnnxModelCase(case_name_for(resolved), functools.partial(_given_file, resolved), input_shapes)


def _given_file(path: Path, _directory: Path) -> Path:
    """OnnxModelCase's make_model for a file the user gave (a function, so the case pickles)."""
    return path


def user_model_cases(paths: Sequence[str], shapes: Dict[str, Shape]) -> List[OnnxModelCase]:
    """One case per model file; every given shape must belong to an input of some model."""
    cases = [user_model_case(Path(p), shapes) for p in paths]
    names = {case.name for case in cases}
    if len(names) != len(cases):
        raise ModelInputError("two model files give the same case name "
                              f"({', '.join(case_name_for(Path(p)) for p in paths)}); rename one")
    used = {name for case in cases for name in case.input_shapes}
    unused = sorted(set(shapes) - used)
    if unused:
        raise ModelInputError(f"--refit-shapes names {', '.join(map(repr, unused))}, which no given model has "
                              f"as an input (inputs: {', '.join(map(repr, sorted(used))) or 'none'})")
    return cases
