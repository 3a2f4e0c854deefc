"""Export the model zoo (refit_core.models.zoo.ZOO) to ONNX with PyTorch, once, into a cache
and, with --update-asset, replace the committed refit_core/assets/zoo-NAME.onnx files.

    python -m tools.zoo_export [NAME ...] [--cache-dir DIR] [--update-asset]

A cache entry is keyed on its recipe (architecture, sizes, seed, opset, `ZOO_FORMAT`); its
metadata records the torch and torchvision versions that made it and the file's sha256, checked
on every load. A damaged entry, or one made from another recipe, is named in a ZooCacheWarning
and exported again where PyTorch is installed; without PyTorch, `TrainingUnavailable` says what
is missing.

Random initialisation alone gives degenerate models (MobileNetV3-Small with weights=None has
logits of order 1e-9), so the torch side calibrates each model until its outputs are of
order one and vary with the input (tools.zoo_torch); the cases then check that the reference
moves under every perturbation they refit.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from refit_core.config import cache_dir
from refit_core.errors import CacheIntegrityError, RefitCoreError, TrainingUnavailable, ZooCacheWarning
from refit_core.fileio import atomic_directory, clear_stale_temp_files, file_lock, lock_path_for, read_json_strict, read_verified
from refit_core.models.zoo import UPDATE_ASSET_COMMAND, ZOO, ZooModel
from tools.train_lenet import asset_updated

#: Each zoo ONNX file must stay under this (what travels to the GPU machine is limited; committed, see
#: refit_core.models.assets.MAX_ASSET_BYTES).
MAX_ONNX_BYTES = 5 * 1000 * 1000
#: A zoo model's outputs for two random inputs must differ by at least this many output standard
#: deviations (checked at export, tools.zoo_torch). The MobileNet's move by 0.05: global pooling averages random
#: images out, and calibrating its head for more made its TF32 error too large.
MIN_INPUT_DEPENDENCE = 0.02
#: a cache entry's meta.json is a few hundred bytes
MAX_META_BYTES = 1 << 20


def entry_dir(model: ZooModel, cache_root: Path) -> Path:
    return Path(cache_root) / "zoo" / f"{model.name}-{model.recipe_key()}"


def _load(model: ZooModel, directory: Path) -> Path:
    """The entry's ONNX path if the entry is sound; CacheIntegrityError naming what is wrong."""
    meta_path = directory / "meta.json"
    try:
        meta = read_json_strict(meta_path, MAX_META_BYTES)
    except (OSError, ValueError) as exc:
        raise CacheIntegrityError(f"{meta_path}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("recipe") != model.recipe():
        raise CacheIntegrityError(f"{meta_path}: made from another recipe")
    onnx_path = directory / "model.onnx"
    read_verified(onnx_path, meta.get("size"), meta.get("sha256"))  # raises CacheIntegrityError
    return onnx_path


def metadata(model: ZooModel, cache_root: Path) -> Dict[str, Any]:
    """The metadata of a cached entry (torch versions, size, sha256); {} when absent."""
    try:
        meta = read_json_strict(entry_dir(model, cache_root) / "meta.json", MAX_META_BYTES)
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def update_zoo_asset(name: str, cache_root: Path) -> Dict[str, Any]:
    """Replace the committed file of zoo model `name` with the cache's export (exported first where
    absent); returns the new manifest."""
    from refit_core.models.assets import write_asset, zoo_asset
    path = zoo_model_path(name, cache_root, progress=print)
    meta = metadata(ZOO[name], cache_root)
    data = read_verified(path, meta.get("size"), meta.get("sha256"))
    manifest = {k: v for k, v in meta.items() if k not in ("size", "sha256")}
    manifest.update(what=f"zoo model {name}: {ZOO[name].description}", made_by=f"{UPDATE_ASSET_COMMAND} {name}")
    return write_asset(zoo_asset(name), data, manifest)


def zoo_model_path(name: str, cache_root: Path, progress: Optional[Callable[[str], None]] = print) -> Path:
    """The cached ONNX file of zoo model `name`, exported first when absent or damaged."""
    if name not in ZOO:
        raise KeyError(f"no zoo model named {name!r}; the zoo has: {', '.join(ZOO)}")
    model = ZOO[name]
    directory = entry_dir(model, cache_root)
    clear_stale_temp_files(directory.parent)
    lock = lock_path_for(directory)
    if directory.exists():
        with file_lock(lock, exclusive=False):
            try:
                return _load(model, directory)
            except CacheIntegrityError as exc:
                problem = str(exc)
        warnings.warn(ZooCacheWarning(f"zoo model {name}: cache entry {directory} not usable ({problem}); "
                                      "exporting it again"), stacklevel=2)
    try:
        from tools import zoo_torch
    except ImportError as exc:
        raise TrainingUnavailable(
            f"zoo model {name} is not in the cache ({directory}) and PyTorch/torchvision cannot be imported "
            f"here ({exc}); run `python -m tools.zoo_export` on a machine with requirements.txt installed "
            "and bring its cache (REFIT_CACHE_DIR) along") from None
    with atomic_directory(directory, lock=True) as tmp:
        meta = zoo_torch.export(model, tmp / "model.onnx", progress=progress)
        if meta["size"] > MAX_ONNX_BYTES:
            raise ValueError(f"zoo model {name}: {meta['size']} bytes of ONNX, over the {MAX_ONNX_BYTES}-byte cap")
        (tmp / "meta.json").write_text(json.dumps(dict(meta, recipe=model.recipe()), indent=1, sort_keys=True,
                                                  allow_nan=False))
    return _load(model, directory)


def main(argv: Optional[List[str]] = None) -> int:
    """Export (or find, cached and sound) each zoo model; one line per model."""
    parser = argparse.ArgumentParser(prog="python -m tools.zoo_export",
                                     description="export the model zoo to ONNX with PyTorch, once, into the cache")
    parser.add_argument("names", nargs="*", metavar="NAME", help="zoo models to export (default: all)")
    parser.add_argument("--cache-dir", help="cache root (default: $REFIT_CACHE_DIR or ~/.cache/refit_core)")
    parser.add_argument("--update-asset", action="store_true",
                        help="replace the committed refit_core/assets/zoo-NAME.onnx files (and manifests) with these exports")
    args = parser.parse_args(argv)
    names = args.names or list(ZOO)
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        print(f"{parser.prog}: no zoo model named {', '.join(map(repr, unknown))}; the zoo has: {', '.join(ZOO)}",
              file=sys.stderr)
        return 2
    root = Path(args.cache_dir).expanduser() if args.cache_dir else cache_dir()

    def stamp(path: Path) -> Optional[tuple]:
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns

    try:
        for name in names:
            before = stamp(entry_dir(ZOO[name], root) / "model.onnx")
            start = time.perf_counter()
            path = zoo_model_path(name, root)
            seconds = time.perf_counter() - start
            meta = metadata(ZOO[name], root)
            how = "cached" if before is not None and stamp(path) == before else f"exported in {seconds:.1f} s"
            print(f"{name}: {path} ({meta.get('size', 0) / 1e6:.2f} MB, opset {ZOO[name].opset}, "
                  f"torch {meta.get('torch', '?')}, {how})")
            if args.update_asset:
                asset = update_zoo_asset(name, root)
                print(f"{name}: {asset_updated(asset['file'], asset)}")
    except RefitCoreError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
