"""The timing caches the session's builds share (trt.plan_cache.TimingCacheStore,
trt.engine.shared_builds), CPU side: one per TensorRT version, GPU and precision; a damaged or
foreign one is ignored with a warning, never handed to TensorRT; one Builder per process inside
shared_builds. TensorRT is replaced by a stand-in only where its Builder is counted, never where
a build result is judged."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from refit_core.errors import EngineCacheWarning
from refit_core.trt import compat, engine
from refit_core.trt.engine import shared_builds
from refit_core.trt.plan_cache import TimingCacheStore


@pytest.fixture
def store(tmp_path):
    return TimingCacheStore(tmp_path / "plans", "NVIDIA H200", trt_version="8.6.0")


def test_a_cache_is_kept_per_precision_and_read_back(store):
    assert store.load("fp16") is None  # none yet: no warning (pytest -W error would say)
    store.store("fp16", b"fp16 tactics")
    store.store("fp32", b"fp32 tactics")
    assert store.load("fp16") == b"fp16 tactics" and store.load("fp32") == b"fp32 tactics"
    assert store.paths("fp16")[0].parent == store.root  # beside the plans


def test_another_version_or_gpu_has_its_own_cache(store):
    store.store("fp32", b"8.6.0 tactics")
    for other in (TimingCacheStore(store.root, "NVIDIA H200", trt_version="8.5.3.1"),
                  TimingCacheStore(store.root, "NVIDIA H100 80GB HBM3", trt_version="8.6.0")):
        assert other.paths("fp32") != store.paths("fp32")
        assert other.load("fp32") is None


def _truncate(store):
    blob = store.paths("fp32")[0]
    blob.write_bytes(blob.read_bytes()[:5])


def _corrupt(store):
    blob = store.paths("fp32")[0]
    blob.write_bytes(b"X" * blob.stat().st_size)


def _sidecar_garbage(store):
    store.paths("fp32")[1].write_text("{not json")


def _sidecar_missing(store):
    store.paths("fp32")[1].unlink()


def _blob_missing(store):
    store.paths("fp32")[0].unlink()


def _sidecar_of_another_version(store):
    meta_path = store.paths("fp32")[1]
    meta = json.loads(meta_path.read_text())
    meta["key_parts"]["tensorrt_version"] = "8.5.3.1"
    meta_path.write_text(json.dumps(meta))


def _blob_is_a_fifo(store):
    import os
    blob = store.paths("fp32")[0]
    blob.unlink()
    os.mkfifo(blob)


@pytest.mark.parametrize("damage", [_truncate, _corrupt, _sidecar_garbage, _sidecar_missing, _blob_missing,
                                    _sidecar_of_another_version, _blob_is_a_fifo])
def test_a_damaged_cache_is_ignored_with_a_warning_and_rewritten(store, damage):
    store.store("fp32", b"tactics timed before" * 10)
    damage(store)
    with pytest.warns(EngineCacheWarning, match=r"timing cache .*timing-.*\.cache is not usable .*building without it"):
        assert store.load("fp32") is None
    store.store("fp32", b"tactics of the build that ran without it")
    assert store.load("fp32") == b"tactics of the build that ran without it"


def test_a_cache_that_cannot_be_written_only_warns(tmp_path):
    blocked = tmp_path / "a file, not a directory"
    blocked.write_text("")
    with pytest.warns(EngineCacheWarning, match="could not be written"):
        TimingCacheStore(blocked, "GPU", trt_version="8.6.0").store("fp32", b"tactics")


class _Config:
    """Stands in for an IBuilderConfig where only the timing-cache calls are looked at."""

    def __init__(self, refuses):
        self.refuses, self.installed = refuses, None

    def create_timing_cache(self, blob):
        if blob and self.refuses:
            raise RuntimeError("not a timing cache of this version")
        return ("cache", bytes(blob))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.installed = cache


class _Logger:
    def __init__(self, errors=()):
        self.errors = list(errors)

    def mark(self):
        return 0

    def errors_since(self, mark):
        return self.errors


def test_a_cache_tensorrt_refuses_falls_back_to_an_empty_one():
    config = _Config(refuses=True)
    assert engine._use_timing_cache(config, b"foreign", _Logger()) is False
    assert config.installed == ("cache", b"")
    config = _Config(refuses=False)
    assert engine._use_timing_cache(config, b"foreign", _Logger(["The timing cache will not be used!"])) is False
    assert engine._use_timing_cache(config, b"ours", _Logger()) is True
    assert engine._use_timing_cache(config, engine.COLD, _Logger()) is None and config.installed == ("cache", b"")


def test_one_builder_per_process_inside_shared_builds(monkeypatch, store):
    made = []

    class Builder:
        def __init__(self, logger):
            made.append(logger)

    monkeypatch.setattr(compat, "import_tensorrt", lambda: SimpleNamespace(Builder=Builder))
    logger, other = object(), object()
    assert engine.trt_builder(logger) is not engine.trt_builder(logger)  # outside: a new one each time
    made.clear()
    with shared_builds(store):
        first = engine.trt_builder(logger)
        assert engine.trt_builder(logger) is first and len(made) == 1
        assert engine.trt_builder(other) is not first  # a builder logs to its own logger
        with pytest.raises(RuntimeError, match="already active"):
            with shared_builds(store):
                pass
    assert engine._SHARED.builder is None and engine._SHARED.timing_caches is None  # released on leaving
    assert engine.trt_builder(logger) is not first
