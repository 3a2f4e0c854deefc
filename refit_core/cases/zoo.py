"""The zoo cases: each zoo model (models.zoo) as an OnnxModelCase, in every precision.

The ONNX file comes from the zoo cache (exported with PyTorch where it is installed; the GPU
kit reads what the CPU machine exported). Without a cached file and without PyTorch the case
skips and says how to make it (`python -m refit_core zoo-export`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from .base import CaseEngine, CaseResources, variant_name
from .onnx_model import OnnxModelCase


class ZooCase(OnnxModelCase):
    """Zoo model `model_name` in one precision; perturbation size: OnnxModelCase's default
    (min(0.5, 1/sqrt(weights)): deep models keep their output scale)."""

    def __init__(self, model_name: str, precision: str = "fp32") -> None:
        from ..models.zoo import ZOO
        model = ZOO[model_name]
        self.model_name = model_name
        super().__init__(variant_name(model_name, precision), self._model_path, model.input_shapes,
                         seed=model.seed, precision=precision)
        self.description = f"zoo: {model.description}"
        self._resources_root: Optional[Path] = None

    def _model_path(self, _directory: Path) -> Path:
        from ..models.zoo import zoo_model_path
        assert self._resources_root is not None
        return zoo_model_path(self.model_name, self._resources_root)

    def open(self, resources: CaseResources, session: Any, logger: Any, plan_cache: Any) -> CaseEngine:
        self._resources_root = resources.cache_root
        return super().open(resources, session, logger, plan_cache)

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
