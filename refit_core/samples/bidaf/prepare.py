"""Prepare the ONNX model zoo's BiDAF (bidaf-9.onnx) so that TensorRT can parse it, and
write the result the way NVIDIA's engine_refit_onnx_bidaf sample does before it builds a
refittable engine.

:func:`prepare_bidaf` checks that the weights the sample refits (``Parameter576_B_0``,
``W_0``) are initializers, edits the graph (:mod:`refit_core.samples.bidaf.surgery`: the
CategoryMappers removed, Hardmax -> Compress replaced by ArgMax -> Gather, the start and
end scores exposed as outputs) and saves the tables and weights beside the prepared model.

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
from typing import Dict, Sequence, Tuple, Union

import numpy as np
import onnx

from ...errors import DataError, ModelPatternError
from ...fileio import atomic_directory, sha256_bytes, sha256_file
from . import BIDAF_INPUTS, BIDAF_SAMPLE_WEIGHTS
from .category_map import CategoryMap
from .surgery import edit_graph

__all__ = [
    "BIDAF_INPUT_NAMES",
    "REFIT_WEIGHT_NAMES",
    "PREPARED_MODEL_NAME",
    "MANIFEST_NAME",
    "CategoryMap",
    "PreparedBidaf",
    "prepare_bidaf",
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
    prepared, maps, renamed = edit_graph(proto, required_inputs)
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

