"""The model zoo on the CPU: export (PyTorch), the cache, models that are not degenerate,
the coverage map from the ONNX side, and `python -m refit_core zoo-export`."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from refit_core.errors import TrainingUnavailable, ZooCacheWarning
from refit_core.models.zoo import MAX_ONNX_BYTES, MIN_INPUT_DEPENDENCE, ZOO, entry_dir, zoo_model_path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each zoo model exported once into a module-wide cache: name -> (cache root, ONNX path)."""
    pytest.importorskip("torchvision")
    root = tmp_path_factory.mktemp("zoo-cache")
    return {name: (root, zoo_model_path(name, root, progress=None)) for name in ZOO}


def _run(path, feeds, weights=None):
    from refit_core.cases.onnx_model import with_initializers
    from refit_core.models.ort_session import ort_session
    session = ort_session(with_initializers(path, weights or {}), reuse=False)
    return np.concatenate([np.asarray(o, np.float64).ravel() for o in session.run(None, feeds)])


def _feeds(name, seed):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(v).astype(np.float32) for k, v in ZOO[name].input_shapes.items()}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_export_is_small_and_its_outputs_move_with_inputs_and_weights(exported, name):
    from refit_core.flows.bidaf import onnx_float_initializers
    _, path = exported[name]
    assert 0 < path.stat().st_size <= MAX_ONNX_BYTES
    a, b = _run(path, _feeds(name, 1)), _run(path, _feeds(name, 2))
    assert 0.3 < a.std() < 3.0, f"outputs of std {a.std():.3g}: degenerate (issue: logits ~1e-9 at random init)"
    # with heads calibrated over all outputs at once (ZOO_FORMAT 1) the MobileNet's moved by ~5% of their
    # spread between random images: an engine answering for the wrong input would have passed FP16 checks
    assert np.abs(a - b).max() > MIN_INPUT_DEPENDENCE * a.std(), "the outputs hardly depend on the input"
    inits = onnx_float_initializers(path)
    biggest = max(inits, key=lambda n: inits[n].size)
    rng = np.random.default_rng(0)
    moved = _run(path, _feeds(name, 1), {biggest: inits[biggest] * (1 + 0.1 * rng.standard_normal(inits[biggest].shape)).astype(np.float32)})
    assert np.abs(moved - a).max() > 1e-3 * a.std(), f"a 10% change of {biggest} does not move the outputs"


def test_a_second_call_reuses_the_cached_file(exported):
    root, path = exported["transformer-encoder"]
    before = path.stat()
    again = zoo_model_path("transformer-encoder", root, progress=None)
    after = again.stat()
    assert again == path and (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize("damage", ["truncated model", "edited metadata"])
def test_a_damaged_entry_is_named_and_exported_again(tmp_path, damage):
    pytest.importorskip("torchvision")
    path = zoo_model_path("transformer-encoder", tmp_path, progress=None)
    good = path.read_bytes()
    if damage == "truncated model":
        path.write_bytes(good[: len(good) // 2])
    else:
        meta_path = path.parent / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta["sha256"] = "0" * 64
        meta_path.write_text(json.dumps(meta))
    with pytest.warns(ZooCacheWarning, match=str(entry_dir(ZOO["transformer-encoder"], tmp_path).name)):
        again = zoo_model_path("transformer-encoder", tmp_path, progress=None)
    assert again.read_bytes() == good  # seeded export: the same file again
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sound now: no warning
        zoo_model_path("transformer-encoder", tmp_path, progress=None)


def test_another_recipe_gets_another_entry(tmp_path):
    model = ZOO["mobilenet-v3-small"]
    reseeded = dataclasses.replace(model, seed=model.seed + 1)
    resized = dataclasses.replace(model, params=dict(model.params, blocks=2))
    dirs = {entry_dir(m, tmp_path) for m in (model, reseeded, resized)}
    assert len(dirs) == 3


def test_without_pytorch_an_empty_cache_says_to_run_zoo_export(tmp_path, monkeypatch):
    import refit_core.models
    monkeypatch.setitem(sys.modules, "refit_core.models.zoo_torch", None)  # `from . import zoo_torch` fails
    monkeypatch.delattr(refit_core.models, "zoo_torch", raising=False)  # (also when already imported)
    with pytest.raises(TrainingUnavailable, match="python -m refit_core zoo-export"):
        zoo_model_path("mobilenet-v3-small", tmp_path, progress=None)


def test_coverage_from_the_onnx_side_names_what_a_refit_by_name_cannot_reach(exported):
    """The map for the exported MobileNet against a TensorRT list that lacks two initializers
    (folded away) and adds two weights of its own."""
    from refit_core.flows.bidaf import onnx_float_initializers
    from refit_core.refit.coverage import BY_NAME, coverage_of_model, format_table
    _, path = exported["mobilenet-v3-small"]
    names = sorted(onnx_float_initializers(path))
    folded = [n for n in names if n.startswith("onnx::Conv_")][:2]
    trt_names = [n for n in names if n not in folded] + ["tmp_weight_0", None]
    coverage = coverage_of_model(path, trt_names)
    assert set(coverage.names(BY_NAME)) == set(names) - set(folded)
    assert set(coverage.explanations()) == set(folded)
    assert len(coverage.trt_only) == 2
    table = format_table(coverage)
    assert all(n in table for n in folded)
    assert coverage.to_record()["initializers"] == len(names)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "refit_core", "zoo-export", *args], capture_output=True, text=True,
                          timeout=300)


def test_zoo_export_an_unknown_name_is_one_sentence():
    done = _cli("resnet-1000")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no zoo model named 'resnet-1000'; the zoo has: mobilenet-v3-small, transformer-encoder" in done.stderr


def test_zoo_export_exports_then_finds_the_cached_file(tmp_path):
    pytest.importorskip("torchvision")
    first = _cli("transformer-encoder", "--cache-dir", str(tmp_path))
    assert first.returncode == 0, first.stderr
    path = entry_dir(ZOO["transformer-encoder"], tmp_path) / "model.onnx"
    assert f"transformer-encoder: {path}" in first.stdout and "exported in" in first.stdout
    second = _cli("transformer-encoder", "--cache-dir", str(tmp_path))
    assert second.returncode == 0 and second.stdout.rstrip().endswith("cached)"), second.stdout
