"""The prepared-BiDAF directory as a cache: atomic replacement, hash-checked loads, safe manifests,
prepare_cached's rebuild of damaged entries, and a reader beside a writer in another process."""
from __future__ import annotations

import json
import multiprocessing
import os
import time
import warnings
from pathlib import Path
from typing import Any, List

import numpy as np
import pytest

from refit_core import fileio
from refit_core.errors import CacheIntegrityError, CacheWarning, DataError, PreparedModelCacheWarning
from refit_core.samples.bidaf import prepared as prep
from refit_core.samples.bidaf.prepare import MANIFEST_NAME, PREPARED_MODEL_NAME, prepare_bidaf
from refit_core.samples.bidaf.prepared import load_prepared
from ...hostile import replace_with_fifo, write_too_deep, write_with_duplicate_key


def _ctx():
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


# ------------------------------------------------------------------ concurrency

def _writer(model: str, out: str, seconds: float, q: Any) -> None:
    errors: List[str] = []
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            prepare_bidaf(Path(model), Path(out))
            n += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    q.put(("writer", n, len(errors), errors[:3]))


def _reader(out: str, seconds: float, expected_w: Any, q: Any) -> None:
    errors: List[str] = []
    n = torn = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            got = load_prepared(Path(out))
            n += 1
            if not np.array_equal(got.refit_weights["W_0"], expected_w) or len(got.maps) != 4:
                torn += 1
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    q.put(("reader", n, len(errors), errors[:3], torn))


def test_reader_beside_a_re_preparing_writer_never_fails(tiny_bidaf_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache" / "prepared"
    first = prepare_bidaf(tiny_bidaf_path, out)
    ctx = _ctx()
    q = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(tiny_bidaf_path), str(out), 3.0, q)),
             ctx.Process(target=_reader, args=(str(out), 3.0, first.refit_weights["W_0"], q))]
    for p in procs:
        p.start()
    results = {r[0]: r for r in (q.get(timeout=120) for _ in procs)}
    for p in procs:
        p.join(timeout=30)
    _, n_written, w_errors, w_examples = results["writer"]
    _, n_read, r_errors, r_examples, torn = results["reader"]
    assert w_errors == 0, w_examples
    assert r_errors == 0, f"{r_errors} of {n_read + r_errors} reads failed, e.g. {r_examples}"
    assert torn == 0
    assert n_written >= 2 and n_read >= 5, (n_written, n_read)
    load_prepared(out)
    assert sorted(p.name for p in out.parent.iterdir() if not p.name.endswith(".lock")) == ["prepared"]


# ------------------------------------------------------------------ manifest and checks

def test_manifest_lists_every_file_with_sha256_and_size(tiny_bidaf_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    prepare_bidaf(tiny_bidaf_path, out)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    on_disk = sorted(p.name for p in out.iterdir() if p.name != MANIFEST_NAME)
    assert sorted(manifest["files"]) == on_disk
    for name, entry in manifest["files"].items():
        assert entry == {"sha256": fileio.sha256_file(out / name), "size": (out / name).stat().st_size}


def _damage(kind: str, out: Path, tmp_path: Path) -> str:
    """Damage a prepared directory; returns a fragment the error must contain."""
    manifest_path = out / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    model = out / PREPARED_MODEL_NAME
    if kind == "model truncated":
        model.write_bytes(model.read_bytes()[:100])
        return PREPARED_MODEL_NAME
    if kind == "model byte flipped":
        data = bytearray(model.read_bytes())
        data[len(data) // 2] ^= 0x01
        model.write_bytes(bytes(data))
        return "sha256"
    if kind == "weight replaced":
        np.save(str(out / "W_0.npy"), np.zeros_like(np.load(str(out / "W_0.npy"))))
        return "W_0.npy"
    if kind == "map missing":
        (out / "query_char.json").unlink()
        return "query_char.json"
    if kind == "manifest truncated":
        manifest_path.write_text(manifest_path.read_text()[:40])
        return MANIFEST_NAME
    if kind == "manifest a JSON list":
        manifest_path.write_text("[]")
        return MANIFEST_NAME
    if kind == "manifest of the old format (no hashes)":
        manifest.pop("files")
        manifest["format"] = 1
        manifest_path.write_text(json.dumps(manifest))
        return "format"
    if kind == "manifest path with ..":
        outside = tmp_path / "evil.json"
        outside.write_text((out / "query_char.json").read_text())
        manifest["maps"]["query_char"] = "../evil.json"
        manifest["files"]["../evil.json"] = {"sha256": fileio.sha256_file(outside),
                                             "size": outside.stat().st_size}
        manifest_path.write_text(json.dumps(manifest))
        return "'../evil.json'"
    if kind == "manifest absolute path":
        manifest["model"] = str(tmp_path / "elsewhere.onnx")
        manifest_path.write_text(json.dumps(manifest))
        return "elsewhere.onnx"
    if kind == "member is a symlink out of the directory":
        outside = tmp_path / "outside_W_0.npy"
        outside.write_bytes((out / "W_0.npy").read_bytes())
        (out / "W_0.npy").unlink()
        (out / "W_0.npy").symlink_to(outside)
        return "symlink"
    if kind == "manifest is a FIFO":
        replace_with_fifo(manifest_path)
        return "not a regular file"
    if kind == "manifest with a duplicate key":
        write_with_duplicate_key(manifest_path, manifest, "format", 0)
        return "duplicate key"
    if kind == "manifest nested too deeply":
        write_too_deep(manifest_path)
        return "nested too deeply"
    if kind == "file not listed in the manifest's files":
        del manifest["files"]["W_0.npy"]
        manifest_path.write_text(json.dumps(manifest))
        return "W_0.npy"
    raise AssertionError(kind)  # pragma: no cover


DAMAGE = ["model truncated", "model byte flipped", "weight replaced", "map missing", "manifest truncated",
          "manifest a JSON list", "manifest of the old format (no hashes)", "manifest path with ..",
          "manifest absolute path", "member is a symlink out of the directory",
          "file not listed in the manifest's files", "manifest is a FIFO", "manifest with a duplicate key",
          "manifest nested too deeply"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_load_prepared_refuses_damage(kind: str, tiny_bidaf_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared"
    prepare_bidaf(tiny_bidaf_path, out)
    fragment = _damage(kind, out, tmp_path)
    with pytest.raises(CacheIntegrityError) as info:
        load_prepared(out)
    print(f"{kind}: {info.value}")
    assert fragment in str(info.value) and str(out) in str(info.value)
    assert isinstance(info.value, DataError)


@pytest.mark.parametrize("kind", DAMAGE)
def test_prepare_cached_warns_and_rebuilds_a_damaged_entry(kind: str, tiny_bidaf_path: Path,
                                                           tmp_path: Path) -> None:
    root = tmp_path / "cache"
    first = prep.prepare_cached(tiny_bidaf_path, root)
    out = first.model_path.parent
    assert out.parent == root
    fragment = _damage(kind, out, tmp_path)
    with pytest.warns(PreparedModelCacheWarning) as caught:
        again = prep.prepare_cached(tiny_bidaf_path, root)
    message = str(caught[0].message)
    assert str(out) in message and fragment in message and "preparing it again" in message
    np.testing.assert_array_equal(again.refit_weights["W_0"], first.refit_weights["W_0"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_prepared(out)
        prep.prepare_cached(tiny_bidaf_path, root)


def test_prepare_cached_reuses_a_sound_entry(tiny_bidaf_path: Path, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "cache"
    first = prep.prepare_cached(tiny_bidaf_path, root)
    assert first.model_path.parent.name == f"bidaf-prepared-{fileio.sha256_file(tiny_bidaf_path)[:16]}"

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("prepared again although a sound entry exists")

    monkeypatch.setattr(prep, "prepare_bidaf", forbidden)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = prep.prepare_cached(tiny_bidaf_path, root)
    assert again.model_path == first.model_path and again.source_sha256 == first.source_sha256


def test_prepare_cached_does_not_swallow_other_errors(tiny_bidaf_path: Path, tmp_path: Path, monkeypatch) -> None:
    root = tmp_path / "cache"
    prep.prepare_cached(tiny_bidaf_path, root)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug, not damage")

    monkeypatch.setattr(prep, "load_prepared", boom)
    with pytest.raises(RuntimeError, match="a bug, not damage"):
        prep.prepare_cached(tiny_bidaf_path, root)


def test_prepare_cached_rebuilds_an_entry_of_another_model(tiny_bidaf_path: Path, tmp_path: Path,
                                                           make_tiny_bidaf) -> None:
    root = tmp_path / "cache"
    first = prep.prepare_cached(tiny_bidaf_path, root)
    other = tmp_path / "other.onnx"
    other.write_bytes(make_tiny_bidaf(seed=5).model.SerializeToString())
    foreign = prep.prepare_bidaf(other, tmp_path / "foreign")
    out = first.model_path.parent
    import shutil
    shutil.rmtree(out)
    shutil.copytree(foreign.model_path.parent, out)
    with pytest.warns(PreparedModelCacheWarning, match="another model"):
        again = prep.prepare_cached(tiny_bidaf_path, root)
    assert again.source_sha256 == first.source_sha256


def test_cache_write_failure_warns_and_returns_a_prepared_model(tiny_bidaf_path: Path, tmp_path: Path,
                                                                 monkeypatch) -> None:
    root = tmp_path / "cache"
    from refit_core.samples.bidaf import prepare as prepare_module
    real = prepare_module.atomic_directory

    def read_only(path: Any, **kwargs: Any) -> Any:
        if Path(path).parent == root:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, **kwargs)

    monkeypatch.setattr(prepare_module, "atomic_directory", read_only)
    with pytest.warns(PreparedModelCacheWarning, match="cannot be written"):
        got = prep.prepare_cached(tiny_bidaf_path, root)
    assert got.model_path.is_file() and root not in got.model_path.parents
    assert set(got.refit_weights) == {"Parameter576_B_0", "W_0"}


def test_read_only_cache_root(tiny_bidaf_path: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    root.mkdir()
    os.chmod(root, 0o555)
    try:
        if os.access(root, os.W_OK):
            pytest.skip("chmod does not stop this user from writing (running as root?)")
        with pytest.warns(PreparedModelCacheWarning, match=str(root)):
            got = prep.prepare_cached(tiny_bidaf_path, root)
        assert got.model_path.is_file() and list(root.iterdir()) == []
    finally:
        os.chmod(root, 0o755)


def test_prepare_refuses_to_replace_a_directory_that_is_not_a_prepared_bidaf(tiny_bidaf_path: Path,
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a prepared BiDAF"):
        prepare_bidaf(tiny_bidaf_path, out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_the_private_hashers_are_gone() -> None:
    assert not hasattr(prep, "file_md5")
    # sha256_file is fileio's (still importable from here only so flows/bidaf.py keeps working)
    assert prep.sha256_file is fileio.sha256_file
    assert issubclass(PreparedModelCacheWarning, CacheWarning)
