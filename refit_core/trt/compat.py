"""The one place that knows how TensorRT's Python API differs between 8.5 and 11.x.

Everything else in refit_core calls these helpers instead of touching version-specific
TensorRT attributes, so a new TensorRT release means editing this file only. Rows of
`shared/docs/trt-compat.md` are cited where a branch exists. Enum values are always looked
up by name (their integers move between versions).
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

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


def trt_version() -> Tuple[int, int]:
    """(major, minor) of the installed TensorRT."""
    parts = trt_version_string().split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0


# --------------------------------------------------------------------------------------
# Features that exist only in some versions. Each is probed by attribute, and the message
# of a missing one names the version that has it and the version installed.
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Feature:
    name: str
    since: str
    description: str


FEATURES: Dict[str, Feature] = {
    "device_weights": Feature("device_weights", "10.0",
                              "refit weights from GPU memory (set_named_weights with TensorLocation.DEVICE)"),
    "async_refit": Feature("async_refit", "10.0", "refit_cuda_engine_async(stream)"),
    "onnx_refitter": Feature("onnx_refitter", "10.0", "OnnxParserRefitter (refit straight from an ONNX file)"),
    "strip_plan": Feature("strip_plan", "10.0", "weight-stripped plans (BuilderFlag.STRIP_PLAN)"),
    "refit_identical": Feature("refit_identical", "10.0", "BuilderFlag.REFIT_IDENTICAL"),
    "weights_prototype": Feature("weights_prototype", "10.0", "Refitter.get_weights_prototype"),
}


def has_feature(name: str) -> bool:
    trt = import_tensorrt()
    if name == "device_weights":
        return hasattr(trt, "TensorLocation") and hasattr(trt.Refitter, "get_weights_location")
    if name == "async_refit":
        return hasattr(trt.Refitter, "refit_cuda_engine_async")
    if name == "onnx_refitter":
        return hasattr(trt, "OnnxParserRefitter")
    if name == "strip_plan":
        return hasattr(trt.BuilderFlag, "STRIP_PLAN")
    if name == "refit_identical":
        return hasattr(trt.BuilderFlag, "REFIT_IDENTICAL")
    if name == "weights_prototype":
        return hasattr(trt.Refitter, "get_weights_prototype")
    raise KeyError(f"unknown feature {name!r}; known: {sorted(FEATURES)}")


def feature_unavailable_reason(name: str) -> str:
    feat = FEATURES[name]
    return (f"{feat.description} needs TensorRT >= {feat.since}; "
            f"this is TensorRT {trt_version_string()}")


def require_feature(name: str) -> None:
    if not has_feature(name):
        raise FeatureUnavailable(feature_unavailable_reason(name))


# --------------------------------------------------------------------------------------
# Logging: one logger class that keeps what TensorRT said, so errors can quote it.
# --------------------------------------------------------------------------------------
class _LoggerFactory:
    cls: Any = None


def make_logger(echo_min_severity: str = "WARNING") -> Any:
    """A trt.ILogger that records every message and echoes those at or above a severity.

    TensorRT's own trt.Logger prints through C++ std::cout, which Python cannot capture;
    this one keeps messages in `.messages` [(severity_name, text)] for error reports.
    """
    trt = import_tensorrt()
    if _LoggerFactory.cls is None:
        order = ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"]

        class RecordingLogger(trt.ILogger):  # type: ignore[misc, valid-type]
            def __init__(self, echo: str) -> None:
                trt.ILogger.__init__(self)
                self.messages: List[Tuple[str, str]] = []
                self._echo_rank = order.index(echo)
                self._lock = threading.Lock()

            def log(self, severity: Any, msg: str) -> None:
                name = str(severity).split(".")[-1]
                with self._lock:
                    self.messages.append((name, msg))
                    if len(self.messages) > 2000:
                        del self.messages[:1000]
                rank = order.index(name) if name in order else 4
                if rank <= self._echo_rank:
                    print(f"[TRT] [{name[0]}] {msg}", flush=True)

            def errors_since(self, mark: int) -> List[str]:
                with self._lock:
                    return [m for s, m in self.messages[mark:] if s in ("ERROR", "INTERNAL_ERROR")]

            def mark(self) -> int:
                with self._lock:
                    return len(self.messages)

        _LoggerFactory.cls = RecordingLogger
    return _LoggerFactory.cls(echo_min_severity)


class _RecorderFactory:
    cls: Any = None


def make_error_recorder() -> Any:
    """A trt.IErrorRecorder that keeps TensorRT's error descriptions for RefitError.

    The pybind trampoline calls `get_num_errors`; the Python-side name is `num_errors`:
    define both.
    """
    trt = import_tensorrt()
    if _RecorderFactory.cls is None:
        class KeepingErrorRecorder(trt.IErrorRecorder):  # type: ignore[misc, valid-type]
            def __init__(self) -> None:
                trt.IErrorRecorder.__init__(self)
                self.errors: List[Tuple[Any, str]] = []
                self._lock = threading.Lock()

            def clear(self) -> None:
                with self._lock:
                    self.errors = []

            def get_error_code(self, index: int) -> Any:
                return self.errors[index][0]

            def get_error_desc(self, index: int) -> str:
                return self.errors[index][1]

            def has_overflowed(self) -> bool:
                return False

            def num_errors(self) -> int:
                return len(self.errors)

            def get_num_errors(self) -> int:
                return len(self.errors)

            def report_error(self, code: Any, desc: str) -> bool:
                with self._lock:
                    self.errors.append((code, str(desc)))
                return True  # keep going: the caller inspects the return value of the API

            def descriptions(self) -> List[str]:
                with self._lock:
                    return [d for _, d in self.errors]

        _RecorderFactory.cls = KeepingErrorRecorder
    return _RecorderFactory.cls()


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
    """default: TensorRT's own; no-cudnn: the default minus cuDNN (the GPU kit's cuDNN is a
    stub); minimal: only the convolution sources every version has (EDGE_MASK, JIT)."""
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


def set_workspace(config: Any, nbytes: int) -> None:
    trt = import_tensorrt()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(nbytes))


def clear_tf32(config: Any) -> None:
    """TF32 is on by default on Ampere+; exactness checks need plain FP32 math."""
    trt = import_tensorrt()
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)


def set_refit_flag(config: Any) -> None:
    trt = import_tensorrt()
    config.set_flag(trt.BuilderFlag.REFIT)


def add_convolution(network: Any, inp: Any, out_maps: int, kernel_hw: Tuple[int, int],
                    kernel: Any, bias: Any) -> Any:
    layer = network.add_convolution_nd(inp, out_maps, kernel_hw, kernel, bias)
    layer.stride_nd = (1, 1)
    return layer


def add_max_pool(network: Any, inp: Any, window: Tuple[int, int], stride: Tuple[int, int]) -> Any:
    trt = import_tensorrt()
    layer = network.add_pooling_nd(inp, trt.PoolingType.MAX, window)
    layer.stride_nd = stride
    return layer


def add_fully_connected(network: Any, inp: Any, weight: Any, bias: Any,
                        out_features: int, in_features: int) -> Tuple[Any, Any, Any, Any]:
    """y = x W^T + b through matrix multiply + elementwise sum (add_fully_connected is gone in 10.x).

    Returns (output layer, matmul layer, weight constant layer, bias constant layer).
    """
    trt = import_tensorrt()
    w_const = network.add_constant((out_features, in_features), weight)
    b_const = network.add_constant((1, out_features), bias)
    mm = network.add_matrix_multiply(inp, trt.MatrixOperation.NONE,
                                     w_const.get_output(0), trt.MatrixOperation.TRANSPOSE)
    add = network.add_elementwise(mm.get_output(0), b_const.get_output(0), trt.ElementWiseOperation.SUM)
    return add, mm, w_const, b_const


def build_serialized(builder: Any, network: Any, config: Any) -> bytes:
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT could not build the engine (build_serialized_network returned None)")
    return bytes(plan)


def create_onnx_parser(network: Any, logger: Any) -> Any:
    trt = import_tensorrt()
    return trt.OnnxParser(network, logger)


def create_timing_cache(config: Any, serialized: bytes = b"") -> Any:
    cache = config.create_timing_cache(serialized)
    config.set_timing_cache(cache, False)
    return cache


# --------------------------------------------------------------------------------------
# Engine introspection
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IOTensor:
    name: str
    is_input: bool
    dtype: Any  # numpy dtype
    shape: Tuple[int, ...]  # -1 for dynamic dimensions


_NUMPY_OF_TRT = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "BOOL": "bool",
                 "UINT8": "uint8", "INT64": "int64", "DOUBLE": "float64"}


def numpy_dtype(trt_dtype: Any) -> Any:
    """numpy dtype of a TensorRT DataType, by name. trt.nptype cannot be used: TensorRT 8.5's
    evaluates `np.bool`, which numpy >= 1.24 removed (AttributeError for every dtype)."""
    name = str(trt_dtype).split(".")[-1]
    if name not in _NUMPY_OF_TRT:
        raise TypeError(f"TensorRT data type {name} has no numpy equivalent here")
    return np.dtype(_NUMPY_OF_TRT[name])


def io_tensors(engine: Any) -> List[IOTensor]:
    trt = import_tensorrt()
    out = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = engine.get_tensor_mode(name)
        np_dtype = numpy_dtype(engine.get_tensor_dtype(name))
        out.append(IOTensor(name, mode == trt.TensorIOMode.INPUT, np_dtype,
                            tuple(engine.get_tensor_shape(name))))
    return out


def profile_shapes(engine: Any, name: str, profile: int = 0) -> Tuple[Tuple[int, ...], ...]:
    """(min, opt, max) of an input in one optimization profile."""
    shapes = engine.get_tensor_profile_shape(name, profile)
    return tuple(tuple(s) for s in shapes)


def engine_is_refittable(engine: Any) -> bool:
    return bool(getattr(engine, "refittable", False))


def refittable_weight_names(refitter: Any) -> List[Optional[str]]:
    """All refittable weights as TensorRT lists them: names, None (8.5) or
    "(Unnamed Layer* N) ..." (8.6+) for weights nobody named."""
    return list(refitter.get_all_weights())


def is_unnamed_weight(name: Optional[str]) -> bool:
    return name is None or str(name).startswith("(Unnamed Layer")


def set_named_weights(refitter: Any, name: str, array: Any, on_device_ptr: Optional[int] = None,
                      count: Optional[int] = None) -> bool:
    """Host weights everywhere; device weights (a CUDA pointer) only where TensorRT has them."""
    trt = import_tensorrt()
    if on_device_ptr is None:
        return bool(refitter.set_named_weights(name, trt.Weights(array)))
    require_feature("device_weights")
    dtype = trt.DataType.FLOAT
    weights = trt.Weights(dtype, int(on_device_ptr), int(count))
    return bool(refitter.set_named_weights(name, weights, trt.TensorLocation.DEVICE))


def refit_engine(refitter: Any, stream_handle: Optional[int] = None) -> bool:
    if stream_handle is None:
        return bool(refitter.refit_cuda_engine())
    require_feature("async_refit")
    return bool(refitter.refit_cuda_engine_async(stream_handle))
