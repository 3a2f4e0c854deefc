"""MNIST reader for the four IDX files, gzip-compressed or raw.

The refit sample trains on MNIST and checks the refitted engine against it, so the data is
read strictly: every header is checked against the bytes that are really there, and every
problem is a DataError that names the file. Files are read bounded (a gzip bomb stops where the
IDX header says the data ends), and a SHA256SUMS beside them is checked. Nothing is ever
downloaded unless asked: `python -m refit_core fetch-mnist DIR` (fetch_mnist) does that.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import struct
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...config import DATA_DIR_ENV
from ...errors import DataError
from ...fileio import atomic_write_bytes, atomic_write_text, read_bytes_nofollow, sha256_bytes

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

# The published gzip files' sha256 (torchvision's mirror and yann.lecun.com serve the same bytes).
MNIST_SHA256: Dict[str, str] = {
    "train-images-idx3-ubyte.gz": "db8f937d487057fb14a9f0fbe97f0bc8d311ab41b750d41e1ff37c43b9e55e19",
    "train-labels-idx1-ubyte.gz": "ec02e7948609e5754d47881c09b8afdd8dfa60600b9e5388c8c54a67069ec772",
    "t10k-images-idx3-ubyte.gz": "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b",
    "t10k-labels-idx1-ubyte.gz": "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c",
}
# torchvision's mirror list, in its order of preference.
MNIST_MIRRORS: Tuple[str, ...] = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
                                  "http://yann.lecun.com/exdb/mnist/")
# Mirrors to use instead (comma-separated base URLs), e.g. a local copy.
MIRRORS_ENV = "REFIT_MNIST_MIRRORS"
#: how fetch_mnist's error begins when no mirror answers (offline)
NO_MIRROR_REACHABLE = "cannot download MNIST: no mirror reachable"
SUMS_FILE = "SHA256SUMS"

# The largest MNIST file is 47,040,016 bytes decompressed: nothing read here may exceed this.
MAX_IDX_BYTES = 64 << 20
MAX_SUMS_BYTES = 64 << 10
_DOWNLOAD_TIMEOUT_S = 30

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
            "or fetch them with `python -m refit_core fetch-mnist DIR`)")
    return found


def read_sums(directory: Path) -> Dict[str, str]:
    """{file name: sha256} from directory/SHA256SUMS ({} when there is none); DataError naming it
    when it is not a sha256sum listing."""
    path = directory / SUMS_FILE
    try:
        raw = read_bytes_nofollow(path, MAX_SUMS_BYTES)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    sums: Dict[str, str] = {}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file of sha256 sums") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line.rstrip("\r"))
        if match is None:
            raise DataError(f"{path}: line {number} is not '<sha256>  <file name>'")
        sums[match.group(2)] = match.group(1).lower()
    return sums


def _take(inflater: "zlib._Decompress", pending: List[bytes], n: int) -> bytes:
    """Up to n more decompressed bytes (pending[0] holds the input not yet consumed)."""
    out = []
    got = 0
    while got < n:
        chunk = inflater.decompress(pending[0], n - got)
        pending[0] = inflater.unconsumed_tail
        if chunk:
            out.append(chunk)
            got += len(chunk)
        elif not pending[0] or inflater.eof:
            break
    return b"".join(out)


def gunzip_idx(raw: bytes, source: str) -> bytes:
    """Decompress a gzipped IDX file, never beyond what its header declares (+1 byte, so that
    trailing data is still seen) nor beyond MAX_IDX_BYTES: a gzip bomb is a DataError."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending = [raw]
    try:
        head = _take(inflater, pending, 4)
        if len(head) < 4:
            return head
        ndim = head[3]
        dims_raw = _take(inflater, pending, 4 * ndim)
        head += dims_raw
        if len(dims_raw) < 4 * ndim:
            return head
        size = 1  # Python ints: a header of 2^31 x 2^31 x 28 must not overflow
        for d in struct.unpack(f">{ndim}I", dims_raw):
            size *= d
        if len(head) + size > MAX_IDX_BYTES:
            raise DataError(f"{source}: the IDX header declares {size} bytes of data, more than an MNIST file "
                            f"holds ({MAX_IDX_BYTES} bytes at most); refusing to decompress it")
        body = _take(inflater, pending, size + 1)
    except zlib.error as exc:
        raise DataError(f"{source}: not a valid gzip stream ({exc})") from None
    if len(body) > size:
        raise DataError(f"{source}: the gzip stream holds more than the {size} bytes of data the IDX header "
                        "declares (trailing bytes); stopped decompressing there")
    if len(body) < size and not inflater.eof:
        raise DataError(f"{source}: gzip stream is truncated ({len(body)} of {size} data bytes)")
    return head + body


def _read_decompressed(path: Path) -> bytes:
    """The file's bytes (bounded), checked against SHA256SUMS beside it when that lists the file,
    gunzipped when the name ends in .gz; errors name the file."""
    try:
        raw = read_bytes_nofollow(path, MAX_IDX_BYTES)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    expected = read_sums(path.parent).get(path.name)
    if expected is not None:
        got = sha256_bytes(raw)
        if got != expected:
            raise DataError(f"{path}: sha256 {got} differs from {expected} listed in {path.parent / SUMS_FILE}: "
                            "not the file its name says (renamed, replaced or damaged)")
    if path.suffix == ".gz":
        return gunzip_idx(raw, str(path))
    return raw


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
    """sha256 and md5 of a file's decompressed bytes (read bounded); mtime/size are the cache key."""
    data = _read_decompressed(Path(path))
    return hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest()


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


def mirrors() -> Tuple[str, ...]:
    """The base URLs fetch_mnist tries in order: $REFIT_MNIST_MIRRORS (comma-separated) or MNIST_MIRRORS."""
    chosen = os.environ.get(MIRRORS_ENV, "").strip()
    if not chosen:
        return MNIST_MIRRORS
    return tuple(u.strip() if u.strip().endswith("/") else u.strip() + "/" for u in chosen.split(",") if u.strip())


def _file_ok(path: Path, sha256: str) -> bool:
    try:
        return sha256_bytes(read_bytes_nofollow(path, MAX_IDX_BYTES)) == sha256
    except OSError:
        return False


def _download(url: str, name: str, say: Callable[[str], None]) -> bytes:
    """The bytes at `url` (at most MAX_IDX_BYTES), with a progress line every ~25%."""
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0)
        if total > MAX_IDX_BYTES:
            raise DataError(f"{url}: {total} bytes offered, more than an MNIST file holds")
        chunks: List[bytes] = []
        got, next_report = 0, 0.25
        while True:
            chunk = response.read(_CHUNK)
            if not chunk:
                break
            got += len(chunk)
            if got > MAX_IDX_BYTES:
                raise DataError(f"{url}: more than {MAX_IDX_BYTES} bytes, more than an MNIST file holds")
            chunks.append(chunk)
            if total and got / total >= next_report and got < total:
                say(f"  {name}: {100 * got // total}% of {total / 1e6:.1f} MB")
                next_report += 0.25
    return b"".join(chunks)


def offline_advice(dest: Path, bases: Sequence[str]) -> str:
    names = ", ".join(MNIST_SHA256)
    return (f"download these four files by hand from {' or '.join(bases)}: {names}, and place them in {dest} "
            f"(their sha256 are in refit_core/samples/mnist/data.py, MNIST_SHA256); or set {DATA_DIR_ENV} to a folder "
            "holding a copy")


def fetch_mnist(dest: PathLike, progress: Callable[[str], None] = print) -> Path:
    """Download the four MNIST files into `dest` (standard library only), verify each against
    MNIST_SHA256, write each atomically and SHA256SUMS beside them; files already there and
    correct are kept. Mirrors: mirrors(), tried in order for each file.

    Raises DataError: one line naming the file when every mirror served wrong bytes, or saying
    what to do by hand when no mirror can be reached."""
    target = Path(dest).expanduser()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{target}: cannot create the folder ({exc})") from None
    bases = mirrors()
    for name, sha in MNIST_SHA256.items():
        path = target / name
        if _file_ok(path, sha):
            progress(f"{name}: already in {target}, sha256 ok")
            continue
        problems: List[str] = []
        reached = False
        for base in bases:
            url = base + name
            progress(f"{name}: downloading {url}")
            try:
                data = _download(url, name, progress)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                if isinstance(exc, urllib.error.HTTPError):
                    reached = True
                reason = getattr(exc, "reason", exc)
                problems.append(f"{url}: {reason}")
                continue
            reached = True
            got = sha256_bytes(data)
            if got != sha:
                problems.append(f"{url}: sha256 {got}, expected {sha}")
                progress(f"{name}: refused from {base} (sha256 {got}, expected {sha}); trying the next mirror")
                continue
            atomic_write_bytes(path, data)
            progress(f"{name}: {len(data) / 1e6:.1f} MB, sha256 ok")
            break
        else:
            if not reached:
                raise DataError(f"{NO_MIRROR_REACHABLE} ({'; '.join(problems)}); "
                                + offline_advice(target, bases))
            raise DataError(f"{name}: refused, no mirror served the expected bytes ({'; '.join(problems)}); "
                            + offline_advice(target, bases))
    atomic_write_text(target / SUMS_FILE, "".join(f"{sha}  {name}\n" for name, sha in sorted(MNIST_SHA256.items())))
    progress(f"MNIST is in {target} (sha256 verified, listed in {SUMS_FILE}); use it with {DATA_DIR_ENV}={target}")
    return target
