"""Prepare the ONNX model zoo's BiDAF (bidaf-9.onnx) so that TensorRT can parse it.

Why: TensorRT cannot take string inputs, nor the Hardmax and Compress operators that
bidaf-9 uses to pick the answer's start. NVIDIA's engine_refit_onnx_bidaf sample
therefore edits the graph with onnx-graphsurgeon before building a refittable engine:

* each string input feeds one ``CategoryMapper`` (ai.onnx.ml) that turns words or
  characters into int64 ids. The node is removed and its int64 output becomes the graph
  input; the mapping is saved as JSON so the preprocessing can do the lookup itself;
* ``Hardmax -> Cast(bool) -> Reshape -> Compress`` selects one slice of a tensor at the
  position of the largest logit. It becomes ``ArgMax(axis=1, keepdims=0) -> Gather``,
  which computes the same slice with operators TensorRT supports;
* the weights the sample refits (``Parameter576_B_0``, ``W_0``) are saved as .npy;
* (not in the sample) the scores that the ArgMax of each answer output reads, the [1, c]
  start and end pointer logits, become extra graph outputs (``start_scores``,
  ``end_scores``; samples.bidaf.BIDAF_SCORE_OUTPUTS), so that TensorRT and ONNX Runtime can be
  compared on numbers: two engines can agree on every arg-max span and still differ in
  the scores, and a refit that changed nothing can keep most spans. Marking them as
  outputs may change what TensorRT fuses; the prepared model is what gets built.

Everything is found by graph pattern, never by node name, so the same code prepares the
original model and the project's stand-in. A model that lacks a pattern raises
:class:`~refit_core.errors.ModelPatternError` naming the missing pattern.

Files written to ``out_dir``: ``bidaf-modified.onnx``, ``<graph input>.json`` for each
removed CategoryMapper, ``<weight>.npy`` for each refit weight, and ``prepared.json``
(the manifest that :func:`load_prepared` reads back).
"""
from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from ...config import DATA_DIR_ENV
from ...errors import DataError, ModelPatternError
from ...fileio import atomic_directory, md5_file, sha256_bytes, sha256_file
from . import BIDAF_INPUTS, BIDAF_OUTPUTS, BIDAF_SAMPLE_WEIGHTS, BIDAF_SCORE_OUTPUTS
from .category_map import CategoryMap

__all__ = [
    "BIDAF_INPUT_NAMES",
    "REFIT_WEIGHT_NAMES",
    "PREPARED_MODEL_NAME",
    "MANIFEST_NAME",
    "ORIGINAL_BIDAF_MD5",
    "ORIGINAL_BIDAF_LOCATIONS",
    "CategoryMap",
    "PreparedBidaf",
    "prepare_bidaf",
    "find_original_bidaf",
    "original_bidaf_candidates",
]

#: The four string inputs of bidaf-9 (and of the stand-in), in graph order (samples/bidaf/__init__.py).
BIDAF_INPUT_NAMES: Tuple[str, ...] = BIDAF_INPUTS
#: The initializers the TensorRT sample refits (samples/bidaf/__init__.py).
REFIT_WEIGHT_NAMES: Tuple[str, ...] = BIDAF_SAMPLE_WEIGHTS
PREPARED_MODEL_NAME = "bidaf-modified.onnx"
MANIFEST_NAME = "prepared.json"
#: 2: the manifest lists every file with its sha256 and size ("files"), checked on load.
#: 3: the prepared model has the score outputs (BIDAF_SCORE_OUTPUTS); older entries are prepared again.
_MANIFEST_FORMAT = 3
#: prepare_cached's directory for a source model: <cache root>/bidaf-prepared-<sha256[:16]>
PREPARED_DIR_PREFIX = "bidaf-prepared-"

#: MD5 of bidaf-9.onnx as the TensorRT sample's download.yml pins it.
ORIGINAL_BIDAF_MD5 = "cf11f1eceb4731f8dd39345467fe94a1"
#: Where, under the user's data directory, the original model is looked for (in order).
ORIGINAL_BIDAF_LOCATIONS: Tuple[str, ...] = (
    "bidaf/bidaf-original.onnx",
    "samples/python/engine_refit_onnx_bidaf/bidaf-original.onnx",
    "bidaf/bidaf-9.onnx",
)

_ML_DOMAIN = "ai.onnx.ml"
_SAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]")


# --------------------------------------------------------------------------- data classes

@dataclass
class PreparedBidaf:
    """Everything the prepared model needs around it: its file, the maps and the refit weights.

    ``input_names`` maps each original string input (``context_word`` ...) to the name of
    the prepared model's int64 input that replaced it (the CategoryMapper's output).
    """

    model_path: Path
    maps: Dict[str, CategoryMap]
    refit_weights: Dict[str, np.ndarray]
    input_names: Dict[str, str]
    source_sha256: str

    def prepared_input(self, original_input: str) -> str:
        """The prepared model's input name that stands for ``original_input``."""
        try:
            return self.input_names[original_input]
        except KeyError:
            raise KeyError(f"{original_input!r} was not a string input of the prepared model; "
                           f"known: {sorted(self.input_names)}") from None


# --------------------------------------------------------------------------- helpers

def _file_name(tensor_name: str, suffix: str) -> str:
    """A file name for a tensor: the tensor's own name when it is filesystem-safe."""
    return _SAFE_FILE_CHARS.sub("_", tensor_name) + suffix


def _load(model: Union[str, Path, onnx.ModelProto]) -> Tuple[onnx.ModelProto, str]:
    """The model and the SHA-256 of its bytes (file bytes, or the serialized proto)."""
    if isinstance(model, onnx.ModelProto):
        return model, sha256_bytes(model.SerializeToString(deterministic=True))
    path = Path(model)
    if not path.is_file():
        raise DataError(f"ONNX model {str(path)!r} does not exist")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and others on a bad file
        raise DataError(f"{str(path)!r} is not a readable ONNX model: {exc}") from exc
    return proto, sha256_file(path)


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


# --------------------------------------------------------------------------- surgery

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


def _refit_weights(model: onnx.ModelProto, names: Sequence[str]) -> Dict[str, np.ndarray]:
    """The named initializers of ``model`` as arrays; ModelPatternError names a missing one."""
    inits = {t.name: t for t in model.graph.initializer}
    weights: Dict[str, np.ndarray] = {}
    for name in names:
        if name not in inits:
            raise ModelPatternError(
                f"refit weight {name!r} missing: the prepared model has no initializer of "
                f"that name (it has {len(inits)} initializers)")
        weights[name] = onnx.numpy_helper.to_array(inits[name])
    return weights


def prepare_bidaf(model: Union[str, Path, onnx.ModelProto], out_dir: Path,
                  refit_weight_names: Sequence[str] = REFIT_WEIGHT_NAMES,
                  required_inputs: Sequence[str] = BIDAF_INPUT_NAMES) -> PreparedBidaf:
    """Edit a BiDAF model the way the TensorRT sample does and write the results to ``out_dir``.

    ``required_inputs`` must each feed one CategoryMapper (any other string input too);
    ``refit_weight_names`` must be initializers of the model.
    """
    out_dir = Path(out_dir)
    proto, sha = _load(model)
    # Check the weights first: it is the cheapest pattern and the error is the clearest.
    _refit_weights(proto, refit_weight_names)
    graph = gs.import_onnx(proto)
    opset = _default_opset(graph)
    maps, renamed = _drop_category_mappers(graph, required_inputs)
    _replace_hardmaxes(graph, opset)
    _expose_scores(graph)
    graph.cleanup().toposort()

    prepared = gs.export_onnx(graph)
    onnx.checker.check_model(prepared)
    weights = _refit_weights(prepared, refit_weight_names)

    _refuse_foreign_directory(out_dir)
    files: Dict[str, bytes] = {PREPARED_MODEL_NAME: prepared.SerializeToString()}
    map_files: Dict[str, str] = {}
    for input_name, cmap in maps.items():
        fname = _file_name(input_name, ".json")
        files[fname] = cmap.to_json().encode("utf-8")
        map_files[input_name] = fname
    weight_files: Dict[str, str] = {}
    for name, array in weights.items():
        fname = _file_name(name, ".npy")
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        files[fname] = buf.getvalue()
        weight_files[name] = fname
    manifest = {
        "format": _MANIFEST_FORMAT,
        "model": PREPARED_MODEL_NAME,
        "source_sha256": sha,
        "input_names": renamed,
        "maps": map_files,
        "refit_weights": weight_files,
        "files": {name: {"sha256": sha256_bytes(data), "size": len(data)}
                  for name, data in files.items()},
    }
    # Built in a private temp directory and renamed into place: a reader sees the old
    # complete directory or the new complete one, never a half-written one.
    with atomic_directory(out_dir, lock=True) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return PreparedBidaf(model_path=out_dir / PREPARED_MODEL_NAME, maps=maps, refit_weights=weights,
                         input_names=renamed, source_sha256=sha)


def _refuse_foreign_directory(out_dir: Path) -> None:
    """prepare_bidaf replaces ``out_dir`` whole: refuse when it holds anything but a prepared BiDAF."""
    if os.path.islink(str(out_dir)):
        raise DataError(f"{str(out_dir)!r} is a symlink; prepare_bidaf writes only real directories")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_NAME).is_file():
        raise DataError(f"{str(out_dir)!r} is not empty and is not a prepared BiDAF (no {MANIFEST_NAME}); "
                        "prepare_bidaf replaces its output directory whole, so give it an empty or new one")


# --------------------------------------------------------------------------- the original

def original_bidaf_candidates(data_dir: Optional[Union[str, Path]] = None) -> List[Path]:
    """The paths :func:`find_original_bidaf` looks at, in order ($REFIT_DATA_DIR by default)."""
    root = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not root:
        return []
    base = Path(root).expanduser()
    return [base / rel for rel in ORIGINAL_BIDAF_LOCATIONS]


def find_original_bidaf(data_dir: Optional[Union[str, Path]] = None,
                        check_md5: bool = True) -> Optional[Path]:
    """The original bidaf-9.onnx under the user's data directory, or None when absent.

    Looks at :data:`ORIGINAL_BIDAF_LOCATIONS` under ``data_dir`` ($REFIT_DATA_DIR when
    None). With ``check_md5`` a file that is there but is not bidaf-9 (a truncated
    download, another model) raises DataError instead of being used silently.
    """
    for path in original_bidaf_candidates(data_dir):
        if path.is_file():
            if check_md5:
                got = md5_file(path)
                if got != ORIGINAL_BIDAF_MD5:
                    raise DataError(
                        f"{str(path)!r} is not the original bidaf-9.onnx: MD5 {got}, expected "
                        f"{ORIGINAL_BIDAF_MD5} (re-download it or remove it)")
            return path
    return None
