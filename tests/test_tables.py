"""rrg_tutorial.tables' linear probe baseline (lesson 17): the probe reads findings a linear reader can read, picks
its regularisation on validation, and the template reports say the findings they were chosen for."""
from types import SimpleNamespace

import numpy as np
import pytest

from rrg_tutorial.tables import LabelProbe, fit_label_probe, micro_f1, template_reports, view_features


def separable(n, seed):
    "Features whose first 14 coordinates carry the 14 findings (plus noise), findings 12 and 13 constant."
    rng = np.random.default_rng(seed)
    y = rng.random((n, 14)) < 0.3
    y[:, 12], y[:, 13] = False, True
    x = np.concatenate([y * 2.0 - 1.0, rng.normal(size=(n, 10))], 1) + 0.1 * rng.normal(size=(n, 24))
    return x, y


def test_probe_reads_linear_findings_and_keeps_constant_ones():
    xt, yt = separable(200, 0)
    xv, yv = separable(60, 1)
    probe, val = fit_label_probe(xt, yt, xv, yv, Cs=(1e-4, 1.0))
    assert set(val) == {1e-4, 1.0} and probe.C == max(val, key=val.get)
    pred = probe.predict(xv)
    assert pred.shape == yv.shape and pred.dtype == bool
    assert micro_f1(yv, pred) == 1.0
    assert not pred[:, 12].any() and pred[:, 13].all()          # never / always present in training


def test_micro_f1_counts_over_all_findings():
    y = np.array([[1, 0, 1], [0, 1, 0]], bool)
    g = np.array([[1, 1, 0], [0, 1, 0]], bool)                  # tp 2, fp 1, fn 1
    assert micro_f1(y, g) == pytest.approx(4 / 6)
    assert micro_f1(np.zeros((2, 3), bool), np.zeros((2, 3), bool)) == 0.0


def test_template_reports_exact_then_nearest_then_larger():
    train = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]], bool)
    reports = ["a", "b", "b", "c", "d", "e"]
    got = template_reports(np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0], [0, 1, 1]], bool), train, reports)
    # exact set -> its most common report ("b"; "d" and "e" tie: the first seen); [1,1,0] is one away from
    # [1,0,0] (3 reports) and [0,1,0] (1 report): the larger wins; [0,1,1] is nearest to [0,1,0]
    assert got == ["b", "d", "b", "c"]
    with pytest.raises(ValueError, match="training reports"):
        template_reports(train[:1], train, reports[:2])


def test_view_features_and_bad_input():
    feats = np.arange(3 * 2 * 4 * 2 * 2, dtype=np.float32).reshape(3, 2, 4, 2, 2)       # (N, V, C, h, w)
    ds = SimpleNamespace(feats=feats, rows=np.array([2, 0]))
    v = view_features(ds)
    assert v.shape == (2, 8)
    np.testing.assert_allclose(v[0, :4], feats[2, 0].mean((1, 2)))
    np.testing.assert_allclose(v[1, 4:], feats[0, 1].mean((1, 2)))
    with pytest.raises(TypeError, match="cached feature grids"):
        view_features([1, 2])
    with pytest.raises(ValueError, match="one row of findings per study"):
        LabelProbe().fit(np.zeros((3, 2)), np.zeros((4, 14), bool))
