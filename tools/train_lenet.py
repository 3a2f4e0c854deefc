"""Train the sample's LeNet (PyTorch) through an on-disk cache and, on purpose, replace the
committed weights the GPU tier uses (refit_core/assets/lenet_weights.npz and its manifest).

    python -m tools.train_lenet [--data-dir DIR] [--update-asset]

Training itself lives in tools.lenet_torch and is imported only when needed.
A cache entry is trusted only if its metadata matches the data checksums and the
hyper-parameters, its arrays hash to the sha256 its metadata records, and they have the
right names, dtype (float32, never cast), shapes and values. Any other entry is named in a
WeightCacheWarning and retrained (TrainingUnavailable names it when PyTorch is missing).
Both files are written atomically (fileio) under a lock that readers share.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import io
import json
import os
import platform
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np

from refit_core.config import CACHE_DIR_ENV, cache_dir, resolve_data_dir
from refit_core.errors import DataError, RefitCoreError, TrainingUnavailable, WeightCacheWarning
from refit_core.fileio import (atomic_write_json, atomic_write_with, clear_stale_temp_files, file_lock,
                               loads_json_strict, lock_path_for, read_bytes_nofollow, sha256_bytes)
from refit_core.samples.mnist import LENET_SHAPES
from refit_core.samples.mnist.data import dataset_fingerprint
from refit_core.samples.mnist.weights import (TrainedWeights, check_weight_shapes, committed_lenet_path,
                                              parse_weights_npz, weights_sha256)

PathLike = Union[str, "os.PathLike[str]"]

# Bump when the file layout or training code changes in a way that makes old caches wrong.
# 2: the metadata records weights_sha256 (the arrays' content hash), checked on load.
CACHE_FORMAT = 2

#: the eight float32 arrays take 1.7 MB; an npz or json entry larger than this is not ours
MAX_WEIGHTS_FILE_BYTES = 8 << 20
MAX_METADATA_BYTES = 1 << 20
#: how the committed asset is remade (recorded in its manifest)
UPDATE_ASSET_COMMAND = "python -m tools.train_lenet --update-asset"

OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class LenetTrainConfig:
    """Hyper-parameters of one LeNet training run; all of them go into the cache key.

    (BiDAF's stand-in has its own, tools.bidaf_standin.train.BidafTrainConfig: the two share no
    field that means the same thing, so they are two classes with two names.)
    """

    seed: int = 1
    epochs: int = 2
    batch_size: int = 128
    learning_rate: float = 2e-3
    optimizer: str = "adam"
    momentum: float = 0.9  # used by "sgd" only
    lr_schedule: str = "cosine"  # per-step cosine decay to 0 over the run, or "constant"
    limit: Optional[int] = None  # train on the first `limit` images (quick tests)
    # Fixed, because CPU kernels may split sums by thread count. One thread: on a busy
    # 2-core runner two OpenMP threads were ~10x slower per step than one.
    num_threads: int = 1

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, not {self.lr_schedule!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.num_threads < 1:
            raise ValueError("epochs, batch_size and num_threads must be >= 1")
        if self.limit is not None and self.limit < 1:
            raise ValueError("limit must be None or >= 1")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)



def cache_key(fingerprint: Mapping[str, Any], config: LenetTrainConfig) -> str:
    """Hash of (data checksums, hyper-parameters, cache format): the cache file's stem."""
    blob = json.dumps({"format": CACHE_FORMAT, "data": fingerprint, "config": config.to_dict()},
                      sort_keys=True)
    return sha256_bytes(blob.encode("utf-8"))[:20]


def lenet_cache_dir(cache_root: Optional[PathLike] = None) -> Path:
    """<cache root>/lenet, the cache root being cache_root or config.cache_dir()."""
    root = Path(cache_root).expanduser() if cache_root is not None else cache_dir()
    return root / "lenet"


def cache_paths(data_dir: Optional[PathLike] = None, config: Optional[LenetTrainConfig] = None,
                cache_root: Optional[PathLike] = None) -> Tuple[Path, Path]:
    """(npz path, json path) of the cache entry for this data and configuration."""
    config = config if config is not None else LenetTrainConfig()
    fp = dataset_fingerprint(resolve_data_dir(data_dir))
    stem = lenet_cache_dir(cache_root) / cache_key(fp, config)
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def save_cache(trained: TrainedWeights, npz_path: Path, json_path: Path) -> None:
    """Store weights (npz) then metadata (json, with the weights' sha256), each atomically,
    under the entry's lock; the json is written last and marks completion."""
    check_weight_shapes(trained.weights, source="weights to cache")
    meta = dict(trained.metadata)
    meta["weights_sha256"] = weights_sha256(trained.weights)
    text_check = json.dumps(meta, allow_nan=False, sort_keys=True)  # fail before touching any file
    del text_check
    npz_path, json_path = Path(npz_path), Path(json_path)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(lock_path_for(npz_path), exclusive=True):
        atomic_write_with(npz_path, lambda fh: np.savez(fh, **trained.weights))
        atomic_write_json(json_path, meta, indent=2)


def _read_entry_file(path: Path, missing: str, unreadable: str, max_bytes: int) -> bytes:
    try:
        return read_bytes_nofollow(path, max_bytes)
    except FileNotFoundError:
        raise DataError(f"{path}: {missing}") from None
    except OSError as exc:
        raise DataError(f"{path}: {unreadable} ({exc})") from exc


def read_cache(npz_path: Path, json_path: Path, fingerprint: Mapping[str, Any],
               config: LenetTrainConfig) -> TrainedWeights:
    """Load a cache entry, or raise DataError naming the file and saying why it cannot be trusted."""
    npz_path, json_path = Path(npz_path), Path(json_path)
    with file_lock(lock_path_for(npz_path), exclusive=False):
        meta_bytes = _read_entry_file(json_path, "metadata missing", "unreadable metadata", MAX_METADATA_BYTES)
        npz_bytes = _read_entry_file(npz_path, "weights file missing", "unreadable weights", MAX_WEIGHTS_FILE_BYTES)
    try:
        meta = loads_json_strict(meta_bytes)
    except ValueError as exc:
        raise DataError(f"{json_path}: unreadable metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{json_path}: metadata is not a JSON object (a JSON {type(meta).__name__})")
    if meta.get("cache_format") != CACHE_FORMAT:
        raise DataError(f"{json_path}: cache format {meta.get('cache_format')!r}, need {CACHE_FORMAT}")
    if meta.get("data_fingerprint") != json.loads(json.dumps(dict(fingerprint))):
        raise DataError(f"{json_path}: trained on other data (checksums differ)")
    if meta.get("config") != json.loads(json.dumps(config.to_dict())):
        raise DataError(f"{json_path}: trained with other hyper-parameters {meta.get('config')}")
    expected_hash = meta.get("weights_sha256")
    if not isinstance(expected_hash, str):
        raise DataError(f"{json_path}: no weights_sha256 recorded; the weights cannot be checked")
    weights = parse_weights_npz(npz_bytes, str(npz_path))
    check_weight_shapes(weights, source=str(npz_path))
    got_hash = weights_sha256(weights)
    if got_hash != expected_hash:
        raise DataError(f"{npz_path}: weights sha256 {got_hash} differs from {expected_hash} recorded in "
                        f"{json_path.name} (replaced or corrupt)")
    return TrainedWeights(weights=weights, metadata=meta)


def npz_bytes(weights: Mapping[str, np.ndarray]) -> bytes:
    """The weights as npz bytes (uncompressed, names in LeNet order)."""
    buf = io.BytesIO()
    np.savez(buf, **{name: np.ascontiguousarray(weights[name], dtype=np.float32) for name in LENET_SHAPES})
    return buf.getvalue()


def update_committed_lenet(trained: TrainedWeights, data_dir: PathLike) -> Dict[str, Any]:
    """Replace the committed weights with `trained` (on purpose: `--update-asset`);
    returns the new manifest."""
    from refit_core.models.assets import write_asset
    check_weight_shapes(trained.weights, source="weights to commit")
    meta = trained.metadata
    manifest = {
        "what": "LeNet weights (the sample's network) trained on MNIST with PyTorch, float32 npz",
        "made_by": UPDATE_ASSET_COMMAND,
        "recipe": meta.get("config", meta.get("hyper_parameters")),
        "data_fingerprint": dataset_fingerprint(resolve_data_dir(data_dir)),
        "test_accuracy": meta.get("test_accuracy"),
        "epoch_mean_loss": meta.get("epoch_mean_loss"),
        "weights_sha256": weights_sha256(trained.weights),
        "weight_shapes": {k: list(v) for k, v in LENET_SHAPES.items()},
        "torch_version": meta.get("torch_version"),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "machine": platform.machine(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return write_asset(committed_lenet_path(), npz_bytes(trained.weights), manifest)


def _train_weights(data_dir: Path, config: LenetTrainConfig, progress: bool) -> TrainedWeights:
    """Train with PyTorch (imported only here). Raises ImportError when torch is missing."""
    # import_module (not `from . import`) so a torch made unimportable is noticed even
    # after lenet_torch was imported once in this process.
    lenet_torch = importlib.import_module("tools.lenet_torch")
    return lenet_torch.train_lenet(data_dir, config, progress=progress)


def load_or_train(data_dir: Optional[PathLike] = None, config: Optional[LenetTrainConfig] = None,
                  cache_root: Optional[PathLike] = None, progress: bool = True) -> TrainedWeights:
    """Cached trained weights for (data, config), training and caching them when needed.

    data_dir None means $REFIT_DATA_DIR. A cache that does not match the data or the
    hyper-parameters, or whose arrays are unreadable or misshapen, is retrained, never used.
    Raises TrainingUnavailable when training is needed and PyTorch is not installed.
    """
    config = config if config is not None else LenetTrainConfig()
    data_path = resolve_data_dir(data_dir)
    fp = dataset_fingerprint(data_path)
    stem = lenet_cache_dir(cache_root) / cache_key(fp, config)
    npz_path, json_path = stem.with_suffix(".npz"), stem.with_suffix(".json")
    clear_stale_temp_files(stem.parent)
    rejected: Optional[str] = None
    if os.path.lexists(str(npz_path)) or os.path.lexists(str(json_path)):
        try:
            return read_cache(npz_path, json_path, fp, config)
        except DataError as exc:
            rejected = str(exc)
            warnings.warn(f"LeNet weight cache entry {npz_path} is not usable: {exc}; retraining",
                          WeightCacheWarning, stacklevel=2)
    try:
        trained = _train_weights(data_path, config, progress)
    except ImportError as exc:
        missing = (getattr(exc, "name", None) or "torch").split(".")[0]
        if missing != "torch":  # some other broken import: not ours to reword
            raise
        why = f" (the cached entry was rejected: {rejected})" if rejected else ""
        raise TrainingUnavailable(
            f"no usable cached LeNet weights at {npz_path}{why} and PyTorch is not importable "
            f"({exc}), so make them with `python -m tools.train_lenet --data-dir "
            f"{data_path}` on a machine with PyTorch and carry its cache folder here, "
            f"pointing {CACHE_DIR_ENV} at it") from exc
    meta = dict(trained.metadata)
    meta.update({
        "cache_format": CACHE_FORMAT,
        "cache_key": stem.name,
        "data_fingerprint": fp,
        "config": config.to_dict(),
        "weight_shapes": {k: list(v) for k, v in LENET_SHAPES.items()},
        "weights_sha256": weights_sha256(trained.weights),
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    trained = TrainedWeights(weights=trained.weights, metadata=meta)
    try:
        save_cache(trained, npz_path, json_path)
    except (OSError, ValueError) as exc:
        warnings.warn(f"trained LeNet weights could not be saved to the cache as {npz_path} "
                      f"({type(exc).__name__}: {exc}); using them uncached", WeightCacheWarning, stacklevel=2)
    return trained


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.train_lenet",
                                     description="train LeNet (PyTorch) into the training cache; --update-asset also "
                                                 "replaces the committed weights the GPU tier uses")
    parser.add_argument("--data-dir", help="directory with the MNIST IDX files (default: $REFIT_DATA_DIR)")
    parser.add_argument("--update-asset", action="store_true",
                        help="replace refit_core/assets/lenet_weights.npz and its manifest with these weights")
    args = parser.parse_args(argv)
    try:
        data_dir = resolve_data_dir(args.data_dir)
        trained = load_or_train(data_dir, progress=True)
        acc = trained.metadata.get("test_accuracy")
        print(f"LeNet weights cached; test accuracy {100.0 * float(acc):.2f}%" if acc is not None
              else "LeNet weights cached")
        if args.update_asset:
            manifest = update_committed_lenet(trained, data_dir)
            print(asset_updated(committed_lenet_path(), manifest))
    except RefitCoreError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    return 0


def asset_updated(path: object, manifest: Mapping[str, Any]) -> str:
    """The line `--update-asset` prints for a committed asset it replaced (`manifest`: its new entry)."""
    return (f"committed asset updated: {path} ({manifest['size_bytes']} bytes, sha256 {manifest['sha256']}); "
            "commit it with its manifest")


if __name__ == "__main__":
    raise SystemExit(main())
