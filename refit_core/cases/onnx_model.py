"""A case for any ONNX model with float weights: the ONNX parser builds a REFIT
engine, ONNX Runtime is the reference, seeded random inputs are the probes.

Build weights: the model's own initializers that TensorRT lists as refittable by name.
Target weights: each of those with seeded multiplicative noise, w * (1 + noise * N(0, 1)),
the noise grown until the reference moves (OnnxModelCase.target_weights); a weight that sets
an operator's domain (DOMAIN_INPUTS: a Pow exponent) keeps its value.
Probe rows: each output reshaped to (batch, -1) and concatenated along the columns; integer and
boolean outputs beside a float one are left out (compared_outputs).
Dynamic dimensions need fixed `input_shapes` (min = opt = max).
Tolerance: by build precision (PRECISION_TOLERANCES) unless the case gives its own.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..onnx_prep.generic import SHAPE_ONLY_OPS, float_types
from .base import CaseEngine, CaseResources, OutputTolerance, RefitCase

Shapes = Mapping[str, Tuple[int, ...]]

#: the largest perturbation size target_weights() grows to (w * (1 + 2 z): sign flips included)
MAX_NOISE = 2.0

#: Engine vs ONNX Runtime (FP32), per probe row: max|got - ref| <= atol + rtol * max|ref row|.
#: FP32 with TF32 cleared: reassociation only (~1e-6 measured). TF32 rounds matrix-product inputs
#: to 10 mantissa bits (~5e-4 each). FP16 also stores activations in FP16 (~2e-3 to 4e-3 relative
#: measured on the zoo with TensorRT 8.5.3.1). The seeded perturbations move the reference by
#: order one, far beyond twice each of these.
PRECISION_TOLERANCES = {"fp32": OutputTolerance(atol=1e-4, rtol=1e-4),
                        "tf32": OutputTolerance(atol=5e-3, rtol=1e-2),
                        "fp16": OutputTolerance(atol=1e-2, rtol=3e-2)}


def with_initializers(model_path: Path, weights: Mapping[str, np.ndarray]) -> bytes:
    """The model's bytes with the named initializers replaced. An initializer given its own
    value keeps its bytes, so the result (and a plan-cache key over it) depends on the values
    alone, not on which unchanged weights a caller also passed."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(model_path))
    for init in model.graph.initializer:
        if init.name in weights:
            new = np.asarray(weights[init.name])
            old = numpy_helper.to_array(init)
            if old.dtype == new.dtype and old.shape == new.shape and np.array_equal(old, new):
                continue
            init.CopyFrom(numpy_helper.from_array(new, init.name))
    return model.SerializeToString()


#: (op type, input index) whose value sets where the operator is defined or the shape of what it
#: gives: perturbing a weight it is computed from makes the model undefined, not different (a
#: LayerNorm written out as Pow(x - mean, 2) gives NaN for every negative x once its exponent is
#: 2.08; a YOLO head's Range(0.0, width + 8.0, 1.0) or Resize's scales change the tensor sizes a
#: later Add needs), so the target keeps such weights at their build values
DOMAIN_INPUTS = frozenset({("Pow", 1), ("Range", 0), ("Range", 1), ("Range", 2), ("Resize", 1), ("Resize", 2),
                           ("Resize", 3), ("Upsample", 1), ("Reshape", 1), ("Expand", 1), ("Tile", 1),
                           ("ConstantOfShape", 0), ("Slice", 1), ("Slice", 2), ("Slice", 3), ("Slice", 4),
                           ("Pad", 1), ("TopK", 1), ("OneHot", 1), ("Squeeze", 1), ("Unsqueeze", 1)})


def domain_weights(model_path: Path) -> frozenset:
    """Names of the model's initializers that a DOMAIN_INPUTS position is computed from (through
    any ops of the main graph but SHAPE_ONLY_OPS)."""
    import onnx
    graph = onnx.load(str(model_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    todo = [name for node in graph.node for k, name in enumerate(node.input) if (node.op_type, k) in DOMAIN_INPUTS]
    seen = set()
    while todo:
        name = todo.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        node = producer.get(name)
        if node is not None and node.op_type not in SHAPE_ONLY_OPS:
            todo.extend(node.input)
    return frozenset(seen & initializers)


def output_rows(outputs: Mapping[str, np.ndarray], names: Any) -> np.ndarray:
    """The probe rows: each named output reshaped to (batch, -1), concatenated along the columns;
    one row of everything where the outputs' first dims differ (an RNN's state beside its
    output, a scalar beside a batch)."""
    parts = [np.asarray(outputs[n], dtype=np.float64) for n in names]
    firsts = {p.shape[0] if p.ndim else 1 for p in parts}
    rows = firsts.pop() if len(firsts) == 1 else 1
    return np.concatenate([p.reshape(rows, -1) for p in parts], axis=1)


def compared_outputs(model_path: Path, names: Optional[Sequence[str]] = None) -> Tuple[List[str], List[str]]:
    """(outputs the checks compare, outputs left out) of `names` (None: the model's own, in order).
    Integer and boolean outputs are left out where the model has a float one: they are indices or
    flags (an ArgMax, a TopK's indices, a mask) that a near-tie flips from one engine to another,
    by a whole class or position, not numbers a tolerance fits. A model with no float output
    keeps them all."""
    import onnx
    from onnx import TensorProto
    outputs = onnx.load(str(model_path), load_external_data=False).graph.output
    kinds = {o.name: o.type.tensor_type.elem_type for o in outputs}
    names = [o.name for o in outputs] if names is None else list(names)
    compared = [n for n in names if kinds.get(n, TensorProto.FLOAT) in float_types()]
    if not compared:
        return names, []
    return compared, [n for n in names if n not in compared]


def ort_rows(model_path: Path, weights: Mapping[str, np.ndarray], feeds: Mapping[str, np.ndarray],
             names: Optional[Any] = None) -> np.ndarray:
    """ONNX Runtime's probe rows for the model with `weights` (`names`: the outputs, in this
    order; None: the model's own)."""
    from ..models.ort_session import ort_session
    session = ort_session(with_initializers(model_path, weights))
    names = [o.name for o in session.get_outputs()] if names is None else list(names)
    return output_rows(dict(zip(names, session.run(names, dict(feeds)))), names)


class OnnxModelEngine(CaseEngine):
    def __init__(self, case: "OnnxModelCase", model_path: Path, session: Any, logger: Any, plan_cache: Any,
                 tmp_dir: Path) -> None:
        from ..onnx_prep.generic import onnx_float_initializers
        from ..refit.refitter import EngineRefitter
        from ..trt.runner import TrtRunner
        self.case, self.model_path, self.session, self.logger, self.tmp_dir = case, model_path, session, logger, tmp_dir
        self.plan_cache = plan_cache
        self.handle, built = self._build(model_path, plan_cache, case.build_options())
        self.build_seconds = built.seconds if built else None
        #: the REFIT build's timing cache, reused by the build without REFIT (None: read from the plan cache)
        self.timing_cache = built.timing_cache if built else None
        session.on_close(self.handle.close)
        self.runner = TrtRunner(self.handle)
        #: the outputs the checks compare, and the integer/bool ones left out (compared_outputs)
        self.output_names, self.left_out_outputs = compared_outputs(model_path, [t.name for t in self.runner.outputs])
        # fp16: weights FP16 cannot hold are refused unless the case allows them
        self.refitter = EngineRefitter(self.handle, None, onnx_float_initializers(model_path), session.synchronize,
                                       fp16=case.precision == "fp16" and not case.allow_fp16_range)
        self.build_weights = {n: a.copy() for n, a in self.refitter.current.items()}
        self.target_weights = case.target_weights(self.build_weights, model_path)
        self.feeds = case.probe_feeds(model_path)
        self.built_outputs = self.probe()

    def _build(self, path: Path, plan_cache: Any, options: Any) -> Tuple[Any, Any]:
        return self.case.load_or_build(path, options, self.session, self.logger, plan_cache)

    def probe(self) -> np.ndarray:
        return self.probe_with(self.runner)

    def probe_with(self, runner: Any) -> np.ndarray:
        return output_rows(runner.infer(self.feeds), self.output_names)

    def build_plain(self, weights: Mapping[str, np.ndarray]) -> Any:
        return self.case.build_plain_engine(self.model_path, weights, self.tmp_dir, self.session, self.logger,
                                            self.plan_cache, timing_cache=self.timing_cache)

    def coverage(self) -> Any:
        """The coverage map, with the weights the refitter left out for TensorRT-only partners."""
        coverage = super().coverage()
        coverage.blocked = dict(self.refitter.blocked)
        return coverage

    def latency_feeds(self) -> Dict[str, np.ndarray]:
        return dict(self.feeds)

    def onnx_model_path(self) -> Optional[Path]:
        return self.model_path

    def reference(self, weights: Mapping[str, np.ndarray]) -> np.ndarray:
        return ort_rows(self.model_path, weights, self.feeds, self.output_names)

class OnnxModelCase(RefitCase):
    """`make_model(dir) -> path` writes (or finds) the ONNX file; `input_shapes` fixes every input."""

    description = "an ONNX model through the ONNX parser, ONNX Runtime as the reference"
    plan_cached = True
    #: warm_plain() assumes every float initializer is refittable by name (true of most models); where
    #: TensorRT disagrees the session's plain build has other weights, misses the cache and builds itself
    warms_plain_alone = True

    def __init__(self, name: str, make_model: Callable[[Path], Path], input_shapes: Shapes,
                 tolerance: Optional[OutputTolerance] = None, noise: Optional[float] = None,
                 seed: int = 0, precision: str = "fp32", allow_fp16_range: bool = False,
                 optimization_level: Optional[int] = None) -> None:
        self.name = name
        self.make_model = make_model
        self.input_shapes = {k: tuple(int(d) for d in v) for k, v in input_shapes.items()}
        self.tolerance = tolerance if tolerance is not None else PRECISION_TOLERANCES[precision]
        self.noise = noise
        self.seed = seed
        self.precision = precision  # "fp32" or "fp16" (BuildOptions.precision)
        self.allow_fp16_range = allow_fp16_range  # fp16: let weights FP16 cannot hold through
        self._model_path: Optional[Path] = None  # the file model_file() last gave (for inputs_sha256)
        self.optimization_level = optimization_level  # TensorRT's builder optimization level (None: its default)

    def build_options(self, refit: bool = True) -> Any:
        """The BuildOptions of this case's engines (`refit=False`: the same without REFIT)."""
        from ..trt.engine import BuildOptions
        return BuildOptions(refit=refit, precision=self.precision, optimization_level=self.optimization_level)

    def load_or_build(self, path: Path, options: Any, session: Any, logger: Any, plan_cache: Any,
                      timing_cache: Optional[bytes] = None) -> Tuple[Any, Any]:
        """(EngineHandle, BuildResult or None) of the ONNX file at `path`, through the plan cache;
        `timing_cache`: a serialized timing cache to start the build from (None: empty)."""
        from ..fileio import sha256_file
        from ..trt.engine import build_plan_from_onnx, load_or_build, plan_key_parts
        key = plan_key_parts(self.name, options, session.gpu_name, onnx_sha256=sha256_file(path),
                             shapes={k: list(v) for k, v in sorted(self.input_shapes.items())})
        return load_or_build(plan_cache, key, lambda: build_plan_from_onnx(path, options, self.profiles(path), logger,
                                                                           timing_cache=timing_cache), logger)

    def build_plain_engine(self, model_path: Path, weights: Mapping[str, np.ndarray], tmp_dir: Path, session: Any,
                           logger: Any, plan_cache: Any, timing_cache: Optional[bytes] = None) -> Any:
        """The model with `weights` built WITHOUT REFIT in this case's precision (plan cached),
        from `timing_cache` where given (the REFIT build's: the same layers, tactics timed once)."""
        from ..fileio import atomic_write_bytes
        path = atomic_write_bytes(Path(tmp_dir) / "plain-build.onnx", with_initializers(model_path, weights))
        handle, _ = self.load_or_build(path, self.build_options(refit=False), session, logger, plan_cache,
                                       timing_cache=timing_cache)
        return handle

    def warm_plain(self, resources: CaseResources, session: Any, logger: Any, plan_cache: Any) -> None:
        from ..onnx_prep.generic import onnx_float_initializers
        path, tmp = self.model_file(resources)
        target = self.target_weights(onnx_float_initializers(path), path)
        self.build_plain_engine(path, target, tmp, session, logger, plan_cache).close()

    def case_dir(self, resources: CaseResources) -> Path:
        tmp = resources.tmp_dir / self.name
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp

    def model_file(self, resources: CaseResources) -> Tuple[Path, Path]:
        """(the ONNX file, this case's temp directory): `make_model` writes or finds the file there."""
        tmp = self.case_dir(resources)
        self._model_path = Path(self.make_model(tmp))
        return self._model_path, tmp

    def inputs_sha256(self) -> str:
        """sha256 of the ONNX file's bytes (the file model_file() gave; before any, the one
        `make_model` writes into a scratch folder)."""
        import tempfile
        from ..models.assets import file_sha256
        if self._model_path is not None and self._model_path.is_file():
            return file_sha256(self._model_path)
        with tempfile.TemporaryDirectory(prefix="refit-inputs-") as scratch:
            return file_sha256(Path(self.make_model(Path(scratch))))

    def noise_for(self, weights: int) -> float:
        """The perturbation's starting size: `noise`, or for noise=None min(0.5, 1/sqrt(weights)),
        so that the output scale grows by about e^0.5 however many layers are perturbed (0.5 on every
        layer of a 50-layer CNN multiplies its logits ~10^4 and measures FP32 cancellation, not refit)."""
        if self.noise is not None:
            return float(self.noise)
        return min(0.5, 1.0 / max(weights, 1) ** 0.5)

    def target_weights(self, build_weights: Mapping[str, np.ndarray],
                       model_path: Optional[Path] = None) -> Dict[str, np.ndarray]:
        """Every weight with seeded noise of size noise_for() (see `noisy`). With `model_path` and
        noise=None the size doubles, up to MAX_NOISE, until ONNX Runtime's reference for the target
        moves beyond NO_OP_MARGIN x the tolerance: a model whose outputs barely move at the starting
        size (a saturated sigmoid map under random probes) would otherwise let a refit that did
        nothing pass. The seed is the same at every size: the result is a function of the inputs."""
        kept = domain_weights(model_path) if model_path is not None else frozenset()
        noise = self.noise_for(len(build_weights))
        target = self.noisy(build_weights, noise, kept)
        if model_path is None or self.noise is not None or not build_weights:
            return target
        from .base import NO_OP_MARGIN, compare_outputs
        feeds, margin = self.probe_feeds(model_path), self.tolerance.scaled(NO_OP_MARGIN)
        try:
            names = compared_outputs(model_path)[0]
            before = ort_rows(model_path, build_weights, feeds, names)
            while noise < MAX_NOISE and compare_outputs(before, ort_rows(model_path, target, feeds, names), margin).ok:
                noise = min(MAX_NOISE, 2.0 * noise)
                target = self.noisy(build_weights, noise, kept)
        except Exception:  # noqa: BLE001 - ONNX Runtime cannot run these weights: the check will say so
            return self.noisy(build_weights, self.noise_for(len(build_weights)), kept)
        return target

    def noisy(self, build_weights: Mapping[str, np.ndarray], noise: float,
              kept: frozenset = frozenset()) -> Dict[str, np.ndarray]:
        """Every weight with seeded multiplicative noise: w * (1 + noise * N(0, 1)); a weight whose
        values are all positive (a BatchNorm variance, a scale) gets w * exp(noise * N(0, 1))
        instead, so it stays positive and the model stays defined; the weights named in `kept`
        (domain_weights) keep their values, and so do NaN and Inf entries (a -inf a Max starts from).
        Each target has its weight's shape and dtype exactly,
        a 0-d weight included (what the refit path takes for the real one). The draws do not
        depend on `kept`: keeping a weight leaves every other target as it was."""
        rng = np.random.default_rng(self.seed)
        out = {}
        for n, w in sorted(build_weights.items()):
            w = np.asarray(w)
            z = np.asarray(rng.standard_normal(w.shape)).reshape(w.shape)
            factor = np.exp(noise * z) if w.size and bool(np.all(w > 0)) else 1.0 + noise * z
            with np.errstate(invalid="ignore", over="ignore"):
                moved = np.where(np.isfinite(w), w * factor, w)  # a NaN or Inf the model holds stays as it is
            value = w if n in kept else np.asarray(moved).reshape(w.shape)
            out[n] = np.array(value, dtype=w.dtype, order="C")
        return out

    def probe_feeds(self, model_path: Optional[Path] = None) -> Dict[str, np.ndarray]:
        """Seeded inputs of the given shapes and of the model's input dtypes (float32 without
        `model_path`): standard-normal floats, zeros for integer inputs, a checkerboard of True and
        False for boolean ones (onnx_prep.ort_agreement.seeded_inputs)."""
        from ..onnx_prep.ort_agreement import input_dtypes, seeded_inputs
        dtypes: Dict[str, Any] = {}
        if model_path is not None:
            import onnx
            dtypes = input_dtypes(onnx.load(str(model_path), load_external_data=False))
        return seeded_inputs({name: (shape, dtypes.get(name, np.float32))
                              for name, shape in self.input_shapes.items()}, self.seed + 1)

    def profiles(self, model_path: Path) -> list:
        """One profile fixing every input that has a dynamic dimension (none when all are static)."""
        import onnx
        graph = onnx.load(str(model_path), load_external_data=False).graph
        initializers = {i.name for i in graph.initializer}
        dynamic = {}
        for inp in graph.input:
            if inp.name in initializers:
                continue
            dims = inp.type.tensor_type.shape.dim
            if any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims):
                if inp.name not in self.input_shapes:
                    raise ValueError(f"case {self.name}: input {inp.name!r} has a dynamic shape; give its shape")
                shape = self.input_shapes[inp.name]
                dynamic[inp.name] = (shape, shape, shape)
        return [dynamic] if dynamic else []

    def open(self, resources: CaseResources, session: Any, logger: Any, plan_cache: Any) -> CaseEngine:
        path, tmp = self.model_file(resources)
        return OnnxModelEngine(self, path, session, logger, plan_cache, tmp)

    def unavailable_reason(self, resources: CaseResources) -> Optional[str]:
        return None
