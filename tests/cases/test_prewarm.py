"""Building case engines ahead in worker processes (cases.prewarm), CPU side: which jobs, that
every case travels to a worker, that a failing job is reported and not raised, that the
plain build a worker makes is byte for byte the one the session asks for, and which cases
the selected tests need."""
from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from refit_core.cases import registry
from refit_core.cases.base import CaseResources, RefitCase
from refit_core.cases.prewarm import BOTH, ENGINE, PLAIN, default_jobs, jobs_for, prewarm
from refit_core.pytest_plugin import needed_cases


def test_fp16_first_and_each_engine_is_its_own_job():
    cases = [registry.get(n) for n in ("tiny-mlp", "bidaf-standin", "tiny-mlp-fp16", "bidaf-standin-fp16")]
    jobs = [(j.case.name, j.kind) for j in jobs_for(cases)]
    assert jobs == [("tiny-mlp-fp16", ENGINE), ("tiny-mlp-fp16", PLAIN), ("bidaf-standin-fp16", ENGINE),
                    ("bidaf-standin-fp16", PLAIN), ("tiny-mlp", ENGINE), ("tiny-mlp", PLAIN),
                    ("bidaf-standin", ENGINE), ("bidaf-standin", PLAIN)]
    assert 1 <= default_jobs() <= 3


def test_a_case_that_cannot_warm_its_plain_build_alone_gets_one_job():
    case = _Failing()
    assert [j.kind for j in jobs_for([case])] == [BOTH]


def test_every_plan_cached_case_pickles_for_a_worker(tmp_path):
    from refit_core.cases.user_model import user_model_case
    from refit_core.cases.tiny_mlp import write_tiny_mlp
    user = user_model_case(write_tiny_mlp(tmp_path))
    cached = [c for c in registry.CASES.values() if c.plan_cached] + [user]
    assert {"bidaf-standin", "tiny-mlp", "mobilenet-v3-small-fp16"} <= {c.name for c in cached}
    for case in cached:
        twin = pickle.loads(pickle.dumps(case))
        assert twin.name == case.name and twin.precision == case.precision
    assert pickle.loads(pickle.dumps(user)).make_model(tmp_path) == user.make_model(tmp_path)


class _Failing(RefitCase):
    name = "always-fails"
    plan_cached = True  # warms_plain_alone stays False

    def open(self, resources, session, logger, plan_cache):
        raise RuntimeError("cannot build")


def test_a_failing_job_is_reported_with_its_reason_not_raised(tmp_path):
    """Here the worker cannot even start CUDA (no GPU): the outcome says so in one line, and
    the session goes on to build the case itself."""
    lines = []
    resources = CaseResources(data_dir=None, cache_root=tmp_path / "cache", tmp_dir=tmp_path / "tmp")
    outcomes = prewarm(jobs_for([_Failing(), _Failing()]), resources, tmp_path / "plans", 2, say=lines.append)
    assert len(outcomes) == 2 and all(o.problem for o in outcomes)
    assert all("\n" not in o.problem for o in outcomes)
    assert lines[0].startswith("refit_core: building 2 case engine job(s)") and "2 at a time" in lines[0]
    assert sum("failed, the session builds it" in line for line in lines) == 2
    assert lines[-1].startswith("refit_core: plans ready in")


def test_unchanged_initializers_keep_their_bytes(tmp_path):
    """The plain build's file (and its plan-cache key) depends on the values alone: passing the
    unchanged build weights too gives the same bytes as passing only the changed ones."""
    from refit_core.cases.onnx_model import with_initializers
    from refit_core.cases.tiny_mlp import write_tiny_mlp
    from refit_core.onnx_prep.generic import onnx_float_initializers
    path = write_tiny_mlp(tmp_path)
    inits = onnx_float_initializers(path)
    changed = {"fc1.bias": inits["fc1.bias"] + 1.0}
    assert with_initializers(path, {**inits, **changed}) == with_initializers(path, changed)
    assert with_initializers(path, inits) == path.read_bytes()
    assert with_initializers(path, changed) != path.read_bytes()


def test_bidaf_plain_weights_need_no_engine(tmp_path):
    """BidafCase.warm_plain builds the model with target_weights(its initializers); the engine's
    plain_runner builds it with the build weights (the same initializers) plus the target:
    the files are identical, so the session finds the worker's plan."""
    from refit_core.cases.bidaf import target_weights
    from refit_core.cases.onnx_model import with_initializers
    from refit_core.onnx_prep.generic import onnx_float_initializers
    case = registry.get("bidaf-standin")
    resources = CaseResources(data_dir=None, cache_root=tmp_path / "cache", tmp_dir=tmp_path)
    prepared = case.prepare(resources)
    inits = onnx_float_initializers(prepared.model_path)
    target = target_weights(inits)
    assert with_initializers(prepared.model_path, {**inits, **target}) == with_initializers(prepared.model_path, target)
    other = case.prepare(CaseResources(data_dir=None, cache_root=tmp_path / "cache", tmp_dir=tmp_path / "again"))
    assert Path(other.model_path).read_bytes() == Path(prepared.model_path).read_bytes(), \
        "graph surgery is not deterministic: a worker's REFIT plan would not be found by the session"
    assert not np.array_equal(target[sorted(target)[0]], inits[sorted(target)[0]])


def _item(params, fixtures, gpu=True):
    return SimpleNamespace(callspec=SimpleNamespace(params=params), fixturenames=fixtures,
                           get_closest_marker=lambda name: object() if gpu and name == "gpu" else None)


@pytest.mark.parametrize("benchmark_only, expected", [(False, ["tiny-mlp", "bidaf-standin", "mnist"]),
                                                       (True, ["mnist"])])
def test_needed_cases_follow_the_selected_gpu_tests(benchmark_only, expected):
    items = [_item({"case_engine": "tiny-mlp"}, ["case_engine"]),
             _item({"case_engine": "tiny-mlp"}, ["case_engine"]),
             _item({"bidaf_model": "standin"}, ["bidaf_model", "bidaf_engine"]),
             _item({"bidaf_model": "standin"}, ["bidaf_model"]),  # the model only, no engine
             _item({"case_engine": "mobilenet-v3-small"}, ["case_engine"], gpu=False),
             _item({"case_engine": "mnist"}, ["case_engine", "benchmark"])]
    config = SimpleNamespace(getoption=lambda name, default=None: benchmark_only if name == "benchmark_only" else default)
    assert needed_cases(config, items) == expected


@pytest.mark.parametrize("asked", [False, True])
def test_slow_build_cases_skip_saying_why_unless_asked(tmp_path, asked):
    from refit_core.pytest_session import RefitSession
    state = RefitSession.__new__(RefitSession)  # only its profile is read here
    state.profile = "full" if asked else "default"
    resources = CaseResources(data_dir=None, cache_root=tmp_path, tmp_dir=tmp_path)
    gpu = SimpleNamespace(compute_capability=(9, 0), gpu_name="H200")
    slow, quick = registry.get("bidaf-standin-fp16"), registry.get("bidaf-standin")
    assert slow.slow_build and not quick.slow_build
    reason = state.case_skip_reason(slow, resources, gpu)
    if asked:
        assert reason is None
    else:
        assert "8.5" in reason and reason.endswith("run with --refit-profile full to include it")
    assert state.case_skip_reason(quick, resources, gpu) is None


def test_an_onnx_case_warms_the_plain_file_its_engine_will_ask_for(tmp_path):
    """OnnxModelCase.warm_plain assumes every float initializer is refittable by name; when it is,
    the engine's plain build (build weights = those initializers, plus the target) writes the
    same bytes, so its plan is found."""
    from refit_core.cases.onnx_model import with_initializers
    from refit_core.onnx_prep.generic import onnx_float_initializers
    case = registry.get("tiny-mlp-fp16")
    resources = CaseResources(data_dir=None, cache_root=tmp_path / "cache", tmp_dir=tmp_path)
    path, tmp = case.model_file(resources)
    inits = onnx_float_initializers(path)
    warmed = with_initializers(path, case.target_weights(inits))
    build = {n: inits[n] for n in sorted(inits)}  # what the refitter reads when TensorRT lists them all
    assert with_initializers(path, {**build, **case.target_weights(build)}) == warmed
    fewer = {n: build[n] for n in sorted(build)[1:]}  # one initializer not refittable: another file, no false hit
    assert with_initializers(path, {**fewer, **case.target_weights(fewer)}) != warmed


def test_measured_jobs_start_longest_first_after_the_unmeasured_ones(tmp_path):
    from refit_core.cases.prewarm import Outcome, load_build_times, record_build_times
    cases = [registry.get(n) for n in ("tiny-mlp", "tiny-mlp-fp16", "bidaf-standin")]
    scope = "TensorRT 9.9 | GPU X"
    plain = jobs_for(cases)
    outcomes = [Outcome(plain[0], 3.0, built=True),                 # tiny-mlp-fp16 ENGINE
                Outcome(plain[1], 50.0, built=True),                # tiny-mlp-fp16 PLAIN
                Outcome(plain[2], 9.0, built=False),                # read from the cache: not a build time
                Outcome(plain[3], 80.0, problem="boom", built=True),  # failed: not recorded
                Outcome(plain[4], 20.0, built=True)]                # bidaf-standin ENGINE
    record_build_times(tmp_path, outcomes, scope)
    times = load_build_times(tmp_path)
    assert times == {plain[0].time_key(scope): 3.0, plain[1].time_key(scope): 50.0, plain[4].time_key(scope): 20.0}
    order = [(j.case.name, j.kind) for j in jobs_for(cases, times, scope)]
    assert order == [("tiny-mlp", ENGINE), ("tiny-mlp", PLAIN), ("bidaf-standin", PLAIN),  # never measured
                     ("tiny-mlp-fp16", PLAIN), ("bidaf-standin", ENGINE), ("tiny-mlp-fp16", ENGINE)]
    # another TensorRT version or GPU measured nothing yet: the default order
    assert jobs_for(cases, times, "TensorRT 10.0 | GPU X") == plain


@pytest.mark.parametrize("content", ["", "not json", "[1, 2]", '{"a": "slow"}'])
def test_an_unreadable_build_time_record_only_loses_the_order(tmp_path, content):
    from refit_core.cases.prewarm import BUILD_TIMES_FILE, load_build_times
    (tmp_path / BUILD_TIMES_FILE).write_text(content)
    assert load_build_times(tmp_path) == {}
    assert jobs_for([registry.get("tiny-mlp")], load_build_times(tmp_path), "s") == jobs_for([registry.get("tiny-mlp")])


@pytest.mark.parametrize("content", ["fifo", "duplicate key", "nested too deeply", "huge", "not numbers"])
def test_a_hostile_build_times_file_is_none_recorded(tmp_path, content):
    """The build-times file only orders jobs: anything odd is "none recorded", never a hang or a crash."""
    import os
    from refit_core.cases.prewarm import BUILD_TIMES_FILE, load_build_times
    path = tmp_path / BUILD_TIMES_FILE
    if content == "fifo":
        os.mkfifo(path)
    elif content == "duplicate key":
        path.write_text('{"a": 1.0, "a": 2.0}')
    elif content == "nested too deeply":
        path.write_text("[" * 200000 + "]" * 200000)
    elif content == "huge":
        with open(path, "wb") as fh:
            fh.truncate(2 << 20)
    else:
        path.write_text('{"a": true, "b": "3", "c": -1, "d": 5.5}')
    assert load_build_times(tmp_path) == ({"d": 5.5} if content == "not numbers" else {})


class _Opens(RefitCase):
    """A plan-cached case that counts its opens; its engine counts plain builds and closes."""
    plan_cached = True

    def __init__(self, name, fails=False):
        self.name, self.fails, self.opened = name, fails, 0

    def open(self, resources, session, logger, plan_cache):
        self.opened += 1
        if self.fails:
            raise RuntimeError("the build failed")
        engine = SimpleNamespace(case=self, plain=0, closed=False)
        engine.plain_runner = lambda: setattr(engine, "plain", engine.plain + 1)
        engine.close = lambda: setattr(engine, "closed", True)
        return engine


def test_the_session_builds_ahead_only_the_selected_cases_once_in_its_own_process(tmp_path, monkeypatch):
    """The builds ahead (default: in this process) open each case the selected tests need once,
    with its engine without REFIT, keep the engine for the session (not opened again), and
    leave alone the cases no selected test uses; a failing one is reported, not raised."""
    from refit_core.pytest_session import RefitSession
    from refit_core.trt import compat
    cases = {n: _Opens(n) for n in ("wanted", "unused", "also-wanted")}
    cases["broken"] = _Opens("broken", fails=True)
    for name, case in cases.items():
        monkeypatch.setitem(registry.CASES, name, case)
    monkeypatch.setattr(compat, "trt_version_string", lambda: "9.9")
    config = SimpleNamespace(getoption=lambda name, default=None: default)
    state = RefitSession(config)
    lines = []
    state.say = lines.append
    state.needed_cases = ["wanted", "broken", "also-wanted"]
    resources = CaseResources(data_dir=None, cache_root=tmp_path / "cache", tmp_dir=tmp_path / "tmp")
    gpu = SimpleNamespace(compute_capability=(9, 0), gpu_name="GPU X")
    plans = SimpleNamespace(root=tmp_path / "plans")
    (tmp_path / "plans").mkdir()

    engine = state.open_case(cases["wanted"], resources, gpu, object(), plans)
    assert {n: c.opened for n, c in cases.items()} == {"wanted": 1, "unused": 0, "also-wanted": 1, "broken": 1}
    assert engine.plain == 1 and not engine.closed
    assert set(state.engines) == {"wanted", "also-wanted"}
    assert state.open_case(cases["also-wanted"], resources, gpu, object(), plans) is state.engines["also-wanted"]
    assert cases["also-wanted"].opened == 1
    assert lines[0] == "refit_core: building 3 case engine job(s) into the plan cache, in this process"
    assert any("broken (REFIT and without REFIT)" in line and "failed, the session builds it" in line
               and "the build failed" in line for line in lines)
    assert state.prewarm_seconds > 0
    with pytest.raises(RuntimeError, match="the build failed"):  # the session's own open shows the error
        state.open_case(cases["broken"], resources, gpu, object(), plans)
