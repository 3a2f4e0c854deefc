"""Hypothesis strategies for weight perturbations (shapes fixed by the network)."""
from __future__ import annotations

from typing import Callable, Dict, Mapping

import numpy as np
from hypothesis import strategies as st

KINDS = ("scale", "noise", "sparsity", "sign_flip", "large", "zeros")


@st.composite
def perturbation(draw: Callable, kind: str = None) -> Dict:  # type: ignore[assignment]
    kind = kind or draw(st.sampled_from(KINDS))
    return {
        "kind": kind,
        "seed": draw(st.integers(0, 2**31 - 1)),
        "scale": draw(st.floats(0.25, 4.0)),
        "noise": draw(st.floats(0.0, 0.5)),
        "keep": draw(st.floats(0.05, 1.0)),
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
    elif kind == "sparsity":
        out = w * (rng.random(w.shape) < p["keep"])
    elif kind == "sign_flip":
        out = w * np.where(rng.random(w.shape) < 0.5, -1.0, 1.0)
    elif kind == "large":
        out = w * p["magnitude"]
    elif kind == "zeros":
        out = np.zeros_like(w)
    else:
        raise ValueError(kind)
    return np.ascontiguousarray(out, dtype=np.float32)


def weight_perturbations(names) -> st.SearchStrategy:
    """One perturbation for every weight in `names`."""
    return st.fixed_dictionaries({n: perturbation() for n in names})


def perturb_all(weights: Mapping[str, np.ndarray], plan: Mapping[str, Mapping]) -> Dict[str, np.ndarray]:
    return {n: apply_perturbation(np.asarray(weights[n], np.float32), p) for n, p in plan.items()}
