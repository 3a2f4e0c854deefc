"""The flow of `check` around the GPU (CPU tier): with the TensorRT seams replaced by numpy
stand-ins (CudaSession, the logger, the engine; tests/cases/test_checks_cpu.FakeEngine),
`run_on_gpu` runs the shared checks in order, says which weights it left out, fails with the
reason when nothing is refittable, skips the builds with --skip-builds, times the builds and
the refit tax otherwise, prints an estimate before each build, and writes a record the gate
reads. Nothing here is a TensorRT result: it catches mistakes in refit_core/check's own code."""
from __future__ import annotations

import numpy as np
import pytest

from refit_core.check import gpu_run
from refit_core.check.plan import EXIT_FAILED, EXIT_OK, plan_from_args
from refit_core.cli import build_parser
from refit_core.refit.coverage import Initializer, classify
from refit_core.reporting.schema import load_results as _load_record, record_dict


def load_results(path):
    return record_dict(_load_record(path))

from ..cases.test_checks_cpu import FakeEngine
from .test_check_cli import _write_model


class _Session:
    gpu_name, driver_version, runtime_version, compute_capability = "Fake GPU", "580.1", "0", (9, 0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def on_close(self, closer):
        pass


class _Runner:
    def __init__(self, *_args):
        pass

    def time_inference(self, feeds, rounds, warmup):
        return [1e-3] * rounds


class _CheckEngine(FakeEngine):
    """FakeEngine with what check's GPU run asks of an OnnxModelEngine besides the shared checks."""

    def __init__(self, model_path, left_out_outputs=(), **kw):
        super().__init__(**kw)
        self.model_path = model_path
        self.output_names, self.left_out_outputs = ["y"], list(left_out_outputs)
        self.build_seconds = 1.5
        self.timing_cache = b"cache"
        self.feeds = {"x": np.zeros((1, 3), np.float32)}
        self.runner = _Runner()
        self.refitter.refitter = None

    def coverage(self):
        inits = [Initializer(n, "float32", tuple(w.shape)) for n, w in self.build_weights.items()]
        cov = classify(inits, self.refitter.trt_weight_names())
        cov.blocked = dict(self.refitter.blocked)
        return cov

    def plain_runner(self):
        return _Runner()


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    from refit_core.trt import compat, cuda, recorders, runner
    monkeypatch.setenv("REFIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cuda, "CudaSession", _Session)
    monkeypatch.setattr(recorders, "make_logger", lambda *_a: None)
    monkeypatch.setattr(runner, "TrtRunner", _Runner)
    monkeypatch.setattr(compat, "trt_version_string", lambda: "0.0-fake")
    monkeypatch.setattr(compat, "build_info", lambda: {"version": "0.0-fake"})
    timed = []
    monkeypatch.setattr(gpu_run, "_timed_rebuild", lambda run, engine, *a: timed.append(engine))
    return timed


def _run(monkeypatch, tmp_path, capsys, *extra, **engine_kw):
    model = _write_model(tmp_path / "static.onnx", batch=2)
    record = tmp_path / "check.json"
    plan = plan_from_args(build_parser().parse_args(["check", str(model), "--rounds", "3",
                                                           "--results", str(record), *extra]))
    builds = [0]  # what trt.engine.builds_in_this_process() would count

    def open_engine(plan, *_args):
        builds[0] += 1
        return _CheckEngine(plan.prepared, **engine_kw)

    monkeypatch.setattr(gpu_run, "_builds", lambda: builds[0])
    monkeypatch.setattr(gpu_run, "_open_engine", open_engine)
    try:
        code = gpu_run.run_on_gpu(plan)
    finally:
        plan.cleanup()
    return code, capsys.readouterr().out, record


def test_a_good_engine_passes_every_check_and_the_record_is_complete(fake_gpu, monkeypatch, tmp_path, capsys):
    code, out, record = _run(monkeypatch, tmp_path, capsys)
    assert code == EXIT_OK, out
    assert out.rstrip().endswith("CHECK PASSED: 7 checks passed on 2 weights refittable by name")
    for name in ("weights_to_refit", "built_vs_reference", "perturbation_changes_reference", "refit_back_vs_built",
                 "refit_vs_reference", "refit_twice_bit_identical", "refit_vs_fresh_build"):
        assert f"[PASS] {name}:" in out, name
    assert "estimate for the REFIT build: no build measured on this TensorRT and GPU yet" in out
    assert "estimate for the build without REFIT" in out and "reuses the REFIT build's timing cache" in out
    assert len(fake_gpu) == 1  # the timed rebuild ran
    data = load_results(record)
    key = "model-static-fp32"
    assert data["cases"][key]["checks"]["refit_vs_fresh_build"]["fresh_build"] == "without REFIT"
    assert {"refit", "inference.refit_engine", "inference.plain_engine"} <= \
        {name[len(key) + 1:] for name in data["timings"]}
    # the REFIT build's time was kept: the next estimate is this model's own
    code, out, _ = _run(monkeypatch, tmp_path, capsys)
    assert "estimate for the REFIT build: about 2 s (this model's REFIT build measured here before)" in out


def test_skip_builds_runs_no_build(fake_gpu, monkeypatch, tmp_path, capsys):
    code, out, _ = _run(monkeypatch, tmp_path, capsys, "--skip-builds")
    assert code == EXIT_OK and "[SKIP] refit_vs_fresh_build: skipped (--skip-builds)" in out
    assert not fake_gpu and "build without REFIT" not in out


def test_weights_left_out_are_said_and_the_rest_checked(fake_gpu, monkeypatch, tmp_path, capsys):
    code, out, _ = _run(monkeypatch, tmp_path, capsys, "--skip-builds", blocked={"bn_conv.w": ["tmp_weight_38"]})
    assert code == EXIT_OK
    assert "1 listed by name but refitted by TensorRT only together with weights of its own" in out


def test_integer_outputs_left_out_of_the_comparisons_are_said(fake_gpu, monkeypatch, tmp_path, capsys):
    code, out, _ = _run(monkeypatch, tmp_path, capsys, "--skip-builds", left_out_outputs=["label"])
    assert code == EXIT_OK
    said = [line for line in out.splitlines() if "outputs compared" in line]
    assert len(said) == 2 and "outputs compared: y; left out: label (integer or boolean" in said[0]  # and in the summary
    assert "outputs compared" not in _run(monkeypatch, tmp_path, capsys, "--skip-builds")[1]


def test_nothing_refittable_fails_with_the_reason(fake_gpu, monkeypatch, tmp_path, capsys):
    code, out, record = _run(monkeypatch, tmp_path, capsys, targets=False)
    assert code == EXIT_FAILED
    assert "[FAIL] weights_to_refit: nothing to refit by name" in out
    assert "CHECK FAILED: weights_to_refit" in out and not fake_gpu
    assert load_results(record)["tests"]["check::model-static-fp32::weights_to_refit"]["outcome"] == "failed"


def test_a_refit_that_does_nothing_fails_the_check(fake_gpu, monkeypatch, tmp_path, capsys):
    code, out, _ = _run(monkeypatch, tmp_path, capsys, "--skip-builds", ignore_refits=True)
    assert code == EXIT_FAILED and "[FAIL] refit_vs_reference" in out
