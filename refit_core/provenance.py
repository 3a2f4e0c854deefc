"""What a results record needs to be reproduced: the suite's version, git state and source hash.

Standard library only. The git commit comes from `git` when the suite runs from a checkout;
where it does not (a copied tree on a GPU machine), from $REFIT_SUITE_GIT_COMMIT and
$REFIT_SUITE_GIT_DIRTY, else it is unknown (None). The source hash is always computed: it
identifies the code that ran even without git.
"""
from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .fileio import sha256_bytes

COMMIT_ENV = "REFIT_SUITE_GIT_COMMIT"
DIRTY_ENV = "REFIT_SUITE_GIT_DIRTY"
#: what counts as the suite's source (relative to the project root)
SOURCE_GLOBS: Tuple[str, ...] = ("refit_core/**/*.py", "refit_core/assets/*", "tests/**/*.py", "tools/**/*.py",
                                 "conftest.py", "pytest.ini", "requirements*.txt")

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def now_iso() -> str:
    """The current time, ISO 8601 with the UTC offset."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def source_sha256(root: Path = PROJECT_ROOT, globs: Iterable[str] = SOURCE_GLOBS) -> str:
    """sha256 over (relative path, sha256 of content) of every source file, sorted by path."""
    files = sorted({p for g in globs for p in root.glob(g) if p.is_file() and "__pycache__" not in p.parts})
    lines = [f"{p.relative_to(root).as_posix()}\0{sha256_bytes(p.read_bytes())}" for p in files]
    return sha256_bytes("\n".join(lines).encode())


def _git(root: Path, *args: str) -> Optional[str]:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(root: Path = PROJECT_ROOT) -> Tuple[Optional[str], Optional[bool]]:
    """(commit, dirty): $REFIT_SUITE_GIT_COMMIT/_DIRTY when set (a copied tree may carry a
    .git that is not the commit its files are), else the checkout at `root`, else unknown."""
    env_commit = os.environ.get(COMMIT_ENV) or None
    if env_commit:
        env_dirty = os.environ.get(DIRTY_ENV)
        return env_commit, None if env_dirty is None else env_dirty.strip().lower() in ("1", "true", "yes")
    commit = _git(root, "rev-parse", "HEAD") if (root / ".git").exists() else None
    if commit:
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        return commit.strip(), (None if status is None else bool(status.strip()))
    return None, None


def suite_identity() -> Dict[str, Any]:
    """Which suite made a file that is not a results record (pytest-benchmark's JSON, the
    self-check's kill matrix): commit, dirty flag, source-tree hash and version."""
    from . import __version__
    commit, dirty = git_state()
    return {"git_commit": commit, "git_dirty": dirty, "source_sha256": source_sha256(), "suite_version": __version__}


def run_provenance(command_line: List[str], hypothesis_profile: str, started: str, tensorrt_build: Any,
                   tactic_setting: Any) -> Dict[str, Any]:
    """A results record's provenance (the GPU tier's and `check`'s alike): the suite's identity,
    how it was invoked, and the TensorRT build and tactic setting it ran with."""
    return dict(suite_identity(), command_line=list(command_line), hypothesis_profile=hypothesis_profile,
                tensorrt_build=tensorrt_build, tactic_setting=tactic_setting, started=started)
