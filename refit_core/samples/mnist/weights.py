"""Trained LeNet weights: the container, their checks and the committed asset. No PyTorch here.

The GPU tier, the flow and the gate use the committed weights (`committed_lenet()`:
refit_core/assets/lenet_weights.npz, checked against the sha256 its manifest records), so no
GPU result depends on the CPU that trained them. Training them (PyTorch, with an on-disk
cache) and replacing the asset is `python -m tools.train_lenet [--update-asset]`, outside
the installed package.
"""
from __future__ import annotations

import io
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np

from ...errors import AssetError, DataError
from ...fileio import sha256_chunks
from . import LENET_SHAPES

#: room for an .npy member's header beside its data
_NPY_HEADER_ROOM = 4096


@dataclass
class TrainedWeights:
    """The eight LeNet tensors (float32, C-contiguous, PyTorch names) plus provenance."""

    weights: Dict[str, np.ndarray]
    metadata: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # float16/64 -> float32 is the documented conversion; ints, complex, bool, objects are
        # refused rather than cast (a cast would hide a wrong file).
        for name, value in self.weights.items():
            _check_float_dtype(name, np.asarray(value), "weights")
        self.weights = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.weights.items()}

    @property
    def test_accuracy(self) -> Optional[float]:
        """Accuracy recorded at training time (fraction 0..1), if any."""
        value = self.metadata.get("test_accuracy")
        return None if value is None else float(value)


def _check_float_dtype(name: str, arr: np.ndarray, source: str) -> None:
    if arr.dtype.kind != "f":
        raise DataError(f"{source}: {name} has dtype {arr.dtype}; LeNet weights are real floating point "
                        "(no silent casts)")


def check_weight_shapes(weights: Mapping[str, np.ndarray], source: str = "weights") -> None:
    """Raise DataError unless `weights` has exactly the LeNet names, shapes, a real floating
    dtype and finite values."""
    names, expected = set(weights), set(LENET_SHAPES)
    if names != expected:
        raise DataError(
            f"{source}: weight names differ from LeNet's: missing {sorted(expected - names)}, "
            f"unexpected {sorted(names - expected)}")
    for name, shape in LENET_SHAPES.items():
        arr = np.asarray(weights[name])
        _check_float_dtype(name, arr, source)
        if tuple(arr.shape) != shape:
            raise DataError(f"{source}: {name} has shape {tuple(arr.shape)}, expected {shape}")
        if not np.all(np.isfinite(arr)):
            raise DataError(f"{source}: {name} holds non-finite values")


def weights_sha256(weights: Mapping[str, np.ndarray]) -> str:
    """Content hash of a weight set: names (sorted), dtype, shape and C-order bytes of each."""
    def pieces():
        for name in sorted(weights):
            arr = np.ascontiguousarray(weights[name])
            yield json.dumps([name, arr.dtype.str, list(arr.shape)]).encode("utf-8")
            yield arr.tobytes()
    return sha256_chunks(pieces())


def parse_weights_npz(data: bytes, source: str) -> Dict[str, np.ndarray]:
    """The eight LeNet arrays of an npz archive, read without trusting its sizes.

    Each member must be `<name>.npy` of a LeNet weight; its declared size, its .npy header
    (shape and dtype float32) and its data length are checked before anything is allocated,
    so a compression bomb or a header declaring a huge shape is a DataError naming `source`,
    never a MemoryError."""
    expected = {f"{name}.npy": name for name in LENET_SHAPES}
    out: Dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
            names = [info.filename for info in infos]
            if sorted(names) != sorted(expected):
                raise DataError(f"{source}: members {sorted(names)[:12]} are not the eight LeNet weights "
                                f"{sorted(expected)}")
            for info in infos:
                name = expected[info.filename]
                shape = LENET_SHAPES[name]
                nbytes = 4 * int(np.prod(shape))
                limit = nbytes + _NPY_HEADER_ROOM
                if info.file_size > limit:
                    raise DataError(f"{source}: member {info.filename} declares {info.file_size} bytes, more than "
                                    f"the {limit} a {shape} float32 array takes")
                with archive.open(info) as handle:
                    raw = handle.read(limit + 1)
                if len(raw) > limit:
                    raise DataError(f"{source}: member {info.filename} holds more than {limit} bytes")
                buf = io.BytesIO(raw)
                version = np.lib.format.read_magic(buf)
                if version == (1, 0):
                    got_shape, fortran, dtype = np.lib.format.read_array_header_1_0(buf)
                elif version == (2, 0):
                    got_shape, fortran, dtype = np.lib.format.read_array_header_2_0(buf)
                else:
                    raise DataError(f"{source}: member {info.filename} has .npy format {version}")
                if dtype != np.dtype("<f4") or fortran or tuple(got_shape) != shape:
                    raise DataError(f"{source}: {name} is {dtype} {tuple(got_shape)}"
                                    f"{' (Fortran order)' if fortran else ''}; the weights are float32 {shape} "
                                    "(no silent casts)")
                body = raw[buf.tell():]
                if len(body) != nbytes:
                    raise DataError(f"{source}: {name} holds {len(body)} bytes of data, expected {nbytes}")
                out[name] = np.frombuffer(body, dtype=np.float32).reshape(shape).copy()
    except DataError:
        raise
    except (OSError, ValueError, KeyError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile,
            zlib.error) as exc:
        raise DataError(f"{source}: unreadable weights ({type(exc).__name__}: {exc})") from None
    return out


def committed_lenet_path() -> Path:
    """refit_core/assets/lenet_weights.npz (its manifest: lenet_weights.json beside it)."""
    from ...models.assets import ASSETS_DIR, LENET_WEIGHTS
    return ASSETS_DIR / LENET_WEIGHTS


def committed_lenet() -> TrainedWeights:
    """The committed LeNet weights, checked against their manifest (file sha256 and size, then
    the arrays' names, shapes, dtype and content hash). AssetError naming the file otherwise;
    never retrained. numpy and the standard library only."""
    from ...models.assets import read_asset
    path = committed_lenet_path()
    data, meta = read_asset(path)
    try:
        weights = parse_weights_npz(data, str(path))
        check_weight_shapes(weights, source=str(path))
    except DataError as exc:
        raise AssetError(str(exc)) from None
    got = weights_sha256(weights)
    if got != meta.get("weights_sha256"):
        raise AssetError(f"{path}: arrays hash to {got}, its manifest records weights_sha256 "
                        f"{meta.get('weights_sha256')!r}")
    return TrainedWeights(weights=weights, metadata=meta)


