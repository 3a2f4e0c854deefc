"""The zoo cases: each zoo model (models.zoo) as an OnnxModelCase, in every precision.

The ONNX file comes from the zoo cache (exported with PyTorch where it is installed; the GPU
kit reads what the CPU machine exported). Without a cached file and without PyTorch the case
skips and says how to make it (`python -m refit_core zoo-export`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

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
        """The cached export (made now where PyTorch is installed and nothing is cached)."""
        from ..models.zoo import zoo_model_path
        return zoo_model_path(self.model_name, resources.cache_root), self.case_dir(resources)

    def unavailable_reason(self, resources: CaseResources) -> Optional[str]:
        from ..models.zoo import ZOO, entry_dir
        if (entry_dir(ZOO[self.model_name], resources.cache_root) / "model.onnx").is_file():
            return None
        try:
            import torch  # noqa: F401
            import torchvision  # noqa: F401
        except ImportError as exc:
            return (f"zoo model {self.model_name} is not cached under {resources.cache_root} and PyTorch/torchvision "
                    f"cannot be imported ({exc}); run `python -m refit_core zoo-export` where they are installed")
        return None
