"""The committed model assets (refit_core/assets/): LeNet's weights and the zoo's ONNX files,
each verified against its manifest on every load, usable without PyTorch, refreshed only on
purpose; and `inputs_sha256` of every case, computed from them."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from refit_core.errors import AssetError, DataError
from refit_core.fileio import sha256_file
from refit_core.samples.mnist import LENET_SHAPES
from refit_core.models import assets
from refit_core.models.assets import MAX_ASSET_BYTES, read_asset, write_asset, zoo_asset
from refit_core.samples.mnist.weights import committed_lenet, committed_lenet_path, parse_weights_npz, weights_sha256
from refit_core.models.zoo import ZOO, committed_zoo_model
from refit_core.models.zoo import UPDATE_ASSET_COMMAND as ZOO_UPDATE_COMMAND
from tools.train_lenet import UPDATE_ASSET_COMMAND as LENET_UPDATE_COMMAND
from tools.train_lenet import LenetTrainConfig, npz_bytes

from tests.conftest import BITEXACT_ENV

COMMITTED = [committed_lenet_path()] + [zoo_asset(name) for name in ZOO] + [assets.ASSETS_DIR / "bidaf_standin.onnx"]


@pytest.fixture
def asset_copy(tmp_path, monkeypatch) -> Path:
    """A copy of refit_core/assets that the loaders read instead (to damage or replace)."""
    folder = tmp_path / "assets"
    shutil.copytree(assets.ASSETS_DIR, folder)
    monkeypatch.setattr(assets, "ASSETS_DIR", folder)
    return folder


# ------------------------------------------------------------------ the committed files

@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.name)
def test_each_asset_is_small_and_matches_its_manifest(path) -> None:
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["file"] == path.name
    assert meta["size_bytes"] == path.stat().st_size <= MAX_ASSET_BYTES
    assert meta["sha256"] == sha256_file(path)


def test_the_lenet_manifest_says_how_the_weights_were_made(mnist_dir) -> None:
    from refit_core.samples.mnist.data import dataset_fingerprint
    trained = committed_lenet()
    meta = trained.metadata
    assert meta["recipe"] == LenetTrainConfig().to_dict()
    assert meta["data_fingerprint"] == dataset_fingerprint(mnist_dir)
    assert meta["test_accuracy"] >= 0.98
    assert meta["made_by"] == LENET_UPDATE_COMMAND
    assert meta["weights_sha256"] == weights_sha256(trained.weights)
    assert {k: v.shape for k, v in trained.weights.items()} == LENET_SHAPES


@pytest.mark.parametrize("name", sorted(ZOO))
def test_the_zoo_manifests_record_the_current_recipe(name) -> None:
    meta = json.loads(zoo_asset(name).with_suffix(".json").read_text())
    assert meta["recipe"] == ZOO[name].recipe()
    assert meta["made_by"] == f"{ZOO_UPDATE_COMMAND} {name}"
    assert committed_zoo_model(name) == zoo_asset(name)


def test_the_gpu_side_needs_no_pytorch() -> None:
    """With torch and torchvision unimportable: the GPU-side modules import, the assets load and
    every case says what it runs on."""
    code = textwrap.dedent("""
        import sys
        for name in ("torch", "torchvision"):
            sys.modules[name] = None
        import refit_core.pytest_plugin, refit_core.pytest_fixtures, refit_core.samples.mnist.flow, refit_core.samples.bidaf.flow
        import refit_core.trt.engine, refit_core.samples.bidaf.prepare
        from refit_core.cases import registry
        from refit_core.samples.mnist.weights import committed_lenet
        from refit_core.models.zoo import ZOO, committed_zoo_model
        assert committed_lenet().test_accuracy >= 0.98
        [committed_zoo_model(n) for n in ZOO]
        hashes = {c.name: c.inputs_sha256() for c in registry.CASES.values() if "original" not in c.name}
        assert all(len(h) == 64 for h in hashes.values()), hashes
        assert "torch" not in {m.split(".")[0] for m, v in sys.modules.items() if v is not None}
        print("ok", len(hashes))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok")


# ------------------------------------------------------------------ damage is an error naming the file

def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "fifo", "missing", "manifest duplicate key",
                                    "manifest deeply nested", "manifest missing"])
def test_a_damaged_lenet_asset_is_an_error_naming_the_file_never_retrained(asset_copy, monkeypatch, damage) -> None:
    import tools.train_lenet as lw
    monkeypatch.setattr(lw, "_train_weights", lambda *a, **k: pytest.fail("retrained a committed asset"))
    npz = asset_copy / "lenet_weights.npz"
    manifest = asset_copy / "lenet_weights.json"
    if damage == "flipped byte":
        _flip(npz)
    elif damage == "truncated":
        npz.write_bytes(npz.read_bytes()[:1000])
    elif damage == "fifo":
        npz.unlink()
        os.mkfifo(npz)
    elif damage == "missing":
        npz.unlink()
    elif damage == "manifest duplicate key":
        text = manifest.read_text()
        manifest.write_text(text.replace('{\n', '{\n  "sha256": "' + "0" * 64 + '",\n', 1))
    elif damage == "manifest deeply nested":
        manifest.write_text("[" * 100000 + "]" * 100000)
    else:
        manifest.unlink()
    with pytest.raises(AssetError) as info:
        committed_lenet()
    named = manifest if damage.startswith("manifest") else npz
    assert str(named) in str(info.value)


def test_a_consistent_but_different_weights_file_is_refused_by_the_arrays_hash(asset_copy) -> None:
    """Replacing the npz and its file sha256 but not weights_sha256: the arrays are checked too."""
    trained = committed_lenet()
    other = {k: v * np.float32(1.01) for k, v in trained.weights.items()}
    meta = json.loads((asset_copy / "lenet_weights.json").read_text())
    write_asset(asset_copy / "lenet_weights.npz", npz_bytes(other), {k: v for k, v in meta.items()
                                                                      if k not in ("file", "size_bytes", "sha256")})
    with pytest.raises(AssetError, match="weights_sha256"):
        committed_lenet()


@pytest.mark.parametrize("name", sorted(ZOO))
def test_a_damaged_zoo_asset_is_an_error_naming_the_file(asset_copy, name) -> None:
    _flip(asset_copy / f"zoo-{name}.onnx")
    with pytest.raises(AssetError) as info:
        committed_zoo_model(name)
    assert str(asset_copy / f"zoo-{name}.onnx") in str(info.value)


def test_a_zoo_asset_of_another_recipe_is_refused(asset_copy, monkeypatch) -> None:
    import dataclasses
    import refit_core.models.zoo as zoo
    changed = dataclasses.replace(ZOO["transformer-encoder"], seed=1)
    monkeypatch.setitem(zoo.ZOO, "transformer-encoder", changed)
    with pytest.raises(AssetError, match="another recipe.*--update-asset"):
        committed_zoo_model("transformer-encoder")


# ------------------------------------------------------------------ bounded npz reading

def _npz(members) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _npy_header(shape, descr="<f4") -> bytes:
    header = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


def test_an_npz_bomb_is_refused_before_it_is_inflated() -> None:
    """One member inflating to 1 GB (1 MB in the archive): a DataError, not a MemoryError."""
    good = committed_lenet().weights
    members = {}
    for n in LENET_SHAPES:
        buf = io.BytesIO()
        np.save(buf, good[n])
        members[f"{n}.npy"] = buf.getvalue()
    members["fc1.weight.npy"] = _npy_header(LENET_SHAPES["fc1.weight"]) + bytes(1 << 30)
    data = _npz(members)
    assert len(data) < 4 << 20
    with pytest.raises(DataError, match="fc1.weight.npy declares"):
        parse_weights_npz(data, "bomb.npz")


def test_an_npy_header_declaring_a_huge_shape_is_refused() -> None:
    members = {}
    good = committed_lenet().weights
    for n in LENET_SHAPES:
        buf = io.BytesIO()
        np.save(buf, good[n])
        members[f"{n}.npy"] = buf.getvalue()
    members["fc2.bias.npy"] = _npy_header((1 << 40,)) + bytes(40)
    with pytest.raises(DataError, match=r"fc2.bias is float32 \(1099511627776,\)"):
        parse_weights_npz(_npz(members), "huge.npz")


def test_an_npz_of_other_members_is_refused() -> None:
    with pytest.raises(DataError, match="not the eight LeNet weights"):
        parse_weights_npz(_npz({"evil.npy": b"x"}), "other.npz")
    with pytest.raises(DataError, match="unreadable weights"):
        parse_weights_npz(b"PK\x03\x04 not a zip", "garbage.npz")


def test_npz_bytes_round_trip() -> None:
    weights = committed_lenet().weights
    back = parse_weights_npz(npz_bytes(weights), "x")
    assert weights_sha256(back) == weights_sha256(weights)


# ------------------------------------------------------------------ refreshing on purpose

def test_update_committed_lenet_writes_the_weights_and_a_manifest(asset_copy, tiny_mnist_dir) -> None:
    from refit_core.samples.mnist.weights import TrainedWeights
    from tools.train_lenet import update_committed_lenet
    rng = np.random.default_rng(3)
    weights = {n: rng.standard_normal(s).astype(np.float32) for n, s in LENET_SHAPES.items()}
    trained = TrainedWeights(weights, {"config": LenetTrainConfig(limit=8).to_dict(), "test_accuracy": 0.1,
                                       "torch_version": "x"})
    meta = update_committed_lenet(trained, tiny_mnist_dir)
    assert meta["sha256"] == sha256_file(asset_copy / "lenet_weights.npz")
    again = committed_lenet()
    assert weights_sha256(again.weights) == weights_sha256(weights) == again.metadata["weights_sha256"]
    assert again.metadata["recipe"]["limit"] == 8 and again.metadata["made_by"].endswith("--update-asset")


def test_zoo_export_update_asset_refreshes_the_committed_file(asset_copy, tmp_path) -> None:
    pytest.importorskip("torchvision")
    from tools.zoo_export import update_zoo_asset
    (asset_copy / "zoo-transformer-encoder.onnx").write_bytes(b"stale")
    meta = update_zoo_asset("transformer-encoder", tmp_path / "cache")
    assert committed_zoo_model("transformer-encoder") == asset_copy / "zoo-transformer-encoder.onnx"
    assert meta["recipe"] == ZOO["transformer-encoder"].recipe()


# ------------------------------------------------------------------ a fresh export against the committed one

def _graph_outline(path: Path):
    import onnx
    model = onnx.load(str(path))
    return ([(n.op_type, len(n.input), len(n.output)) for n in model.graph.node],
            sorted((i.name, i.data_type, tuple(i.dims)) for i in model.graph.initializer),
            [(v.name, v.type.SerializeToString()) for v in list(model.graph.input) + list(model.graph.output)])


#: ONNX Runtime outputs of a fresh export vs the committed one, relative to max|output|: another
#: CPU's float kernels move the calibration by ~1e-6; another recipe moves outputs by order one
EXPORT_RTOL = 1e-3


@pytest.fixture(scope="module")
def fresh_exports(tmp_path_factory):
    pytest.importorskip("torchvision")
    from tools.zoo_export import zoo_model_path
    root = tmp_path_factory.mktemp("zoo-fresh")
    return {name: zoo_model_path(name, root, progress=None) for name in ZOO}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_a_fresh_export_has_the_committed_structure_and_outputs(fresh_exports, name) -> None:
    """Portable: graph (ops, initializer names and shapes, interface) exactly; outputs within EXPORT_RTOL."""
    from refit_core.models.ort_session import ort_session
    fresh, committed = fresh_exports[name], zoo_asset(name)
    assert _graph_outline(fresh) == _graph_outline(committed)
    rng = np.random.default_rng(11)
    feeds = {k: rng.standard_normal(v).astype(np.float32) for k, v in ZOO[name].input_shapes.items()}
    want = ort_session(committed.read_bytes(), reuse=False).run(None, feeds)[0]
    got = ort_session(fresh.read_bytes(), reuse=False).run(None, feeds)[0]
    assert np.abs(got - want).max() <= EXPORT_RTOL * np.abs(want).max()


@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.skipif(os.environ.get(BITEXACT_ENV) != "1",
                    reason=f"bit-exact export holds only on the machine that made the asset; set {BITEXACT_ENV}=1 there")
def test_a_fresh_export_is_the_committed_file_bit_for_bit(fresh_exports, name) -> None:
    assert sha256_file(fresh_exports[name]) == read_asset(zoo_asset(name))[1]["sha256"]


# ------------------------------------------------------------------ inputs_sha256

def _cases():
    from refit_core.cases import registry
    return [c for c in registry.CASES.values() if not c.name.startswith("bidaf-original")]


def test_every_case_has_an_inputs_sha256_the_same_for_every_precision() -> None:
    from refit_core.cases.base import variant_name
    by_base = {}
    for case in _cases():
        value = case.inputs_sha256()
        assert len(value) == 64 and int(value, 16) >= 0
        assert case.inputs_sha256() == value  # stays when nothing changes
        base = case.name
        for p in ("-fp16", "-tf32"):
            base = base[: -len(p)] if base.endswith(p) else base
        by_base.setdefault(base, set()).add(value)
        assert variant_name(base, case.precision) == case.name
    assert all(len(v) == 1 for v in by_base.values()), by_base
    assert len({next(iter(v)) for v in by_base.values()}) == len(by_base), "two cases with one inputs hash"


def test_onnx_and_asset_hashes_are_the_files_sha256() -> None:
    from refit_core.cases.bidaf import BidafCase
    from refit_core.cases.zoo import ZooCase
    assert BidafCase("standin").inputs_sha256() == sha256_file(assets.ASSETS_DIR / "bidaf_standin.onnx")
    for name in ZOO:
        assert ZooCase(name).inputs_sha256() == sha256_file(zoo_asset(name))


def test_mnist_inputs_sha256_changes_with_the_weights(asset_copy) -> None:
    from refit_core.cases.mnist import MnistCase
    case = MnistCase()
    before = case.inputs_sha256()
    assert MnistCase("fp16").inputs_sha256() == before
    trained = committed_lenet()
    committed_bytes = (asset_copy / "lenet_weights.npz").read_bytes()
    meta = {k: v for k, v in trained.metadata.items() if k not in ("file", "size_bytes", "sha256")}
    changed = dict(trained.weights, **{"conv1.bias": trained.weights["conv1.bias"] + np.float32(1e-3)})
    write_asset(asset_copy / "lenet_weights.npz", npz_bytes(changed), dict(meta, weights_sha256=weights_sha256(changed)))
    assert case.inputs_sha256() != before
    write_asset(asset_copy / "lenet_weights.npz", committed_bytes, meta)  # npz bytes vary with Python's zipfile
    assert case.inputs_sha256() == before


def test_zoo_inputs_sha256_changes_with_the_file(asset_copy) -> None:
    from refit_core.cases.zoo import ZooCase
    case = ZooCase("mobilenet-v3-small")
    before = case.inputs_sha256()
    path = asset_copy / "zoo-mobilenet-v3-small.onnx"
    meta = read_asset(path)[1]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    write_asset(path, bytes(data), {k: v for k, v in meta.items() if k not in ("file", "size_bytes", "sha256")})
    assert case.inputs_sha256() not in (before, None)


def test_a_user_models_inputs_sha256_is_its_files(tmp_path) -> None:
    from refit_core.cases.tiny_mlp import write_tiny_mlp
    from refit_core.cases.user_model import user_model_case
    path = write_tiny_mlp(tmp_path)
    case = user_model_case(path)
    assert case.inputs_sha256() == sha256_file(path)
    write_tiny_mlp(tmp_path, seed=8)
    assert case.inputs_sha256() == sha256_file(path)
