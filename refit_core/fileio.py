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
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union

from .errors import CacheIntegrityError

try:  # POSIX advisory locks; without them callers rely on their own checks alone
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

PathLike = Union[str, "os.PathLike[str]"]

_CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of a bytes object."""
    return hashlib.sha256(data).hexdigest()


def sha256_chunks(chunks: Iterable[bytes]) -> str:
    """Hex sha256 of the concatenation of `chunks` (for structured content hashed piece by piece)."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def hash_file(path: PathLike, algorithm: str = "sha256") -> str:
    """Hex digest (hashlib `algorithm`) of a file's content, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: PathLike) -> str:
    """Hex sha256 of a file's content, read in chunks."""
    return hash_file(path, "sha256")


def md5_file(path: PathLike) -> str:
    """Hex MD5 of a file's content (only for checksums others pin, e.g. bidaf-9's download)."""
    return hash_file(path, "md5")


class NotARegularFile(OSError):
    """`path` is a FIFO, device, socket or directory: never read (a FIFO would block forever)."""


class FileTooLarge(OSError):
    """`path` holds more bytes than the reader allows."""


def read_bytes_nofollow(path: PathLike, max_bytes: Optional[int] = None) -> bytes:
    """A regular file's bytes, at most `max_bytes` of them.

    Refuses (OSError subclasses) a symlink at `path`, anything but a regular file (opened
    non-blocking, so a FIFO never hangs the reader: NotARegularFile) and a file larger than
    `max_bytes` (FileTooLarge, also when it grows while being read).
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    fd = os.open(str(path), flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(f"{path} is not a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise FileTooLarge(f"{path} has {info.st_size} bytes, more than the {max_bytes} allowed")
        chunks = []
        total = 0
        while True:
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                break
            total += len(chunk)
            if max_bytes is not None and total > max_bytes:
                raise FileTooLarge(f"{path} has more than the {max_bytes} bytes allowed")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class DuplicateKeyError(ValueError):
    """A JSON object names one key twice (json would silently keep the last)."""


def _no_duplicates(pairs: list) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (only finite numbers are)")


def loads_json_strict(text: Union[str, bytes]) -> Any:
    """Parse JSON strictly: duplicate keys, NaN/Infinity and nesting too deep for the parser
    raise ValueError (DuplicateKeyError for the first); never RecursionError."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def read_json_strict(path: PathLike, max_bytes: int = 64 << 20) -> Any:
    """`loads_json_strict` of a regular file of at most `max_bytes` (see read_bytes_nofollow).

    Raises OSError subclasses for the file (missing, symlink, not regular, too large) and
    ValueError for the content; callers turn either into their own error naming `path`.
    """
    return loads_json_strict(read_bytes_nofollow(path, max_bytes))


def read_verified(path: PathLike, size: Optional[int], sha256: Optional[str]) -> bytes:
    """The bytes of `path` if they have exactly `size` bytes and this `sha256`.

    Raises CacheIntegrityError naming the file and the problem (missing, a symlink, another
    size, another hash); the bytes are read once, so what was checked is what is returned.
    """
    if not isinstance(size, int) or isinstance(size, bool) or not isinstance(sha256, str):
        raise CacheIntegrityError(f"{path}: no valid size/sha256 recorded for it "
                                  f"(size={size!r}, sha256={sha256!r})")
    if os.path.islink(str(path)):
        raise CacheIntegrityError(f"{path}: is a symlink; cache files must be regular files")
    try:
        data = read_bytes_nofollow(path)
    except FileNotFoundError as exc:
        raise CacheIntegrityError(f"{path}: missing") from exc
    except OSError as exc:
        raise CacheIntegrityError(f"{path}: unreadable ({exc})") from exc
    if len(data) != size:
        raise CacheIntegrityError(f"{path}: {len(data)} bytes, expected {size} (truncated or replaced)")
    got = sha256_bytes(data)
    if got != sha256:
        raise CacheIntegrityError(f"{path}: sha256 {got}, expected {sha256} (corrupt or replaced)")
    return data


def plain_member(directory: PathLike, name: Any) -> Path:
    """`directory / name` for a plain file name recorded in a manifest.

    Refuses (CacheIntegrityError) anything but a bare name: absolute paths, separators,
    '.', '..', and a name that is a symlink in `directory` (which could lead out of it).
    """
    where = Path(directory)
    if (not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name
            or "\0" in name or os.path.isabs(name)):
        raise CacheIntegrityError(f"{where}: manifest names {name!r}, which is not a plain file name "
                                  "inside the directory")
    member = where / name
    if os.path.islink(str(member)):
        raise CacheIntegrityError(f"{member}: is a symlink; a manifest may only name regular files "
                                  "inside its directory")
    return member


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


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


#: a temp file or directory of a writer that is still alive is younger than this; older ones,
#: and those whose writer's process is gone, are debris of a killed writer
STALE_TEMP_SECONDS = 300.0
# ".<target name>.<writer pid>.<random>.tmp": the name says which process writes it
_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]+\.tmp$")


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, but belongs to someone else
        return True
    return True


def clear_stale_temp_files(directory: PathLike, max_age_s: float = STALE_TEMP_SECONDS) -> int:
    """Remove the temp files and directories that killed writers left in `directory`.

    A temp entry (`.<name>.<pid>.<random>.tmp`, as atomic_write_with and atomic_directory make
    them) is removed when its writer's process is gone or it is older than `max_age_s`; a
    hidden `.tmp` entry without a pid only when older. Symlinks are removed, never followed.
    Returns how many entries were removed; errors (a concurrent remover) are ignored."""
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(str(directory)))
    except OSError:
        return 0
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        match = _TEMP_NAME.match(name)
        dead = match is not None and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1)))
        if not dead and now - info.st_mtime < max_age_s:
            continue
        try:
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed += 1
        except OSError:
            continue
    return removed


def atomic_write_with(path: PathLike, write: Callable[[Any], None], binary: bool = True) -> Path:
    """Write `path` atomically: `write(handle)` fills a fresh temp file beside it, which then
    replaces `path`. On any error the temp file is removed and `path` is left as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp opens with O_CREAT | O_EXCL and a random name: an existing file or symlink at
    # that name makes it pick another, it never writes through one.
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=str(target.parent))
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the result gets the usual mode
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
def file_lock(path: PathLike, exclusive: bool = True) -> Iterator[bool]:
    """Hold an advisory lock (flock) on the lock file `path` while the block runs.

    Yields True when the lock is held, False when none could be had (no fcntl, a read-only
    directory without the lock file, or a symlink planted at `path`: it is never followed).
    Callers must stay correct without the lock (check what they read); the lock only
    spares them the races it serializes.
    """
    if fcntl is None:  # pragma: no cover - Windows
        yield False
        return
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    fd = None
    for flags in (os.O_RDWR | os.O_CREAT | nofollow, os.O_RDONLY | nofollow):
        try:
            fd = os.open(str(path), flags, 0o644)
            break
        except OSError:
            continue
    if fd is None:
        yield False
        return
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            yield False
            return
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def lock_path_for(path: PathLike) -> Path:
    """The lock file that guards `path`: ``.<name>.lock`` beside it (not inside a directory)."""
    target = Path(path)
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def atomic_directory(path: PathLike, lock: bool = False) -> Iterator[Path]:
    """Build a directory in a temp directory beside `path`, then rename it into place.

    Yields the temp directory to fill. On success it replaces `path` (an older `path` is
    moved aside and removed); on error the temp directory is removed and `path` is left
    as it was. If another writer put a complete `path` in place meanwhile, that one is
    replaced by ours: both were built from the same inputs. With `lock`, the swap holds
    :func:`lock_path_for` exclusively, so readers that hold it shared never see the gap.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".tmp", dir=str(target.parent)))
    try:
        yield tmp
        _fsync_dir(tmp)
        guard = file_lock(lock_path_for(target), exclusive=True) if lock else contextlib.nullcontext()
        with guard:
            for attempt in range(20):
                try:
                    os.replace(tmp, target)  # works when target is absent (or an empty directory)
                    break
                except OSError:
                    if attempt == 19:
                        raise
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=str(target.parent)))
                os.rmdir(old)
                try:
                    os.replace(target, old)
                except FileNotFoundError:
                    continue  # another writer's rename raced ours away: try again
                try:
                    os.replace(tmp, target)
                    break
                except OSError:
                    continue  # another writer got in between: move theirs aside too
                finally:
                    shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
