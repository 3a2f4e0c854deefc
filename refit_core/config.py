"""Where data and caches live. One place, so the CLI, the tests and CI agree."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from .errors import DataError

DATA_DIR_ENV = "REFIT_DATA_DIR"
CACHE_DIR_ENV = "REFIT_CACHE_DIR"
TACTICS_ENV = "REFIT_TRT_TACTICS"

#: The GPU tier's profiles, like Hypothesis's: `default` (what `pytest -m gpu` runs) and `full`
#: (the whole case x precision matrix). A record names its profile; the gate compares like with like.
PROFILES = ("default", "full")
DEFAULT_PROFILE = "default"
PROFILE_ENV = "REFIT_PROFILE"

PathLike = Union[str, "os.PathLike[str]"]


def resolve_data_dir(explicit: Optional[PathLike] = None) -> Path:
    """The data directory the user named: an explicit path (option) wins over $REFIT_DATA_DIR.

    Raises DataError when neither is given or the directory does not exist: data is never
    guessed or downloaded silently.
    """
    chosen = explicit if explicit is not None else os.environ.get(DATA_DIR_ENV)
    if not chosen:
        raise DataError(
            f"no data directory given: pass --data-dir DIR or set {DATA_DIR_ENV}=DIR "
            "(a directory holding the MNIST IDX files, or an mnist/ folder of them)")
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise DataError(f"data directory {str(path)!r} does not exist or is not a directory")
    return path


def cache_dir() -> Path:
    """Cache root for trained weights and TensorRT plans ($REFIT_CACHE_DIR, default ~/.cache/refit_core)."""
    root = os.environ.get(CACHE_DIR_ENV)
    path = Path(root).expanduser() if root else Path.home() / ".cache" / "refit_core"
    path.mkdir(parents=True, exist_ok=True)
    return path


def plan_cache_dir() -> Path:
    """Where TensorRT plans and timing caches live ($REFIT_CACHE_DIR/plans)."""
    return cache_dir() / "plans"
