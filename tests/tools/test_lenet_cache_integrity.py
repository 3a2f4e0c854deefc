"""LeNet weight cache: content hash, dtype/shape refusal, damage -> warning + retrain,
write failures, planted symlinks and two processes saving/reading one entry."""
from __future__ import annotations

import io
import json
import zipfile
import multiprocessing
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from refit_core.errors import CacheWarning, DataError, TrainingUnavailable, WeightCacheWarning
from refit_core.samples.mnist import LENET_SHAPES
from refit_core.samples.mnist.weights import TrainedWeights, weights_sha256
from tools import train_lenet as lenet_weights
from tools.train_lenet import cache_paths, load_or_train, read_cache, save_cache
from ..hostile import replace_with_fifo, write_too_deep, write_with_duplicate_key

QUICK = lenet_weights.LenetTrainConfig(seed=3, epochs=1, batch_size=32, limit=64)


def fake_weights(value: float) -> Dict[str, np.ndarray]:
    return {k: np.full(s, value, np.float32) for k, s in LENET_SHAPES.items()}


@pytest.fixture
def fake_training(monkeypatch: pytest.MonkeyPatch) -> List[Any]:
    """Replace training by a constant-weight stand-in (fast; no torch needed)."""
    calls: List[Any] = []

    def train(data_dir, config, progress):
        calls.append(config)
        return TrainedWeights(weights=fake_weights(0.25 + len(calls)), metadata={"test_accuracy": 0.5})

    monkeypatch.setattr(lenet_weights, "_train_weights", train)
    return calls


def _npz_bytes(arrays: Dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


#: damage that replaces one array: kind -> (weight, its bad value, what the error names)
ONE_BAD_ARRAY = {
    "int64 array": ("conv1.bias", np.ones(20, np.int64), "int64"),
    "complex array": ("fc2.bias", np.ones(10, np.complex64), "complex64"),
    "wrong shape": ("fc2.bias", np.ones(11, np.float32), "fc2.bias"),
}


def _damage(kind: str, npz: Path, meta_path: Path) -> str:
    meta = json.loads(meta_path.read_text())
    if kind == "npz swapped for all-zero weights":
        npz.write_bytes(_npz_bytes(fake_weights(0.0)))
        return "sha256"
    if kind in ONE_BAD_ARRAY:
        name, value, named = ONE_BAD_ARRAY[kind]
        w = fake_weights(1.0)
        w[name] = value
        npz.write_bytes(_npz_bytes(w))
        return named
    if kind == "plain .npy instead of npz":
        buf = io.BytesIO()
        np.save(buf, np.zeros(5, np.float32))
        npz.write_bytes(buf.getvalue())
        return "unreadable weights"
    if kind == "truncated npz":
        npz.write_bytes(npz.read_bytes()[:200])
        return "unreadable weights"
    if kind == "sidecar is a JSON list":
        meta_path.write_text("[1, 2]")
        return "not a JSON object"
    if kind == "sidecar is JSON null":
        meta_path.write_text("null")
        return "not a JSON object"
    if kind == "sidecar fields of wrong types":
        meta["data_fingerprint"] = "x"
        meta["config"] = [1]
        meta_path.write_text(json.dumps(meta))
        return "other data"
    if kind == "sidecar without weights hash":
        meta.pop("weights_sha256")
        meta_path.write_text(json.dumps(meta))
        return "weights_sha256"
    if kind == "sidecar not JSON":
        meta_path.write_text("{oops")
        return "unreadable metadata"
    if kind == "npz missing":
        npz.unlink()
        return "missing"
    if kind == "npz is a FIFO":
        replace_with_fifo(npz)
        return "not a regular file"
    if kind == "sidecar is a FIFO":
        replace_with_fifo(meta_path)
        return "not a regular file"
    if kind == "sidecar with a duplicate key":
        write_with_duplicate_key(meta_path, meta, "weights_sha256", "x")
        return "duplicate key"
    if kind == "sidecar nested too deeply":
        write_too_deep(meta_path)
        return "nested too deeply"
    if kind == "npz bomb":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for name, shape in LENET_SHAPES.items():
                member = io.BytesIO()
                np.save(member, np.zeros(shape, np.float32))
                z.writestr(f"{name}.npy", member.getvalue() + (bytes(1 << 26) if name == "fc1.weight" else b""))
        npz.write_bytes(buf.getvalue())
        return "fc1.weight.npy declares"
    raise AssertionError(kind)  # pragma: no cover


DAMAGE = ["npz swapped for all-zero weights", "int64 array", "complex array", "wrong shape",
          "plain .npy instead of npz", "truncated npz", "sidecar is a JSON list", "sidecar is JSON null",
          "sidecar fields of wrong types", "sidecar without weights hash", "sidecar not JSON", "npz missing",
          "npz is a FIFO", "sidecar is a FIFO", "sidecar with a duplicate key", "sidecar nested too deeply", "npz bomb"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_cache_warns_naming_the_file_and_retrains(kind: str, tiny_mnist_dir: Path, cache_root: Path,
                                                          fake_training: List[Any]) -> None:
    first = load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    npz, meta_path = cache_paths(tiny_mnist_dir, QUICK, cache_root)
    fragment = _damage(kind, npz, meta_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    ours = [w for w in caught if issubclass(w.category, WeightCacheWarning)]
    assert ours, [str(w.message) for w in caught]
    message = str(ours[0].message)
    print(f"{kind}: {message}")
    assert fragment in message and "retraining" in message
    assert (str(npz) in message) or (str(meta_path) in message)
    assert len(fake_training) == 2
    assert all(a.dtype == np.float32 for a in again.weights.values())
    assert not np.array_equal(again.weights["fc1.weight"], first.weights["fc1.weight"])
    # the new entry is sound
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    assert len(fake_training) == 2


@pytest.mark.parametrize("kind", ["npz swapped for all-zero weights", "plain .npy instead of npz",
                                  "sidecar is a JSON list"])
def test_damaged_cache_without_torch_is_a_clear_error(kind: str, tiny_mnist_dir: Path, cache_root: Path,
                                                      fake_training: List[Any], monkeypatch) -> None:
    load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    npz, meta_path = cache_paths(tiny_mnist_dir, QUICK, cache_root)
    fragment = _damage(kind, npz, meta_path)

    def no_torch(*args: Any, **kwargs: Any) -> Any:
        raise ImportError("No module named 'torch'", name="torch")

    monkeypatch.setattr(lenet_weights, "_train_weights", no_torch)
    with pytest.raises(TrainingUnavailable) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    assert fragment in str(info.value) and str(npz) in str(info.value)


def test_weights_hash_is_recorded_and_checked(tiny_mnist_dir: Path, cache_root: Path,
                                              fake_training: List[Any]) -> None:
    load_or_train(tiny_mnist_dir, QUICK, cache_root=cache_root, progress=False)
    npz, meta_path = cache_paths(tiny_mnist_dir, QUICK, cache_root)
    meta = json.loads(meta_path.read_text())
    # the recorded hash is that of the file's content (read back here), not only of the arrays
    # the writer held; and it is not a hash of nothing in particular: another weight set differs
    with np.load(npz, allow_pickle=False) as stored:
        on_disk = {name: stored[name] for name in stored.files}
    assert set(on_disk) == set(LENET_SHAPES)
    assert meta["weights_sha256"] == weights_sha256(on_disk)
    changed = dict(on_disk, **{"fc2.bias": on_disk["fc2.bias"] + np.float32(1)})
    assert meta["weights_sha256"] != weights_sha256(changed)
    assert meta["cache_format"] == lenet_weights.CACHE_FORMAT >= 2


def test_trained_weights_refuse_non_float_dtypes() -> None:
    w = fake_weights(1.0)
    w["conv1.weight"] = np.ones(LENET_SHAPES["conv1.weight"], np.int64)
    with pytest.raises(DataError, match="conv1.weight.*int64"):
        TrainedWeights(weights=w)
    w["conv1.weight"] = np.ones(LENET_SHAPES["conv1.weight"], np.complex128)
    with pytest.raises(DataError, match="conv1.weight.*complex128"):
        TrainedWeights(weights=w)


def test_save_failure_warns_and_returns_the_trained_weights(tiny_mnist_dir: Path, tmp_path: Path,
                                                            fake_training: List[Any]) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    (root / "lenet").write_text("a file where the cache folder should be")  # fails even as root
    with pytest.warns(WeightCacheWarning, match="could not be saved"):
        trained = load_or_train(tiny_mnist_dir, QUICK, cache_root=root, progress=False)
    assert set(trained.weights) == set(LENET_SHAPES)
    assert issubclass(WeightCacheWarning, CacheWarning)


def test_planted_symlinks_are_not_written_through(tiny_mnist_dir: Path, cache_root: Path, tmp_path: Path) -> None:
    npz, meta_path = cache_paths(tiny_mnist_dir, QUICK, cache_root)
    npz.parent.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    for name in (npz.name + ".tmp", meta_path.name + ".tmp", f".{npz.name}.lock", f".{npz.name}.tmp",
                 npz.stem + ".tmp"):
        (npz.parent / name).symlink_to(victim)
    tw = TrainedWeights(weights=fake_weights(1.0), metadata={})
    save_cache(tw, npz, meta_path)
    assert victim.read_bytes() == b"keep"


# ------------------------------------------------------------------ two processes

def _hammer(npz: str, meta: str, writer: int, seconds: float, q: Any) -> None:
    errors: List[str] = []
    torn = reads = 0
    fp = {"x": {"sha256": "0"}}
    cfg = QUICK
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        value = float(writer * 100000 + i)
        try:
            tw = TrainedWeights(weights=fake_weights(value),
                                metadata={"cache_format": lenet_weights.CACHE_FORMAT, "data_fingerprint": fp,
                                          "config": cfg.to_dict(), "writer": writer, "i": i})
            save_cache(tw, Path(npz), Path(meta))
            got = read_cache(Path(npz), Path(meta), fp, cfg)
            reads += 1
            values = {float(a.flat[0]) for a in got.weights.values()}
            full = all(np.all(a == a.flat[0]) for a in got.weights.values())
            tag = got.metadata["writer"] * 100000 + got.metadata["i"]
            if len(values) != 1 or not full or values != {float(tag)}:
                torn += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        i += 1
    q.put((writer, reads, len(errors), errors[:3], torn))


def test_two_processes_save_and_read_one_entry(tmp_path: Path) -> None:
    npz, meta = tmp_path / "lenet" / "k.npz", tmp_path / "lenet" / "k.json"
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(str(npz), str(meta), w, 3.0, q)) for w in (1, 2)]
    for p in procs:
        p.start()
    results = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    for writer, reads, n_errors, examples, torn in results:
        assert n_errors == 0, f"writer {writer}: {n_errors} errors, e.g. {examples}"
        assert torn == 0 and reads > 5, (writer, reads, torn)
