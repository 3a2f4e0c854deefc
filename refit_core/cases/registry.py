"""The case registry: name -> RefitCase. The generic checks are parametrized over it.

`register()` rejects duplicate names. refit_core registers its own cases when this module
is imported (`refit_core.cases.builtin`); other projects register theirs from a conftest or
plugin with `register(MyCase())` before collection.
"""
from __future__ import annotations

from typing import Dict, List, Optional

from ..trt.engine import PRECISIONS
from .base import RefitCase

CASES: Dict[str, RefitCase] = {}


def register(case: RefitCase) -> RefitCase:
    if not case.name or not case.name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"case name {case.name!r} must be non-empty letters, digits, '-' and '_'")
    if case.name in CASES:
        raise ValueError(f"a case named {case.name!r} is already registered ({CASES[case.name]!r})")
    CASES[case.name] = case
    return case


def unregister(name: str) -> None:
    """Forget a case registered for one session (e.g. a user's model given on the command line)."""
    CASES.pop(name, None)


def get(name: str) -> RefitCase:
    try:
        return CASES[name]
    except KeyError:
        raise KeyError(f"no case named {name!r}; registered: {', '.join(CASES) or 'none'}") from None


def names() -> List[str]:
    return list(CASES)


from ..config import DEFAULT_PROFILE, PROFILE_ENV, PROFILES  # noqa: E402,F401

#: The one case per precision other than FP32 that the default profile keeps. MNIST (LeNet,
#: trained weights): its convolutions and matrix products are the layers FP16 and TF32 change,
#: its reference is float64, and its engines build in seconds on every TensorRT version (the
#: zoo's FP16/TF32 builds take minutes on 8.5, BiDAF's FP16 is a slow build). tiny-mlp would be
#: cheaper still but has no convolution.
REPRESENTATIVES = {"fp16": "mnist-fp16", "tf32": "mnist-tf32"}


def profile_exclusion(case: RefitCase, profile: str) -> Optional[str]:
    """None when `profile` runs `case`, else why not (a clause for the deselection summary):
    `full` runs every case; `default` every FP32 case without a slow build, and the
    representative case of each other precision."""
    if profile not in PROFILES:
        raise ValueError(f"profile {profile!r}: choose one of {', '.join(PROFILES)}")
    if profile == "full":
        return None
    if case.slow_build:
        return "a slow build"
    if case.precision != "fp32" and REPRESENTATIVES.get(case.precision) != case.name:
        return f"{case.precision.upper()} is covered by {REPRESENTATIVES.get(case.precision, 'no case')}"
    return None


def builtin_cases() -> List[RefitCase]:
    """refit_core's own cases, each in the precisions of the matrix it runs in: every case in
    FP32 and FP16; TF32 (FP32 with TF32 allowed) for the cases whose builds take seconds, and not
    for BiDAF, whose every build takes ~50 s on TensorRT 8.5 (its FP32 and FP16 runs cover its
    layers)."""
    from ..models.zoo import ZOO
    from .bidaf import BidafCase
    from .mnist import MnistCase
    from .tiny_mlp import tiny_mlp_case
    from .zoo import ZooCase
    out: List[RefitCase] = []
    for precision in PRECISIONS:
        out.append(MnistCase(precision))
        if precision != "tf32":
            out += [BidafCase("standin", precision), BidafCase("original", precision)]
        out.append(tiny_mlp_case(precision))
        out += [ZooCase(name, precision) for name in ZOO]
    return out


def _register_builtin() -> None:
    for case in builtin_cases():
        register(case)


_register_builtin()
