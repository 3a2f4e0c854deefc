"""The version seam: everything that differs between TensorRT 8.5 and 11.x, and nothing else.

Calls that every supported version spells the same way (`build_serialized_network`,
`set_memory_pool_limit`, `add_convolution_nd`, `execute_async_v3`, ...) are made directly
where they are needed. This module holds only what has a version branch or a probe: the
explicit-batch flag, tactic sources, TF32, how unnamed weights are reported, numpy dtypes,
the timing-cache rejection message, and the features that exist only in newer versions
(each with its own probe, see FEATURES). Rows of `shared/docs/trt-compat.md` are cited
where a branch exists. Enum values are always looked up by name (their integers move).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..config import TACTICS_ENV
from ..errors import FeatureUnavailable, TensorRTUnavailable

_trt: Any = None


def import_tensorrt() -> Any:
    """Import tensorrt once, turning a missing install into one clear sentence."""
    global _trt
    if _trt is None:
        try:
            import tensorrt  # noqa: F401  (the real module; no mock ever stands in)
        except ImportError as exc:  # pragma: no cover - depends on the machine
            raise TensorRTUnavailable(
                f"TensorRT is not installed for this Python ({exc}); "
                "install the GPU set: pip install -r requirements-gpu.txt") from exc
        _trt = tensorrt
    return _trt


def trt_version_string() -> str:
    return str(import_tensorrt().__version__)


def parse_version(text: str) -> Tuple[int, ...]:
    """"8.5.3.1" -> (8, 5, 3, 1); suffixes such as "10.0.0b6", "8.6.1.post1", "10.3.0+cuda12"
    keep their leading numbers ("10.0.0b6" -> (10, 0, 0))."""
    parts: List[int] = []
    for piece in str(text).split("+")[0].split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.end() != len(piece):
            break
    if not parts:
        raise ValueError(f"not a TensorRT version: {text!r}")
    return tuple(parts)


def trt_version() -> Tuple[int, int]:
    """(major, minor) of the installed TensorRT."""
    v = parse_version(trt_version_string())
    return v[0], v[1] if len(v) > 1 else 0


def build_info() -> Dict[str, str]:
    """What identifies the TensorRT build in a results record: version, where it was
    imported from, the libnvinfer file it loads, and the CUDA version it was built for
    where the module says so."""
    trt = import_tensorrt()
    info = {"version": str(trt.__version__), "module": str(Path(trt.__file__).parent)}
    libs = sorted(p.name for p in Path(trt.__file__).parent.glob("libnvinfer.so.*"))
    if libs:
        info["libnvinfer"] = libs[-1]
    for attr in ("__cuda_version__", "__git_version__"):
        value = getattr(trt, attr, None)
        if value:
            info[attr.strip("_")] = str(value)
    return info


# --------------------------------------------------------------------------------------
# Features that exist only in some versions: one probe each. A missing one is reported
# with the version that has it and the version installed.
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Feature:
    name: str
    since: str
    description: str
    probe: Callable[[Any], bool]


FEATURES: Dict[str, Feature] = {f.name: f for f in (
    Feature("device_weights", "10.0", "refit weights from GPU memory (set_named_weights with TensorLocation.DEVICE)",
            lambda trt: hasattr(trt, "TensorLocation") and hasattr(trt.Refitter, "get_weights_location")),
    Feature("async_refit", "10.0", "refit_cuda_engine_async(stream)",
            lambda trt: hasattr(trt.Refitter, "refit_cuda_engine_async")),
    Feature("onnx_refitter", "10.0", "OnnxParserRefitter (refit straight from an ONNX file)",
            lambda trt: hasattr(trt, "OnnxParserRefitter")),
    Feature("strip_plan", "10.0", "weight-stripped plans (BuilderFlag.STRIP_PLAN)",
            lambda trt: hasattr(trt.BuilderFlag, "STRIP_PLAN")),
    Feature("refit_identical", "10.0", "BuilderFlag.REFIT_IDENTICAL",
            lambda trt: hasattr(trt.BuilderFlag, "REFIT_IDENTICAL")),
    Feature("weights_prototype", "10.0", "Refitter.get_weights_prototype",
            lambda trt: hasattr(trt.Refitter, "get_weights_prototype")),
    Feature("builder_optimization_level", "8.6", "the builder optimization level (IBuilderConfig.builder_optimization_level)",
            lambda trt: hasattr(trt.IBuilderConfig, "builder_optimization_level")),
    Feature("unset_weights", "10.0", "Refitter.unset_named_weights",
            lambda trt: hasattr(trt.Refitter, "unset_named_weights")),
)}


def has_feature(name: str) -> bool:
    if name not in FEATURES:
        raise KeyError(f"unknown TensorRT feature {name!r}; known: {', '.join(sorted(FEATURES))}")
    return bool(FEATURES[name].probe(import_tensorrt()))


def feature_unavailable_reason(name: str) -> str:
    feat = FEATURES[name]
    return (f"{feat.description} needs TensorRT >= {feat.since}; "
            f"this is TensorRT {trt_version_string()}")


def require_feature(name: str) -> None:
    if not has_feature(name):
        raise FeatureUnavailable(feature_unavailable_reason(name))


# --------------------------------------------------------------------------------------
# Builder and network
# --------------------------------------------------------------------------------------
def create_network(builder: Any) -> Any:
    """An explicit-batch network: the flag is required on 8.x, ignored on 10.x, gone on 11.x."""
    trt = import_tensorrt()
    flags = 0
    creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
    if trt_version()[0] < 10 and creation is not None and hasattr(creation, "EXPLICIT_BATCH"):
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    return builder.create_network(flags)


TACTIC_SETTINGS = ("default", "no-cudnn", "minimal")


def tactic_setting(explicit: Optional[str] = None) -> str:
    """The tactic-source setting: explicit > $REFIT_TRT_TACTICS > "default"."""
    value = (explicit or os.environ.get(TACTICS_ENV) or "default").strip().lower()
    if value not in TACTIC_SETTINGS:
        raise ValueError(f"{TACTICS_ENV}={value!r}: choose one of {', '.join(TACTIC_SETTINGS)}")
    return value


def apply_tactic_sources(config: Any, setting: str) -> None:
    """default: TensorRT's own; no-cudnn: the default minus cuDNN (8.x has it on by default,
    11.x has no such source); minimal: only the convolution sources every version has."""
    trt = import_tensorrt()
    src = trt.TacticSource
    if setting == "default":
        return
    if setting == "no-cudnn":
        mask = int(config.get_tactic_sources())
        if hasattr(src, "CUDNN"):
            mask &= ~(1 << int(src.CUDNN))
    else:
        mask = 0
        for name in ("EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS"):
            if hasattr(src, name):
                mask |= 1 << int(getattr(src, name))
    if not config.set_tactic_sources(mask):
        raise RuntimeError(f"TensorRT refused tactic sources {setting!r} (mask {mask:#x})")


def set_builder_optimization_level(config: Any, level: int) -> None:
    """Set the builder optimization level (0-5); FeatureUnavailable naming the version on 8.5."""
    require_feature("builder_optimization_level")
    config.builder_optimization_level = int(level)


def clear_tf32(config: Any) -> None:
    """TF32 is on by default on Ampere+ where the flag exists; exactness checks need FP32 math."""
    trt = import_tensorrt()
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)


def timing_cache_rejected(error_messages: List[str]) -> bool:
    """8.5 can refuse a serialized timing cache with "The timing cache will not be used!"
    and build as if cold; later versions say nothing when they take it."""
    return any("timing cache will not be used" in m.lower() for m in error_messages)


# --------------------------------------------------------------------------------------
# Engines and weights
# --------------------------------------------------------------------------------------
_NUMPY_OF_TRT = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "BOOL": "bool",
                 "UINT8": "uint8", "INT64": "int64", "DOUBLE": "float64", "BF16": None, "FP8": None}


def numpy_dtype(trt_dtype: Any) -> Any:
    """numpy dtype of a TensorRT DataType, by name. trt.nptype cannot be used: TensorRT 8.5's
    evaluates `np.bool`, which numpy >= 1.24 removed (AttributeError for every dtype)."""
    import numpy as np  # here, not at the top: reporting imports this module and needs no numpy
    name = str(trt_dtype).split(".")[-1]
    if _NUMPY_OF_TRT.get(name) is None:
        raise TypeError(f"TensorRT data type {name} has no numpy equivalent here")
    return np.dtype(_NUMPY_OF_TRT[name])


_UNNAMED_LAYER_RE = re.compile(r"^\s*\(Unnamed Layer\*\s*\d+\)")


def is_unnamed_weight(name: Optional[str]) -> bool:
    """8.5 lists weights nobody named as None, 8.6+ as "(Unnamed Layer* N) ..." (the number
    shifts between versions); an empty name is no name either."""
    return name is None or str(name).strip() == "" or bool(_UNNAMED_LAYER_RE.match(str(name)))


def set_named_weights(refitter: Any, name: str, array: Any, on_device_ptr: Optional[int] = None,
                      count: Optional[int] = None) -> bool:
    """Host weights everywhere; device weights (a CUDA pointer) only where TensorRT has them."""
    trt = import_tensorrt()
    if on_device_ptr is None:
        return bool(refitter.set_named_weights(name, trt.Weights(array)))
    require_feature("device_weights")
    weights = trt.Weights(trt.DataType.FLOAT, int(on_device_ptr), int(count))
    return bool(refitter.set_named_weights(name, weights, trt.TensorLocation.DEVICE))


def set_layer_weights(refitter: Any, layer: str, role: str, array: Any) -> bool:
    """The 8.4 sample's way for an unnamed weight: layer name + WeightsRole (looked up by name)."""
    trt = import_tensorrt()
    return bool(refitter.set_weights(layer, getattr(trt.WeightsRole, role), trt.Weights(array)))


def unset_named_weights(refitter: Any, name: str) -> bool:
    """Forget a weight set but not refitted (10.0+). False where TensorRT has no unset: the
    caller must then hand the current values back instead."""
    if not has_feature("unset_weights"):
        return False
    return bool(refitter.unset_named_weights(name))


def refit_engine(refitter: Any, stream_handle: Optional[int] = None) -> bool:
    if stream_handle is None:
        return bool(refitter.refit_cuda_engine())
    require_feature("async_refit")
    return bool(refitter.refit_cuda_engine_async(stream_handle))


def weight_prototypes(refitter: Any, names: List[Optional[str]]) -> Optional[Dict[str, Tuple[int, str]]]:
    """name -> (element count, numpy dtype name) of each named refittable weight, from
    `get_weights_prototype` (TensorRT >= 10.0). None where this version has no such call (8.x:
    the size of a weight TensorRT made up cannot be known). A weight whose prototype cannot
    be read is left out."""
    if not has_feature("weights_prototype"):
        return None
    out: Dict[str, Tuple[int, str]] = {}
    for name in names:
        if name is None:
            continue
        try:
            proto = refitter.get_weights_prototype(name)
            out[str(name)] = (int(proto.size), numpy_dtype(proto.dtype).name)
        except Exception:  # a name it will not describe, a dtype numpy lacks: leave it unmatched
            continue
    return out
