"""The case registry: name -> RefitCase. The generic checks are parametrized over it.

`register()` rejects duplicate names. refit_core registers its own cases when this module
is imported (`refit_core.cases.builtin`); other projects register theirs from a conftest or
plugin with `register(MyCase())` before collection.
"""
from __future__ import annotations

from typing import Dict, List

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


def _register_builtin() -> None:
    from .bidaf import BidafCase
    from .mnist import MnistCase
    from .tiny_mlp import TINY_MLP
    for case in (MnistCase(), BidafCase("standin"), BidafCase("original"), TINY_MLP):
        register(case)


_register_builtin()
