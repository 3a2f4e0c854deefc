"""MNIST reader for the four IDX files, gzip-compressed or raw.

The refit sample trains on MNIST and checks the refitted engine against it, so the data is
read strictly: every header is checked against the bytes that are really there, and every
problem is a DataError that names the file. Nothing is ever downloaded unless asked.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..config import DATA_DIR_ENV
from ..errors import DataError

PathLike = Union[str, "os.PathLike[str]"]

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
IMAGE_SIZE = 28
NUM_CLASSES = 10

# The sample's normalisation (torchvision's usual MNIST mean / std).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

SPLITS = ("train", "test")

# Logical key -> base file name (without .gz), as published at yann.lecun.com.
MNIST_FILES: Dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Sub-folders searched below the data directory (TensorRT's sample-data layout keeps the
# files in <data>/mnist/).
SUBDIRS = ("mnist",)

_CHUNK = 1 << 20


@dataclass
class MnistSplit:
    """One split of MNIST, exactly as stored: images uint8 [N,28,28], labels uint8 [N].

    ``directory`` is the one directory both files were read from.
    """

    images: np.ndarray
    labels: np.ndarray
    directory: Optional[Path] = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def _keys_for(splits: Sequence[str]) -> List[str]:
    keys = []
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"unknown MNIST split {split!r}; expected one of {SPLITS}")
        keys += [f"{split}_images", f"{split}_labels"]
    return keys


def search_dirs(data_dir: PathLike) -> List[Path]:
    """The directories searched for the IDX files, in order of preference."""
    root = Path(data_dir).expanduser()
    return [root] + [root / sub for sub in SUBDIRS]


def find_mnist_files(data_dir: PathLike, splits: Sequence[str] = SPLITS) -> Dict[str, Path]:
    """Locate the IDX files of `splits` in data_dir or its mnist/ sub-folder.

    Returns {"train_images": Path, "train_labels": ..., "test_images": ..., "test_labels": ...}
    (only the keys of the splits asked for). A raw file is preferred over its .gz twin.
    Both files of a split come from one directory: the first searched that holds both.
    Raises DataError naming every missing file and every directory searched, or, when a
    split's two files are only found in different directories, naming where each one is.
    """
    _keys_for(splits)  # validates the split names
    dirs = search_dirs(data_dir)
    found: Dict[str, Path] = {}
    missing: List[str] = []

    def in_dir(directory: Path, key: str) -> Optional[Path]:
        base = MNIST_FILES[key]
        for name in (base, base + ".gz"):
            if (directory / name).is_file():
                return directory / name
        return None

    for split in splits:
        keys = (f"{split}_images", f"{split}_labels")
        chosen = None
        for directory in dirs:
            hits = [in_dir(directory, k) for k in keys]
            if all(h is not None for h in hits):
                chosen = hits
                break
        if chosen is not None:
            found.update(zip(keys, chosen))  # type: ignore[arg-type]
            continue
        where = {k: [str(d) for d in dirs if in_dir(d, k) is not None] for k in keys}
        if all(where.values()):
            raise DataError(
                f"MNIST {split} split: {MNIST_FILES[keys[0]]}[.gz] is in {', '.join(where[keys[0]])} but "
                f"{MNIST_FILES[keys[1]]}[.gz] is in {', '.join(where[keys[1]])}; both files of a split must "
                "come from the same directory (move them together)")
        missing += [f"{MNIST_FILES[k]}[.gz]" for k in keys if not where[k]]
    if missing:
        where = ", ".join(str(d) for d in dirs)
        raise DataError(
            f"MNIST file(s) missing: {', '.join(missing)}; searched: {where} "
            f"(point --data-dir or {DATA_DIR_ENV} at the folder holding the IDX files, "
            "or fetch them explicitly with refit_core.data.mnist.download_mnist)")
    return found


def _read_decompressed(path: Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in .gz; errors name the file."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except EOFError as exc:
        raise DataError(f"{path}: gzip stream is truncated ({exc})") from exc
    except (OSError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc


def parse_idx(data: bytes, expected_magic: int, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes into a uint8 array, checking magic and that the size matches the header."""
    if len(data) < 4:
        raise DataError(f"{source}: too short for an IDX header ({len(data)} bytes)")
    (magic,) = struct.unpack(">i", data[:4])
    if magic != expected_magic:
        kind = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}.get(expected_magic, "IDX")
        raise DataError(
            f"{source}: magic number {magic}, expected {expected_magic} (MNIST {kind} file); "
            "wrong file or not an IDX file")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: truncated header ({len(data)} bytes, need {header})")
    dims = tuple(int(d) for d in struct.unpack(f">{ndim}I", data[4:header]))
    expected = 1
    for d in dims:  # Python ints: a header of 2^31 x 2^31 x 28 must not overflow int64
        expected *= d
    actual = len(data) - header
    if actual < expected:
        raise DataError(
            f"{source}: file is truncated or its header is wrong: header says shape {dims} = "
            f"{expected} bytes of data, only {actual} present")
    if actual > expected:
        raise DataError(
            f"{source}: {actual - expected} unexpected trailing bytes after the "
            f"{tuple(dims)} data the header declares")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_idx(path: PathLike, expected_magic: int) -> np.ndarray:
    """Read one IDX file (raw or .gz) into a uint8 array."""
    p = Path(path)
    return parse_idx(_read_decompressed(p), expected_magic, source=str(p))


def write_idx(path: PathLike, array: np.ndarray, compress: Optional[bool] = None) -> Path:
    """Write a uint8 array as an IDX file (gzip when compress or the name ends in .gz).

    Used to make small MNIST-shaped data sets (tests, subsets for a kit).
    """
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


def load_mnist(data_dir: PathLike, split: str) -> MnistSplit:
    """Load one split ("train" or "test") with all consistency checks."""
    files = find_mnist_files(data_dir, (split,))
    img_path, lbl_path = files[f"{split}_images"], files[f"{split}_labels"]
    images = read_idx(img_path, IMAGES_MAGIC)
    labels = read_idx(lbl_path, LABELS_MAGIC)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(
            f"{img_path}: images are {images.shape[1]}x{images.shape[2]}, "
            f"expected {IMAGE_SIZE}x{IMAGE_SIZE}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"MNIST {split} split: {img_path} holds {images.shape[0]} images but "
            f"{lbl_path} holds {labels.shape[0]} labels")
    if images.shape[0] == 0:
        raise DataError(f"MNIST {split} split in {img_path.parent} is empty: {img_path.name} and "
                        f"{lbl_path.name} declare 0 images")
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise DataError(f"{lbl_path}: label {int(labels.max())} out of range 0..9")
    return MnistSplit(images=images, labels=labels, directory=img_path.parent)


def normalize_images(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 [N,28,28] (or [N,1,28,28]) -> float32 [N,1,28,28], C-contiguous.

    Same arithmetic, in float32, as torchvision's ToTensor + Normalize((0.1307,), (0.3081,)),
    so every consumer (torch, numpy reference, TensorRT) sees bit-identical inputs.
    """
    arr = np.asarray(images_uint8)
    if arr.ndim == 3:
        arr = arr[:, None, :, :]
    if arr.ndim != 4 or arr.shape[1] != 1:
        raise ValueError(f"expected images [N,28,28] or [N,1,28,28], got shape {arr.shape}")
    x = arr.astype(np.float32) / np.float32(255.0)
    x = (x - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)
    return np.ascontiguousarray(x, dtype=np.float32)


@functools.lru_cache(maxsize=32)
def _digest(path: str, mtime_ns: int, size: int) -> Tuple[str, str]:
    """sha256 and md5 of a file's decompressed bytes; mtime/size are the cache key."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    p = Path(path)
    try:
        opener = gzip.open if p.suffix == ".gz" else open
        with opener(p, "rb") as fh:  # type: ignore[operator]
            while True:
                chunk = fh.read(_CHUNK)
                if not chunk:
                    break
                sha.update(chunk)
                md5.update(chunk)
    except EOFError as exc:
        raise DataError(f"{p}: gzip stream is truncated ({exc})") from exc
    except (OSError, zlib.error) as exc:
        raise DataError(f"{p}: cannot read ({exc})") from exc
    return sha.hexdigest(), md5.hexdigest()


def dataset_fingerprint(data_dir: PathLike, splits: Sequence[str] = SPLITS) -> Dict[str, Dict[str, str]]:
    """Checksums of the decompressed bytes of each file, to invalidate weight caches.

    {"train_images": {"file": base name, "sha256": ..., "md5": ...}, ...}. Independent of
    whether a file is gzipped; cached per (resolved path, mtime, size) so repeated calls are free.
    """
    out: Dict[str, Dict[str, str]] = {}
    for key, path in find_mnist_files(data_dir, splits).items():
        resolved = path.resolve()
        st = resolved.stat()
        sha, md5 = _digest(str(resolved), st.st_mtime_ns, st.st_size)
        out[key] = {"file": MNIST_FILES[key], "sha256": sha, "md5": md5}
    return out


def download_mnist(dest: PathLike) -> Path:
    """Download MNIST through torchvision into dest/mnist/ and return that folder.

    Only ever called on explicit request. Raises DataError when torchvision is missing or
    the download fails (e.g. no network).
    """
    try:
        from torchvision.datasets import MNIST  # type: ignore
    except ImportError as exc:
        raise DataError(
            f"cannot download MNIST: torchvision is not installed ({exc}); copy the four IDX "
            f"files into a folder and point --data-dir or {DATA_DIR_ENV} at it") from exc
    root = Path(dest).expanduser()
    target = root / "mnist"
    try:
        for train in (True, False):
            MNIST(root=str(root / "_torchvision"), train=train, download=True)
    except Exception as exc:  # network errors come in many types
        raise DataError(f"downloading MNIST into {root} failed: {exc}") from exc
    raw = root / "_torchvision" / "MNIST" / "raw"
    target.mkdir(parents=True, exist_ok=True)
    for base in MNIST_FILES.values():
        for name in (base + ".gz", base):
            if (raw / name).is_file():
                shutil.copyfile(raw / name, target / name)
                break
        else:
            raise DataError(f"torchvision download did not produce {base}[.gz] in {raw}")
    find_mnist_files(target)  # verify
    return target
