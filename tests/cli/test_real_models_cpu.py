"""`prepare` and the ONNX-side facts on real pretrained models from the registry (CPU tier):
each runs where REFIT_REAL_MODELS_DIR holds it and skips naming the file where not; and the
fetch tool writes only files whose sha256 is the manifest's."""
from __future__ import annotations

import importlib.util
import inspect
import json
import re
import zipfile

import pytest

from refit_core.cases import checks
from refit_core.onnx_prep.generic import prepare_file
from refit_core.onnx_prep.source import parse_shapes
from refit_core.refit.coverage import onnx_float_initializer_info

from .real_models import MANIFEST, expectations, manifest_models, model_file

MODELS = {m["id"]: m for m in manifest_models()}
CHECKS_SOURCE = inspect.getsource(checks)


def test_the_manifest_says_what_each_model_is_and_what_check_should_say():
    kinds = " ".join(m["what"] for m in MODELS.values())
    for word in ("PaddlePaddle", "transformer", "Constant node", "quantize_dynamic"):
        assert word in kinds, word
    for m in MODELS.values():
        assert len(m["sha256"]) == 64 and m["size"] > 0 and m["licence"]
        for version, expected in expectations(m).items():
            assert version == "" or re.fullmatch(r"\d+\.\d+", version), (m["id"], version)
            assert expected["why"] and expected["exit"] in (0, 1, 2, None), (m["id"], version)
            assert expected["exit"] != 2 or expected["refusal"], (m["id"], version)
            if expected["exit"] == 1:  # the checks expected to fail: names check reports (cases/checks.py)
                assert expected["failed"] and all(f'CheckOutcome("{name}"' in CHECKS_SOURCE for name in expected["failed"])
        parse_shapes(m["shapes"])


@pytest.mark.parametrize("model_id", sorted(MODELS))
def test_prepare_on_a_real_model(model_id, tmp_path, capsys):
    entry = MODELS[model_id]
    path = model_file(entry)
    result = prepare_file(path, parse_shapes(entry["shapes"]), tmp_path / "prepared.onnx")
    print(capsys.readouterr().out)
    facts = entry["onnx_side"]
    assert result.prepared.fixed_inputs == facts["inputs_fixed"]
    assert result.prepared.moved_constants == facts["constants_moved"]
    inits, _ = onnx_float_initializer_info(tmp_path / "prepared.onnx")
    assert len(inits) == facts["float_initializers"]
    assert result.unimportable == facts["unimportable_ops"]
    assert result.agreement.ok
    # with ONNX Runtime's graph optimizations off, moving Constant weights changes nothing at all
    assert result.agreement.identical or result.agreement.identical_unoptimized


#: ONNX ops whose weight inputs TensorRT refits by name (a CPU stand-in for TensorRT's own list)
WEIGHT_OPS = ("Conv", "ConvTranspose", "BatchNormalization", "Gemm", "MatMul")


#: the models check runs its checks on: on some TensorRT expected to pass, or not measured yet (not refused)
CHECKED = sorted(m for m in MODELS if any(e["exit"] != 2 for e in expectations(MODELS[m]).values()))


@pytest.fixture(scope="module")
def prepared_case(tmp_path_factory):
    """model id -> (its case, the prepared model check builds, that model's float initializers):
    each model prepared once for the tests below (prepare runs ONNX Runtime twice)."""
    import onnx
    from onnx import numpy_helper

    from refit_core.cases.user_model import user_model_case
    done = {}

    def get(model_id):
        if model_id not in done:
            entry = MODELS[model_id]
            case = user_model_case(model_file(entry), parse_shapes(entry["shapes"]))
            path = case.make_model(tmp_path_factory.mktemp(model_id))
            floats = {i.name for i in onnx_float_initializer_info(path)[0]}
            graph = onnx.load(str(path)).graph
            done[model_id] = (case, path, graph, {i.name: numpy_helper.to_array(i).copy()
                                                  for i in graph.initializer if i.name in floats})
        return done[model_id]
    return get


@pytest.mark.parametrize("model_id", CHECKED)
def test_the_perturbation_moves_a_real_models_reference(model_id, prepared_case):
    """The check "perturbation_changes_reference" on ONNX Runtime alone: the target weights of the
    layers' weights move the reference beyond the no-op margin (a saturated detector map once
    moved only 1.7e-4, and check failed for the tool's own reason)."""
    from refit_core.cases.base import NO_OP_MARGIN, compare_outputs
    from refit_core.cases.onnx_model import ort_rows
    case, path, graph, floats = prepared_case(model_id)
    names = {x for n in graph.node if n.op_type in WEIGHT_OPS for x in n.input[1:]}
    build = {name: w for name, w in floats.items() if name in names}
    assert build
    feeds = case.probe_feeds(path)
    no_op = compare_outputs(ort_rows(path, build, feeds), ort_rows(path, case.target_weights(build, path), feeds),
                            case.tolerance.scaled(NO_OP_MARGIN))
    assert not no_op.ok, f"{model_id}: the target weights move the reference only by {no_op.max_abs:.3g}"


@pytest.mark.parametrize("model_id", CHECKED)
def test_a_real_models_target_weights_keep_it_defined(model_id, prepared_case):
    """Perturbing every float weight (a superset of what TensorRT refits, scalars included) leaves
    the model defined: ONNX Runtime with its graph optimizations off (no fusion hiding a NaN)
    gives finite outputs for the target weights. A LayerNorm written out as Pow(x - mean, 2)
    once had its exponent perturbed: NaN for every negative x, and check failed refit_vs_reference
    and refit_twice_bit_identical for the tool's own reason (ppocr-rec-v4 on TensorRT 8.5.3.1).
    NaN and Inf stay where the model holds them and appear nowhere else (magika's -inf)."""
    import numpy as np

    from refit_core.cases.onnx_model import with_initializers
    from refit_core.models.ort_session import ort_session
    case, path, _, build = prepared_case(model_id)
    target = case.target_weights(build, path)
    moved = sorted(n for n, w in build.items() if not np.array_equal(np.isfinite(target[n]), np.isfinite(w)))
    assert not moved, f"{model_id}: the target has NaN or Inf where the model does not, or not where it does: {moved}"
    session = ort_session(with_initializers(path, target), optimize=False)
    outputs = session.run(None, case.probe_feeds(path))
    bad = sum(int(np.count_nonzero(~np.isfinite(np.asarray(o, dtype=np.float64)))) for o in outputs)
    assert bad == 0, f"{model_id}: {bad} outputs are NaN or infinite for the target weights"


@pytest.mark.parametrize("model_id", CHECKED)
def test_a_refit_that_misses_one_weight_is_traced_to_it_on_a_real_model(model_id, prepared_case, monkeypatch):
    """refit_vs_reference's search for the weight a refit did not reach (checks.weight_not_reached),
    on ONNX Runtime alone: outputs made with one weight left at its build value (the first, in the
    search's order, whose build value moves the reference) are traced to that weight, within the
    search's time limit (Magika's GELU constant on TensorRT 8.5.3.1 was such a miss)."""
    from types import SimpleNamespace

    from refit_core.cases.base import compare_outputs
    from refit_core.cases.onnx_model import ort_rows
    case, path, _, build = prepared_case(model_id)
    feeds = case.probe_feeds(path)
    target = case.target_weights(build, path)
    engine = SimpleNamespace(case=case, build_weights=build, target_weights=target,
                             reference=lambda weights: ort_rows(path, {**build, **weights}, feeds))
    expected = engine.reference(target)
    for name in sorted(target):
        got = engine.reference({**target, name: build[name]})
        miss = compare_outputs(got, expected, case.tolerance)
        if not miss.ok:
            break
    else:
        pytest.fail(f"{model_id}: no single weight's build value moves the reference")
    monkeypatch.setattr(checks, "SUSPECT_SECONDS", 20.0)
    hint = checks.weight_not_reached(engine, got, miss)
    assert f"only {name!r} at its build value is within max|diff| 0 " in hint, hint


def _load_tool():
    spec = importlib.util.spec_from_file_location("fetch_real_models", MANIFEST.with_name("fetch_real_models.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_fetch_tool_writes_only_verified_files(tmp_path):
    import hashlib
    tool = _load_tool()
    good, bad = b"onnx bytes of a", b"onnx bytes of b"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with zipfile.ZipFile(wheels / "some_pkg-1.0-py3-none-any.whl", "w") as z:
        z.writestr("some_pkg/a.onnx", good)
        z.writestr("some_pkg/b.onnx", bad)
    entry = {"package": "some-pkg", "version": "1.0", "licence": "MIT"}
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"format": 1, "models": [
        dict(entry, id="a", path="some_pkg/a.onnx", sha256=hashlib.sha256(good).hexdigest(), size=len(good)),
        dict(entry, id="b", path="some_pkg/b.onnx", sha256=hashlib.sha256(good).hexdigest(), size=len(bad))]}))
    dest = tmp_path / "models"
    assert tool.fetch(dest, [], wheels, manifest) == 1
    assert (dest / "a.onnx").read_bytes() == good and not (dest / "b.onnx").exists()
    assert tool.fetch(dest, ["a"], wheels, manifest) == 0
    assert tool.fetch(dest, ["zzz"], wheels, manifest) == 2
