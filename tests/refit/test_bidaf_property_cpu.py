"""The BiDAF refit property on ONNX Runtime standing in for the engine (CPU tier, no TensorRT).

The "engine" is ONNX Runtime on the prepared model with whatever weights it was last
"refitted" to. A correct refit swaps the drawn weights in; a no-op refit keeps the model's
own weights. The property check is
tests/refit/bidaf_property.check_example, the very code the GPU property test runs (a small
fake engine: no GPU result is claimed here). The check must pass for the correct refit and
FAIL for the no-op, for every example it accepts, on whatever stand-in is bundled (nothing
here depends on the asset's answers).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from refit_core.cases.bidaf import BidafCase, ort_outputs
from refit_core.cases.base import CaseResources
from tests.refit.bidaf_property import bidaf_plans, check_example, held_out_pairs, new_stats
from tests.refit.strategies import perturb_all

pytest.importorskip("onnxruntime")
EXAMPLES = 10
QUESTIONS = 10  # fewer than the GPU test's 20: ONNX Runtime is the engine here too


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    from refit_core.onnx_prep.generic import onnx_float_initializers
    tmp = Path(tmp_path_factory.mktemp("bidaf-property"))
    prepared = BidafCase("standin").prepare(CaseResources(data_dir=None, cache_root=tmp, tmp_dir=tmp))
    initial = onnx_float_initializers(prepared.model_path)
    pairs = held_out_pairs(QUESTIONS)
    return prepared, initial, pairs, ort_outputs(prepared.model_path, prepared, initial, pairs)


class OrtEngine:
    """ONNX Runtime pretending to be a refittable engine. `mode`: "correct" takes the
    weights, "no-op" keeps the old ones."""

    def __init__(self, prepared, initial, pairs, mode: str) -> None:
        self.prepared, self.pairs, self.mode = prepared, pairs, mode
        self.weights = dict(initial)

    def refit(self, weights) -> None:
        if self.mode == "correct":
            self.weights.update(weights)

    def outputs(self):
        return ort_outputs(self.prepared.model_path, self.prepared, self.weights, self.pairs)


def _run(standin, mode: str) -> Dict:
    prepared, initial, pairs, before = standin
    stats = new_stats()
    verdicts = []

    @settings(max_examples=EXAMPLES, database=None, phases=[Phase.generate], deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(plan=bidaf_plans(sorted(initial)))
    def example(plan):
        weights = perturb_all(initial, plan)
        engine = OrtEngine(prepared, initial, pairs, mode)
        reference = ort_outputs(prepared.model_path, prepared, weights, pairs)
        check = check_example(engine.refit, engine.outputs, before, reference, weights, stats)
        verdicts.append((plan, check))

    example()
    return {"verdicts": verdicts, "stats": stats}


def test_a_correct_refit_passes(standin):
    run = _run(standin, "correct")
    assert len(run["verdicts"]) >= EXAMPLES // 2, run["stats"]
    bad = [(p, str(c)) for p, c in run["verdicts"] if not c.ok]
    assert not bad, bad[:2]
    # mild changes of 1..6 weights nearly always move the scores: few examples are rejected
    assert run["stats"]["rejected_invisible"] <= run["stats"]["checked_examples"], run["stats"]


def test_a_refit_that_does_nothing_fails_every_accepted_example(standin):
    run = _run(standin, "no-op")
    print(run["stats"])
    assert len(run["verdicts"]) >= EXAMPLES // 2, run["stats"]
    passed = [(p, str(c)) for p, c in run["verdicts"] if c.scores.ok]
    assert not passed, f"a no-op refit passes the score check: {passed[:2]}"
