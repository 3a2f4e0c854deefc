"""Numpy-only LeNet forward pass: the reference TensorRT's output is compared with.

The GPU machine has no PyTorch, so this must reproduce the torch model (to ~1e-5 in
float32, to rounding in float64) with numpy alone. Convolutions are im2col + one matmul,
computed in NHWC internally and flattened in NCHW order like the sample's `view(-1, 800)`.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .data import normalize_images

DEFAULT_BATCH = 500  # ~130 MB of im2col columns in float64


def _conv_nhwc(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Valid (no padding), stride-1 convolution. x [B,H,W,C], w [O,C,k,k] -> [B,H',W',O]."""
    out_c, in_c, kh, kw = w.shape
    win = sliding_window_view(x, (kh, kw), axis=(1, 2))  # [B,H',W',C,kh,kw]
    bsz, ho, wo = win.shape[:3]
    cols = win.reshape(bsz * ho * wo, in_c * kh * kw)  # copies; (C,kh,kw) order matches w
    out = cols @ w.reshape(out_c, in_c * kh * kw).T
    out += b
    return out.reshape(bsz, ho, wo, out_c)


def _maxpool2_nhwc(x: np.ndarray) -> np.ndarray:
    """2x2 max-pool, stride 2 (even sizes only, as in LeNet)."""
    bsz, h, w, c = x.shape
    return x.reshape(bsz, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _forward_batch(p: Mapping[str, np.ndarray], x_nchw: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))  # NHWC
    x = _maxpool2_nhwc(_conv_nhwc(x, p["conv1.weight"], p["conv1.bias"]))
    x = _maxpool2_nhwc(_conv_nhwc(x, p["conv2.weight"], p["conv2.bias"]))
    x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # NCHW flatten -> [B,800]
    x = x @ p["fc1.weight"].T + p["fc1.bias"]
    np.maximum(x, 0, out=x)
    return x @ p["fc2.weight"].T + p["fc2.bias"]


def lenet_forward(weights: Mapping[str, np.ndarray], images: np.ndarray,
                  accumulate: type = np.float64, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """Logits [N,10] of the sample's LeNet, computed in dtype `accumulate`.

    images: uint8 [N,28,28] (normalised here with normalize_images) or already-normalised
    float [N,1,28,28]. Weights and inputs are cast to `accumulate`; the result has that dtype.
    """
    dt = np.dtype(accumulate)
    arr = np.asarray(images)
    if arr.dtype == np.uint8:
        arr = normalize_images(arr)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4 or arr.shape[1:] != (1, 28, 28):
        raise ValueError(f"expected images [N,1,28,28] or uint8 [N,28,28], got {arr.shape}")
    p = {name: np.asarray(weights[name], dtype=dt) for name in (
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
        "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")}
    out = np.empty((arr.shape[0], p["fc2.bias"].shape[0]), dtype=dt)
    for start in range(0, arr.shape[0], batch_size):
        stop = start + batch_size
        out[start:stop] = _forward_batch(p, arr[start:stop].astype(dt, copy=False))
    return out


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction (0..1) of rows whose arg-max equals the label."""
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits {logits.shape} and labels {labels.shape} do not match")
    if labels.shape[0] == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return float(np.mean(np.argmax(logits, axis=1) == labels.astype(np.int64)))
