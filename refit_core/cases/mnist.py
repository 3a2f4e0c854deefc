"""The MNIST case: the sample's LeNet, built through the network API with conv1 zeroed.

Build weights: the trained net with conv1 kernel and bias zero (the sample's start).
Target weights: the trained conv1. Reference: float64-accumulated numpy LeNet. Probes: the
first 256 test images (one row of 10 logits each).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

import numpy as np

from ..samples.mnist import LENET_SHAPES, MNIST_REFIT_TARGETS
from .base import CaseEngine, CaseResources, OutputTolerance, RefitCase, variant_name

PROBE_IMAGES = 256
#: what samples.mnist.flow builds through the network API, as far as inputs_sha256 is concerned: bump
#: `version` when build_network changes the network it builds from the same weights
NETWORK_RECIPE = {"network": "LeNet through the TensorRT network API (flows.mnist)", "version": 1,
                  "shapes": {k: list(v) for k, v in LENET_SHAPES.items()}}
#: the Hypothesis property tests refit every weight to arbitrary values (x1e4 magnitudes,
#: sign flips, sparsity): per image row, max|diff| <= 1e-3 + 1e-4 * max|reference logit of
#: the row|. Looser than the case's rtol 1e-5 because cancellation in 800-term sums of
#: large, mixed-sign terms costs FP32 more than the trained weights do; a layer refitted
#: 0.1% off still moves the logits by ~1e-3 relative, ten times this.
PROPERTY_TOLERANCE = OutputTolerance(atol=1e-3, rtol=1e-4)
#: TensorRT vs the float64 reference per image row, by build precision. FP32 (TF32 cleared):
#: summation order only. TF32 rounds conv/FC inputs to 10 mantissa bits; FP16 also stores
#: activations in FP16 (logits reach ~30, so ~3e-2 absolute). The trained conv1 moves the
#: logits of a zero-conv1 engine by order ten, far beyond twice any of these.
TOLERANCES = {"fp32": OutputTolerance(atol=1e-3, rtol=1e-5),
              "tf32": OutputTolerance(atol=1e-2, rtol=5e-3),
              "fp16": OutputTolerance(atol=5e-2, rtol=1e-2)}


class LenetEngine(CaseEngine):
    """The shared zero-conv1 LeNet engine with one runner and one refitter.

    Tests that refit put the weights they need in place first, so test order does not
    matter; `fresh_logits` are the outputs of all test images before any refit.
    """

    def __init__(self, case: "MnistCase", session: Any, logger: Any, trained: Mapping[str, np.ndarray],
                 images: np.ndarray, plan_cache: Any = None) -> None:
        from ..samples.mnist import flow
        from ..refit.refitter import EngineRefitter
        from ..trt.engine import BuildOptions
        from ..trt.runner import TrtRunner
        self.case = case
        self.flow = flow
        self.session = session
        self.logger = logger
        self.images = images
        self.probe_images = np.ascontiguousarray(images[:PROBE_IMAGES])
        self.trained = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in trained.items()}
        self.start_weights = flow.dummy_conv1(self.trained)
        self.build_weights = dict(self.start_weights)
        self.target_weights = {k: self.trained[k] for k in MNIST_REFIT_TARGETS}
        self.options = BuildOptions(precision=case.precision)
        self.plan_cache = plan_cache
        self.handle, built = flow.build_lenet_engine(self.start_weights, self.options, logger, plan_cache,
                                                     session.gpu_name, progress=lambda line: None)
        self.build_seconds = built.seconds if built else None
        session.on_close(self.handle.close)
        self.runner = TrtRunner(self.handle)
        self.refitter = EngineRefitter(self.handle, flow.weight_specs(), self.start_weights, session.synchronize,
                                       fp16=case.precision == "fp16")
        self.fresh_logits = flow.run_lenet(self.runner, images)
        self.built_outputs = self.probe()  # the probe batch itself: kernels may differ by batch size

    # ---- the sample's view ---------------------------------------------------------------
    def logits(self, images: np.ndarray) -> np.ndarray:
        return self.flow.run_lenet(self.runner, images)

    # ---- the generic view ----------------------------------------------------------------
    def probe(self) -> np.ndarray:
        return self.probe_with(self.runner)

    def probe_with(self, runner: Any) -> np.ndarray:
        return self.flow.run_lenet(runner, self.probe_images).astype(np.float64)

    def build_plain(self, weights: Mapping[str, np.ndarray]) -> Any:
        from ..trt.engine import BuildOptions
        handle, _ = self.flow.build_lenet_engine(weights, BuildOptions(refit=False, precision=self.case.precision),
                                                 self.logger, self.plan_cache, self.session.gpu_name,
                                                 progress=lambda s: None)
        return handle

    def latency_feeds(self) -> Dict[str, np.ndarray]:
        return {self.flow.INPUT_NAME: self.probe_images}

    def reference(self, weights: Mapping[str, np.ndarray]) -> np.ndarray:
        from ..samples.mnist.lenet import lenet_forward
        full = dict(self.build_weights)
        full.update(weights)
        return lenet_forward(full, self.probe_images)

    def fresh_probe(self, weights: Mapping[str, np.ndarray]) -> np.ndarray:
        from ..trt.runner import TrtRunner
        full = dict(self.build_weights)
        full.update(weights)
        handle, _ = self.flow.build_lenet_engine(full, self.options, self.logger, None, self.session.gpu_name,
                                                 progress=lambda s: None)
        try:
            return self.flow.run_lenet(TrtRunner(handle), self.probe_images).astype(np.float64)
        finally:
            handle.close()


class MnistCase(RefitCase):
    description = "LeNet (network API), conv1 zero at build, refit with the trained conv1"

    def __init__(self, precision: str = "fp32") -> None:
        self.precision = precision
        self.name = variant_name("mnist", precision)
        self.tolerance = TOLERANCES[precision]

    def inputs_sha256(self) -> str:
        """sha256 over the committed weights file's sha256 and NETWORK_RECIPE."""
        import json
        from ..fileio import sha256_bytes
        from ..models.assets import asset_sha256
        from ..samples.mnist.weights import committed_lenet_path
        blob = {"weights_file_sha256": asset_sha256(committed_lenet_path()), "network": NETWORK_RECIPE}
        return sha256_bytes(json.dumps(blob, sort_keys=True).encode("utf-8"))

    def unavailable_reason(self, resources: CaseResources) -> Optional[str]:
        if resources.data_dir is None:
            return "MNIST data not available: pass --data-dir DIR or set REFIT_DATA_DIR"
        return None

    def load_inputs(self, resources: CaseResources) -> Dict[str, Any]:
        """The committed trained weights (verified) and the normalised test set."""
        from ..samples.mnist.data import load_mnist, normalize_images
        from ..samples.mnist.weights import committed_lenet
        trained = committed_lenet()
        test = load_mnist(resources.data_dir, "test")
        return {"trained": trained, "images": normalize_images(test.images),
                "labels": test.labels.astype(np.int64)}

    def open(self, resources: CaseResources, session: Any, logger: Any, plan_cache: Any,
             inputs: Optional[Dict[str, Any]] = None) -> LenetEngine:
        inputs = inputs or self.load_inputs(resources)
        return LenetEngine(self, session, logger, inputs["trained"].weights, inputs["images"], plan_cache)


assert set(MNIST_REFIT_TARGETS) <= set(LENET_SHAPES)
