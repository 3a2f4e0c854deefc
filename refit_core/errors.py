"""Exceptions the suite raises: each names the thing that is wrong, so a user can act on it."""
from __future__ import annotations

from typing import Optional


class RefitCoreError(Exception):
    """Base class of every error refit_core raises on purpose."""


class DataError(RefitCoreError):
    """A data file is missing, truncated or not what it claims to be."""


class TensorRTUnavailable(RefitCoreError):
    """TensorRT, pycuda or a CUDA GPU is missing; the message says which."""


class FeatureUnavailable(RefitCoreError):
    """A TensorRT feature this version does not have (the message names the version)."""


class TrainingUnavailable(RefitCoreError):
    """Trained weights are needed, none are cached, and PyTorch is not installed."""


class ModelPatternError(RefitCoreError):
    """An ONNX model lacks a graph pattern that the BiDAF preparation edits."""


class WeightValidationError(RefitCoreError):
    """A weight was refused before TensorRT saw it.

    Carries the weight's name and the problem separately so that tests and reports can
    check them without parsing the message.
    """

    def __init__(self, weight_name: Optional[str], problem: str) -> None:
        self.weight_name = weight_name
        self.problem = problem
        where = f"weight {weight_name!r}" if weight_name is not None else "weight"
        super().__init__(f"{where}: {problem}")


class AssetError(RefitCoreError):
    """A committed model asset (refit_core/assets/) is missing, damaged or does not match its
    manifest. Not a DataError: it is never skipped over or remade silently, only restored or
    remade on purpose (the message says how)."""


class RefitError(RefitCoreError):
    """TensorRT refused a refit; carries TensorRT's own messages when it gave any."""

    def __init__(self, message: str, trt_messages: Optional[list] = None,
                 missing: Optional[list] = None) -> None:
        self.trt_messages = list(trt_messages or [])
        self.missing = list(missing or [])
        full = message
        if self.trt_messages:
            full += "; TensorRT said: " + " | ".join(self.trt_messages)
        super().__init__(full)


class CacheIntegrityError(DataError):
    """A cache entry on disk is damaged, incomplete, foreign or inconsistent (the message names
    the file or directory and the problem). Callers that own the cache rebuild it."""


class CacheWarning(UserWarning):
    """A cache entry could not be used (and was rebuilt) or could not be written (and the work
    was returned uncached); the message names the file or directory and the problem."""


class EngineCacheWarning(CacheWarning):
    """A cached plan could not be used (corrupt, truncated, other TensorRT version) and was rebuilt,
    or a built plan could not be stored."""


class PreparedModelCacheWarning(CacheWarning):
    """A prepared-BiDAF directory in the cache was damaged and was prepared again, or could not
    be written."""


class WeightCacheWarning(CacheWarning):
    """A cached LeNet weight entry was damaged or foreign and was retrained, or could not be written."""


class ZooCacheWarning(CacheWarning):
    """A cached zoo model (models.zoo) was damaged or made from another recipe and was exported again."""
