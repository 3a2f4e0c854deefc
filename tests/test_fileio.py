"""fileio: verified reads, manifest member names, locks that never follow symlinks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from refit_core import fileio
from refit_core.errors import CacheIntegrityError


def test_read_verified(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"hello")
    assert fileio.read_verified(p, 5, fileio.sha256_bytes(b"hello")) == b"hello"
    with pytest.raises(CacheIntegrityError, match="4 bytes, expected 5"):
        p.write_bytes(b"hell")
        fileio.read_verified(p, 5, fileio.sha256_bytes(b"hello"))
    with pytest.raises(CacheIntegrityError, match="sha256"):
        p.write_bytes(b"HELLO")
        fileio.read_verified(p, 5, fileio.sha256_bytes(b"hello"))
    with pytest.raises(CacheIntegrityError, match="missing"):
        fileio.read_verified(tmp_path / "nope", 5, "0" * 64)
    with pytest.raises(CacheIntegrityError, match="no valid size"):
        fileio.read_verified(p, None, "0" * 64)
    link = tmp_path / "link"
    link.symlink_to(p)
    with pytest.raises(CacheIntegrityError, match="symlink"):
        fileio.read_verified(link, 5, fileio.sha256_bytes(b"HELLO"))


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/b", "..", ".", "", "a\\b", 3, None])
def test_plain_member_refuses_anything_but_a_bare_name(name, tmp_path: Path) -> None:
    with pytest.raises(CacheIntegrityError, match="not a plain file name"):
        fileio.plain_member(tmp_path, name)


def test_file_lock_never_follows_a_planted_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    lock = tmp_path / ".x.lock"
    lock.symlink_to(victim)
    with fileio.file_lock(lock) as held:
        assert held is False
    assert not victim.exists()
    with fileio.file_lock(tmp_path / ".y.lock") as held:
        assert held is True


def test_md5_and_sha256_file(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert fileio.md5_file(p) == "900150983cd24fb0d6963f7d28e17f72"
    assert fileio.sha256_file(p) == fileio.sha256_bytes(b"abc") == fileio.hash_file(p)


def test_atomic_directory_replaces_a_complete_directory(tmp_path: Path) -> None:
    target = tmp_path / "d"
    for text in ("one", "two"):
        with fileio.atomic_directory(target, lock=True) as tmp:
            (tmp / "f").write_text(text)
        assert (target / "f").read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == [".d.lock", "d"]


def test_tokenizing_does_not_import_graph_surgery() -> None:
    code = ("import sys, refit_core.samples.bidaf.preprocess, refit_core.samples.bidaf.category_map; "
            "assert 'onnx_graphsurgeon' not in sys.modules and 'refit_core.onnx_prep' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(Path(__file__).resolve().parents[1]))


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    import os
    from refit_core.fileio import atomic_write_text
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644


# --- safe reads: regular files only, bounded, strict JSON ----------------------------------

def test_read_refuses_a_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(fileio.NotARegularFile):
        fileio.read_bytes_nofollow(fifo)  # a blocking open would hang here
    with pytest.raises(fileio.NotARegularFile):
        fileio.read_json_strict(fifo)


def test_read_refuses_more_than_max_bytes(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(b"x" * 100)
    assert fileio.read_bytes_nofollow(path, max_bytes=100) == b"x" * 100
    with pytest.raises(fileio.FileTooLarge):
        fileio.read_bytes_nofollow(path, max_bytes=99)


@pytest.mark.parametrize("text, problem", [
    ('{"a": 1, "a": 2}', "duplicate key 'a'"),
    ('{"outer": {"k": true, "k": false}}', "duplicate key 'k'"),
    ('{"a": NaN}', "NaN"),
    ('{"a": -Infinity}', "-Infinity"),
    ("[" * 200000 + "]" * 200000, "nested too deeply"),
    (b"\xff\xfe{}", "not UTF-8"),
])
def test_strict_json_refuses(text, problem):
    with pytest.raises(ValueError, match=problem.replace("(", r"\(")):
        fileio.loads_json_strict(text)


def test_strict_json_reads_what_json_reads():
    text = '{"a": [1, 2.5, "x", null, true], "b": {"c": {}}}'
    assert fileio.loads_json_strict(text) == json.loads(text)
