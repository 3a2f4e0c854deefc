"""MNIST as a user gets it: `python -m refit_core fetch-mnist DIR` against local HTTP servers
(good, corrupted, down, a mirror fallback), SHA256SUMS checked by the reader, and bounded
decompression (a gzip bomb in the MNIST folder)."""
from __future__ import annotations

import functools
import gzip
import http.server
import shutil
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from refit_core.samples.mnist import data as mnist
from refit_core.samples.mnist.data import (IMAGES_MAGIC, MIRRORS_ENV, MNIST_FILES, MNIST_SHA256, SUMS_FILE, fetch_mnist,
                                   load_mnist, read_idx)
from refit_core.errors import DataError
from refit_core.fileio import sha256_file

def _source_dir() -> Path:
    """The four published files: REFIT_DATA_DIR's copy, else skip."""
    import os
    candidate = os.environ.get("REFIT_DATA_DIR")
    if candidate and all((Path(candidate) / n).is_file() for n in MNIST_SHA256):
        return Path(candidate)
    pytest.skip("the four published MNIST .gz files are not in REFIT_DATA_DIR to serve")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def serve(tmp_path: Path) -> Iterator:
    """serve(folder) -> base URL of an http.server on 127.0.0.1 serving that folder."""
    servers = []

    def start(folder: Path) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def good_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "mirror-good"
    folder.mkdir()
    for name in MNIST_SHA256:
        shutil.copyfile(_source_dir() / name, folder / name)
    return folder


def _dead_url() -> str:
    """A port on 127.0.0.1 nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def _cli(dest: Path, mirrors: str) -> subprocess.CompletedProcess:
    import os
    env = dict(os.environ, **{MIRRORS_ENV: mirrors})
    return subprocess.run([sys.executable, "-m", "refit_core", "fetch-mnist", str(dest)], capture_output=True,
                          text=True, timeout=120, env=env)


def test_fetch_downloads_verifies_and_writes_sums(good_copy, serve, tmp_path) -> None:
    dest = tmp_path / "mnist"
    done = _cli(dest, serve(good_copy))
    assert done.returncode == 0, done.stderr
    assert "downloading" in done.stdout and "sha256 ok" in done.stdout
    for name, sha in MNIST_SHA256.items():
        assert sha256_file(dest / name) == sha
    sums = (dest / SUMS_FILE).read_text().splitlines()
    assert sorted(sums) == sorted(f"{sha}  {name}" for name, sha in MNIST_SHA256.items())
    assert len(load_mnist(dest, "test")) == 10000
    assert not [p for p in dest.iterdir() if p.name.endswith(".tmp")]
    # a second run downloads nothing: the server is gone and the files are kept
    again = _cli(dest, _dead_url())
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already in") == 4 and "downloading" not in again.stdout


def test_the_known_sha256_are_the_published_ones() -> None:
    """MNIST_SHA256 (the code's one home) agrees with the SHA256SUMS the data folder ships."""
    sums = _source_dir() / SUMS_FILE
    if not sums.is_file():
        pytest.skip(f"no {SUMS_FILE} beside the data")
    assert mnist.read_sums(_source_dir()) == MNIST_SHA256


def test_a_corrupted_file_is_refused_naming_it(good_copy, serve, tmp_path) -> None:
    bad = tmp_path / "mirror-bad"
    shutil.copytree(good_copy, bad)
    name = "t10k-labels-idx1-ubyte.gz"
    data = bytearray((bad / name).read_bytes())
    data[100] ^= 0xFF
    (bad / name).write_bytes(bytes(data))
    dest = tmp_path / "mnist"
    done = _cli(dest, serve(bad))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert f"{name}: refused" in done.stderr and MNIST_SHA256[name] in done.stderr
    assert not (dest / name).exists() and not (dest / SUMS_FILE).exists()


def test_a_server_that_is_down_says_what_to_do_offline(tmp_path) -> None:
    dest = tmp_path / "mnist"
    done = _cli(dest, _dead_url())
    assert done.returncode == 2 and "Traceback" not in done.stderr
    line = done.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "no mirror reachable" in line and "download these four files by hand" in line
    assert str(dest) in line and "REFIT_DATA_DIR" in line
    assert all(name in line for name in MNIST_SHA256)


def test_the_next_mirror_is_tried(good_copy, serve, tmp_path) -> None:
    """First mirror down, second corrupt for one file, third good: every file arrives verified."""
    bad = tmp_path / "mirror-bad"
    shutil.copytree(good_copy, bad)
    (bad / "train-labels-idx1-ubyte.gz").write_bytes(b"not mnist")
    dest = tmp_path / "mnist"
    done = _cli(dest, ",".join([_dead_url(), serve(bad), serve(good_copy)]))
    assert done.returncode == 0, done.stderr
    assert "refused from" in done.stdout
    assert all(sha256_file(dest / n) == sha for n, sha in MNIST_SHA256.items())


def test_a_wrong_file_already_there_is_downloaded_again(good_copy, serve, tmp_path) -> None:
    dest = tmp_path / "mnist"
    dest.mkdir()
    (dest / "t10k-images-idx3-ubyte.gz").write_bytes(b"half a download")
    done = _cli(dest, serve(good_copy))
    assert done.returncode == 0, done.stderr
    assert sha256_file(dest / "t10k-images-idx3-ubyte.gz") == MNIST_SHA256["t10k-images-idx3-ubyte.gz"]


# ------------------------------------------------------------------ SHA256SUMS beside the data

def test_train_files_renamed_as_t10k_are_refused_naming_the_file(tmp_path) -> None:
    src = _source_dir()
    folder = tmp_path / "swapped"
    folder.mkdir()
    shutil.copyfile(src / SUMS_FILE, folder / SUMS_FILE) if (src / SUMS_FILE).is_file() else \
        (folder / SUMS_FILE).write_text("".join(f"{s}  {n}\n" for n, s in MNIST_SHA256.items()))
    for kind in ("images", "labels"):
        shutil.copyfile(src / (MNIST_FILES[f"train_{kind}"] + ".gz"), folder / (MNIST_FILES[f"test_{kind}"] + ".gz"))
    with pytest.raises(DataError) as info:
        load_mnist(folder, "test")
    message = str(info.value)
    assert str(folder / "t10k-images-idx3-ubyte.gz") in message and SUMS_FILE in message
    (folder / SUMS_FILE).unlink()  # without the sums the swap is not detectable by name
    assert len(load_mnist(folder, "test")) == 60000


def test_a_malformed_sums_file_is_named(write_mnist) -> None:
    data = write_mnist(n_train=4, n_test=3)
    (data / SUMS_FILE).write_text("this is not a checksum list\n")
    with pytest.raises(DataError, match=f"{SUMS_FILE}: line 1"):
        load_mnist(data, "test")


def test_files_the_sums_list_correctly_load(write_mnist) -> None:
    data = write_mnist(n_train=4, n_test=3)
    (data / SUMS_FILE).write_text("".join(f"{sha256_file(p)} *{p.name}\n" for p in sorted(data.glob("*.gz"))))
    assert len(load_mnist(data, "test")) == 3


# ------------------------------------------------------------------ bounded decompression

def _header(dims) -> bytes:
    return struct.pack(">i", IMAGES_MAGIC) + struct.pack(f">{len(dims)}I", *dims)


def test_a_gzip_bomb_stops_where_the_header_says_the_data_ends(tmp_path) -> None:
    """A header for 2 images followed by 1 GB of zeros (1 MB compressed): refused without
    decompressing the gigabyte."""
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=9) as fh:
        fh.write(_header((2, 28, 28)))
        block = bytes(1 << 20)
        for _ in range(1024):
            fh.write(block)
    assert path.stat().st_size < 4 << 20
    with pytest.raises(DataError, match="stopped decompressing there") as info:
        read_idx(path, IMAGES_MAGIC)
    assert str(path) in str(info.value)


def test_a_gzipped_header_declaring_a_huge_shape_is_refused_before_decompressing(tmp_path) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_header((2 ** 31, 2 ** 31, 28)) + bytes(64), mtime=0))
    with pytest.raises(DataError, match="refusing to decompress") as info:
        read_idx(path, IMAGES_MAGIC)
    assert str(path) in str(info.value)


def test_a_truncated_gzip_stream_is_named(tmp_path) -> None:
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    full = gzip.compress(_header((50, 28, 28)) + bytes(range(256)) * 150, mtime=0)
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(DataError) as info:
        read_idx(path, IMAGES_MAGIC)
    assert str(path) in str(info.value) and "truncated" in str(info.value)


def test_a_fifo_in_the_mnist_folder_does_not_hang(write_mnist) -> None:
    import os
    data = write_mnist(n_train=4, n_test=3)
    target = data / (MNIST_FILES["test_labels"] + ".gz")
    target.unlink()
    os.mkfifo(target)
    with pytest.raises(DataError):
        read_idx(target, IMAGES_MAGIC)
