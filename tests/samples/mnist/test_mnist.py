"""MNIST IDX reader: parsing, layouts, every corruption case, and the real files."""
from __future__ import annotations

import gzip
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from refit_core.samples.mnist import data as mnist
from refit_core.samples.mnist.data import (IMAGES_MAGIC, LABELS_MAGIC, MNIST_FILES, MnistSplit,
                                   dataset_fingerprint, find_mnist_files,
                                   load_mnist, normalize_images, read_idx)
from refit_core.errors import DataError

from ...mnist_files import write_idx

# From /work/shared/data/mnist/README.md (MD5 of the decompressed bytes; test label counts).
README_MD5 = {
    "train_images": "6bbc9ace898e44ae57da46a324031adb",
    "train_labels": "a25bea736e30d166cdddb491f175f624",
    "test_images": "2646ac647ad5339dbf082846283269ea",
    "test_labels": "27ae3e4e09519cfbb04c329615203637",
}
README_TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ---------------------------------------------------------------- synthetic files


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_roundtrip_gz_and_raw(write_mnist, gz: bool) -> None:
    data = write_mnist(n_train=12, n_test=7, gz=gz)
    files = find_mnist_files(data)
    assert all(p.name.endswith(".gz") == gz for p in files.values())
    split = load_mnist(data, "test")
    assert isinstance(split, MnistSplit)
    assert split.images.shape == (7, 28, 28) and split.images.dtype == np.uint8
    assert split.labels.shape == (7,) and split.labels.dtype == np.uint8
    assert split.labels.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert len(split) == 7
    rng = np.random.default_rng(0)
    expected_train = rng.integers(0, 256, size=(12, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(load_mnist(data, "train").images, expected_train)


def test_gz_and_raw_parse_identically(write_mnist, tmp_path: Path) -> None:
    a = load_mnist(write_mnist(gz=True, root=tmp_path / "a"), "train")
    b = load_mnist(write_mnist(gz=False, root=tmp_path / "b"), "train")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_idx_header_layout(tmp_path: Path) -> None:
    """The bytes write_idx produces are the published IDX layout (big-endian magic + dims)."""
    path = write_idx(tmp_path / "x-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    raw = path.read_bytes()
    assert struct.unpack(">iIII", raw[:16]) == (IMAGES_MAGIC, 3, 28, 28)
    assert len(raw) == 16 + 3 * 28 * 28


def test_mnist_subfolder_is_searched(write_mnist, tmp_path: Path) -> None:
    data = write_mnist(subdir="mnist")
    files = find_mnist_files(data)
    assert set(files) == set(MNIST_FILES)
    assert all(p.parent == data / "mnist" for p in files.values())
    assert len(load_mnist(data, "train")) == 30


def test_raw_file_preferred_over_gz(write_mnist) -> None:
    data = write_mnist(gz=True)
    write_mnist(gz=False, root=data, n_train=5)
    files = find_mnist_files(data)
    assert files["train_images"].name == MNIST_FILES["train_images"]
    assert len(load_mnist(data, "train")) == 5


def test_missing_file_names_file_and_directories(write_mnist) -> None:
    data = write_mnist()
    (data / (MNIST_FILES["test_images"] + ".gz")).unlink()
    assert len(load_mnist(data, "train")) == 30  # the other split does not need it
    with pytest.raises(DataError) as info:
        load_mnist(data, "test")
    msg = str(info.value)
    assert "t10k-images-idx3-ubyte" in msg
    assert "t10k-labels" not in msg
    assert str(data) in msg and str(data / "mnist") in msg


def test_missing_directory_lists_all_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        find_mnist_files(tmp_path / "nowhere")
    msg = str(info.value)
    for base in MNIST_FILES.values():
        assert base in msg
    assert str(tmp_path / "nowhere" / "mnist") in msg


def test_unknown_split_rejected(write_mnist) -> None:
    with pytest.raises(ValueError):
        load_mnist(write_mnist(), "validation")


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "raw"])
def test_truncated_file_names_file(write_mnist, gz: bool) -> None:
    data = write_mnist(gz=gz)
    victim = find_mnist_files(data)["train_images"]
    raw = gzip.decompress(victim.read_bytes()) if gz else victim.read_bytes()
    cut = raw[:-100]
    victim.write_bytes(gzip.compress(cut) if gz else cut)
    with pytest.raises(DataError, match="truncated") as info:
        load_mnist(data, "train")
    assert str(victim) in str(info.value)


def test_truncated_gzip_stream_names_file(write_mnist) -> None:
    data = write_mnist(gz=True)
    victim = find_mnist_files(data)["test_labels"]
    victim.write_bytes(victim.read_bytes()[:-12])  # cut inside the gzip trailer/stream
    with pytest.raises(DataError) as info:
        load_mnist(data, "test")
    assert str(victim) in str(info.value)


def test_trailing_bytes_rejected(write_mnist) -> None:
    data = write_mnist(gz=False)
    victim = find_mnist_files(data)["test_labels"]
    victim.write_bytes(victim.read_bytes() + b"\0\0")
    with pytest.raises(DataError, match="trailing") as info:
        load_mnist(data, "test")
    assert str(victim) in str(info.value)


def test_wrong_magic_names_file(write_mnist) -> None:
    data = write_mnist(gz=False)
    files = find_mnist_files(data)
    # A labels file where the images file should be.
    files["train_images"].write_bytes(files["train_labels"].read_bytes())
    with pytest.raises(DataError) as info:
        load_mnist(data, "train")
    msg = str(info.value)
    assert str(files["train_images"]) in msg
    assert str(LABELS_MAGIC) in msg and str(IMAGES_MAGIC) in msg


def test_garbage_file_rejected(write_mnist) -> None:
    data = write_mnist(gz=False)
    victim = find_mnist_files(data)["test_images"]
    victim.write_bytes(b"<html>not found</html>")
    with pytest.raises(DataError, match="magic"):
        load_mnist(data, "test")


def test_image_label_count_mismatch(write_mnist) -> None:
    data = write_mnist(n_test=10)
    write_idx(data / (MNIST_FILES["test_labels"] + ".gz"), np.zeros(9, np.uint8))
    with pytest.raises(DataError) as info:
        load_mnist(data, "test")
    msg = str(info.value)
    assert "10 images" in msg and "9 labels" in msg
    assert MNIST_FILES["test_images"] in msg and MNIST_FILES["test_labels"] in msg


def test_label_out_of_range(write_mnist) -> None:
    data = write_mnist(n_test=4)
    write_idx(data / (MNIST_FILES["test_labels"] + ".gz"), np.array([0, 1, 10, 2], np.uint8))
    with pytest.raises(DataError, match="out of range"):
        load_mnist(data, "test")


def test_wrong_image_size(write_mnist) -> None:
    data = write_mnist(n_test=4)
    write_idx(data / (MNIST_FILES["test_images"] + ".gz"), np.zeros((4, 32, 32), np.uint8))
    with pytest.raises(DataError, match="32x32"):
        load_mnist(data, "test")


def test_read_idx_returns_writable_copy(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "l.gz", np.arange(5, dtype=np.uint8))
    arr = read_idx(path, LABELS_MAGIC)
    arr[0] = 9  # np.frombuffer alone would be read-only
    assert arr.tolist() == [9, 1, 2, 3, 4]


# ---------------------------------------------------------------- normalisation


def test_normalize_images() -> None:
    imgs = np.array([[[0] * 28] * 28, [[255] * 28] * 28], dtype=np.uint8)
    x = normalize_images(imgs)
    assert x.shape == (2, 1, 28, 28) and x.dtype == np.float32 and x.flags.c_contiguous
    assert x[0, 0, 0, 0] == pytest.approx(-0.1307 / 0.3081, abs=1e-6)
    assert x[1, 0, 0, 0] == pytest.approx((1 - 0.1307) / 0.3081, abs=1e-6)
    np.testing.assert_array_equal(normalize_images(imgs[:, None]), x)


def test_normalize_rejects_bad_shape() -> None:
    with pytest.raises(ValueError):
        normalize_images(np.zeros((2, 3, 28, 28), np.uint8))


# ---------------------------------------------------------------- fingerprint


def test_fingerprint_ignores_compression_and_tracks_content(write_mnist, tmp_path: Path) -> None:
    fp_gz = dataset_fingerprint(write_mnist(gz=True, root=tmp_path / "a"))
    fp_raw = dataset_fingerprint(write_mnist(gz=False, root=tmp_path / "b"))
    assert fp_gz == fp_raw
    assert set(fp_gz) == set(MNIST_FILES)
    data = tmp_path / "b"
    victim = data / MNIST_FILES["test_labels"]
    write_idx(victim, np.full(20, 3, np.uint8))
    st = victim.stat()
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    fp_new = dataset_fingerprint(data)
    assert fp_new["test_labels"] != fp_raw["test_labels"]
    assert fp_new["train_images"] == fp_raw["train_images"]


def test_fingerprint_is_cached(write_mnist, monkeypatch) -> None:
    data = write_mnist()
    first = dataset_fingerprint(data)

    def boom(*args, **kwargs):
        raise AssertionError("file re-hashed although unchanged")

    monkeypatch.setattr(mnist.hashlib, "sha256", boom)
    assert dataset_fingerprint(data) == first


# ---------------------------------------------------------------- the real data set


def test_real_data_shapes_and_label_counts(mnist_dir: Path) -> None:
    train = load_mnist(mnist_dir, "train")
    test = load_mnist(mnist_dir, "test")
    assert train.images.shape == (60000, 28, 28) and train.labels.shape == (60000,)
    assert test.images.shape == (10000, 28, 28) and test.labels.shape == (10000,)
    assert train.images.dtype == np.uint8 and test.labels.dtype == np.uint8
    counts = np.bincount(test.labels, minlength=10).tolist()
    assert counts == README_TEST_LABEL_COUNTS
    readme = mnist_dir / "README.md"
    if readme.is_file():  # the numbers above were copied from it; keep them honest
        m = re.search(r"Label counts, test set[^:]*:\s*([\d ]+)", readme.read_text())
        assert m is not None
        assert [int(v) for v in m.group(1).split()] == counts
    assert np.bincount(train.labels, minlength=10).sum() == 60000
    assert train.images.max() == 255 and train.images.min() == 0


def test_real_data_checksums_match_readme(mnist_dir: Path) -> None:
    fp = dataset_fingerprint(mnist_dir)
    assert {k: v["md5"] for k, v in fp.items()} == README_MD5


# ---- sizes from Python ints, empty splits, one directory per split -------------------------

def _idx_header(magic: int, dims) -> bytes:
    import struct
    return struct.pack(">i", magic) + struct.pack(f">{len(dims)}I", *dims)


def test_a_header_claiming_2_31_squared_images_is_a_data_error_naming_the_sizes(tmp_path: Path) -> None:
    from refit_core.samples.mnist.data import read_idx
    path = tmp_path / "huge-idx3-ubyte"
    path.write_bytes(_idx_header(IMAGES_MAGIC, (2 ** 31, 2 ** 31, 28)) + bytes(28 * 28 * 3))
    with pytest.raises(DataError) as info:
        read_idx(path, IMAGES_MAGIC)
    message = str(info.value)
    print(message)
    assert str(path) in message and "(2147483648, 2147483648, 28)" in message
    assert str(2 ** 31 * 2 ** 31 * 28) in message and str(28 * 28 * 3) in message


def test_an_empty_split_is_refused(tmp_path: Path) -> None:
    from refit_core.samples.mnist.data import load_mnist
    write_idx(tmp_path / MNIST_FILES["test_images"], np.zeros((0, 28, 28), np.uint8))
    write_idx(tmp_path / MNIST_FILES["test_labels"], np.zeros((0,), np.uint8))
    with pytest.raises(DataError, match="empty") as info:
        load_mnist(tmp_path, "test")
    print(info.value)
    assert MNIST_FILES["test_images"] in str(info.value)


def test_both_files_of_a_split_come_from_one_directory(tmp_path: Path) -> None:
    from refit_core.samples.mnist.data import find_mnist_files, load_mnist
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(8, 28, 28), dtype=np.uint8)
    # root: images only; root/mnist: labels only -> no directory holds the whole split
    write_idx(tmp_path / MNIST_FILES["test_images"], imgs)
    write_idx(tmp_path / "mnist" / MNIST_FILES["test_labels"], np.zeros(8, np.uint8))
    with pytest.raises(DataError, match="same directory") as info:
        find_mnist_files(tmp_path, ("test",))
    print(info.value)
    # once root/mnist holds both, it is used for both, and the split says so
    write_idx(tmp_path / "mnist" / MNIST_FILES["test_images"], imgs)
    files = find_mnist_files(tmp_path, ("test",))
    assert files["test_images"].parent == files["test_labels"].parent == tmp_path / "mnist"
    split = load_mnist(tmp_path, "test")
    assert split.directory == tmp_path / "mnist" and len(split) == 8
