"""The MNIST property test's strategy and tolerance, on the CPU (no TensorRT, no data set).

A LeNet with random He-initialised weights and random inputs stands in for the trained one
(the float64 numpy reference, refit_core.samples.mnist.lenet); what is checked is the
strategy (tests/refit/strategies.py) and the per-row tolerance (cases.mnist.PROPERTY_TOLERANCE)
that tests/refit/test_refit_properties_gpu.py uses.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from refit_core.cases.base import compare_outputs
from refit_core.cases.mnist import PROPERTY_TOLERANCE
from refit_core.samples.mnist import LENET_SHAPES
from refit_core.samples.mnist.lenet import lenet_forward
from tests.refit.strategies import ZERO_KERNEL_ODDS, degenerate, perturb_all, weight_perturbations

PLANS = 160


def _random_lenet(seed: int = 0) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in LENET_SHAPES.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        std = np.sqrt(2.0 / fan_in) if len(shape) > 1 else 0.05
        out[name] = (rng.standard_normal(shape) * std).astype(np.float32)
    return out


def _images(n: int = 8, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 1, 28, 28)).astype(np.float32)


@pytest.fixture(scope="module")
def drawn_plans() -> List[Dict]:
    """PLANS plans as Hypothesis generates them for the property test (no shrinking)."""
    plans: List[Dict] = []

    @settings(max_examples=PLANS, database=None, phases=[Phase.generate], deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(plan=weight_perturbations(LENET_SHAPES))
    def collect(plan):
        plans.append(plan)

    collect()
    assert len(plans) >= PLANS * 0.9
    return plans


def test_degenerate_plans_are_a_small_minority(drawn_plans):
    """Constant logits (the reference ignores the input) in at most 15% of the plans; the old
    strategy (any weight could be zeroed) gave about half."""
    weights, images = _random_lenet(), _images()
    flags = [degenerate(lenet_forward(perturb_all(weights, p), images)) for p in drawn_plans]
    share = sum(flags) / len(flags)
    print(f"degenerate: {sum(flags)} of {len(flags)} plans")
    assert share <= 0.15, f"{sum(flags)} of {len(flags)} plans give input-independent logits"


def test_zeroed_kernels_are_rare_and_single(drawn_plans):
    zeroed = [[n for n, p in plan.items() if p["kind"] == "zeros" and len(LENET_SHAPES[n]) > 1]
              for plan in drawn_plans]
    assert all(len(z) <= 1 for z in zeroed)
    share = sum(1 for z in zeroed if z) / len(zeroed)
    assert share <= 3.0 / ZERO_KERNEL_ODDS, f"{share:.0%} of plans zero a kernel"


def test_every_plan_changes_every_weight(drawn_plans):
    """No kind leaves a weight as it was (a factor of 1, no noise, keep everything)."""
    weights = _random_lenet()
    for plan in drawn_plans:
        changed = perturb_all(weights, plan)
        same = [n for n in plan if np.array_equal(changed[n], weights[n])]
        assert not same, f"{plan} leaves {same} unchanged"


def test_the_plans_are_varied(drawn_plans):
    """Not one kind everywhere: every kind is drawn, and most plans mix kinds."""
    kinds = {p["kind"] for plan in drawn_plans for p in plan.values()}
    assert kinds == {"noise", "scale", "sign_flip", "sparsity", "large", "zeros"}
    mixed = sum(1 for plan in drawn_plans if len({p["kind"] for p in plan.values()}) > 1)
    assert mixed >= 0.8 * len(drawn_plans)


def test_the_first_plan_is_informative(drawn_plans):
    """What Hypothesis generates first (its simplest plan, which every run starts with): not
    "every weight scaled" (for a ReLU net that only rescales the logits), no zeroed kernel,
    and reference logits that depend on the input."""
    first = drawn_plans[0]
    assert not all(p["kind"] == "scale" for p in first.values()), first
    assert not any(p["kind"] == "zeros" for n, p in first.items() if len(LENET_SHAPES[n]) > 1), first
    assert not degenerate(lenet_forward(perturb_all(_random_lenet(), first), _images()))


def test_degenerate_means_the_same_outputs_for_every_input():
    assert degenerate(np.tile([[1.0, -2.0, 3.0]], (5, 1)))
    varying = np.tile([[1.0, -2.0, 3.0]], (5, 1))
    varying[3, 1] += 0.01
    assert not degenerate(varying)
    assert not degenerate(np.array([[np.nan, 1.0], [np.nan, 1.0]]))  # NaN: let the comparison fail


def test_tolerance_is_per_row():
    """One image with large logits must not widen the tolerance of another image."""
    ref = np.array([[1e4, -2e3, 5.0], [2.0, -1.0, 0.5]])
    small_row_off = ref.copy()
    small_row_off[1, 0] += 5e-3  # 0.25% of that row's scale; tiny against the first row's
    assert not compare_outputs(small_row_off, ref, PROPERTY_TOLERANCE).ok
    big_row_off = ref.copy()
    big_row_off[0, 0] += 0.5  # 5e-5 of that row's scale
    assert compare_outputs(big_row_off, ref, PROPERTY_TOLERANCE).ok


def test_tolerance_admits_fp32_and_refuses_a_layer_refitted_slightly_off(drawn_plans):
    """FP32 arithmetic (numpy float32 for the engine) stays within PROPERTY_TOLERANCE of the
    float64 reference on drawn plans, x1e4 magnitudes included; a layer refitted 0.1% or 1%
    off (a selfcheck fault) does not."""
    images = _images()
    base = _random_lenet()
    for plan in [p for p in drawn_plans if any(q["kind"] == "large" for q in p.values())][:6] + drawn_plans[:6]:
        weights = perturb_all(base, plan)
        ref = lenet_forward(weights, images)
        if degenerate(ref):
            continue
        fp32 = lenet_forward(weights, images, accumulate=np.float32)
        assert compare_outputs(fp32, ref, PROPERTY_TOLERANCE).ok, plan
        for factor in (1.001, 1.01):
            off = dict(weights, **{"fc2.weight": weights["fc2.weight"] * np.float32(factor)})
            cmp = compare_outputs(lenet_forward(off, images), ref, PROPERTY_TOLERANCE)
            assert not cmp.ok, f"fc2.weight x{factor} passes: {cmp} for {plan}"
