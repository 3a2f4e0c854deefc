"""The numpy reference forward pass: checked against naive loops and against PyTorch."""
from __future__ import annotations

import numpy as np
import pytest

from refit_core.samples.mnist.lenet import _conv_nhwc, _maxpool2_nhwc, accuracy, lenet_forward
from refit_core.samples.mnist import LENET_SHAPES


def random_weights(seed: int = 0) -> dict:
    """Weights of a plausible scale (like PyTorch's default init), float32."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in LENET_SHAPES.items():
        fan_in = int(np.prod(LENET_SHAPES[name.replace("bias", "weight")][1:]))
        bound = 1.0 / np.sqrt(fan_in)
        out[name] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return out


def random_images(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def naive_forward(w: dict, x: np.ndarray) -> np.ndarray:
    """Direct loops over the definition, float64: independent of the im2col code."""
    def conv(inp, k, b):
        c_out, c_in, kh, kw = k.shape
        h, wd = inp.shape[1] - kh + 1, inp.shape[2] - kw + 1
        out = np.empty((c_out, h, wd))
        for o in range(c_out):
            acc = np.full((h, wd), b[o], dtype=np.float64)
            for c in range(c_in):
                for i in range(kh):
                    for j in range(kw):
                        acc += k[o, c, i, j] * inp[c, i:i + h, j:j + wd]
            out[o] = acc
        return out

    def pool(inp):
        c, h, wd = inp.shape
        return inp.reshape(c, h // 2, 2, wd // 2, 2).max(axis=(2, 4))

    w = {k: v.astype(np.float64) for k, v in w.items()}
    rows = []
    for img in x.astype(np.float64):
        a = pool(conv(img, w["conv1.weight"], w["conv1.bias"]))
        a = pool(conv(a, w["conv2.weight"], w["conv2.bias"]))
        h = np.maximum(w["fc1.weight"] @ a.reshape(-1) + w["fc1.bias"], 0)  # CHW flatten
        rows.append(w["fc2.weight"] @ h + w["fc2.bias"])
    return np.stack(rows)


def test_forward_matches_naive_loops() -> None:
    from refit_core.samples.mnist.data import normalize_images

    w = random_weights()
    imgs = random_images(3)
    got = lenet_forward(w, imgs)
    want = naive_forward(w, normalize_images(imgs))
    assert got.shape == (3, 10) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


def test_conv_and_pool_helpers() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 6, 6, 3))
    k = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4)
    out = _conv_nhwc(x, k, b)
    assert out.shape == (2, 4, 4, 4)
    manual = np.einsum("nhwc,ochw->no", x[:, 1:4, 2:5, :], k) + b  # output pixel (1, 2)
    np.testing.assert_allclose(out[:, 1, 2, :], manual, atol=1e-12)
    pooled = _maxpool2_nhwc(out)
    assert pooled.shape == (2, 2, 2, 4)
    assert pooled[1, 1, 0, 2] == out[1, 2:4, 0:2, 2].max()


def test_uint8_and_normalised_inputs_agree() -> None:
    from refit_core.samples.mnist.data import normalize_images

    w, imgs = random_weights(), random_images(8)
    np.testing.assert_array_equal(lenet_forward(w, imgs), lenet_forward(w, normalize_images(imgs)))


def test_batching_does_not_change_results() -> None:
    w, imgs = random_weights(), random_images(23)
    full = lenet_forward(w, imgs, batch_size=500)
    np.testing.assert_allclose(lenet_forward(w, imgs, batch_size=5), full, rtol=0, atol=1e-12)


def test_float32_accumulation() -> None:
    w, imgs = random_weights(), random_images(16)
    out32 = lenet_forward(w, imgs, accumulate=np.float32)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, lenet_forward(w, imgs), rtol=0, atol=1e-4)


def test_rejects_bad_image_shape() -> None:
    with pytest.raises(ValueError):
        lenet_forward(random_weights(), np.zeros((2, 3, 28, 28), np.float32))


def test_accuracy() -> None:
    logits = np.array([[0.0, 1.0], [2.0, 1.0], [0.0, 3.0], [5.0, 4.0]])
    assert accuracy(logits, np.array([1, 0, 0, 0], np.uint8)) == 0.75
    with pytest.raises(ValueError):
        accuracy(logits, np.array([1, 0]))


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_torch_random_weights(seed: int) -> None:
    torch = pytest.importorskip("torch")
    from tools.lenet_torch import torch_logits

    w, imgs = random_weights(seed), random_images(64, seed=seed + 10)
    ref = lenet_forward(w, imgs)
    np.testing.assert_allclose(torch_logits(w, imgs, dtype=torch.float64), ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(torch_logits(w, imgs, dtype=torch.float32), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_matches_torch_trained_weights_on_test_set(mnist_reference_logits, trained_torch_logits) -> None:
    """On the real net and all 10,000 test images, float32 torch is within ~1e-5 of the reference."""
    ref = mnist_reference_logits
    assert ref.shape == (10000, 10) and ref.dtype == np.float64
    t32 = trained_torch_logits["float32"]
    scale = float(np.abs(ref).max())
    err = float(np.abs(t32 - ref).max())
    assert err <= 1e-5 * max(1.0, scale), (err, scale)
    np.testing.assert_allclose(trained_torch_logits["float64"], ref, rtol=0, atol=1e-9)


@pytest.mark.slow
def test_trained_weights_reference_accuracy(trained_lenet, mnist_test_set, mnist_reference_logits) -> None:
    """Without PyTorch (the GPU kit reads cached weights): the reference alone scores >= 98%."""
    labels = mnist_test_set["labels"]
    ref_acc = accuracy(mnist_reference_logits, labels)
    assert ref_acc >= 0.98, f"reference accuracy {ref_acc:.4f}"
    # float32 accumulation (what TensorRT does) flips at most a handful of near-ties
    acc32 = accuracy(lenet_forward(trained_lenet.weights, mnist_test_set["images"],
                                   accumulate=np.float32), labels)
    assert abs(acc32 - ref_acc) <= 3e-4
