"""Atomic writes and file hashing: the one home for both (standard library only).

Every cache and results writer in refit_core goes through these helpers, so a killed or
concurrent writer never leaves a half-written file where a reader looks:

* a file is written to a temp file with a unique name in the target's own directory
  (created with O_EXCL, so a pre-existing path there, a planted symlink included, is never
  followed or overwritten), flushed and fsynced, then renamed over the target with
  `os.replace` (atomic on POSIX within one file system);
* a directory is built in a unique temp directory beside the target and renamed into place;
  a reader sees either no directory or the whole one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a bytes object."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_with(path: PathLike, write: Callable[[Any], None], binary: bool = True) -> Path:
    """Write `path` atomically: `write(handle)` fills a fresh temp file beside it, which then
    replaces `path`. On any error the temp file is removed and `path` is left as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp opens with O_CREAT | O_EXCL and a random name: an existing file or symlink at
    # that name makes it pick another, it never writes through one.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=str(target.parent))
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)
    return target


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    return atomic_write_with(path, lambda h: h.write(data), binary=True)


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write_with(path, lambda h: h.write(text), binary=False)


def atomic_write_json(path: PathLike, data: Any, **dumps_kwargs: Any) -> Path:
    """JSON, strict (NaN/Infinity refused), written atomically."""
    dumps_kwargs.setdefault("indent", 1)
    dumps_kwargs.setdefault("sort_keys", True)
    return atomic_write_text(path, json.dumps(data, allow_nan=False, **dumps_kwargs) + "\n")


@contextlib.contextmanager
def atomic_directory(path: PathLike) -> Iterator[Path]:
    """Build a directory in a temp directory beside `path`, then rename it into place.

    Yields the temp directory to fill. On success it replaces `path` (an older `path` is
    moved aside and removed); on error the temp directory is removed and `path` is left
    as it was. If another writer put a complete `path` in place meanwhile, that one is
    replaced by ours: both were built from the same inputs.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=str(target.parent)))
    try:
        yield tmp
        _fsync_dir(tmp)
        try:
            os.replace(tmp, target)  # works when target is absent (or an empty directory)
        except OSError:
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=str(target.parent)))
            os.rmdir(old)
            try:
                os.replace(target, old)
            except FileNotFoundError:
                pass  # another writer's rename raced ours away
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
