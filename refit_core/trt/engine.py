"""Building and deserializing engines, a handle that releases them in order, and
load_or_build: a plan read from the plan cache (plan_cache.py) or built and stored there."""
from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ..errors import EngineCacheWarning, RefitCoreError
from . import compat
from .plan_cache import PlanCache, TimingCacheStore, plan_cache_key

Shape = Tuple[int, ...]
Profile = Dict[str, Tuple[Shape, Shape, Shape]]  # input name -> (min, opt, max)


@dataclass
class BuildOptions:
    """What changes an engine: part of the plan-cache key."""

    refit: bool = True
    tf32: bool = False  # off: TensorRT is compared with FP32 references
    workspace_bytes: int = 1 << 30
    tactics: str = field(default_factory=compat.tactic_setting)
    #: more BuilderFlag names to set (e.g. "STRIP_PLAN", "REFIT_IDENTICAL" where the version has them)
    extra_flags: Tuple[str, ...] = ()
    #: "fp32" (TF32 as `tf32` says), "tf32" (FP32 with BuilderFlag.TF32 left on: Ampere and later
    #: may run convolutions and matrix products in TF32) or "fp16" (BuilderFlag.FP16: TensorRT may
    #: run layers in FP16)
    precision: str = "fp32"
    #: TensorRT's builder optimization level (0-5, TensorRT 8.6+); None: TensorRT's default
    optimization_level: Optional[int] = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")

    def key_parts(self) -> Dict[str, Any]:
        parts = asdict(self)
        if not self.extra_flags:
            del parts["extra_flags"]  # keys of plans cached before the field existed stay valid
        if self.precision == "fp32":
            del parts["precision"]  # likewise: fp32 plans keep their keys, fp16 ones get their own
        if self.optimization_level is None:
            del parts["optimization_level"]
        return parts


#: Precisions BuildOptions can build in.
PRECISIONS = ("fp32", "tf32", "fp16")


class OnnxParseError(RefitCoreError, RuntimeError):
    """TensorRT's ONNX parser rejected a model (an unsupported op, a malformed graph); the
    message is one line with the parser's own errors."""


@dataclass
class BuildResult:
    plan: bytes
    seconds: float
    timing_cache: bytes = b""  # serialized timing cache after the build (feed it to the next one)
    timing_cache_accepted: Optional[bool] = None  # None: built with an empty cache


def _use_timing_cache(config: Any, blob: Optional[bytes], logger: Any) -> Optional[bool]:
    """Install a timing cache; report whether TensorRT took it (None: built with an empty cache).
    A cache TensorRT cannot read (another version's, damaged) falls back to an empty one."""
    mark = logger.mark()
    try:
        cache = config.create_timing_cache(blob or b"")
    except Exception:  # noqa: BLE001 - a version may raise on a foreign blob instead of logging
        cache = None
    if cache is None:
        config.set_timing_cache(config.create_timing_cache(b""), False)
        return False if blob else None
    config.set_timing_cache(cache, False)
    if not blob:
        return None
    return not compat.timing_cache_rejected(logger.errors_since(mark))


def _configure(builder: Any, options: BuildOptions, profiles: List[Profile]) -> Any:
    trt = compat.import_tensorrt()
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_bytes))
    if options.refit:
        config.set_flag(trt.BuilderFlag.REFIT)
    if options.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    if not (options.tf32 or options.precision == "tf32"):
        compat.clear_tf32(config)
    for flag in options.extra_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    compat.apply_tactic_sources(config, options.tactics)
    if options.optimization_level is not None:
        compat.set_builder_optimization_level(config, options.optimization_level)
    for prof in profiles:
        p = builder.create_optimization_profile()
        for name, (lo, opt, hi) in prof.items():
            p.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(p)
    return config


def _build(builder: Any, network: Any, options: BuildOptions, profiles: List[Profile], logger: Any,
           timing_cache: Optional[bytes]) -> BuildResult:
    config = _configure(builder, options, profiles)
    store = _SHARED.timing_caches if timing_cache is None else None
    if store is not None:
        timing_cache = store.load(options.precision)
    accepted = _use_timing_cache(config, timing_cache, logger)
    if accepted is False and store is not None:
        warnings.warn(f"TensorRT refused the timing cache {store.paths(options.precision)[0]} (it could not read "
                      "it, or said \"The timing cache will not be used!\"): this build may time its tactics "
                      "afresh; the cache is rewritten from what this build holds", EngineCacheWarning, stacklevel=3)
    mark = logger.mark()
    start = time.perf_counter()
    plan = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if plan is None:
        said = " | ".join(logger.errors_since(mark)) or "no message"
        raise RuntimeError(f"TensorRT could not build the engine ({said})")
    cache_blob = bytes(config.get_timing_cache().serialize())
    if store is not None:
        store.store(options.precision, cache_blob)
    return BuildResult(bytes(plan), seconds, cache_blob, accepted)


#: timing_cache=COLD: an empty timing cache even inside shared_builds (a timed rebuild)
COLD = b""


def build_plan(populate: Callable[[Any], Any], options: BuildOptions, profiles: List[Profile],
               logger: Any, timing_cache: Optional[bytes] = None) -> BuildResult:
    """Build a plan from a network that `populate(network)` fills in.

    `populate` returns whatever must stay alive until the build ends (numpy weights that
    TensorRT reads by pointer). `timing_cache`: the serialized cache to start from; COLD (b"")
    an empty one; None the precision's shared one inside `shared_builds`, else an empty one.
    """
    builder = trt_builder(logger)
    network = compat.create_network(builder)
    keep_alive = populate(network)
    result = _build(builder, network, options, profiles, logger, timing_cache)
    del keep_alive, network, builder
    return result


def build_plan_from_onnx(onnx_path: Path, options: BuildOptions, profiles: List[Profile],
                         logger: Any, timing_cache: Optional[bytes] = None) -> BuildResult:
    builder = trt_builder(logger)
    network = compat.create_network(builder)
    parser = compat.import_tensorrt().OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors)]
        raise OnnxParseError(f"TensorRT's ONNX parser rejected {onnx_path}: " + (" | ".join(errors) or "no message"))
    result = _build(builder, network, options, profiles, logger, timing_cache)
    del parser, network, builder
    return result


def trt_builder(logger: Any) -> Any:
    """A Builder for `logger`: inside `shared_builds`, the one this process already made for the
    same logger (creating the first costs ~12.5 s on TensorRT 8.6.0); otherwise a new one."""
    if _SHARED.active and _SHARED.builder is not None and _SHARED.builder_logger is logger:
        return _SHARED.builder
    builder = compat.import_tensorrt().Builder(logger)
    if _SHARED.active:
        _SHARED.builder, _SHARED.builder_logger = builder, logger
    return builder


class _SharedBuilds:
    """What the builds of one process share while `shared_builds` is active."""

    def __init__(self) -> None:
        self.active = False
        self.builder: Any = None
        self.builder_logger: Any = None
        self.timing_caches: Optional[TimingCacheStore] = None


_SHARED = _SharedBuilds()


@contextmanager
def shared_builds(timing_caches: Optional[TimingCacheStore] = None) -> Iterator[None]:
    """Inside: the builds of this process reuse one Builder (per logger), and a build given no
    timing cache (None) starts from the precision's cache in `timing_caches` and writes back what
    it timed. On leaving, the Builder is released: leave before the CUDA context closes."""
    if _SHARED.active:
        raise RuntimeError("shared_builds is already active in this process")
    _SHARED.active, _SHARED.timing_caches = True, timing_caches
    try:
        yield
    finally:
        _SHARED.active, _SHARED.timing_caches = False, None
        _SHARED.builder = _SHARED.builder_logger = None


@dataclass(frozen=True)
class IOTensor:
    name: str
    is_input: bool
    dtype: Any  # numpy dtype
    shape: Tuple[int, ...]  # -1 for dynamic dimensions


class EngineHandle:
    """A deserialized engine with the runtime it came from; `close()` frees both, engine first."""

    def __init__(self, plan: bytes, logger: Any, source: str = "built") -> None:
        trt = compat.import_tensorrt()
        self.logger = logger
        self.runtime = trt.Runtime(logger)
        mark = logger.mark()
        self.engine = self.runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            said = " | ".join(logger.errors_since(mark)) or "no message"
            raise RuntimeError(f"TensorRT could not deserialize the plan ({said})")
        self.plan_size = len(plan)
        self.source = source
        self._children: List[Any] = []

    def adopt(self, obj: Any) -> Any:
        """Tie an object (runner, refitter) to this engine so it is closed before it."""
        self._children.append(obj)
        return obj

    @property
    def refittable(self) -> bool:
        return bool(getattr(self.engine, "refittable", False))

    def io(self) -> List[IOTensor]:
        trt = compat.import_tensorrt()
        out = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            out.append(IOTensor(name, self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                                compat.numpy_dtype(self.engine.get_tensor_dtype(name)),
                                tuple(self.engine.get_tensor_shape(name))))
        return out

    def profile_shapes(self, name: str, profile: int = 0) -> Tuple[Tuple[int, ...], ...]:
        """(min, opt, max) of an input in one optimization profile."""
        return tuple(tuple(s) for s in self.engine.get_tensor_profile_shape(name, profile))

    def close(self) -> None:
        for child in reversed(self._children):
            child.close()
        self._children.clear()
        self.engine = None
        self.runtime = None


# --------------------------------------------------------------------------------------
# A plan from the plan cache (plan_cache.py), or built and cached
# --------------------------------------------------------------------------------------
def plan_key_parts(model: str, options: BuildOptions, gpu_name: str, **specific: Any) -> Dict[str, Any]:
    """What a cached plan is keyed on (plan_cache_key hashes it): the model's name, the build
    options, the TensorRT version and the GPU, plus what identifies the model's graph and
    weights (`specific`: an ONNX file's sha256, the weights' sha256, the input shapes, ...)."""
    return {"model": model, "options": options.key_parts(), "tensorrt": compat.trt_version_string(),
            "gpu": gpu_name, **specific}


_builds_here = 0  # plans load_or_build built (not read) in this process


def builds_in_this_process() -> int:
    """How many plans load_or_build has built, not read from the cache, in this process (the
    prewarm workers tell a build from a cache hit with it)."""
    return _builds_here


def load_or_build(cache: Optional[PlanCache], key_parts: Dict[str, Any], build: Callable[[], BuildResult],
                  logger: Any, progress: Callable[[str], None] = print) -> Tuple[EngineHandle, Optional[BuildResult]]:
    """The sample's "Reading engine from file" path: use the cached plan when it is sound,
    otherwise build (and cache) a new one. Returns the handle and the build result (None when
    the plan came from the cache). A plan that cannot be stored is returned all the same,
    with an EngineCacheWarning."""
    key = plan_cache_key(key_parts)
    if cache is not None:
        plan = cache.load(key)
        if plan is not None:
            progress(f"Reading engine from file {cache.paths(key)[0]}")
            try:
                return EngineHandle(plan, logger, source="cache"), None
            except RuntimeError as exc:
                warnings.warn(f"cached TensorRT plan {cache.paths(key)[0]} did not deserialize ({exc}); "
                              "rebuilding", EngineCacheWarning, stacklevel=2)
    progress("Building an engine from scratch; this may take a while...")
    global _builds_here
    result = build()
    _builds_here += 1
    progress(f"Completed creating engine in {result.seconds:.1f} s")
    if cache is not None:
        try:
            cache.store(key, result.plan, {"key_parts": key_parts})
        except (OSError, ValueError, TypeError) as exc:
            warnings.warn(f"built TensorRT plan could not be stored in the cache as {cache.paths(key)[0]} "
                          f"({type(exc).__name__}: {exc}); using it uncached",
                          EngineCacheWarning, stacklevel=2)
    return EngineHandle(result.plan, logger, source="built"), result
