"""PlanCache on the CPU (no TensorRT): concurrency, planted symlinks, read-only caches, damage.

TensorRT is never imported: the cache is given an explicit TensorRT version string, and
load_or_build gets a stand-in EngineHandle that just keeps the plan bytes.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, List

import pytest

from refit_core.errors import CacheWarning, EngineCacheWarning
from refit_core.trt import compat, engine
from refit_core.trt.engine import BuildResult, load_or_build
from refit_core.trt.plan_cache import PlanCache, plan_cache_key
from ..hostile import TOO_DEEP_JSON, replace_with_fifo, write_with_duplicate_key

VERSION = "8.6.0"
KEY = plan_cache_key({"model": "test", "n": 1})


@pytest.fixture(autouse=True)
def fake_trt_version(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any code path that asks compat for the version gets VERSION, never imports TensorRT."""
    monkeypatch.setattr(compat, "trt_version_string", lambda: VERSION)


def make_cache(root: Path) -> PlanCache:
    return PlanCache(root, trt_version=VERSION)


def payload(writer: int, i: int) -> bytes:
    """A self-checking plan: 32-byte sha256 of the body, then a body of varying size."""
    body = (f"writer {writer} plan {i} ".encode() * (50 + (i * 37 + writer * 101) % 400))
    return hashlib.sha256(body).digest() + body


def self_consistent(data: bytes) -> bool:
    return len(data) > 32 and hashlib.sha256(data[32:]).digest() == data[:32]


# ------------------------------------------------------------------ concurrency (processes)

def _hammer(root: str, writer: int, seconds: float, keys: List[str], out: Any) -> None:
    """Store and load the same keys in a loop; report (errors, torn reads, warnings, stores, hits)."""
    compat.trt_version_string = lambda: VERSION  # type: ignore[assignment]
    errors: List[str] = []
    torn = hits = stores = 0
    caught_warnings: List[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = PlanCache(Path(root), trt_version=VERSION)
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            key = keys[i % len(keys)]
            try:
                cache.store(key, payload(writer, i))
                stores += 1
                got = cache.load(key)
                if got is not None:
                    hits += 1
                    if not self_consistent(got):
                        torn += 1
            except Exception as exc:  # every exception is a failure of the test
                errors.append(f"{type(exc).__name__}: {exc}")
            i += 1
        caught_warnings = [str(w.message) for w in caught]
    out.put((writer, errors[:5], len(errors), torn, caught_warnings[:5], len(caught_warnings), stores, hits))


def _run_hammers(root: Path, seconds: float, keys: List[str]) -> List[tuple]:
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(str(root), w, seconds, keys, out)) for w in (1, 2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return results


def test_two_processes_store_and_load_the_same_keys_concurrently(tmp_path: Path) -> None:
    root = tmp_path / "plans"
    results = _run_hammers(root, 3.0, [KEY, plan_cache_key({"model": "other"})])
    for writer, errors, n_errors, torn, warns, n_warns, stores, hits in results:
        assert n_errors == 0, f"writer {writer}: {n_errors} errors, e.g. {errors}"
        assert torn == 0, f"writer {writer}: {torn} torn reads"
        assert n_warns == 0, f"writer {writer}: {n_warns} warnings, e.g. {warns}"
        assert stores > 20 and hits == stores, (writer, stores, hits)
    # the survivors are one consistent entry per key, and no temp files are left behind
    cache = make_cache(root)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert self_consistent(cache.load(KEY))
    assert not [p.name for p in root.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------ planted symlinks

def test_planted_symlinks_at_temp_names_are_never_written_through(tmp_path: Path) -> None:
    root = tmp_path / "plans"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    victims = []
    for n, name in enumerate((f"{KEY}.plan.tmp", f"{KEY}.json.tmp", f".{KEY}.plan.tmp", f".{KEY}.json.tmp",
                              f".{KEY}.lock", f"{KEY}.lock", f"{KEY}.tmp")):
        victim = outside / f"victim-{n}"
        victim.write_bytes(b"do not touch")
        (root / name).symlink_to(victim)
        victims.append(victim)
    cache = make_cache(root)
    plan = payload(1, 1)
    cache.store(KEY, plan)
    assert [v.read_bytes() for v in victims] == [b"do not touch"] * len(victims)
    assert sorted(p.name for p in outside.iterdir()) == sorted(v.name for v in victims)
    assert cache.load(KEY) == plan


# ------------------------------------------------------------------ failed stores

class FakeHandle:
    def __init__(self, plan: bytes, logger: Any, source: str = "built") -> None:
        self.plan = plan
        self.source = source


def _built(plan: bytes):
    def build() -> BuildResult:
        return BuildResult(plan=plan, seconds=0.0)
    return build


def test_failed_store_warns_and_still_returns_the_built_plan(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(engine, "EngineHandle", FakeHandle)
    cache = make_cache(tmp_path / "plans")

    def broken_store(*args: Any, **kwargs: Any) -> Path:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cache, "store", broken_store)
    plan = payload(1, 2)
    with pytest.warns(EngineCacheWarning, match="could not be stored.*No space left on device"):
        handle, result = load_or_build(cache, {"model": "m"}, _built(plan), None, progress=lambda s: None)
    assert handle.plan == plan and handle.source == "built" and result is not None


def test_read_only_cache_directory_warns_and_returns_the_plan(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(engine, "EngineHandle", FakeHandle)
    root = tmp_path / "plans"
    cache = make_cache(root)
    os.chmod(root, 0o555)
    try:
        if os.access(root, os.W_OK):
            pytest.skip("chmod does not stop this user from writing (running as root?)")
        plan = payload(1, 3)
        with pytest.warns(EngineCacheWarning, match=str(root)):
            handle, result = load_or_build(cache, {"model": "m"}, _built(plan), None, progress=lambda s: None)
        assert handle.plan == plan and result is not None
        assert list(root.iterdir()) == []
    finally:
        os.chmod(root, 0o755)


def test_load_or_build_uses_a_sound_entry_and_rebuilds_a_damaged_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(engine, "EngineHandle", FakeHandle)
    cache = make_cache(tmp_path / "plans")
    plan = payload(1, 4)
    handle, result = load_or_build(cache, {"model": "m"}, _built(plan), None, progress=lambda s: None)
    assert result is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        handle, result = load_or_build(cache, {"model": "m"}, _built(b"never"), None, progress=lambda s: None)
    assert result is None and handle.source == "cache" and handle.plan == plan
    plan_path, _ = cache.paths(plan_cache_key({"model": "m"}))
    plan_path.write_bytes(plan[:-1] + b"X")
    new = payload(2, 5)
    with pytest.warns(EngineCacheWarning, match="sha256"):
        handle, result = load_or_build(cache, {"model": "m"}, _built(new), None, progress=lambda s: None)
    assert result is not None and handle.plan == new
    assert cache.load(plan_cache_key({"model": "m"})) == new


# ------------------------------------------------------------------ damage

def _damage(kind: str, root: Path, cache: PlanCache, tmp_path: Path) -> None:
    plan_path, meta_path = cache.paths(KEY)
    data = plan_path.read_bytes()
    meta = json.loads(meta_path.read_text())
    if kind == "truncated":
        plan_path.write_bytes(data[: len(data) // 3])
    elif kind == "corrupt byte":
        plan_path.write_bytes(data[:40] + bytes([data[40] ^ 0xFF]) + data[41:])
    elif kind == "plan swapped, same size":
        plan_path.write_bytes(payload(9, 1)[: len(data)].ljust(len(data), b"\0"))
    elif kind == "sidecar missing":
        meta_path.unlink()
    elif kind == "sidecar not JSON":
        meta_path.write_text("{not json")
    elif kind == "sidecar empty":
        meta_path.write_text("")
    elif kind == "sidecar a JSON list":
        meta_path.write_text("[1, 2, 3]")
    elif kind == "sidecar size not a number":
        meta["size"] = "big"
        meta_path.write_text(json.dumps(meta))
    elif kind == "other TensorRT version":
        meta["tensorrt_version"] = "7.2.3.4"
        meta_path.write_text(json.dumps(meta))
    elif kind == "plan missing":
        plan_path.unlink()
    elif kind == "plan is a directory":
        plan_path.unlink()
        plan_path.mkdir()
    elif kind == "plan is a symlink out of the cache":
        outside = tmp_path / "outside.plan"
        outside.write_bytes(data)
        plan_path.unlink()
        plan_path.symlink_to(outside)
    elif kind == "foreign entry (another key's files)":
        other = plan_cache_key({"model": "other"})
        cache.store(other, payload(3, 3))
        o_plan, o_meta = cache.paths(other)
        shutil.copyfile(o_plan, plan_path)
        shutil.copyfile(o_meta, meta_path)
    elif kind == "plan is a FIFO":
        replace_with_fifo(plan_path)
    elif kind == "sidecar is a FIFO":
        replace_with_fifo(meta_path)
    elif kind == "sidecar with a duplicate key":
        write_with_duplicate_key(meta_path, meta, "sha256", "0" * 64)
    elif kind == "sidecar nested too deeply":
        meta_path.write_text(TOO_DEEP_JSON)
    elif kind == "plan grown past its recorded size":
        with open(plan_path, "ab") as fh:
            fh.truncate(len(data) + (64 << 20))  # sparse: 64 MB that must not be read
    elif kind == "sidecar records a huge size":
        meta["size"] = 1 << 50
        meta_path.write_text(json.dumps(meta))
    else:  # pragma: no cover
        raise AssertionError(kind)


DAMAGE = ["truncated", "corrupt byte", "plan swapped, same size", "sidecar missing", "sidecar not JSON",
          "sidecar empty", "sidecar a JSON list", "sidecar size not a number", "other TensorRT version",
          "plan missing", "plan is a directory", "plan is a symlink out of the cache",
          "foreign entry (another key's files)", "plan is a FIFO", "sidecar is a FIFO", "sidecar with a duplicate key",
          "sidecar nested too deeply", "plan grown past its recorded size", "sidecar records a huge size"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_damaged_entry_is_named_in_a_warning_and_never_loaded(kind: str, tmp_path: Path) -> None:
    root = tmp_path / "plans"
    cache = make_cache(root)
    cache.store(KEY, payload(1, 1))
    _damage(kind, root, cache, tmp_path)
    with pytest.warns(EngineCacheWarning) as caught:
        got = cache.load(KEY)
    assert got is None
    message = str(caught[0].message)
    print(f"{kind}: {message}")
    assert str(cache.paths(KEY)[0]) in message and "rebuilding" in message
    assert issubclass(EngineCacheWarning, CacheWarning) and issubclass(EngineCacheWarning, UserWarning)


def test_absent_entry_is_a_silent_miss(tmp_path: Path) -> None:
    cache = make_cache(tmp_path / "plans")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load(KEY) is None


def test_version_is_asked_lazily_when_not_given(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path / "plans")  # compat.trt_version_string is patched to VERSION
    cache.store(KEY, b"x" * 100)
    assert json.loads(cache.paths(KEY)[1].read_text())["tensorrt_version"] == VERSION
    assert make_cache(tmp_path / "plans").load(KEY) == b"x" * 100
    with pytest.warns(EngineCacheWarning, match="TensorRT 8.6.0, this is 10.0.1"):
        assert PlanCache(tmp_path / "plans", trt_version="10.0.1").load(KEY) is None


@pytest.mark.parametrize("key", ["../escape", "/abs", "a/b", "", ".hidden"])
def test_keys_that_are_not_plain_names_are_refused(key: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plan-cache key"):
        make_cache(tmp_path / "plans").paths(key)


# ------------------------------------------------------------------ writers killed mid-write

def _killed_writer(path: str, ready: Any) -> None:
    """Write a plan through fileio's atomic writer and be killed (SIGKILL) in the middle."""
    import signal
    from refit_core import fileio

    def write(handle: Any) -> None:
        handle.write(b"half a plan " * 1000)
        handle.flush()
        ready.set()
        os.kill(os.getpid(), signal.SIGKILL)

    fileio.atomic_write_with(path, write)


def test_opening_the_cache_clears_temp_files_of_killed_writers(tmp_path: Path) -> None:
    root = tmp_path / "plans"
    root.mkdir()
    ctx = multiprocessing.get_context("spawn")
    for _ in range(3):
        ready = ctx.Event()
        proc = ctx.Process(target=_killed_writer, args=(str(root / f"{KEY}.plan"), ready))
        proc.start()
        proc.join(60)
        assert proc.exitcode == -9 and ready.is_set()
    left = [p.name for p in root.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 3, left  # what a killed writer leaves: its temp file, named with its pid
    # a live writer's fresh temp file (this process) must survive; one of ours that is old must not
    live = root / f".{KEY}.json.{os.getpid()}.live123.tmp"
    live.write_bytes(b"being written")
    old = root / f".{KEY}.json.{os.getpid()}.old456.tmp"
    old.write_bytes(b"forgotten")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    make_cache(root)
    remaining = sorted(p.name for p in root.iterdir())
    assert remaining == [live.name], remaining


def test_the_samples_plan_keys_are_built_in_one_place_and_keep_their_layout():
    """plan_key_parts is the one builder; the LeNet flow's key keeps the layout plans already
    cached under (a changed layout would rebuild every cached plan)."""
    import numpy as np
    from refit_core.samples.mnist import LENET_SHAPES
    from refit_core.samples.mnist.flow import lenet_cache_key
    from refit_core.trt.engine import BuildOptions, plan_key_parts
    options = BuildOptions()
    weights = {k: np.zeros(s, np.float32) for k, s in LENET_SHAPES.items()}
    blob = b"".join(weights[k].tobytes() for k in sorted(LENET_SHAPES))
    assert lenet_cache_key(weights, options, "GPU", True) == {
        "model": "lenet", "weights_sha256": hashlib.sha256(blob).hexdigest(), "options": options.key_parts(),
        "tensorrt": VERSION, "gpu": "GPU", "name_conv1_bias": True,
        "profile": [[1, 1, 28, 28], [1000, 1, 28, 28], [1000, 1, 28, 28]]}
    assert plan_key_parts("m", options, "GPU", onnx_sha256="x") == {
        "model": "m", "options": options.key_parts(), "tensorrt": VERSION, "gpu": "GPU", "onnx_sha256": "x"}
