"""Small synthetic MNIST-format data sets written into tmp_path."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest

from refit_core.data.mnist import MNIST_FILES, write_idx


@pytest.fixture
def write_mnist(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write_mnist(n_train, n_test, gz=True, subdir=None, root=None) -> data dir.

    Images are random uint8 (seeded), labels cycle 0..9; the files go into root/subdir.
    """

    def make(n_train: int = 30, n_test: int = 20, gz: bool = True,
             subdir: Optional[str] = None, root: Optional[Path] = None, seed: int = 0) -> Path:
        base = root if root is not None else tmp_path / "data"
        folder = base / subdir if subdir else base
        rng = np.random.default_rng(seed)
        suffix = ".gz" if gz else ""
        for split, n in (("train", n_train), ("test", n_test)):
            images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
            labels = (np.arange(n) % 10).astype(np.uint8)
            write_idx(folder / (MNIST_FILES[f"{split}_images"] + suffix), images)
            write_idx(folder / (MNIST_FILES[f"{split}_labels"] + suffix), labels)
        base.mkdir(parents=True, exist_ok=True)
        return base

    return make
