"""Hypothesis strategies for weight perturbations (shapes fixed by the network).

Built so that every example is informative:

* no kind leaves a weight (almost) as it was: `scale` draws a factor away from 1, `noise`
  at least 5% of the weight's spread, `sparsity` keeps at most 90%;
* the kinds are ordered so that Hypothesis's simplest example (what it tries first and
  shrinks towards) is seeded noise, not "every weight x0.25";
* a zeroed kernel (conv/fc weight) makes the logits the same for every input: plans get at
  most one zeroed kernel, and only when a dedicated draw says so (1 plan in ZERO_KERNEL_ODDS,
  never the simplest one); biases may be zeroed freely (the outputs still vary).

`degenerate(outputs)` says whether reference outputs are (nearly) the same for every input;
the property tests reject such examples with `hypothesis.assume` and record how many.
"""
from __future__ import annotations

from typing import Callable, Dict, Mapping, Sequence

import numpy as np
from hypothesis import strategies as st

#: every kind, in Hypothesis's order of simplicity (the first is what shrinking aims at)
KINDS = ("noise", "scale", "sign_flip", "sparsity", "large", "zeros")
#: kinds for kernels (ndim > 1): no zeros (that is ZERO_KERNEL_ODDS's job)
KERNEL_KINDS = KINDS[:-1]
#: kinds that keep a trained model recognisable (BiDAF: answers stay meaningful)
MILD_KINDS = ("noise", "scale", "sign_flip")
#: a plan zeroes one kernel with probability 1 / ZERO_KERNEL_ODDS
ZERO_KERNEL_ODDS = 16


def _scale_away_from_one(lo: float, hi: float) -> st.SearchStrategy:
    """A factor in [lo, 0.8] or [1.25, hi]: never (nearly) 1."""
    return st.one_of(st.floats(1.25, hi), st.floats(lo, 0.8))


@st.composite
def perturbation(draw: Callable, kind: str = None, kinds: Sequence[str] = KINDS,  # type: ignore[assignment]
                 scale_range: tuple = (0.25, 4.0)) -> Dict:
    kind = kind or draw(st.sampled_from(kinds))
    return {
        "kind": kind,
        "seed": draw(st.integers(0, 2**31 - 1)),
        "scale": draw(_scale_away_from_one(*scale_range)),
        "noise": draw(st.floats(0.05, 0.5)),
        "keep": draw(st.floats(0.3, 0.9)),
        "magnitude": draw(st.sampled_from([1e2, 1e3, 1e4])),
    }


def apply_perturbation(w: np.ndarray, p: Mapping) -> np.ndarray:
    """A new float32, C-contiguous array: `w` changed as `p` says."""
    rng = np.random.default_rng(p["seed"])
    kind = p["kind"]
    if kind == "scale":
        out = w * p["scale"]
    elif kind == "noise":
        out = w + rng.standard_normal(w.shape) * p["noise"] * (float(np.abs(w).std()) or 1.0)
    elif kind == "sparsity":  # drops at least one element (a 10-element bias could keep all)
        keep = rng.random(w.shape) < p["keep"]
        if keep.all() and keep.size:
            keep.flat[int(rng.integers(keep.size))] = False
        out = w * keep
    elif kind == "sign_flip":  # flips at least one element
        flip = rng.random(w.shape) < 0.5
        if not flip.any() and flip.size:
            flip.flat[int(rng.integers(flip.size))] = True
        out = w * np.where(flip, -1.0, 1.0)
    elif kind == "large":
        out = w * p["magnitude"]
    elif kind == "zeros":
        out = np.zeros_like(w)
    else:
        raise ValueError(kind)
    return np.ascontiguousarray(out, dtype=np.float32)


@st.composite
def weight_perturbations(draw: Callable, shapes: Mapping[str, Sequence[int]]) -> Dict[str, Dict]:
    """One perturbation for every weight in `shapes` (name -> shape); see the module docstring."""
    plan = {n: draw(perturbation(kinds=KERNEL_KINDS if len(shapes[n]) > 1 else KINDS)) for n in shapes}
    kernels = sorted(n for n in shapes if len(shapes[n]) > 1)
    if kernels and draw(st.integers(0, ZERO_KERNEL_ODDS - 1)) == ZERO_KERNEL_ODDS - 1:
        plan[draw(st.sampled_from(kernels))]["kind"] = "zeros"
    return plan


def mild_perturbations(names: Sequence[str]) -> st.SearchStrategy:
    """A change of every weight in `names` that keeps a trained model recognisable: seeded
    noise (5..50% of the weight's spread), a factor in [0.5, 0.8] or [1.25, 2], or random
    sign flips. None leaves a weight as it was."""
    return st.fixed_dictionaries({n: perturbation(kinds=MILD_KINDS, scale_range=(0.5, 2.0)) for n in names})


def perturb_all(weights: Mapping[str, np.ndarray], plan: Mapping[str, Mapping]) -> Dict[str, np.ndarray]:
    return {n: apply_perturbation(np.asarray(weights[n], np.float32), p) for n, p in plan.items()}


def degenerate(outputs: np.ndarray, rel: float = 1e-6) -> bool:
    """True when every column of `outputs` (rows = inputs) is (nearly) constant across the
    rows: the outputs do not depend on the input, so a comparison tells little."""
    outputs = np.asarray(outputs, np.float64)
    if not np.all(np.isfinite(outputs)):
        return False  # not degenerate: a comparison will flag it
    spread = float(np.ptp(outputs, axis=0).max()) if outputs.size else 0.0
    return spread <= rel * max(1.0, float(np.abs(outputs).max()))
