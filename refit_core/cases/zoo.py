"""The zoo cases: each zoo model (models.zoo) as an OnnxModelCase, in every precision.

The ONNX file is the committed export (refit_core/assets/zoo-NAME.onnx, checked against its
manifest's sha256): the same bytes on every machine, no PyTorch needed. A damaged file is an
error naming it; `python -m tools.zoo_export --update-asset` (a checkout, not installed) remakes them on purpose.
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

from .base import CaseResources, variant_name
from .onnx_model import OnnxModelCase


def _no_file(_directory: Path) -> Path:
    raise RuntimeError("a zoo case's ONNX file comes from the zoo cache (ZooCase.model_file)")


class ZooCase(OnnxModelCase):
    """Zoo model `model_name` in one precision; perturbation size: OnnxModelCase's default
    (min(0.5, 1/sqrt(weights)): deep models keep their output scale)."""

    def __init__(self, model_name: str, precision: str = "fp32") -> None:
        from ..models.zoo import ZOO
        model = ZOO[model_name]
        self.model_name = model_name
        super().__init__(variant_name(model_name, precision), _no_file, model.input_shapes,
                         seed=model.seed, precision=precision)
        self.description = f"zoo: {model.description}"

    def model_file(self, resources: CaseResources) -> Tuple[Path, Path]:
        """The committed export (refit_core/assets/zoo-NAME.onnx), verified against its manifest."""
        from ..models.zoo import committed_zoo_model
        self._model_path = committed_zoo_model(self.model_name)
        return self._model_path, self.case_dir(resources)

    def inputs_sha256(self) -> str:
        """sha256 of the committed ONNX file (verified against its manifest)."""
        from ..models.assets import asset_sha256
        return asset_sha256(self.committed_path())

    def committed_path(self) -> Path:
        from ..models.assets import zoo_asset
        return zoo_asset(self.model_name)
