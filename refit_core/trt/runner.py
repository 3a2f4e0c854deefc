"""Inference through set_tensor_address + execute_async_v3 (the API every version 8.5..11 has)."""
from __future__ import annotations

import time

from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from ..errors import RefitCoreError
from . import cuda
from .engine import EngineHandle


class InputShapeError(RefitCoreError, ValueError):
    """An input's shape lies outside the engine's optimization profile."""


class DataDependentShapeError(RefitCoreError):
    """An output whose shape TensorRT knows only after the inference runs."""


def data_dependent_outputs(shapes: Mapping[str, tuple]) -> Optional[str]:
    """One sentence naming the outputs whose shape is still unknown (-1) once every input's
    shape is set (NonZero, NonMaxSuppression: their size depends on the values), or None."""
    unknown = {name: shape for name, shape in shapes.items() if any(int(d) < 0 for d in shape)}
    if not unknown:
        return None
    said = ", ".join(f"{name!r} {tuple(int(d) for d in shape)}" for name, shape in unknown.items())
    many = len(unknown) > 1
    return (f"output{'s' if many else ''} {said} of this engine {'have' if many else 'has'} a shape TensorRT knows "
            "only after the inference (-1: the number of values depends on the data, as NonZero or "
            "NonMaxSuppression make); refit_core runs engines whose output shapes follow from their inputs' shapes: "
            "export the model without that step (e.g. without NMS) and check that")


class PendingInference:
    """Outputs of a launched inference; `wait()` synchronizes its stream and returns them."""

    def __init__(self, stream: Any, outputs: Dict[str, np.ndarray]) -> None:
        self._stream = stream
        self._outputs = outputs

    def wait(self) -> Dict[str, np.ndarray]:
        self._stream.synchronize()
        return {k: np.array(v) for k, v in self._outputs.items()}


class TrtRunner:
    """One execution context of an engine, with its own stream and device buffers."""

    def __init__(self, handle: EngineHandle, profile: int = 0) -> None:
        """`profile`: the optimization profile this context uses. On TensorRT 8.x a profile of a
        dynamic-shape engine serves one execution context at a time, so concurrent runners of
        one engine need engines built with several profiles and one index each."""
        self.handle = handle
        self.context = handle.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError("TensorRT could not create an execution context")
        self.stream = cuda.new_stream()
        self.profile_index = profile
        if handle.engine.num_optimization_profiles > 0 and self.context.active_optimization_profile != profile:
            if not self.context.set_optimization_profile_async(profile, self.stream.handle):
                raise RuntimeError(f"TensorRT refused optimization profile {profile} for a new context "
                                   f"(the engine has {handle.engine.num_optimization_profiles})")
            self.stream.synchronize()
        self.tensors = {t.name: t for t in handle.io()}
        self.inputs = [t for t in self.tensors.values() if t.is_input]
        self.outputs = [t for t in self.tensors.values() if not t.is_input]
        self._buffers: Dict[str, cuda.DeviceBuffer] = {n: cuda.DeviceBuffer() for n in self.tensors}
        self._profiles = {t.name: handle.profile_shapes(t.name, profile)
                          for t in self.inputs if -1 in t.shape}
        handle.adopt(self)

    def _check_shape(self, name: str, shape: tuple) -> None:
        check_input_shape(name, shape, self.tensors[name].shape, self._profiles.get(name))

    def _as_engine_dtype(self, name: str, array: np.ndarray) -> np.ndarray:
        return as_input_dtype(name, array, self.tensors[name].dtype)

    def launch(self, feeds: Mapping[str, np.ndarray], stream: Any = None) -> PendingInference:
        """Queue one inference on `stream` (default: the runner's) and return without waiting."""
        stream = stream or self.stream
        missing = [t.name for t in self.inputs if t.name not in feeds]
        if missing:
            raise KeyError(f"missing inputs {missing}; the engine's inputs are {[t.name for t in self.inputs]}")
        unknown = sorted(set(feeds) - {t.name for t in self.inputs})
        if unknown:
            raise KeyError(f"unknown inputs {unknown}; the engine's inputs are {[t.name for t in self.inputs]}")
        arrays = {t.name: self._as_engine_dtype(t.name, feeds[t.name]) for t in self.inputs}
        for t in self.inputs:  # every shape is checked and set before any copy is queued
            shape = tuple(arrays[t.name].shape)
            self._check_shape(t.name, shape)
            if not self.context.set_input_shape(t.name, shape):
                raise InputShapeError(f"TensorRT refused shape {shape} for input {t.name!r}")
        shapes = {t.name: tuple(self.context.get_tensor_shape(t.name)) for t in self.outputs}
        data_dependent = data_dependent_outputs(shapes)
        if data_dependent:
            raise DataDependentShapeError(data_dependent)
        host_in: List[np.ndarray] = []
        for t in self.inputs:
            pinned = cuda.pinned_copy(arrays[t.name])
            host_in.append(pinned)
            ptr = self._buffers[t.name].ensure(pinned.nbytes)
            self.context.set_tensor_address(t.name, ptr)
            cuda.copy_htod_async(ptr, pinned, stream)
        outputs: Dict[str, np.ndarray] = {}
        for t in self.outputs:
            shape = shapes[t.name]
            host = cuda.pinned_empty(shape, t.dtype)
            ptr = self._buffers[t.name].ensure(host.nbytes)
            self.context.set_tensor_address(t.name, ptr)
            outputs[t.name] = host
        if not self.context.execute_async_v3(stream.handle):
            raise RuntimeError("TensorRT failed to enqueue the inference (execute_async_v3 returned False)")
        for t in self.outputs:
            cuda.copy_dtoh_async(outputs[t.name], self._buffers[t.name].ptr, stream)
        pending = PendingInference(stream, outputs)
        pending._host_inputs = host_in  # type: ignore[attr-defined]  # keep until the copies ran
        return pending

    def infer(self, feeds: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        return self.launch(feeds).wait()

    def time_inference(self, feeds: Mapping[str, np.ndarray], rounds: int, warmup: int = 10) -> List[float]:
        """Seconds per inference, GPU side: `feeds` are copied in once, then each round is one
        execute_async_v3 + stream synchronize (no host copies). Warm-up rounds are dropped."""
        self.infer(feeds)  # sets shapes and tensor addresses; the rounds reuse them
        out: List[float] = []
        for i in range(warmup + rounds):
            t0 = time.perf_counter()
            if not self.context.execute_async_v3(self.stream.handle):
                raise RuntimeError("TensorRT failed to enqueue an inference (execute_async_v3 returned False)")
            self.stream.synchronize()
            if i >= warmup:
                out.append(time.perf_counter() - t0)
        return out

    def close(self) -> None:
        if self.context is None:
            return
        self.stream.synchronize()
        for buf in self._buffers.values():
            buf.free()
        self.context = None


def check_input_shape(name: str, shape: tuple, want: tuple, profile: Optional[tuple]) -> None:
    """Raise InputShapeError unless `shape` fits the engine's shape `want` (-1: dynamic) and,
    for dynamic dimensions, the optimization profile (min, opt, max)."""
    if len(shape) != len(want):
        raise InputShapeError(f"input {name!r} has rank {len(shape)} (shape {shape}); the engine expects "
                              f"rank {len(want)} {want}")
    for axis, (got, fixed) in enumerate(zip(shape, want)):
        if fixed != -1 and got != fixed:
            raise InputShapeError(f"input {name!r} dimension {axis} is {got}; the engine fixes it to {fixed}")
        if fixed == -1 and profile is not None:
            lo, hi = profile[0][axis], profile[2][axis]
            if not lo <= got <= hi:
                raise InputShapeError(
                    f"input {name!r} dimension {axis} is {got}, outside the engine's optimization "
                    f"profile [{lo}, {hi}]")


def as_input_dtype(name: str, array: np.ndarray, dtype: Any) -> np.ndarray:
    """`array` as the engine input's dtype: same kind only (ints in range, floats), C-contiguous."""
    want = np.dtype(dtype)
    arr = np.asarray(array)
    if arr.dtype == want:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind in "iu" and want.kind in "iu":
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise ValueError(f"input {name!r} holds values outside {want} range")
        return np.ascontiguousarray(arr.astype(want))
    if arr.dtype.kind == "f" and want.kind == "f":
        return np.ascontiguousarray(arr.astype(want))
    raise TypeError(f"input {name!r} is {arr.dtype}; the engine takes {want}")
