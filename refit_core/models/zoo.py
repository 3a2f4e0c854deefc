"""The model zoo: real architectures (torchvision's MobileNetV3-Small, a transformer encoder),
made with PyTorch on the CPU machine, exported to ONNX once and committed. No PyTorch here.

The GPU tier uses the committed files (`committed_zoo_model`: refit_core/assets/zoo-NAME.onnx,
checked against the sha256 and the recipe its manifest records), so no GPU result depends on
the CPU that exported them. `zoo-export` exports into a cache and, with `--update-asset`,
refreshes the committed files on purpose. A cache entry is keyed on its
recipe (architecture, sizes, seed, opset, `ZOO_FORMAT`); its metadata records the torch and
torchvision versions that made it and the file's sha256, checked on every load. A damaged
entry, or one made from another recipe, is named in a ZooCacheWarning and exported again where
PyTorch is installed; without PyTorch, `TrainingUnavailable` says what is missing and how to
make it (`python -m refit_core zoo-export`).

Random initialisation alone gives degenerate models (MobileNetV3-Small with weights=None has
logits of order 1e-9), so the torch side calibrates each model until its outputs are of
order one and vary with the input (zoo_torch); the cases then check that the reference moves
under every perturbation they refit.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from ..errors import AssetError, CacheIntegrityError, TrainingUnavailable, ZooCacheWarning
from ..fileio import atomic_directory, clear_stale_temp_files, file_lock, lock_path_for, read_json_strict, read_verified, sha256_bytes

#: Bump when the export or calibration code changes what a recipe produces.
ZOO_FORMAT = 1
#: A zoo model's outputs for two random inputs must differ by at least this many output standard
#: deviations (checked at export). The MobileNet's move by 0.05: global pooling averages random
#: images out, and calibrating its head for more made its TF32 error too large (zoo_torch).
MIN_INPUT_DEPENDENCE = 0.02
#: Each zoo ONNX file must stay under this (what travels to the GPU machine is limited; committed, see
#: models.assets.MAX_ASSET_BYTES).
MAX_ONNX_BYTES = 5 * 1000 * 1000
#: a cache entry's meta.json is a few hundred bytes
MAX_META_BYTES = 1 << 20
#: how the committed zoo files are remade (recorded in their manifests)
UPDATE_ASSET_COMMAND = "python -m refit_core zoo-export --update-asset"


@dataclass(frozen=True)
class ZooModel:
    """One zoo architecture: how to make it (`params` go to zoo_torch's builder) and its inputs."""

    name: str
    description: str
    builder: str  # function name in zoo_torch
    input_shapes: Dict[str, Tuple[int, ...]]
    opset: int
    seed: int = 0
    params: Dict[str, Any] = field(default_factory=dict)

    def recipe(self) -> Dict[str, Any]:
        out = asdict(self)
        del out["description"]
        out["input_shapes"] = {k: list(v) for k, v in sorted(self.input_shapes.items())}
        out["format"] = ZOO_FORMAT
        return out

    def recipe_key(self) -> str:
        return sha256_bytes(json.dumps(self.recipe(), sort_keys=True).encode())[:16]


#: The zoo. Sizes are chosen for build time on TensorRT 8.5 (builds are the GPU tier's cost). Measured on
#: an H200 with 8.5.3.1: the whole mobilenet_v3_small took 33 s (FP32, REFIT) and 114 s (FP16, REFIT) to
#: build; its first 5 blocks still took 320 s for the FP16 REFIT and no-REFIT builds beside two other
#: builds. The zoo keeps the first 3 blocks, which still hold every kind of layer it has: depthwise
#: convolution, squeeze-excite, a residual add, BatchNorm, ReLU and hardswish.
ZOO: Dict[str, ZooModel] = {m.name: m for m in (
    ZooModel(
        name="mobilenet-v3-small",
        description="torchvision MobileNetV3 with the first 3 inverted-residual blocks of mobilenet_v3_small's "
                    "configuration (depthwise, squeeze-excite, hardswish, residual, BatchNorm), eval mode, "
                    "calibrated random weights",
        builder="mobilenet_v3_small", input_shapes={"image": (2, 3, 64, 64)}, opset=13,
        params={"blocks": 3, "last_channel": 256, "num_classes": 100}),
    ZooModel(
        name="transformer-encoder",
        description="nn.TransformerEncoder (self-attention + MatMul + LayerNorm + GELU), per-token "
                    "classifier head, eval mode",
        builder="transformer_encoder", input_shapes={"tokens": (4, 16, 96)}, opset=14,
        params={"d_model": 96, "heads": 4, "ff": 256, "layers": 3, "classes": 16}),
)}


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


def committed_zoo_model(name: str) -> Path:
    """The committed ONNX file of zoo model `name`, verified against its manifest (size, sha256,
    and the recipe ZOO has now). AssetError naming the file otherwise; never exported again here."""
    from .assets import read_asset, zoo_asset
    if name not in ZOO:
        raise KeyError(f"no zoo model named {name!r}; the zoo has: {', '.join(ZOO)}")
    path = zoo_asset(name)
    _, meta = read_asset(path)
    if meta.get("recipe") != ZOO[name].recipe():
        raise AssetError(f"{path}: exported from another recipe than ZOO[{name!r}] has now; remake it on purpose "
                        f"with `{UPDATE_ASSET_COMMAND} {name}` and commit it")
    return path


def update_zoo_asset(name: str, cache_root: Path) -> Dict[str, Any]:
    """Replace the committed file of zoo model `name` with the cache's export (exported first where
    absent); returns the new manifest."""
    from .assets import write_asset, zoo_asset
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
        from . import zoo_torch
    except ImportError as exc:
        raise TrainingUnavailable(
            f"zoo model {name} is not in the cache ({directory}) and PyTorch/torchvision cannot be imported "
            f"here ({exc}); run `python -m refit_core zoo-export` on a machine with requirements.txt installed "
            "and bring its cache (REFIT_CACHE_DIR) along") from None
    with atomic_directory(directory, lock=True) as tmp:
        meta = zoo_torch.export(model, tmp / "model.onnx", progress=progress)
        if meta["size"] > MAX_ONNX_BYTES:
            raise ValueError(f"zoo model {name}: {meta['size']} bytes of ONNX, over the {MAX_ONNX_BYTES}-byte cap")
        (tmp / "meta.json").write_text(json.dumps(dict(meta, recipe=model.recipe()), indent=1, sort_keys=True,
                                                  allow_nan=False))
    return _load(model, directory)
