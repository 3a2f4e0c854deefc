"""Synthetic MNIST-format data in tmp_path (cache tests train on it in well under a second), a
private cache root, and LeNet trained on this machine."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest

from refit_core.samples.mnist.data import MNIST_FILES

from .mnist_files import write_idx

#: set to 1 on the machine that made the committed assets: float training and export are
#: bit-identical only there, so the sha256 comparisons of regenerated assets are opt-in
BITEXACT_ENV = "REFIT_BITEXACT_REGEN"


def write_tiny_mnist(folder: Path, n_train: int = 128, n_test: int = 64, seed: int = 0) -> Path:
    """Random uint8 images with labels 0..9 in the IDX layout (gzip)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        write_idx(folder / (MNIST_FILES[f"{split}_images"] + ".gz"),
                  rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8))
        write_idx(folder / (MNIST_FILES[f"{split}_labels"] + ".gz"),
                  rng.integers(0, 10, size=n, dtype=np.uint8))
    return folder


@pytest.fixture
def tiny_mnist_dir(tmp_path: Path) -> Path:
    return write_tiny_mnist(tmp_path / "tiny_mnist")


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache root; REFIT_CACHE_DIR points there too so nothing reaches ~/.cache."""
    root = tmp_path / "cache"
    monkeypatch.setenv("REFIT_CACHE_DIR", str(root))
    return root


@pytest.fixture(scope="session")
def freshly_trained_lenet(mnist_dir):
    """LeNet trained on this machine with the default recipe (through the training cache), as
    `python -m tools.train_lenet` does; the GPU tier uses the committed weights instead."""
    pytest.importorskip("torch")
    from tools.train_lenet import load_or_train
    return load_or_train(mnist_dir, progress=True)


@pytest.fixture(scope="session")
def trained_torch_logits(trained_lenet, mnist_test_set) -> dict:
    """PyTorch logits of the trained net on the 10,000 test images, float32 and float64."""
    torch = pytest.importorskip("torch")
    from tools.lenet_torch import torch_logits

    images = mnist_test_set["images"]
    return {"float32": torch_logits(trained_lenet.weights, images, dtype=torch.float32),
            "float64": torch_logits(trained_lenet.weights, images, dtype=torch.float64)}


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
