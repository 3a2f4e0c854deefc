"""The case registry and the output comparison the generic checks use (CPU tier)."""
from __future__ import annotations

import numpy as np
import pytest

from refit_core.cases import registry
from refit_core.cases.base import OutputTolerance, RefitCase, compare_outputs


def test_builtin_cases_are_registered():
    assert registry.names()[:3] == ["mnist", "bidaf-standin", "bidaf-original"]
    assert str(registry.get("mnist")) == "mnist"


def test_duplicate_and_bad_names_are_refused():
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.get("mnist").__class__())

    class Nameless(RefitCase):
        def open(self, *a, **k):
            raise NotImplementedError

    with pytest.raises(ValueError, match="must be non-empty"):
        registry.register(Nameless())


def test_unknown_case_lists_the_registered_ones():
    with pytest.raises(KeyError, match="registered: mnist, bidaf-standin"):
        registry.get("resnet")


def test_float_rows_are_judged_by_their_own_scale():
    tol = OutputTolerance(atol=1e-3, rtol=1e-5)
    ref = np.array([[1e4, 0.0], [1.0, 2.0]])
    # 0.05 error on a 1e4-scale row is within 1e-3 + 0.1; the same error on the small row is not
    assert compare_outputs(ref + [[0.05, 0.0], [0.0, 0.0]], ref, tol).ok
    bad = compare_outputs(ref + [[0.0, 0.0], [0.05, 0.0]], ref, tol)
    assert not bad.ok and bad.rows_agreeing == 1 and bad.max_abs == pytest.approx(0.05)


def test_nan_never_agrees():
    ref = np.ones((2, 3))
    got = ref.copy()
    got[1, 2] = np.nan
    assert not compare_outputs(got, ref, OutputTolerance(atol=1.0)).ok


def test_equal_infinities_agree_and_never_widen_the_tolerance():
    """Masked scores (-inf in both) agree; an infinite entry does not make the row's scale
    infinite (which would accept any error); inf against a finite value never agrees."""
    tol = OutputTolerance(atol=1e-3, rtol=1e-3)
    ref = np.array([[-np.inf, 1.0, 2.0]])
    assert compare_outputs(ref.copy(), ref, tol).ok
    off = np.array([[-np.inf, 1.0, 2.5]])
    assert not compare_outputs(off, ref, tol).ok
    assert not compare_outputs(np.array([[-1e30, 1.0, 2.0]]), ref, tol).ok
    assert not compare_outputs(np.array([[np.inf, 1.0, 2.0]]), ref, tol).ok


def test_exact_rows_need_the_stated_share():
    tol = OutputTolerance(exact_rows=True, min_agreement=0.95)
    ref = np.arange(40, dtype=float).reshape(20, 2)
    one_off = ref.copy()
    one_off[0, 0] += 1
    two_off = one_off.copy()
    two_off[1, 1] += 1
    assert compare_outputs(one_off, ref, tol).ok          # 19/20 = 95%
    assert not compare_outputs(two_off, ref, tol).ok      # 18/20


def test_shapes_must_match():
    with pytest.raises(ValueError, match="one shape"):
        compare_outputs(np.zeros((2, 2)), np.zeros((2, 3)), OutputTolerance())


def test_bidaf_target_weights_move_most_probe_scores_beyond_the_margin(tmp_path):
    """A refit that did nothing must fail the generic reference check of the BiDAF case: on
    ONNX Runtime the target weights (TARGET_NOISE) move the probe scores beyond NO_OP_MARGIN x
    SCORE_TOLERANCE, in most questions. Holds for any trained stand-in: nothing read from
    the asset is hard-coded."""
    pytest.importorskip("onnxruntime")
    from refit_core.cases.base import NO_OP_MARGIN, CaseResources
    from refit_core.cases.bidaf import (SCORE_TOLERANCE, BidafCase, ort_outputs, probe_pairs, target_weights,
                                        weight_change_visible)
    from refit_core.onnx_prep.generic import onnx_float_initializers
    case = BidafCase("standin")
    assert case.tolerance == SCORE_TOLERANCE  # the generic checks compare the scores
    prepared = case.prepare(CaseResources(data_dir=None, cache_root=tmp_path, tmp_dir=tmp_path))
    initial = onnx_float_initializers(prepared.model_path)
    pairs = probe_pairs()
    built = ort_outputs(prepared.model_path, prepared, initial, pairs)
    target = ort_outputs(prepared.model_path, prepared, target_weights(initial), pairs)
    assert weight_change_visible(built, target)
    wide = compare_outputs(built.scores, target.scores, SCORE_TOLERANCE.scaled(NO_OP_MARGIN))
    assert wide.rows_agreeing <= len(pairs) // 2, f"the target leaves most questions' scores in place: {wide}"


def test_a_margin_scales_the_tolerance():
    tol = OutputTolerance(atol=1e-3, rtol=1e-3)
    assert tol.scaled(2) == OutputTolerance(atol=2e-3, rtol=2e-3)
    spans = OutputTolerance(exact_rows=True, min_agreement=0.95)
    wide = spans.scaled(2)
    assert wide.exact_rows and wide.min_agreement == pytest.approx(0.9)
    with pytest.raises(ValueError, match="k >= 1"):
        tol.scaled(0.5)


def test_bidaf_outputs_pad_each_row_and_compare_scores_and_spans():
    from refit_core.cases.bidaf import bidaf_outputs, compare_bidaf
    runs = [(1, 2, np.array([0.0, 5.0, 1.0]), np.array([0.0, 1.0, 4.0])),
            (0, 0, np.array([3.0]), np.array([2.0]))]
    out = bidaf_outputs(runs)
    np.testing.assert_array_equal(out.spans, [[1, 2], [0, 0]])
    np.testing.assert_array_equal(out.scores, [[0, 5, 1, 0, 1, 4], [3, 0, 0, 2, 0, 0]])
    assert compare_bidaf(out, out).ok
    nudged = bidaf_outputs([runs[0], (0, 0, np.array([3.0]), np.array([2.0 + 0.01]))])
    check = compare_bidaf(nudged, out)  # 0.01 > 1e-3 + 1e-3 * 3: that question's scores are off
    assert not check.ok and not check.scores.ok and check.spans.ok and check.scores.rows_agreeing == 1
    other_span = bidaf_outputs([runs[0], (0, 1, runs[1][2], runs[1][3])])
    check = compare_bidaf(other_span, out)
    assert check.scores.ok and not check.spans.ok  # 1 of 2 spans identical < 95%


def test_onnx_model_case_targets_change_the_reference(tmp_path):
    """The tiny-mlp case's target weights move every probe row beyond its tolerance on ONNX
    Runtime, so a refit that did nothing fails its generic reference check."""
    import onnxruntime as ort
    from refit_core.cases.onnx_model import with_initializers
    from refit_core.cases.tiny_mlp import tiny_mlp_case, write_tiny_mlp
    TINY_MLP = tiny_mlp_case()
    from refit_core.onnx_prep.generic import onnx_float_initializers
    path = write_tiny_mlp(tmp_path)
    build = onnx_float_initializers(path)
    feeds = TINY_MLP.probe_feeds()

    def run(weights):
        sess = ort.InferenceSession(with_initializers(path, weights), providers=["CPUExecutionProvider"])
        return sess.run(["y"], feeds)[0].astype(np.float64)

    from refit_core.cases.base import NO_OP_MARGIN
    no_op = compare_outputs(run(build), run(TINY_MLP.target_weights(build)), TINY_MLP.tolerance.scaled(NO_OP_MARGIN))
    assert not no_op.ok and no_op.rows_agreeing == 0
    assert TINY_MLP.profiles(path) == []  # static shapes: no optimization profile
