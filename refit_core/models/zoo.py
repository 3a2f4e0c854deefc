"""The model zoo: real architectures (torchvision's MobileNetV3-Small, a transformer encoder),
made with PyTorch on the CPU machine, exported to ONNX once and committed. No PyTorch here.

The GPU tier uses the committed files (`committed_zoo_model`: refit_core/assets/zoo-NAME.onnx,
checked against the sha256 and the recipe its manifest records), so no GPU result depends on
the CPU that exported them. `python -m tools.zoo_export [--update-asset]` exports them (into a
cache keyed on the recipe below) and refreshes the committed files on purpose.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Tuple

from ..errors import AssetError
from ..fileio import sha256_bytes

#: Bump when the export or calibration code changes what a recipe produces.
ZOO_FORMAT = 1
#: how the committed zoo files are remade (recorded in their manifests)
UPDATE_ASSET_COMMAND = "python -m tools.zoo_export --update-asset"


@dataclass(frozen=True)
class ZooModel:
    """One zoo architecture: how to make it (`params` go to tools.zoo_torch's builder) and its inputs."""

    name: str
    description: str
    builder: str  # function name in tools.zoo_torch
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


#: The zoo. Sizes are chosen for build time on TensorRT 8.5 (builds are the GPU tier's cost): the
#: MobileNet keeps the first 3 blocks of mobilenet_v3_small, which still hold every kind of layer it
#: has: depthwise convolution, squeeze-excite, a residual add, BatchNorm, ReLU and hardswish.
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
