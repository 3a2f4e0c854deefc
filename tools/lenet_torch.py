"""The sample's LeNet in PyTorch, and its seeded, deterministic training.

Used by tools.train_lenet only: the installed package never imports torch (the GPU kit has
none and reads the committed weights, refit_core.samples.mnist.weights.committed_lenet).
"""
from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Dict, Iterator, Mapping, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from refit_core.samples.mnist.data import load_mnist, normalize_images
from refit_core.samples.mnist import LENET_SHAPES
from tools.train_lenet import LenetTrainConfig
from refit_core.samples.mnist.weights import TrainedWeights, check_weight_shapes

PathLike = Union[str, "os.PathLike[str]"]


class LeNet(nn.Module):
    """conv(20,5x5) > pool2 > conv(50,5x5) > pool2 > fc 800->500 > ReLU > fc 500->10.

    As in NVIDIA's sample: no activation after the convolutions, NCHW flatten, and the
    output is the fc2 logits (the sample's network ends there too).
    """

    def __init__(self) -> None:
        super().__init__()
        s = LENET_SHAPES  # the one definition of the layer sizes (samples/mnist/__init__.py)
        self.conv1 = nn.Conv2d(s["conv1.weight"][1], s["conv1.weight"][0], kernel_size=s["conv1.weight"][2])
        self.conv2 = nn.Conv2d(s["conv2.weight"][1], s["conv2.weight"][0], kernel_size=s["conv2.weight"][2])
        self.fc1 = nn.Linear(s["fc1.weight"][1], s["fc1.weight"][0])
        self.fc2 = nn.Linear(s["fc2.weight"][1], s["fc2.weight"][0])
        self._flat = s["fc1.weight"][1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv1(x), kernel_size=2, stride=2)
        x = F.max_pool2d(self.conv2(x), kernel_size=2, stride=2)
        x = x.reshape(x.shape[0], self._flat)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


def weights_of(model: nn.Module) -> Dict[str, np.ndarray]:
    """The model's parameters as float32 C-contiguous numpy arrays, keyed by torch name."""
    return {name: np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)
            for name, t in model.state_dict().items()}


def model_from_weights(weights: Mapping[str, np.ndarray],
                       dtype: torch.dtype = torch.float32) -> LeNet:
    """A LeNet (eval mode) holding `weights`; names and shapes are checked first."""
    check_weight_shapes(weights)
    model = LeNet()
    model.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in weights.items()})
    return model.to(dtype).eval()


@contextlib.contextmanager
def torch_threads(n: Optional[int]) -> Iterator[None]:
    """Run the block with n intra-op threads (None: leave as is), then restore."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def torch_logits(weights: Mapping[str, np.ndarray], images: np.ndarray,
                 dtype: torch.dtype = torch.float32, batch_size: int = 1000,
                 num_threads: Optional[int] = 1) -> np.ndarray:
    """Logits [N,10] of the torch model; images uint8 [N,28,28] or normalised [N,1,28,28]."""
    arr = np.asarray(images)
    if arr.dtype == np.uint8:
        arr = normalize_images(arr)
    model = model_from_weights(weights, dtype)
    outs = []
    with torch.no_grad(), torch_threads(num_threads):
        for start in range(0, arr.shape[0], batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(arr[start:start + batch_size])).to(dtype)
            outs.append(model(xb).numpy())
    return np.concatenate(outs, axis=0)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    correct = 0
    with torch.no_grad():
        for start in range(0, x.shape[0], batch_size):
            pred = model(x[start:start + batch_size]).argmax(dim=1)
            correct += int((pred == y[start:start + batch_size]).sum())
    return correct / int(x.shape[0])


def _learning_rate(config: LenetTrainConfig, step: int, total_steps: int) -> float:
    """Learning rate for optimiser step `step` (0-based) of `total_steps`."""
    if config.lr_schedule == "cosine":
        return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
    return config.learning_rate


def train_lenet(data_dir: PathLike, config: Optional[LenetTrainConfig] = None,
                progress: bool = True) -> TrainedWeights:
    """Train the sample's LeNet on MNIST; same config and machine -> bit-identical weights.

    Seeds torch, uses a private shuffling generator, deterministic algorithms and a fixed
    thread count (restoring the global torch settings afterwards). Metadata records the
    test accuracy (fraction), timings and versions; tools.train_lenet adds cache provenance.
    """
    config = config if config is not None else LenetTrainConfig()
    train = load_mnist(data_dir, "train")
    test = load_mnist(data_dir, "test")
    n_train = len(train) if config.limit is None else min(config.limit, len(train))
    x_train = torch.from_numpy(normalize_images(train.images[:n_train]))
    y_train = torch.from_numpy(train.labels[:n_train].astype(np.int64))
    x_test = torch.from_numpy(normalize_images(test.images))
    y_test = torch.from_numpy(test.labels.astype(np.int64))

    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    det_flags = getattr(torch.utils, "deterministic", None)
    prev_fill = getattr(det_flags, "fill_uninitialized_memory", None)
    started = time.perf_counter()
    try:
        torch.set_num_threads(config.num_threads)
        torch.use_deterministic_algorithms(True)
        if prev_fill is not None:
            # Filling every new tensor with NaN costs ~15% of a step and adds no determinism
            # here: every tensor training allocates is written before it is read.
            det_flags.fill_uninitialized_memory = False
        torch.manual_seed(config.seed)
        model = LeNet()
        if config.optimizer == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=config.learning_rate,
                                  momentum=config.momentum)
        shuffle = torch.Generator().manual_seed(config.seed)
        steps_per_epoch = math.ceil(n_train / config.batch_size)
        total_steps = steps_per_epoch * config.epochs
        step = 0
        losses = []
        for epoch in range(config.epochs):
            model.train()
            order = torch.randperm(n_train, generator=shuffle)
            starts = range(0, n_train, config.batch_size)
            bar = tqdm(starts, desc=f"LeNet epoch {epoch + 1}/{config.epochs}", unit="batch",
                       disable=not progress, leave=True, mininterval=1.0)
            running = 0.0
            for i, start in enumerate(bar):
                idx = order[start:start + config.batch_size]
                for group in opt.param_groups:
                    group["lr"] = _learning_rate(config, step, total_steps)
                step += 1
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
                loss.backward()
                opt.step()
                running += float(loss.detach())
                if i % 50 == 49:
                    bar.set_postfix(loss=f"{running / (i + 1):.4f}")
            bar.close()
            losses.append(running / max(1, len(starts)))
        train_seconds = time.perf_counter() - started
        model.eval()
        test_acc = _accuracy(model, x_test, y_test)
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)
        if prev_fill is not None:
            det_flags.fill_uninitialized_memory = prev_fill

    weights = weights_of(model)
    assert set(weights) == set(LENET_SHAPES)
    meta = {
        "test_accuracy": test_acc,
        "train_images": n_train,
        "epoch_mean_loss": losses,
        "train_seconds": round(train_seconds, 2),
        "seed": config.seed,
        "hyper_parameters": config.to_dict(),
        "torch_version": torch.__version__,
    }
    return TrainedWeights(weights=weights, metadata=meta)
