"""The caches beside the plans, on disk: built plans (PlanCache) and TensorRT timing caches
(TimingCacheStore), named by plan_cache_key. Plans are per GPU, per TensorRT version and per
build option (engine.plan_key_parts says what a plan is keyed on)."""
from __future__ import annotations

import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .. import fileio
from ..errors import CacheIntegrityError, EngineCacheWarning
from ..fileio import sha256_bytes
from . import compat

_KEY_CHARS = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")
_PLAN_CACHE_FORMAT = 2


def plan_cache_key(parts: Dict[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return sha256_bytes(blob)[:24]


#: a plan larger than this is not one of ours (the suite's largest are tens of MB)
MAX_PLAN_BYTES = 2 << 30
#: a sidecar is a few hundred bytes
MAX_SIDECAR_BYTES = 1 << 20


class _TrtVersioned:
    """The TensorRT version a store keys on: the one given, else the installed one (asked once)."""

    _trt_version: Optional[str] = None

    @property
    def trt_version(self) -> str:
        if self._trt_version is None:
            self._trt_version = compat.trt_version_string()
        return self._trt_version


class PlanCache(_TrtVersioned):
    """Plans on disk (``<key>.plan``) with a JSON sidecar (``<key>.json``: TensorRT version,
    key, size and sha256 of the plan).

    A plan is handed to TensorRT only after its bytes match the sidecar: a truncated, corrupt,
    swapped or foreign file, a symlink, or one from another TensorRT version is refused with
    an EngineCacheWarning naming it (the caller rebuilds), never loaded and never a crash.
    Both files are written atomically (fileio: unique temp names, O_EXCL, rename), and
    writers and readers of one key take a lock (``.<key>.lock``, flock) so that a reader
    never pairs one writer's plan with another's sidecar; where the lock cannot be had (a
    read-only cache, a planted symlink) the sha256 check alone still refuses any mismatch.

    Any damage is "rebuild", never a hang or a MemoryError: files are read non-blocking (a
    FIFO is refused) and bounded (the sidecar to MAX_SIDECAR_BYTES, strict JSON; the plan to
    the size its sidecar records, at most MAX_PLAN_BYTES, checked before reading). Opening the
    cache clears the temp files of writers that were killed mid-write (fileio.clear_stale_temp_files).

    ``trt_version`` None asks refit_core.trt.compat (TensorRT) lazily, on first use; tests
    pass a version string and run without TensorRT.
    """

    def __init__(self, root: Path, trt_version: Optional[str] = None) -> None:
        self.root = Path(root)
        self._trt_version = trt_version
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a read-only parent: every store warns, every load misses
            warnings.warn(f"plan cache directory {self.root} cannot be created ({exc}); "
                          "plans will not be cached", EngineCacheWarning, stacklevel=2)
        else:
            fileio.clear_stale_temp_files(self.root)

    def paths(self, key: str) -> Tuple[Path, Path]:
        if not isinstance(key, str) or not _KEY_CHARS.fullmatch(key):
            raise ValueError(f"plan-cache key {key!r} is not a plain file-name stem "
                             "(letters, digits, '_', '-', '.'; not starting with '.')")
        return self.root / f"{key}.plan", self.root / f"{key}.json"

    def _locked(self, key: str, exclusive: bool) -> Any:
        """Hold ``.<key>.lock`` (fileio.file_lock: flock, never through a symlink)."""
        return fileio.file_lock(self.root / f".{key}.lock", exclusive=exclusive)

    def _problem(self, key: str, plan_path: Path, meta_path: Path) -> Tuple[Optional[bytes], Optional[str]]:
        """(plan, None) for a sound entry, (None, None) when absent, (None, problem) when damaged."""
        plan_exists = os.path.lexists(str(plan_path))
        meta_exists = os.path.lexists(str(meta_path))
        if not plan_exists and not meta_exists:
            return None, None
        if not meta_exists:
            return None, f"its metadata {meta_path.name} is missing"
        try:
            meta = fileio.read_json_strict(meta_path, MAX_SIDECAR_BYTES)
        except (OSError, ValueError) as exc:
            return None, f"its metadata {meta_path.name} is unreadable ({exc})"
        if not isinstance(meta, dict):
            return None, f"its metadata {meta_path.name} is not a JSON object"
        if meta.get("tensorrt_version") != self.trt_version:
            return None, (f"it was built by TensorRT {meta.get('tensorrt_version')}, "
                          f"this is {self.trt_version}")
        if meta.get("key", key) != key:
            return None, f"its metadata belongs to another entry (key {meta.get('key')!r}, not {key!r})"
        if not plan_exists:
            return None, "the plan file is missing (its metadata is there)"
        size = meta.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_PLAN_BYTES:
            return None, f"its metadata records size {size!r}, not a plan size (1 .. {MAX_PLAN_BYTES} bytes)"
        try:
            actual = os.lstat(str(plan_path)).st_size
        except OSError as exc:
            return None, f"the plan file cannot be examined ({exc})"
        if actual != size:
            return None, f"the plan file has {actual} bytes, its metadata records {size} (truncated or replaced)"
        try:
            data = fileio.read_verified(plan_path, meta.get("size"), meta.get("sha256"))
        except CacheIntegrityError as exc:
            return None, str(exc)
        return data, None

    def load(self, key: str) -> Optional[bytes]:
        """The cached plan for ``key``, or None (absent: silently; damaged: with a warning)."""
        plan_path, meta_path = self.paths(key)
        with self._locked(key, exclusive=False):
            data, problem = self._problem(key, plan_path, meta_path)
        if problem:
            warnings.warn(f"cached TensorRT plan {plan_path} is not usable: {problem}; rebuilding",
                          EngineCacheWarning, stacklevel=2)
            return None
        return data

    def store(self, key: str, plan: bytes, extra: Optional[Dict[str, Any]] = None) -> Path:
        """Write plan and sidecar atomically; raises OSError/ValueError/TypeError when it cannot
        (load_or_build turns that into an EngineCacheWarning and keeps the built plan)."""
        plan_path, meta_path = self.paths(key)
        meta = {"tensorrt_version": self.trt_version, "size": len(plan), "key": key,
                "sha256": fileio.sha256_bytes(plan), "format": _PLAN_CACHE_FORMAT,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        meta.update(extra or {})
        # Serialize first: a sidecar that cannot be written must not leave a new plan
        # beside an old sidecar.
        meta_text = json.dumps(meta, indent=1, sort_keys=True, default=str, allow_nan=False) + "\n"
        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked(key, exclusive=True):
            fileio.atomic_write_bytes(plan_path, bytes(plan))
            fileio.atomic_write_text(meta_path, meta_text)
        return plan_path


class TimingCacheStore(_TrtVersioned):
    """Serialized TensorRT timing caches beside the plans, one per TensorRT version, GPU and
    precision (``timing-<key>.cache`` with a JSON sidecar: the key's parts, size, sha256).

    Only builds that are not themselves timed use it (shared_builds). A cache that is missing
    starts empty; one that is damaged, foreign or of another TensorRT version or GPU is ignored
    with an EngineCacheWarning (the build runs without it and rewrites it), never handed to
    TensorRT; one TensorRT itself refuses is likewise built without. Written atomically under
    a lock, like the plans.
    """

    def __init__(self, root: Path, gpu_name: str, trt_version: Optional[str] = None) -> None:
        self.root = Path(root)
        self.gpu_name = str(gpu_name)
        self._trt_version = trt_version

    def key_parts(self, precision: str) -> Dict[str, str]:
        return {"kind": "timing_cache", "tensorrt_version": self.trt_version, "gpu": self.gpu_name,
                "precision": precision}

    def paths(self, precision: str) -> Tuple[Path, Path]:
        key = plan_cache_key(self.key_parts(precision))
        return self.root / f"timing-{key}.cache", self.root / f"timing-{key}.json"

    def _lock(self, blob_path: Path, exclusive: bool) -> Any:
        return fileio.file_lock(self.root / f".{blob_path.name}.lock", exclusive=exclusive)

    def load(self, precision: str) -> Optional[bytes]:
        """The cache's bytes; None when there is none yet, or (with a warning) when it is unusable."""
        blob_path, meta_path = self.paths(precision)
        if not os.path.lexists(str(blob_path)) and not os.path.lexists(str(meta_path)):
            return None
        try:
            with self._lock(blob_path, exclusive=False):
                meta = fileio.loads_json_strict(fileio.read_bytes_nofollow(meta_path, 1 << 16))
                if not isinstance(meta, dict):
                    raise ValueError(f"{meta_path.name} is not a JSON object")
                if meta.get("key_parts") != self.key_parts(precision):
                    raise ValueError(f"{meta_path.name} belongs to another cache ({meta.get('key_parts')!r})")
                return fileio.read_verified(blob_path, meta.get("size"), meta.get("sha256"))
        except (OSError, ValueError, CacheIntegrityError) as exc:
            warnings.warn(f"timing cache {blob_path} is not usable ({exc}); building without it",
                          EngineCacheWarning, stacklevel=2)
            return None

    def store(self, precision: str, blob: bytes) -> None:
        """Keep `blob` as the precision's cache; one that cannot be written only warns."""
        blob_path, meta_path = self.paths(precision)
        meta = {"key_parts": self.key_parts(precision), "size": len(blob), "sha256": fileio.sha256_bytes(blob)}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with self._lock(blob_path, exclusive=True):
                fileio.atomic_write_bytes(blob_path, bytes(blob))
                fileio.atomic_write_text(meta_path, json.dumps(meta, indent=1, sort_keys=True) + "\n")
        except OSError as exc:
            warnings.warn(f"timing cache {blob_path} could not be written ({exc}); the next build "
                          "starts without it", EngineCacheWarning, stacklevel=2)
