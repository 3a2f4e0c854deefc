"""The fault-injection self-check (CPU tier): registry, faults, ordering, kill matrix, CLI.

Whether the GPU tier kills each fault is a GPU claim and is settled only by running
`python -m refit_core selfcheck` there. Here the faults run against a small pure-Python
stand-in for TensorRT's Refitter (FakeRefitter below: a kernel set without its bias leaves
the bias missing, refit_cuda_engine refuses while anything is missing): that checks the
logic of each patch (it changes what reaches TensorRT, or the wrapper's behaviour), and the
rollback/discard sequences the GPU tests in tests/refit/test_rollback_gpu.py rely on.
"""
from __future__ import annotations

import dataclasses
import json
import os
import types
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest

from refit_core import faults as faults_module
from refit_core.errors import RefitError, WeightValidationError
from refit_core.fault_catalog import CLASSES, FAULTS, Patcher, get_fault
from refit_core.faults import NO_FAULT, order_items, rank_of
from refit_core.refit.validation import WeightSpec
from refit_core.selfcheck import (RunOutcome, SelfcheckOptions, classify, format_matrix, pytest_command,
                                  run_selfcheck, select_faults)


# --------------------------------------------------------------------------------------
# A pure-logic stand-in for TensorRT's refitter (CPU only; no GPU result is claimed)
# --------------------------------------------------------------------------------------
class FakeLogger:
    def __init__(self) -> None:
        self.messages: List[Any] = []
        self._offset = 0

    def log(self, severity: str, msg: str) -> None:
        self.messages.append((severity, msg))

    def mark(self) -> int:
        return len(self.messages)

    def errors_since(self, mark: int) -> List[str]:
        return [m for s, m in self.messages[mark:] if s == "ERROR"]


class FakeEngine:
    refittable = True

    def __init__(self, weights: Dict[str, np.ndarray]) -> None:
        self.weights = {k: np.array(v, copy=True) for k, v in weights.items()}


class FakeRefitter:
    """Keeps what was set; refit_cuda_engine copies it into the engine. A '.weight' set
    without its '.bias' (or the reverse) leaves the other missing, as TensorRT does for a
    convolution's kernel and bias."""

    def __init__(self, engine: FakeEngine, logger: FakeLogger) -> None:
        self.engine, self.logger = engine, logger
        self.pending: Dict[str, np.ndarray] = {}
        self.error_recorder = None

    def get_all_weights(self) -> List[str]:
        return list(self.engine.weights)

    def set_named_weights(self, name: str, w: Any) -> bool:
        if name not in self.engine.weights or w.array.size != self.engine.weights[name].size:
            self.logger.log("ERROR", f"Error Code 3: no weights named {name} of {w.array.size} elements")
            return False
        self.pending[name] = np.array(w.array, copy=True)
        return True

    def get_missing_weights(self) -> List[str]:
        out = []
        for name in self.pending:
            stem, _, role = name.rpartition(".")
            partner = f"{stem}.{'bias' if role == 'weight' else 'weight'}"
            if partner in self.engine.weights and partner not in self.pending and partner not in out:
                out.append(partner)
        return out

    def refit_cuda_engine(self) -> bool:
        if self.get_missing_weights():
            self.logger.log("ERROR", "Error Code 4: missing needed weights")
            return False
        self.engine.weights.update(self.pending)
        self.pending = {}
        return True


class FakeHandle:
    refittable = True

    def __init__(self, weights: Dict[str, np.ndarray]) -> None:
        self.engine = FakeEngine(weights)
        self.logger = FakeLogger()

    def adopt(self, obj: Any) -> Any:
        return obj


class _RecorderBase:
    def __init__(self) -> None:
        pass


FAKE_TRT = types.SimpleNamespace(__version__="8.5.3.1", Refitter=FakeRefitter, IErrorRecorder=_RecorderBase,
                                 Weights=lambda a: types.SimpleNamespace(array=np.asarray(a)),
                                 WeightsRole=types.SimpleNamespace(KERNEL="KERNEL", BIAS="BIAS"))

SHAPES = {"l1.weight": (3, 2), "l1.bias": (3,), "l2.weight": (2, 3), "l2.bias": (2,)}


@pytest.fixture
def fake_trt(monkeypatch):
    from refit_core.trt import compat, recorders
    monkeypatch.setattr(compat, "_trt", FAKE_TRT)
    monkeypatch.setattr(recorders._Classes, "recorder", None)  # a recorder class of the fake's, undone after
    return FAKE_TRT


def weights(seed: int) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in SHAPES.items()}


def make_refitter():
    from refit_core.refit.refitter import EngineRefitter
    built = weights(0)
    specs = {n: WeightSpec(n, s, group=n.split(".")[0]) for n, s in SHAPES.items()}
    handle = FakeHandle(built)
    return EngineRefitter(handle, specs, built), handle.engine


def _outcome(fn) -> str:
    try:
        fn()
        return "ok"
    except Exception as exc:  # the observation is which error, if any
        return type(exc).__name__


def observe() -> Dict[str, Any]:
    """Run every scenario a fault could change; return what the engine and wrapper did."""
    seen: Dict[str, Any] = {}
    # two refits in a row with different values: does each reach the engine, unchanged?
    r, engine = make_refitter()
    for step, seed in (("first", 1), ("second", 2)):
        target = weights(seed)
        seen[f"{step}_refit"] = _outcome(lambda: r.refit_with(target))
        seen[f"{step}_engine"] = {n: engine.weights[n].tolist() for n in SHAPES}
    # a bad weight: refused?
    r, engine = make_refitter()
    bad = weights(3)
    bad["l1.bias"] = bad["l1.bias"].astype(np.float64)
    seen["float64"] = _outcome(lambda: r.refit_with(bad))
    seen["unknown"] = _outcome(lambda: r.refit_with({"l1.wieght": weights(3)["l1.weight"]}))
    # TensorRT refuses a weight in the middle: does the next refit take the earlier ones along?
    r, engine = make_refitter()
    r.specs["ghost"] = WeightSpec("ghost", (4,))
    new = weights(4)
    seen["middle_refusal"] = _outcome(lambda: r.refit_with({"l1.weight": new["l1.weight"], "l1.bias": new["l1.bias"],
                                                            "ghost": np.ones(4, np.float32)}))
    seen["after_middle_refusal"] = _outcome(
        lambda: r.refit_with({n: r.current[n].copy() for n in ("l2.weight", "l2.bias")}))
    seen["after_middle_refusal_l1"] = engine.weights["l1.weight"].tolist()
    # refit_cuda_engine refuses (wrapper blind to missing once, groups lifted): rolled back?
    r, engine = make_refitter()
    for n in ("l1.weight", "l1.bias"):
        r.specs[n] = dataclasses.replace(r.specs[n], group=None)
    real, calls = r.missing, []
    r.missing = lambda: [] if not calls.append(1) and len(calls) == 1 else real()
    seen["refit_refusal"] = _outcome(lambda: r.refit_with({"l1.weight": weights(5)["l1.weight"]}))
    del r.missing
    seen["after_refit_refusal"] = _outcome(
        lambda: r.refit_with({n: r.current[n].copy() for n in ("l2.weight", "l2.bias")}))
    seen["after_refit_refusal_l1"] = engine.weights["l1.weight"].tolist()
    # the missing view after a kernel set alone
    r, engine = make_refitter()
    seen["set_alone"] = _outcome(lambda: r.set("l1.weight", weights(6)["l1.weight"]))
    seen["missing"] = r.missing()
    return seen


def test_the_fakes_behave_like_the_gpu_tests_expect(fake_trt):
    """No fault: every scenario ends as the GPU tests assert it does on TensorRT."""
    seen = observe()
    assert seen["second_engine"] == {n: a.tolist() for n, a in weights(2).items()}
    assert seen["float64"] == "WeightValidationError" and seen["unknown"] == "WeightValidationError"
    assert seen["middle_refusal"] == "RefitError"
    assert seen["after_middle_refusal"] == "ok"
    assert seen["after_middle_refusal_l1"] == weights(0)["l1.weight"].tolist()  # nothing leaked
    assert seen["refit_refusal"] == "RefitError"
    assert seen["after_refit_refusal"] == "ok"
    assert seen["after_refit_refusal_l1"] == weights(0)["l1.weight"].tolist()  # rolled back
    assert seen["missing"] == ["l1.bias"]


# --------------------------------------------------------------------------------------
# The registry and each fault
# --------------------------------------------------------------------------------------
def test_every_fault_class_of_the_issue_has_a_fault():
    assert set(CLASSES) == {"refit-does-nothing", "first-refit-only", "stale-weights", "permuted-or-scaled",
                            "validation-off", "rollback-off", "missing-view-wrong"}
    kinds = {f.kind for f in FAULTS}
    assert kinds == set(CLASSES)
    names = [f.name for f in FAULTS]
    assert len(names) == len(set(names)) and NO_FAULT not in names
    for wanted in ("noop-refit", "first-refit-only", "stale-all-biases", "stale-last-bias", "permute-reversed",
                   "permute-rolled", "scale-1.01", "scale-1.001", "validation-off", "rollback-off",
                   "missing-empty", "missing-drops-one"):
        assert wanted in names


def _observe_under(name):
    """(observations without a fault, with fault `name`, its Patcher after undo)."""
    clean = observe()
    p = Patcher()
    get_fault(name).patch(p)
    try:
        faulty = observe()
    finally:
        p.undo()
    return clean, faulty, p


@pytest.mark.parametrize("name", [f.name for f in FAULTS])
def test_each_fault_changes_what_the_wrapper_does_and_undoes_cleanly(fake_trt, name):
    from refit_core.refit.refitter import EngineRefitter
    from refit_core.trt import compat
    before = (dict(vars(EngineRefitter)), dict(vars(compat)))
    clean, faulty, p = _observe_under(name)
    assert (dict(vars(EngineRefitter)), dict(vars(compat))) == before
    changed = sorted(k for k in clean if clean[k] != faulty[k])
    print(f"{name}: changes {changed}; bit {p.bites} times")
    assert changed, f"fault {name} changed nothing the scenarios observe"
    assert p.bites > 0
    assert observe() == clean


EXPECTED_CHANGE = {  # which observation each fault must change (the GPU tests check the same)
    "noop-refit": "second_engine", "noop-set": "second_engine", "first-refit-only": "second_engine",
    "stale-all-biases": "second_engine", "stale-last-bias": "second_engine", "permute-reversed": "second_engine",
    "permute-rolled": "second_engine", "scale-1.01": "second_engine", "scale-1.001": "second_engine",
    "validation-off": "float64", "rollback-off": "after_middle_refusal_l1", "discard-noop": "after_middle_refusal_l1",
    "roll-back-noop": "after_refit_refusal_l1", "missing-empty": "missing", "missing-drops-one": "missing",
}


def test_every_fault_has_an_expected_observation():
    assert set(EXPECTED_CHANGE) == {f.name for f in FAULTS}


@pytest.mark.parametrize("name", sorted(EXPECTED_CHANGE))
def test_fault_changes_the_observation_its_gpu_killer_checks(fake_trt, name):
    clean, faulty, _ = _observe_under(name)
    key = EXPECTED_CHANGE[name]
    assert faulty[key] != clean[key], f"{name}: {key} unchanged"


def test_stale_last_bias_keeps_exactly_one_bias(fake_trt):
    p = Patcher()
    get_fault("stale-last-bias").patch(p)
    try:
        r, engine = make_refitter()
        target = weights(1)
        r.refit_with(target)
    finally:
        p.undo()
    kept = [n for n in SHAPES if not np.array_equal(engine.weights[n], target[n])]
    assert kept == ["l2.bias"]
    assert np.array_equal(engine.weights["l2.bias"], weights(0)["l2.bias"])


def test_validation_off_lets_every_bad_input_through(fake_trt):
    p = Patcher()
    get_fault("validation-off").patch(p)
    try:
        from refit_core.refit import refitter as mod
        specs = {"w": WeightSpec("w", (2,))}
        out = mod.validate_weight(specs, "w", np.array([np.nan, 1.0]))  # float64 with a NaN: converted
        assert out.dtype == np.float32 and np.isnan(out[0])
    finally:
        p.undo()
    with pytest.raises(WeightValidationError):
        mod.validate_weight(specs, "w", np.array([np.nan, 1.0]))


# --------------------------------------------------------------------------------------
# Test order in the self-check
# --------------------------------------------------------------------------------------
def test_cheap_precise_tests_run_first_and_order_is_otherwise_kept():
    ids = ["tests/benchmarks/test_refit_vs_rebuild.py::test_mnist_refit[conv1]",
           "tests/flows/test_bidaf_gpu.py::test_sample_pair_fake_then_real_weights[standin]",
           "tests/cases/test_refit_checks_gpu.py::test_refit_to_target_matches_the_reference[mnist]",
           "tests/cases/test_refit_checks_gpu.py::test_refit_to_target_matches_the_reference[tiny-mlp]",
           "tests/refit/test_refit_properties_gpu.py::test_round_trip_and_idempotence_are_bit_exact",
           "tests/flows/test_mnist_gpu.py::test_cli_mnist_prints_the_sample_lines",
           "tests/refit/test_rollback_gpu.py::test_tensorrt_refuses_a_weight_it_does_not_have[middle]",
           "tests/cases/test_refit_checks_gpu.py::test_refit_back_restores_the_built_outputs[mnist]",
           "tests/refit/test_refit_teeth_gpu.py::test_a_bias_alone_refits",
           "tests/cases/test_refit_checks_gpu.py::test_refit_to_target_matches_the_reference[bidaf-standin]"]
    items = [types.SimpleNamespace(nodeid=i) for i in ids]
    ordered = [i.nodeid for i in order_items(items)]
    assert ordered == [ids[6], ids[8], ids[3], ids[2], ids[7], ids[4], ids[1], ids[9], ids[5], ids[0]]
    assert [rank_of(i) for i in ordered] == sorted(rank_of(i) for i in ordered)
    # the wrong-count child runs with the first checks (it is what sees roll-back-noop), and the
    # targeted checks' BiDAF parametrizations wait with the other BiDAF tests
    assert rank_of("tests/refit/test_rollback_gpu.py::test_tensorrt_refuses_a_wrong_element_count_in_a_subprocess") == 0
    assert rank_of("tests/refit/test_refit_teeth_gpu.py::test_the_wrappers_missing_view_is_tensorrts_after_every_"
                   "single_set[bidaf-standin]") == rank_of(ids[9])


# --------------------------------------------------------------------------------------
# The kill matrix, its JSON and the exit status
# --------------------------------------------------------------------------------------
def test_classify_each_kind_of_run():
    report = {"first_failure": "tests/x.py::t", "first_failure_message": "AssertionError", "counts": {"failed": 1},
              "bites": 3, "last_started": "tests/x.py::t"}
    assert classify(1, report, "f", "k", 2.0).status == "killed"
    assert classify(0, {"counts": {"passed": 4}, "bites": 0}, "f", "k", 2.0).status == "survived"
    crashed = classify(-6, {"last_started": "tests/x.py::u"}, "f", "k", 2.0)
    assert crashed.status == "crashed" and crashed.killed and crashed.first_failure == "tests/x.py::u"
    assert classify(None, {}, "f", "k", 9.0).status == "timeout"
    error = classify(4, {}, "f", "k", 1.0)
    assert error.status == "error" and not error.killed and "exit code 4" in error.message
    assert classify(1, {}, "f", "k", 1.0).status == "error"  # failed, but no test failed: not a kill


def _stub(statuses: Dict[str, str]):
    def run(opts: SelfcheckOptions, fault: Any) -> RunOutcome:
        name = NO_FAULT if fault is None else fault.name
        status = statuses[name]
        return RunOutcome(fault=name, kind=None if fault is None else fault.kind, status=status,
                          first_failure=f"tests/t.py::test_{name}" if status == "killed" else None, seconds=1.5,
                          returncode=1 if status == "killed" else 0, bites=2)
    return run


def test_matrix_and_json_when_a_fault_survives(tmp_path):
    opts = SelfcheckOptions(faults=select_faults(["noop-refit,scale-1.001"]), baseline=False, work_dir=tmp_path)
    lines: List[str] = []
    out = tmp_path / "kill.json"
    code = run_selfcheck(opts, out, argv=["selfcheck"], progress=lines.append,
                         run=_stub({"noop-refit": "killed", "scale-1.001": "survived"}))
    assert code == 1
    text = "\n".join(lines)
    assert "noop-refit" in text and "tests/t.py::test_noop-refit" in text and "NO" in text
    assert "SURVIVED: scale-1.001" in text
    data = json.loads(out.read_text())
    assert data["baseline"] == "not run" and data["summary"]["baseline"] == "not run"
    assert set(data["suite"]) == {"git_commit", "git_dirty", "source_sha256", "suite_version"}  # which suite
    assert len(data["suite"]["source_sha256"]) == 64
    assert data["summary"]["survived"] == ["scale-1.001"] and data["summary"]["passed"] is False
    rows = {r["fault"]: r for r in data["faults"]}
    assert rows["noop-refit"]["killed"] is True and rows["scale-1.001"]["killed"] is False
    assert rows["noop-refit"]["first_failure"] == "tests/t.py::test_noop-refit"


def test_parallel_runs_give_the_same_matrix_in_registry_order(tmp_path):
    """--jobs: faults finish in any order; the matrix and JSON keep the registry's."""
    import threading
    import time as _time
    names = ["noop-refit", "first-refit-only", "scale-1.001", "validation-off"]
    stub = _stub({"noop-refit": "killed", "first-refit-only": "killed", "scale-1.001": "survived",
                  "validation-off": "killed"})
    running, peak, lock = [0], [0], threading.Lock()

    def slow_first(opts, fault):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        _time.sleep(0.2 if fault.name == "noop-refit" else 0.05)  # the first one finishes last
        with lock:
            running[0] -= 1
        return stub(opts, fault)
    opts = SelfcheckOptions(faults=select_faults([",".join(names)]), baseline=False, work_dir=tmp_path, jobs=3)
    out = tmp_path / "kill.json"
    lines: List[str] = []
    code = run_selfcheck(opts, out, progress=lines.append, run=slow_first)
    data = json.loads(out.read_text())
    assert code == 1 and data["summary"]["survived"] == ["scale-1.001"]
    assert [r["fault"] for r in data["faults"]] == [f.name for f in select_faults([",".join(names)])]
    assert peak[0] == 3, "the faults did not run concurrently"
    assert "4 faults, 3 at a time" in "\n".join(lines)


def test_all_killed_with_a_passing_baseline_exits_zero(tmp_path):
    opts = SelfcheckOptions(faults=select_faults(["noop-refit"]), baseline=True, work_dir=tmp_path)
    out = tmp_path / "kill.json"
    code = run_selfcheck(opts, out, progress=lambda s: None, run=_stub({NO_FAULT: "survived", "noop-refit": "killed"}))
    data = json.loads(out.read_text())
    assert code == 0 and data["summary"]["passed"] is True and data["baseline"]["status"] == "survived"


def test_a_failing_baseline_stops_before_the_faults(tmp_path):
    opts = SelfcheckOptions(faults=select_faults(["noop-refit"]), baseline=True, work_dir=tmp_path)
    out = tmp_path / "kill.json"
    code = run_selfcheck(opts, out, progress=lambda s: None, run=_stub({NO_FAULT: "killed", "noop-refit": "killed"}))
    data = json.loads(out.read_text())
    assert code == 1 and data["summary"]["baseline"] == "failed" and data["faults"] == []
    assert data["faults_not_run"] == ["noop-refit"]


def test_format_matrix_columns():
    text = format_matrix([RunOutcome(NO_FAULT, None, "survived", seconds=3.0),
                          RunOutcome("noop-refit", "refit-does-nothing", "killed", "tests/a.py::t", seconds=4.25)])
    header, rule, base, row = text.splitlines()
    assert header.split()[:3] == ["fault", "class", "killed?"] and set(rule) == {"-"}
    assert "(baseline: no fault)" in base and "passed" in base
    assert row.split() == ["noop-refit", "refit-does-nothing", "yes", "tests/a.py::t", "4.2"]


def test_pytest_command_defaults(tmp_path):
    opts = SelfcheckOptions(faults=[], pytest_args=("--data-dir=/d",), work_dir=tmp_path)
    cmd = pytest_command(opts, "scale-1.01", tmp_path / "r.json", tmp_path / "res.json")
    assert cmd[1:6] == ["-m", "pytest", "-x", "-q", "-p"] and "refit_core.faults" in cmd
    assert "--refit-fault=scale-1.01" in cmd and f"--refit-results={tmp_path / 'res.json'}" in cmd
    assert cmd[cmd.index("-m", 2) + 1] == "gpu" and "--ignore=tests/benchmarks" in cmd
    assert cmd[-2:] == ["--data-dir=/d", "tests"]
    opts = SelfcheckOptions(faults=[], pytest_args=("--refit-results=/x.json",), work_dir=tmp_path)
    assert not any(a.startswith("--refit-results=/tmp") or a == f"--refit-results={tmp_path / 'res.json'}"
                   for a in pytest_command(opts, "none", tmp_path / "r", tmp_path / "res.json"))


# --------------------------------------------------------------------------------------
# The CLI
# --------------------------------------------------------------------------------------
def test_cli_parses_the_selfcheck_options():
    from refit_core.cli import build_parser
    args = build_parser().parse_args(["selfcheck", "--no-baseline", "--json", "k.json", "--faults", "scale-1.01",
                                      "--faults", "noop-set,missing-empty", "--timeout", "60", "--",
                                      "--data-dir=/d", "-p", "no:cacheprovider"])
    assert args.baseline is False and args.json == "k.json" and args.timeout == 60.0
    assert [f.name for f in select_faults(args.faults)] == ["noop-set", "scale-1.01", "missing-empty"]
    assert args.pytest_args == ["--data-dir=/d", "-p", "no:cacheprovider"]
    assert build_parser().parse_args(["selfcheck"]).baseline is True


def test_cli_unknown_fault_is_a_clear_usage_error(capsys):
    from refit_core.cli import main
    assert main(["selfcheck", "--faults", "scale-2"]) == 2
    err = capsys.readouterr().err
    assert "no fault named 'scale-2'" in err and "scale-1.01" in err and "Traceback" not in err


def test_cli_lists_the_faults(capsys):
    from refit_core.cli import main
    assert main(["selfcheck", "--list"]) == 0
    out = capsys.readouterr().out
    for f in FAULTS:
        assert f.name in out and f.kind in out


ROOT = str(Path(faults_module.__file__).resolve().parents[1])


def test_the_plugin_refuses_an_unknown_fault(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "refit_core.faults", "--refit-fault=nope")
    assert result.ret != 0
    assert "no such fault" in (result.stderr.str() + result.stdout.str())


TINY_PROJECT_TEST = '''
from refit_core.refit.refitter import EngineRefitter


class Raw:
    def get_missing_weights(self):
        return ["conv1.bias"]


def test_the_missing_view_is_tensorrts():
    r = EngineRefitter.__new__(EngineRefitter)
    r.refitter = Raw()
    assert r.missing() == ["conv1.bias"]
'''


@pytest.mark.slow
def test_selfcheck_end_to_end_a_surviving_fault_fails_the_run(pytester, monkeypatch):
    """Real pytest subprocesses on a one-test project: the baseline passes, missing-empty is
    killed, scale-1.01 (nothing here refits) survives, so the exit status is 1."""
    from refit_core.cli import main
    pytester.makeconftest('pytest_plugins = ["refit_core.pytest_plugin"]\n')
    pytester.makepyfile(test_tiny=TINY_PROJECT_TEST)
    pytester.makeini("[pytest]\n")
    out = pytester.path / "kill.json"
    code = main(["selfcheck", "--faults", "missing-empty,scale-1.01", "--select", "", "--tests", "test_tiny.py",
                 "--work-dir", str(pytester.path / "runs"), "--json", str(out), "--timeout", "300",
                 "--", "-p", "no:cacheprovider"])
    data = json.loads(out.read_text())
    rows = {r["fault"]: r for r in data["faults"]}
    assert data["baseline"]["status"] == "survived", data["baseline"]
    assert rows["missing-empty"]["status"] == "killed", rows["missing-empty"]
    assert rows["missing-empty"]["first_failure"] == "test_tiny.py::test_the_missing_view_is_tensorrts"
    assert rows["missing-empty"]["bites"] >= 1
    assert rows["scale-1.01"]["status"] == "survived" and rows["scale-1.01"]["bites"] == 0
    assert data["summary"]["survived"] == ["scale-1.01"] and code == 1


# --------------------------------------------------------------------------------------
# The GPU tests that run first, replayed on the stand-in (a simulation, not a GPU claim):
# with no fault they pass; each fault but validation-off makes one of them fail. On the
# GPU, TensorRT's own behaviour decides; this checks the tests' logic and the faults' reach.
# --------------------------------------------------------------------------------------
class FakeLenet:
    """What the tests use of the mnist case engine, over FakeRefitter; outputs are the
    float64 numpy LeNet of whatever weights the fake engine holds."""

    def __init__(self) -> None:
        from refit_core.cases.mnist import MnistCase
        from refit_core.samples.mnist import flow
        from refit_core.samples.mnist import LENET_SHAPES
        from refit_core.refit.refitter import EngineRefitter
        rng = np.random.default_rng(0)
        self.trained = {n: (0.1 * rng.standard_normal(s)).astype(np.float32) for n, s in LENET_SHAPES.items()}
        self.start_weights = flow.dummy_conv1(self.trained)
        self.build_weights = dict(self.start_weights)
        handle = FakeHandle(self.start_weights)
        self.engine = handle.engine
        self.refitter = EngineRefitter(handle, flow.weight_specs(), self.start_weights)
        self.case = MnistCase()
        self.images = rng.standard_normal((6, 1, 28, 28)).astype(np.float32)
        self.built_outputs = self.probe()

    def probe(self) -> np.ndarray:
        from refit_core.samples.mnist.lenet import lenet_forward
        return lenet_forward(self.engine.weights, self.images)

    def reference(self, weights: Any) -> np.ndarray:
        from refit_core.samples.mnist.lenet import lenet_forward
        full = dict(self.build_weights)
        full.update(weights)
        return lenet_forward(full, self.images)

    def refit_to(self, weights: Any) -> float:
        return self.refitter.refit_with(weights, fill_missing=True)

    def all_build_weights(self) -> Any:
        return dict(self.build_weights)


def _rank0_tests():
    from tests.refit import test_refit_teeth_gpu as teeth, test_rollback_gpu as rollback
    return [
        ("build weights bit-exact", lambda e, r, m: teeth.test_refitting_the_build_weights_reproduces_the_built_engine_bit_exactly(e)),
        ("2nd/3rd refit", lambda e, r, m: teeth.test_second_and_third_refits_with_different_weights_match_the_reference(e, r)),
        ("bias alone", lambda e, r, m: teeth.test_a_bias_alone_refits(e)),
        ("missing view", lambda e, r, m: teeth.test_the_wrappers_missing_view_is_tensorrts_after_every_single_set(e, r)),
        ("unknown weight alone", lambda e, r, m: rollback.test_tensorrt_refuses_a_weight_it_does_not_have(e, m, r, "alone")),
        ("unknown weight middle", lambda e, r, m: rollback.test_tensorrt_refuses_a_weight_it_does_not_have(e, m, r, "middle")),
        ("refit_cuda_engine refuses", lambda e, r, m: rollback.test_tensorrt_refuses_refit_cuda_engine_and_the_previous_weights_are_refitted_back(e, m, r)),
    ]


def _replay(fault_name: Any) -> List[str]:
    """The names of the rank-0 tests that fail under `fault_name` (None: no fault)."""
    from refit_core.reporting.results import ResultsRecorder
    p = Patcher()
    if fault_name is not None:
        get_fault(fault_name).patch(p)
    failed = []
    try:
        engine = FakeLenet()
        for name, test in _rank0_tests():
            mp = pytest.MonkeyPatch()
            try:
                test(engine, ResultsRecorder(), mp)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # AssertionError, RefitError, pytest.fail's Failed: the test failed
                failed.append(f"{name}: {type(exc).__name__}")
            finally:
                mp.undo()
    finally:
        p.undo()
    return failed


def test_the_first_gpu_tests_pass_on_the_stand_in_without_a_fault(fake_trt):
    assert _replay(None) == []


@pytest.mark.parametrize("name", [f.name for f in FAULTS if f.name != "validation-off"])
def test_the_first_gpu_tests_kill_each_fault_on_the_stand_in(fake_trt, name):
    failed = _replay(name)
    print(f"{name}: {failed}")
    assert failed, f"{name} survives the rank-0 GPU tests on the stand-in"


def test_validation_off_is_left_to_the_bad_input_tests(fake_trt):
    """The rank-0 tests hand TensorRT only good input: validation-off passes them and is
    killed by the first bad-input test (a refused unknown name)."""
    assert _replay("validation-off") == []
    p = Patcher()
    get_fault("validation-off").patch(p)
    try:
        engine = FakeLenet()
        with pytest.raises(Exception) as info:
            engine.refit_to({"conv1.wieght": engine.trained["conv1.weight"], "conv1.bias": engine.trained["conv1.bias"]})
        assert not isinstance(info.value, (WeightValidationError, RefitError))  # the test expects these
    finally:
        p.undo()


def test_the_fault_reaches_subprocesses_through_the_environment(monkeypatch):
    """Tests that run TensorRT in a subprocess (tests/refit/test_rollback_gpu.py's wrong-count
    child) call apply_from_environment(); the plugin exports the fault's name for them."""
    from refit_core import faults
    from refit_core.trt import compat
    monkeypatch.delenv(faults.FAULT_ENV, raising=False)
    assert faults.apply_from_environment() is None
    monkeypatch.setenv(faults.FAULT_ENV, faults.NO_FAULT)
    assert faults.apply_from_environment() is None
    original = compat.refit_engine
    monkeypatch.setenv(faults.FAULT_ENV, "noop-refit")
    patcher = faults.apply_from_environment()
    try:
        assert compat.refit_engine is not original
    finally:
        patcher.undo()
    assert compat.refit_engine is original


def test_the_plugin_exports_the_fault_for_subprocesses_and_forgets_it(pytester, monkeypatch):
    from refit_core import faults
    monkeypatch.delenv(faults.FAULT_ENV, raising=False)
    pytester.makepyfile("import os\ndef test_env():\n    assert os.environ['REFIT_INJECTED_FAULT'] == 'noop-refit'\n")
    result = pytester.runpytest_inprocess("-p", "refit_core.faults", f"{faults.FAULT_OPTION}=noop-refit")
    result.assert_outcomes(passed=1)
    assert faults.FAULT_ENV not in os.environ
