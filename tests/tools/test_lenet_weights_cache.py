"""Weight cache: reuse, every invalidation path, and life without PyTorch."""
from __future__ import annotations

import json
import sys
from typing import List

import numpy as np
import pytest

from refit_core.samples.mnist.data import MNIST_FILES

from ..mnist_files import write_idx
from refit_core.errors import DataError, TrainingUnavailable
from refit_core.samples.mnist import LENET_SHAPES
from refit_core.samples.mnist.weights import TrainedWeights, check_weight_shapes
from tools import train_lenet as lenet_weights
from tools.train_lenet import LenetTrainConfig, cache_paths, load_or_train

# Tiny runs: the synthetic data set has 128 training images.
QUICK = LenetTrainConfig(seed=3, epochs=1, batch_size=32, limit=64)


@pytest.fixture
def train_calls(monkeypatch: pytest.MonkeyPatch) -> List[LenetTrainConfig]:
    """Records every real training run that load_or_train starts (needs PyTorch)."""
    pytest.importorskip("torch")
    calls: List[LenetTrainConfig] = []
    real = lenet_weights._train_weights

    def counting(data_dir, config, progress):
        calls.append(config)
        return real(data_dir, config, progress)

    monkeypatch.setattr(lenet_weights, "_train_weights", counting)
    return calls


def forbid_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("load_or_train trained although a valid cache exists")

    monkeypatch.setattr(lenet_weights, "_train_weights", fail)


def block_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import torch` fail as on the GPU kit (restored after the test)."""
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "tools.lenet_torch", raising=False)


def test_weight_shapes_constant() -> None:
    assert list(LENET_SHAPES) == ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                         "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert LENET_SHAPES["fc1.weight"] == (500, 800)


def test_train_config_validation() -> None:
    with pytest.raises(ValueError):
        LenetTrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError):
        LenetTrainConfig(limit=0)
    assert LenetTrainConfig().limit is None
    # the weight cache is keyed by the whole config: a config rebuilt from its dict keys the
    # same entry, and a change of any one setting keys another one
    from tools.train_lenet import cache_key
    fp = {"train_images": {"sha256": "0" * 64}}
    default = cache_key(fp, LenetTrainConfig())
    assert cache_key(fp, LenetTrainConfig(**LenetTrainConfig().to_dict())) == default
    changed = [dict(seed=2), dict(epochs=3), dict(batch_size=64), dict(learning_rate=1e-3),
               dict(optimizer="sgd"), dict(lr_schedule="constant"), dict(limit=10)]
    keys = {cache_key(fp, LenetTrainConfig(**c)) for c in changed}
    assert default not in keys and len(keys) == len(changed)


def test_trained_weights_are_float32_contiguous() -> None:
    w = {k: np.asfortranarray(np.ones(s, np.float64)) for k, s in LENET_SHAPES.items()}
    tw = TrainedWeights(weights=w, metadata={"test_accuracy": 0.5})
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in tw.weights.values())
    assert tw.test_accuracy == 0.5


def test_check_weight_shapes_names_problem() -> None:
    w = {k: np.zeros(s, np.float32) for k, s in LENET_SHAPES.items()}
    check_weight_shapes(w)
    w["fc2.bias"] = np.zeros(11, np.float32)
    with pytest.raises(DataError, match="fc2.bias"):
        check_weight_shapes(w)
    del w["fc2.bias"]
    with pytest.raises(DataError, match="missing"):
        check_weight_shapes(w)


def test_first_call_trains_and_writes_cache(tiny_mnist_dir, cache_root, train_calls) -> None:
    trained = load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    assert train_calls == [QUICK]
    npz, meta_path = cache_paths(tiny_mnist_dir, QUICK, cache_root)
    assert npz.parent == cache_root / "lenet" and npz.is_file() and meta_path.is_file()
    check_weight_shapes(trained.weights)
    meta = json.loads(meta_path.read_text())
    assert meta["config"] == QUICK.to_dict()
    assert meta["seed"] == QUICK.seed
    assert set(meta["data_fingerprint"]) == set(MNIST_FILES)
    for key in ("test_accuracy", "torch_version", "created", "cache_key", "train_seconds"):
        assert key in meta, key
    assert 0.0 <= meta["test_accuracy"] <= 1.0
    assert not list((cache_root / "lenet").glob("*.tmp"))


def test_second_call_reuses_cache(tiny_mnist_dir, cache_root, train_calls, monkeypatch) -> None:
    first = load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    forbid_training(monkeypatch)
    second = load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    for name in LENET_SHAPES:
        np.testing.assert_array_equal(first.weights[name], second.weights[name])
    assert second.metadata == first.metadata


def test_default_cache_root_follows_env(tiny_mnist_dir, cache_root, train_calls) -> None:
    load_or_train(tiny_mnist_dir, QUICK, progress=False)  # cache_root=None -> $REFIT_CACHE_DIR
    assert len(list((cache_root / "lenet").glob("*.npz"))) == 1


def test_changed_config_retrains(tiny_mnist_dir, cache_root, train_calls) -> None:
    load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    other = LenetTrainConfig(seed=4, epochs=1, batch_size=32, limit=64)
    load_or_train(tiny_mnist_dir, other, cache_root=cache_root, progress=False)
    assert train_calls == [QUICK, other]
    assert cache_paths(tiny_mnist_dir, QUICK, cache_root) != cache_paths(tiny_mnist_dir, other, cache_root)
    load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    assert len(train_calls) == 2  # both entries coexist


def test_changed_data_retrains(tiny_mnist_dir, cache_root, train_calls) -> None:
    load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    write_idx(tiny_mnist_dir / (MNIST_FILES["test_labels"] + ".gz"), np.zeros(64, np.uint8))
    load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    assert len(train_calls) == 2


def test_fingerprint_mismatch_in_metadata_retrains(tiny_mnist_dir, cache_root, train_calls) -> None:
    load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    _, meta_path = cache_paths(tiny_mnist_dir, QUICK, cache_root)
    meta = json.loads(meta_path.read_text())
    meta["data_fingerprint"]["train_images"]["sha256"] = "0" * 64
    meta_path.write_text(json.dumps(meta))
    load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    assert len(train_calls) == 2
    assert json.loads(meta_path.read_text())["data_fingerprint"]["train_images"]["sha256"] != "0" * 64


def test_config_mismatch_in_metadata_retrains(tiny_mnist_dir, cache_root, train_calls) -> None:
    load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    _, meta_path = cache_paths(tiny_mnist_dir, QUICK, cache_root)
    meta = json.loads(meta_path.read_text())
    meta["config"]["learning_rate"] = 0.5
    meta_path.write_text(json.dumps(meta))
    load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    assert len(train_calls) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_shape", "missing_array",
                                    "nan", "no_npz", "bad_json"])
def test_damaged_cache_is_retrained(tiny_mnist_dir, cache_root, train_calls, damage) -> None:
    first = load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    npz, meta_path = cache_paths(tiny_mnist_dir, QUICK, cache_root)
    w = dict(first.weights)
    if damage == "garbage":
        npz.write_bytes(b"this is not a zip file")
    elif damage == "truncated":
        npz.write_bytes(npz.read_bytes()[:1000])
    elif damage == "wrong_shape":
        w["conv1.weight"] = np.zeros((20, 1, 3, 3), np.float32)
        np.savez(npz, **w)
    elif damage == "missing_array":
        del w["fc2.bias"]
        np.savez(npz, **w)
    elif damage == "nan":
        w["fc1.weight"] = np.full_like(w["fc1.weight"], np.nan)
        np.savez(npz, **w)
    elif damage == "no_npz":
        npz.unlink()
    elif damage == "bad_json":
        meta_path.write_text("{not json")
    again = load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    assert len(train_calls) == 2
    check_weight_shapes(again.weights)
    # Same seed, same machine: the rebuilt entry equals the first one, and is valid again.
    np.testing.assert_array_equal(again.weights["conv1.weight"], first.weights["conv1.weight"])
    lenet_weights.read_cache(npz, meta_path, lenet_weights.dataset_fingerprint(tiny_mnist_dir), QUICK)


def test_training_unavailable_without_torch(tiny_mnist_dir, cache_root, monkeypatch) -> None:
    block_torch(monkeypatch)
    with pytest.raises(TrainingUnavailable) as info:
        load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    msg = str(info.value)
    npz, _ = cache_paths(tiny_mnist_dir, QUICK, cache_root)
    assert str(npz) in msg
    assert "python -m tools.train_lenet --data-dir" in msg
    assert str(tiny_mnist_dir) in msg
    assert "REFIT_CACHE_DIR" in msg
    assert not npz.exists()


def test_valid_cache_is_used_without_torch(tiny_mnist_dir, cache_root, train_calls, monkeypatch) -> None:
    first = load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    block_torch(monkeypatch)
    again = load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    np.testing.assert_array_equal(again.weights["fc2.weight"], first.weights["fc2.weight"])


def test_other_import_errors_are_not_reworded(tiny_mnist_dir, cache_root, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise ImportError("No module named 'tqdm'", name="tqdm")

    monkeypatch.setattr(lenet_weights, "_train_weights", broken)
    with pytest.raises(ImportError) as info:
        load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    assert not isinstance(info.value, TrainingUnavailable)
