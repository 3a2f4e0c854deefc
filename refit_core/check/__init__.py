"""`python -m refit_core check MODEL.onnx` and `python -m refit_core prepare MODEL.onnx -o OUT`.

`prepare` (onnx_prep.generic, no TensorRT) writes the model `check` builds: dynamic input
dims fixed from --shapes, weights held in Constant nodes moved to initializers, proven with
ONNX Runtime. `check` prepares (keeping the file with --save-prepared), then on a machine
with a GPU and TensorRT builds a REFIT engine (FP32 with TF32 off, TF32, or FP16), prints
the coverage map (refit.coverage) with the weights TensorRT refits only with TensorRT-only
partners (left out, with why and what to change), and runs the shared checks of
cases.checks, the same the GPU tier's tests/cases/test_refit_checks_gpu.py runs: engine vs
ONNX Runtime, the perturbation moves the reference, refit back restores, refit to the
perturbed weights matches ONNX Runtime, twice is bit-identical, and (unless --skip-builds)
refit vs a fresh build WITHOUT REFIT. It times refits, a cold rebuild (saying which builder
optimization level), and the refit tax against the engine without REFIT (built from the
REFIT build's timing cache); an estimate is printed before each build. A results record
for the gate is written with --results.

Everything that can be refused without a GPU is refused first, in one sentence with exit
status 2 and no traceback: a missing or unreadable file, external data outside the model's
folder, a dynamic input without --shapes, a shape that does not fit, a model ONNX Runtime
cannot run; then a machine without TensorRT/GPU; then a model TensorRT's parser rejects
(naming the op types, and dynamic quantization) or cannot build. Exit status 1: a check
failed (nothing refittable by name is a failed check, with the reason). 0: all passed.

The package: plan (arguments, exit statuses, everything refused before the GPU, `prepare`),
gpu_run (the run on the GPU), progress (Step) and build_times (the estimates). Python 3.9
(the GPU kit): no 3.10+ syntax in this package.
"""
from __future__ import annotations

import argparse
from typing import Optional

from .plan import CheckUnusable, plan_from_args


def gpu_unavailable_reason() -> Optional[str]:
    from ..trt.cuda import gpu_unavailable_reason as reason
    return reason()


def run_check(args: argparse.Namespace) -> int:
    """The `check` subcommand: refuse what can be refused without a GPU, prepare, then run on it."""
    plan = plan_from_args(args)
    try:
        reason = gpu_unavailable_reason()
        if reason is not None:
            raise CheckUnusable(f"cannot run on this machine: {reason.rstrip('.')}.")
        from .gpu_run import run_on_gpu
        return run_on_gpu(plan)
    finally:
        plan.cleanup()
