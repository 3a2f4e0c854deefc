"""Your own model as a case: an ONNX file on disk becomes an `OnnxModelCase`.

`pytest -m gpu --refit-model MODEL.onnx [--refit-shapes NAME:DIMS ...]` registers one with
this module; the engine is built from the prepared model, as `check` builds it
(onnx_prep.generic: shapes fixed, Constant-node weights as initializers). Everything that can be known without TensorRT is checked here, up front, and
refused in one sentence: the file is missing or not ONNX, an input has a dynamic dimension
and no shape was given, a given shape names no input or disagrees with a fixed dimension,
or an input is of a type the probes cannot feed (they are seeded standard-normal floats, and zeros
for integer and boolean inputs).

Shapes are written the way trtexec takes them: `input:1x3x224x224`.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..onnx_prep.source import ModelInputError, fit_shapes, load_model, model_inputs, parse_shapes
from .onnx_model import OnnxModelCase

Shape = Tuple[int, ...]

__all__ = ["ModelInputError", "parse_shapes", "input_shapes_for", "case_name_for", "refuse_weights_not_float32",
           "user_model_case", "user_model_cases"]


#: input types a probe can feed (onnx_prep.ort_agreement.seeded_inputs) and TensorRT can take
FEEDABLE_TYPES = ("FLOAT", "FLOAT16", "INT8", "UINT8", "INT32", "INT64", "BOOL")


def input_shapes_for(path: Path, given: Dict[str, Shape], shapes_option: str = "--refit-shapes") -> Dict[str, Shape]:
    """Every input's probe shape: the model's own where fixed, `given` where dynamic
    (shapes in `given` for inputs the model does not have are ignored here; see fit_shapes
    for the rules). `shapes_option` is the option the error message tells the user to give a
    shape with. Every input must be of a FEEDABLE_TYPES type."""
    from onnx import TensorProto
    model = load_model(path)
    inputs = model_inputs(model)
    feedable = {getattr(TensorProto, t) for t in FEEDABLE_TYPES}
    for inp in inputs:
        if inp.elem_type not in feedable:
            kind = TensorProto.DataType.Name(inp.elem_type) if inp.elem_type else "not a tensor"
            raise ModelInputError(f"input {inp.name!r} of {path.name} is {kind}; the probes feed "
                                  f"{', '.join(FEEDABLE_TYPES)} inputs only (TensorRT takes no other)")
    names = {i.name for i in inputs}
    return fit_shapes(model, {k: v for k, v in given.items() if k in names}, path.name, shapes_option)


def refuse_weights_not_float32(path: Path, name: str) -> None:
    """A model whose float weights (initializers and Constant nodes) are all FLOAT16 (or
    BFLOAT16, DOUBLE) has nothing to refit: the checks hand TensorRT float32 weights, as the
    model's build weights and targets."""
    from collections import Counter
    from onnx import helper
    from ..onnx_prep.generic import constant_weight
    from ..refit.coverage import onnx_float_initializer_info
    model = load_model(path)
    dtypes = [i.dtype for i in onnx_float_initializer_info(model)[0]]
    constants = (constant_weight(node) for node in model.graph.node if node.op_type == "Constant")
    dtypes += [str(helper.tensor_dtype_to_np_dtype(t.data_type)) for t in constants if t is not None]
    if dtypes and "float32" not in dtypes:
        held = ", ".join(f"{n} {d}" for d, n in sorted(Counter(dtypes).items()))
        raise ModelInputError(f"{name} holds its weights as {held} tensors and none as float32, the weights "
                              "the checks refit; export the model in float32 (an FP16 engine can still be built "
                              "from it)")


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
    refuse_weights_not_float32(resolved, resolved.name)
    return OnnxModelCase(case_name_for(resolved), functools.partial(_prepared_file, resolved, input_shapes),
                         input_shapes)


def _prepared_file(path: Path, shapes: Dict[str, Shape], directory: Path) -> Path:
    """OnnxModelCase's make_model for a file the user gave (a function, so the case pickles):
    the model `check` would build, prepared into the case's directory (onnx_prep.generic)."""
    from ..onnx_prep.generic import prepare_file
    out = Path(directory) / f"prepared-{path.name}"
    prepare_file(path, shapes, out, progress=lambda _line: None)
    return out


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
