"""Prepared BiDAF models on disk: loading them with every file checked against the manifest,
and a cache of prepared models keyed by the source model's sha256.

`prepare_bidaf` (samples.bidaf.prepare) writes a prepared directory whole (built beside it, renamed
into place) with a manifest holding the sha256 and size of every file; `load_prepared` checks
each, and `prepare_cached` warns about a damaged or foreign entry and prepares it again.
"""
from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Union

import numpy as np

from ...errors import CacheIntegrityError, DataError, PreparedModelCacheWarning
from ...fileio import clear_stale_temp_files, file_lock, lock_path_for, plain_member, read_json_strict, read_verified, sha256_file
from .category_map import CategoryMap
from .prepare import MANIFEST_NAME, PREPARED_DIR_PREFIX, PreparedBidaf, _MANIFEST_FORMAT, prepare_bidaf

__all__ = ["load_prepared", "prepare_cached", "prepared_cache_dir"]


_MAX_MANIFEST_BYTES = 1 << 20  # a manifest lists a handful of files


def _read_manifest(out_dir: Path) -> Dict[str, Any]:
    manifest_path = out_dir / MANIFEST_NAME
    if not os.path.lexists(str(manifest_path)):
        raise CacheIntegrityError(f"{str(out_dir)!r} holds no prepared BiDAF ({MANIFEST_NAME} missing): "
                                  f"run prepare_bidaf first")
    try:
        manifest = read_json_strict(manifest_path, _MAX_MANIFEST_BYTES)
    except (OSError, ValueError) as exc:
        raise CacheIntegrityError(f"{str(manifest_path)!r} is not a prepared-BiDAF manifest: {exc}") from exc
    if not isinstance(manifest, dict):
        raise CacheIntegrityError(f"{str(manifest_path)!r} is not a prepared-BiDAF manifest: "
                                  f"a JSON {type(manifest).__name__}, not an object")
    if manifest.get("format") != _MANIFEST_FORMAT:
        raise CacheIntegrityError(f"{str(manifest_path)!r}: manifest format {manifest.get('format')!r}, "
                                  f"need {_MANIFEST_FORMAT} (with sha256 and size of every file); prepare again")
    return manifest


def _load_once(out_dir: Path) -> PreparedBidaf:
    manifest = _read_manifest(out_dir)
    manifest_path = out_dir / MANIFEST_NAME
    try:
        model_name = manifest["model"]
        map_files: Mapping[str, str] = dict(manifest["maps"])
        weight_files: Mapping[str, str] = dict(manifest["refit_weights"])
        input_names = {str(k): str(v) for k, v in dict(manifest["input_names"]).items()}
        sha = str(manifest["source_sha256"])
        listed: Mapping[str, Any] = dict(manifest["files"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CacheIntegrityError(f"{str(manifest_path)!r} is not a prepared-BiDAF manifest: "
                                  f"{type(exc).__name__} {exc}") from exc
    for name in [model_name, *map_files.values(), *weight_files.values()]:
        plain_member(out_dir, name)
        if name not in listed:
            raise CacheIntegrityError(f"{str(out_dir)!r}: {name!r} is used but not listed with a sha256 "
                                      f"in {MANIFEST_NAME}")
    blobs: Dict[str, bytes] = {}
    for name, entry in listed.items():
        member = plain_member(out_dir, name)
        if not isinstance(entry, dict):
            raise CacheIntegrityError(f"{str(manifest_path)!r}: entry for {name!r} is not an object")
        try:
            blobs[name] = read_verified(member, entry.get("size"), entry.get("sha256"))
        except CacheIntegrityError as exc:
            raise CacheIntegrityError(f"prepared BiDAF in {str(out_dir)!r} is damaged: {exc}") from None
    try:
        maps = {name: CategoryMap.from_json(blobs[f].decode("utf-8")) for name, f in map_files.items()}
        weights = {name: np.load(io.BytesIO(blobs[f]), allow_pickle=False) for name, f in weight_files.items()}
    except (DataError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise CacheIntegrityError(f"prepared BiDAF in {str(out_dir)!r} holds an unreadable table or "
                                  f"weight: {exc}") from exc
    return PreparedBidaf(model_path=out_dir / model_name, maps=maps, refit_weights=weights,
                         input_names=input_names, source_sha256=sha)


def load_prepared(out_dir: Path) -> PreparedBidaf:
    """Read back what :func:`prepare_bidaf` wrote to ``out_dir``, checking every file.

    Every file the manifest lists must be a regular file directly in ``out_dir`` with the
    recorded size and sha256. Raises CacheIntegrityError (a DataError) naming the directory,
    the file and the problem. Reads hold ``.<dir>.lock`` shared, so a concurrent
    prepare_bidaf's swap is never seen half-done; without the lock (read-only cache), a
    failed check is retried a few times before it is believed.
    """
    out_dir = Path(out_dir)
    attempts = 4
    for attempt in range(attempts):
        with file_lock(lock_path_for(out_dir), exclusive=False) as locked:
            try:
                return _load_once(out_dir)
            except CacheIntegrityError:
                if locked or attempt == attempts - 1:
                    raise
        time.sleep(0.02 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def prepared_cache_dir(model_path: Union[str, Path], cache_root: Union[str, Path]) -> Path:
    """The directory prepare_cached uses for this source model (by its sha256)."""
    return Path(cache_root) / f"{PREPARED_DIR_PREFIX}{sha256_file(model_path)[:16]}"


_SCRATCH: List[str] = []


def _remove_scratch() -> None:
    for path in _SCRATCH:
        shutil.rmtree(path, ignore_errors=True)


def prepare_cached(model_path: Union[str, Path], cache_root: Union[str, Path]) -> PreparedBidaf:
    """Prepare ``model_path`` once per content: ``<cache_root>/bidaf-prepared-<sha256[:16]>``.

    A sound entry for this very model is loaded. A damaged, incomplete or foreign one (any
    CacheIntegrityError, or a manifest naming another source model) is named in a
    PreparedModelCacheWarning and prepared again. Any other error (a bug, a bad source
    model) propagates. When the cache cannot be written, the model is prepared in a private
    temp directory (removed at exit) with a warning.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise DataError(f"ONNX model {str(model_path)!r} does not exist")
    sha = sha256_file(model_path)
    out_dir = Path(cache_root) / f"{PREPARED_DIR_PREFIX}{sha[:16]}"
    clear_stale_temp_files(cache_root)
    if os.path.lexists(str(out_dir)):
        problem = None
        try:
            prepared = load_prepared(out_dir)
            if prepared.source_sha256 == sha:
                return prepared
            problem = (f"it was prepared from another model (source sha256 {prepared.source_sha256}, "
                       f"this model is {sha})")
        except CacheIntegrityError as exc:
            problem = str(exc)
        warnings.warn(f"prepared BiDAF cache {out_dir} is not usable: {problem}; preparing it again",
                      PreparedModelCacheWarning, stacklevel=2)
        if os.path.islink(str(out_dir)) or not (out_dir / MANIFEST_NAME).is_file():
            with contextlib.suppress(OSError):  # a symlink, a file or an unmarked dir: move it out of the way
                _remove_entry(out_dir)
    try:
        return prepare_bidaf(model_path, out_dir)
    except OSError as exc:
        scratch = tempfile.mkdtemp(prefix="refit-bidaf-prepared-")
        if not _SCRATCH:
            atexit.register(_remove_scratch)
        _SCRATCH.append(scratch)
        warnings.warn(f"prepared BiDAF cache {out_dir} cannot be written ({exc}); prepared in {scratch} "
                      "instead (removed at exit)", PreparedModelCacheWarning, stacklevel=2)
        return prepare_bidaf(model_path, Path(scratch) / out_dir.name)


def _remove_entry(path: Path) -> None:
    if os.path.islink(str(path)) or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
