"""Committed model assets (refit_core/assets/): each file with a JSON manifest beside it.

A manifest records the file's name, size and sha256, and how the file was made (recipe,
data fingerprint, tool command, versions). Every load reads the file once, bounded, and
checks it against its manifest: a damaged or replaced asset is a AssetError naming the file,
never silently remade. Standard library only (the GPU kit reads these without PyTorch).

Refreshing an asset is deliberate: `python -m tools.train_lenet --update-asset` and
`python -m tools.zoo_export --update-asset` (a checkout, not installed) write the file and its manifest atomically.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Dict, Tuple

from ..errors import AssetError, CacheIntegrityError
from ..fileio import (atomic_write_bytes, atomic_write_json, read_json_strict, read_verified, sha256_bytes,
                      sha256_file)

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"

#: every committed asset stays under this many bytes (what travels to the GPU machine is limited)
MAX_ASSET_BYTES = 5 * 1000 * 1000
#: a manifest is a few kilobytes; anything larger is not one
MAX_MANIFEST_BYTES = 1 << 20

LENET_WEIGHTS = "lenet_weights.npz"


def manifest_path(asset: Path) -> Path:
    """`lenet_weights.npz` -> `lenet_weights.json` beside it."""
    return asset.with_suffix(".json")


def zoo_asset(name: str) -> Path:
    """The committed ONNX file of zoo model `name`."""
    return ASSETS_DIR / f"zoo-{name}.onnx"


def read_manifest(asset: Path) -> Dict[str, Any]:
    """The manifest of `asset` (strict JSON object naming the file); AssetError naming the manifest."""
    path = manifest_path(asset)
    try:
        meta = read_json_strict(path, MAX_MANIFEST_BYTES)
    except FileNotFoundError:
        raise AssetError(f"{path}: manifest of the committed asset {asset.name} is missing") from None
    except (OSError, ValueError) as exc:
        raise AssetError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(meta, dict):
        raise AssetError(f"{path}: manifest is not a JSON object")
    if meta.get("file") != asset.name:
        raise AssetError(f"{path}: manifest names file {meta.get('file')!r}, not {asset.name!r}")
    return meta


def read_asset(asset: Path) -> Tuple[bytes, Dict[str, Any]]:
    """(bytes, manifest) of a committed asset whose size and sha256 match its manifest.

    Raises AssetError naming the file: missing, not a regular file, another size or hash."""
    meta = read_manifest(asset)
    size = meta.get("size_bytes")
    if isinstance(size, int) and not isinstance(size, bool) and size > MAX_ASSET_BYTES:
        raise AssetError(f"{manifest_path(asset)}: size_bytes {size} is over the {MAX_ASSET_BYTES}-byte asset cap")
    try:
        data = read_verified(asset, size, meta.get("sha256"))
    except CacheIntegrityError as exc:
        raise AssetError(f"committed asset damaged: {exc}; restore it (git checkout -- {asset.name}) or remake it "
                        "on purpose with the tool its manifest names") from None
    return data, meta


def _stamp(path: Path) -> Tuple[str, int, int, int]:
    st = os.stat(str(path))
    return str(Path(path).resolve()), st.st_ino, st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=64)
def _asset_sha256(stamp: Tuple[str, int, int, int], manifest_stamp: Tuple[str, int, int, int]) -> str:
    data, _ = read_asset(Path(stamp[0]))
    return sha256_bytes(data)


def asset_sha256(asset: Path) -> str:
    """The sha256 of a committed asset's bytes, verified against its manifest (cached while
    neither file changes)."""
    try:
        stamps = _stamp(asset), _stamp(manifest_path(asset))
    except OSError:
        read_asset(asset)  # raises the AssetError naming what is missing
        raise
    return _asset_sha256(*stamps)


@functools.lru_cache(maxsize=64)
def _file_sha256(stamp: Tuple[str, int, int, int]) -> str:
    return sha256_file(stamp[0])


def file_sha256(path: Path) -> str:
    """sha256 of any file's bytes (cached while the file's inode, size and mtime stay)."""
    try:
        return _file_sha256(_stamp(path))
    except OSError as exc:
        raise AssetError(f"{path}: cannot read it to hash ({exc})") from None


def write_asset(asset: Path, data: bytes, manifest: Dict[str, Any]) -> Dict[str, Any]:
    """Write `data` and its manifest (size and sha256 added) atomically; returns the manifest."""
    if len(data) > MAX_ASSET_BYTES:
        raise AssetError(f"{asset}: {len(data)} bytes, over the {MAX_ASSET_BYTES}-byte asset cap")
    meta = dict(manifest, file=asset.name, size_bytes=len(data), sha256=sha256_bytes(data))
    atomic_write_bytes(asset, data)
    atomic_write_json(manifest_path(asset), meta, indent=2)
    return meta
