"""Small MNIST-shaped IDX files for the tests (the package only reads IDX)."""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import Optional, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]


def write_idx(path: PathLike, array: np.ndarray, compress: Optional[bool] = None) -> Path:
    """Write a uint8 array as an IDX file (gzip when compress or the name ends in .gz)."""
    p = Path(path)
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    if arr.ndim < 1 or arr.ndim > 255:
        raise ValueError("IDX needs 1..255 dimensions")
    payload = struct.pack(">i", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload += arr.tobytes()
    if compress is None:
        compress = p.suffix == ".gz"
    p.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        # mtime=0 keeps the compressed bytes reproducible.
        with open(p, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
            fh.write(payload)
    else:
        p.write_bytes(payload)
    return p
