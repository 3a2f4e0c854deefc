"""Build-time estimates of `check`, printed before each build: the builds it measured on this
machine, kept in the cache directory."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

#: Builds `check` measured, per machine: in the cache directory, one JSON list.
BUILD_TIMES_FILE = "check-build-times.json"
BUILD_TIMES_KEPT = 200
#: Said when nothing was measured on this TensorRT and GPU yet: how long REFIT builds took elsewhere.
NO_HISTORY_HINT = ("no build measured on this TensorRT and GPU yet; a REFIT build of a model with 10-20 MB "
                   "of weights can take 2 to 4 minutes (measured builds: results/README.md)")


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def estimate_build(history: List[Dict[str, Any]], sha256: str, kind: str, tensorrt: str, gpu: str) -> str:
    """What a build of `kind` of this model will take: its own earlier builds here, else the
    range of the earlier builds of `kind` of other models on this TensorRT and GPU (build time
    follows neither file size nor weight count closely: a small classifier took 3.5 min where
    a larger detector took 1 min), else what was measured."""
    import statistics as st
    here = [h for h in history if h.get("kind") == kind and h.get("tensorrt") == tensorrt and h.get("gpu") == gpu]
    same = [float(h["seconds"]) for h in here if h.get("sha256") == sha256]
    if same:
        return f"about {_seconds(st.median(same))} (this model's {kind} build measured here before)"
    others = sorted(float(h["seconds"]) for h in here if float(h.get("seconds") or 0) > 0)
    if others:
        n, lo, hi = len(others), _seconds(others[0]), _seconds(others[-1])
        return (f"{lo if lo == hi else f'{lo} to {hi}'} (what {n} earlier {kind} build{'' if n == 1 else 's'} "
                f"of other models took on this TensorRT and GPU: a rough guide)")
    return NO_HISTORY_HINT


def load_build_times(path: Path) -> List[Dict[str, Any]]:
    """The measured builds; a missing or damaged file is no history (it only informs estimates)."""
    from ..fileio import read_json_strict
    try:
        data = read_json_strict(path)
    except (OSError, ValueError):
        return []
    return [h for h in data if isinstance(h, dict)] if isinstance(data, list) else []


def record_build_time(path: Path, entry: Dict[str, Any]) -> None:
    from ..fileio import atomic_write_json, file_lock, lock_path_for
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(lock_path_for(path)):
        history = load_build_times(path) + [entry]
        atomic_write_json(path, history[-BUILD_TIMES_KEPT:], indent=1)


class BuildClock:
    """Estimates before each build and records what it took, for one model on this machine."""

    def __init__(self, model: Path, tensorrt: str, gpu: str, path: Optional[Path] = None) -> None:
        from ..config import cache_dir
        from ..fileio import sha256_file
        self.path = path or cache_dir() / BUILD_TIMES_FILE
        self.sha256, self.size = sha256_file(model), model.stat().st_size
        self.tensorrt, self.gpu = tensorrt, gpu

    def estimate(self, kind: str) -> str:
        return estimate_build(load_build_times(self.path), self.sha256, kind, self.tensorrt, self.gpu)

    def record(self, kind: str, seconds: float) -> None:
        try:
            record_build_time(self.path, dict(kind=kind, sha256=self.sha256, bytes=self.size, tensorrt=self.tensorrt,
                                              gpu=self.gpu, seconds=round(float(seconds), 2)))
        except OSError as exc:  # an estimate aid: never fails the check
            print(f"  (build time not kept: {exc})")
