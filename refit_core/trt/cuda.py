"""CUDA through pycuda, in one place: the context, streams and device buffers.

TensorRT objects that outlive the CUDA context crash the process at exit (seen on the H200
with pycuda.autoinit), so the context here is explicit: `CudaSession` owns it, and
everything that holds TensorRT objects registers a closer that runs before the context goes.
"""
from __future__ import annotations

import gc
from typing import Any, Callable, List, Optional

import numpy as np

from ..errors import TensorRTUnavailable

_cuda: Any = None


def import_pycuda() -> Any:
    global _cuda
    if _cuda is None:
        try:
            import pycuda.driver as driver
        except ModuleNotFoundError as exc:  # pragma: no cover - depends on the machine
            raise TensorRTUnavailable(
                f"pycuda is not installed ({exc}); install the GPU set: "
                "pip install -r requirements-gpu.txt") from exc
        except ImportError as exc:  # installed, but the CUDA driver library is not there
            raise TensorRTUnavailable(
                f"pycuda is installed but cannot load the CUDA driver ({exc}): "
                "this machine has no NVIDIA driver/GPU") from exc
        _cuda = driver
    return _cuda


def gpu_unavailable_reason() -> Optional[str]:
    """None when TensorRT, pycuda and a CUDA GPU are all usable, else one sentence saying
    what is missing (the GPU tests skip with it; the CLI prints it)."""
    try:
        import tensorrt  # noqa: F401
    except Exception as exc:  # ImportError, or OSError from a missing libnvinfer
        return f"TensorRT is not importable ({type(exc).__name__}: {exc})"
    try:
        driver = import_pycuda()
    except TensorRTUnavailable as exc:
        return str(exc)
    except Exception as exc:
        return f"pycuda is not importable ({type(exc).__name__}: {exc})"
    try:
        driver.init()
        count = driver.Device.count()
    except Exception as exc:
        return f"no usable CUDA driver/GPU ({type(exc).__name__}: {exc})"
    if count < 1:
        return "no CUDA GPU found (driver reports 0 devices)"
    return None


class CudaSession:
    """The process's CUDA context (the device's primary context) and the objects tied to it."""

    def __init__(self, device_index: int = 0) -> None:
        driver = import_pycuda()
        driver.init()
        self.device = driver.Device(device_index)
        self.context = self.device.retain_primary_context()
        self.context.push()
        self._closers: List[Callable[[], None]] = []
        self.closed = False

    @property
    def gpu_name(self) -> str:
        return str(self.device.name())

    @property
    def compute_capability(self) -> tuple:
        return tuple(int(x) for x in self.device.compute_capability())

    @property
    def driver_version(self) -> str:
        v = int(import_pycuda().get_driver_version())
        return f"{v // 1000}.{(v % 1000) // 10}"

    @property
    def runtime_version(self) -> str:
        """CUDA version pycuda was built against (TensorRT's runtime is linked in statically)."""
        major, minor = import_pycuda().get_version()[:2]
        return f"{major}.{minor}"

    def on_close(self, closer: Callable[[], None]) -> None:
        self._closers.append(closer)

    def synchronize(self) -> None:
        """Wait for every stream of the context: nothing may be in flight during a refit."""
        import_pycuda().Context.synchronize()

    def close(self) -> None:
        if self.closed:
            return
        for closer in reversed(self._closers):
            try:
                closer()
            except Exception as exc:  # keep closing the rest
                print(f"refit_core: error while releasing a TensorRT object: {exc}")
        self._closers.clear()
        gc.collect()
        try:
            self.context.synchronize()
        finally:
            self.context.pop()
            self.context.detach()
            self.closed = True

    def __enter__(self) -> "CudaSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class DeviceBuffer:
    """A growable device allocation (cudaMalloc through pycuda)."""

    def __init__(self) -> None:
        self.alloc: Any = None
        self.nbytes = 0

    def ensure(self, nbytes: int) -> int:
        nbytes = max(int(nbytes), 1)
        if nbytes > self.nbytes:
            self.free()
            self.alloc = import_pycuda().mem_alloc(nbytes)
            self.nbytes = nbytes
        return int(self.alloc)

    @property
    def ptr(self) -> int:
        return int(self.alloc)

    def free(self) -> None:
        if self.alloc is not None:
            self.alloc.free()
            self.alloc = None
            self.nbytes = 0


def new_stream() -> Any:
    return import_pycuda().Stream()


def pinned_copy(array: np.ndarray) -> np.ndarray:
    """A page-locked copy of `array`, so host-to-device copies can be asynchronous."""
    driver = import_pycuda()
    out = driver.pagelocked_empty(array.shape, array.dtype)
    np.copyto(out, array)
    return out


def pinned_empty(shape: Any, dtype: Any) -> np.ndarray:
    return import_pycuda().pagelocked_empty(tuple(int(s) for s in shape), dtype)


def copy_htod_async(dst_ptr: int, src: np.ndarray, stream: Any) -> None:
    import_pycuda().memcpy_htod_async(dst_ptr, src, stream)


def copy_dtoh_async(dst: np.ndarray, src_ptr: int, stream: Any) -> None:
    import_pycuda().memcpy_dtoh_async(dst, src_ptr, stream)


def to_device(array: np.ndarray) -> DeviceBuffer:
    """A device copy of a host array (for refits from GPU memory)."""
    buf = DeviceBuffer()
    buf.ensure(array.nbytes)
    import_pycuda().memcpy_htod(buf.ptr, np.ascontiguousarray(array))
    return buf


def h2d_bytes_per_second(nbytes: int, rounds: int = 20, warmup: int = 3) -> float:
    """Measured host-to-device copy bandwidth for `nbytes` from page-locked memory (the
    fastest a host array can reach the GPU): nbytes / the median of `rounds` synchronous copies."""
    import statistics
    import time
    driver = import_pycuda()
    host = driver.pagelocked_empty(max(int(nbytes), 1), np.uint8)
    host.fill(1)
    buf = DeviceBuffer()
    try:
        ptr = buf.ensure(host.nbytes)
        samples = []
        for i in range(warmup + rounds):
            t0 = time.perf_counter()
            driver.memcpy_htod(ptr, host)
            if i >= warmup:
                samples.append(time.perf_counter() - t0)
    finally:
        buf.free()
    return host.nbytes / statistics.median(samples)
