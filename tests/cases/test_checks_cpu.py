"""The shared checks of refit_core.cases.checks (the pytest GPU tier and `check` both run them)
can pass and can fail: here against a numpy stand-in for a CaseEngine (CPU tier). The stand-in
is no TensorRT result; it lets each check's logic be broken on purpose and seen failing."""
from __future__ import annotations

import numpy as np
import pytest

from refit_core.cases import checks
from refit_core.cases.base import OutputTolerance
from refit_core.refit.validation import WeightSpec


class _Case:
    name = "fake"
    precision = "fp32"
    tolerance = OutputTolerance(atol=1e-6, rtol=1e-6)


class _Refitter:
    def __init__(self, weights, blocked=None):
        self.specs = {n: WeightSpec(n, w.shape) for n, w in weights.items()}
        self.blocked = dict(blocked or {})
        self.unreachable = {n: "is refitted only together with 'tmp_weight_1' (why)" for n in self.blocked}

    def trt_weight_names(self):
        return list(self.specs) + list(self.blocked) + [None]


class FakeEngine:
    """y = x @ W + b; `refit_to` replaces the weights unless told to ignore them."""

    def __init__(self, noise=0.5, blocked=None, ignore_refits=False, targets=True, ignored=()):
        rng = np.random.default_rng(0)
        self.case = _Case()
        self.x = rng.standard_normal((6, 4))
        self.build_weights = {"W": rng.standard_normal((4, 3)).astype(np.float32),
                              "b": rng.standard_normal(3).astype(np.float32)}
        self.target_weights = ({n: (w * (1 + noise * rng.standard_normal(w.shape))).astype(np.float32)
                                for n, w in self.build_weights.items()} if targets else {})
        self.refitter = _Refitter(self.build_weights if targets else {}, blocked)
        self.current = dict(self.build_weights)
        self.ignore_refits = ignore_refits
        self.ignored = set(ignored)  # weights whose refits are dropped (a constant fused at build time)
        self.built_outputs = self.probe()

    def _run(self, w):
        return self.x @ w["W"].astype(np.float64) + w["b"].astype(np.float64)

    def probe(self):
        return self._run(self.current)

    def reference(self, weights):
        return self._run({**self.build_weights, **weights})

    def refit_to(self, weights):
        if not self.ignore_refits:
            self.current = {**self.current, **{n: np.array(w) for n, w in weights.items() if n not in self.ignored}}

    def all_build_weights(self):
        return {n: self.build_weights[n] for n in self.target_weights}

    def plain_probe(self):
        return self._run({**self.build_weights, **self.target_weights})

    def further_comparisons(self, weights):
        return {}


ALL = (checks.refittable_weights, checks.built_vs_reference, checks.perturbation_changes_reference,
       checks.refit_to_target_matches_reference, checks.refit_back_restores_built_outputs,
       checks.refit_twice_is_bit_identical, checks.refit_equals_fresh_build)


@pytest.mark.parametrize("fn", ALL, ids=lambda f: f.__name__)
def test_an_honest_engine_passes_every_check(fn):
    outcome = fn(FakeEngine())
    assert outcome.ok is True, outcome.line


@pytest.mark.parametrize("fn", [checks.refit_to_target_matches_reference, checks.refit_back_restores_built_outputs,
                                checks.refit_equals_fresh_build], ids=lambda f: f.__name__)
def test_a_refit_that_does_nothing_fails(fn):
    outcome = fn(FakeEngine(ignore_refits=True))
    assert outcome.ok is False, outcome.line


def test_targets_equal_to_the_build_weights_fail_the_perturbation_check():
    outcome = checks.perturbation_changes_reference(FakeEngine(noise=0.0))
    assert outcome.ok is False and "could not be told from no refit" in outcome.line
    assert "zeros" not in outcome.line  # no integer input was fed


def test_a_no_op_perturbation_names_the_integer_inputs_fed_zeros():
    engine = FakeEngine(noise=0.0)
    engine.feeds = {"x": engine.x, "token_ids": np.zeros((6, 4), np.int64), "mask": np.ones((6, 4), bool)}
    line = checks.perturbation_changes_reference(engine).line
    assert "the probe feeds zeros to the integer input 'token_ids'" in line and "'mask'" not in line
    moving = FakeEngine()  # a perturbation that moves: nothing to explain
    moving.feeds = engine.feeds
    assert "zeros" not in checks.perturbation_changes_reference(moving).line


def test_an_engine_off_its_reference_fails():
    engine = FakeEngine()
    engine.built_outputs = engine.built_outputs + 1e-3
    assert checks.built_vs_reference(engine).ok is False


def test_a_fresh_build_that_differs_fails():
    engine = FakeEngine()
    engine.plain_probe = lambda: engine._run(engine.build_weights)  # built with the old weights
    assert checks.refit_equals_fresh_build(engine).ok is False


def test_nothing_refittable_fails_with_the_reason():
    outcome = checks.refittable_weights(FakeEngine(targets=False))
    assert outcome.ok is False and "nothing to refit by name" in outcome.line and "Constant nodes" in outcome.line
    outcome = checks.refittable_weights(FakeEngine(targets=False, blocked={"conv.w": ["tmp_weight_1"]}))
    assert outcome.ok is False and "'conv.w'" in outcome.line and "tmp_weight_1" in outcome.line


def test_weights_left_out_for_tensorrt_only_partners_are_said_and_the_rest_checked():
    outcome = checks.refittable_weights(FakeEngine(blocked={"bn_conv.w": ["tmp_weight_38"]}))
    assert outcome.ok is True and "2 weights refittable by name and checked" in outcome.line
    assert "1 listed by name but refitted by TensorRT only together" in outcome.line
    assert outcome.record["blocked_by_trt_only_partner"] == ["bn_conv.w"]


def test_references_are_computed_once_per_engine():
    engine = FakeEngine()
    calls = []
    real = engine.reference
    engine.reference = lambda w: calls.append(1) or real(w)
    for fn in ALL:
        fn(engine)
    assert len(calls) == 2  # build and target


class NaNEngine(FakeEngine):
    """An engine whose outputs for the target weights hold the same NaN at every refit
    (a model made undefined, not a refit that varies)."""

    def probe(self):
        out = super().probe()
        if self.current is not self.build_weights and any(
                not np.array_equal(self.current[n], self.build_weights[n]) for n in self.current):
            out = out.copy()
            out[0, 0] = np.nan
        return out


def test_the_same_nan_twice_is_bit_identical_and_said():
    outcome = checks.refit_twice_is_bit_identical(NaNEngine())
    assert outcome.ok is True, outcome.line
    assert "1 of 18 outputs are NaN or infinite" in outcome.line


def test_nan_after_a_refit_fails_the_reference_check_saying_so():
    outcome = checks.refit_to_target_matches_reference(NaNEngine())
    assert outcome.ok is False
    assert "1 of 18 outputs are NaN or infinite where the reference has none" in outcome.line


@pytest.mark.parametrize("dropped", ["W", "b"])
def test_a_refit_that_misses_one_weight_fails_naming_that_weight(dropped):
    outcome = checks.refit_to_target_matches_reference(FakeEngine(ignored={dropped}))
    assert outcome.ok is False
    assert f"only {dropped!r} at its build value is within max|diff| 0 of the engine's outputs" in outcome.line
    assert "did not reach the engine" in outcome.line


def test_no_weight_is_named_where_none_explains_the_miss():
    engine = FakeEngine()
    engine.probe = lambda: engine._run(engine.current) * 1.01  # every output off, whatever the weights
    outcome = checks.refit_to_target_matches_reference(engine)
    assert outcome.ok is False and "did not reach" not in outcome.line
    nothing = checks.refit_to_target_matches_reference(FakeEngine(ignore_refits=True))
    assert "still matches the build reference" in nothing.line and "did not reach" not in nothing.line


def test_the_search_for_the_missed_weight_stops_at_its_time_limit(monkeypatch):
    monkeypatch.setattr(checks, "SUSPECT_SECONDS", -1.0)
    outcome = checks.refit_to_target_matches_reference(FakeEngine(ignored={"b"}))
    assert outcome.ok is False and "did not reach" not in outcome.line
