"""rrg_tutorial.tables (lesson 17): the linear probe baseline (it reads findings a linear reader can read, picks its
regularisation on validation, and the template reports say the findings they were chosen for), and the verdicts on
differences between rows, over test studies and with the seeds counted."""
from types import SimpleNamespace

import numpy as np
import pytest

from rrg_tutorial.tables import (LabelProbe, fit_label_probe, k_sweep, micro_f1, orderings, pooled_sd,
                                 seed_halfwidth, replication, target_check, template_reports, verdict, view_features,
                                 widen_by_seeds)


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


def test_verdict_reads_the_interval_and_the_paper():
    assert verdict(0.01, 0.02, 0.05) == "reproduced" and verdict(-0.02, -0.01, 0.05) == "reversed"
    assert verdict(-0.02, -0.01, -0.05) == "reproduced" and verdict(0.01, 0.02) == "above"
    assert verdict(-0.01, 0.02, 0.05) == "within noise" and verdict(-0.02, -0.01) == "below"
    assert verdict(np.nan, np.nan, 0.05) == "unknown"


def test_pooled_sd_weights_rows_by_their_seeds():
    v = {"a": {"m": [0.10, 0.12, 0.14]},     # squared deviations about 0.12: 8e-4, 2 dof
         "b": {"m": [0.20, 0.22]},           # about 0.21: 2e-4, 1 dof
         "c": {"m": [5.0]}}                  # one seed: no spread to add
    s = pooled_sd(v, ["m"])
    assert s.at["m", "dof"] == 3 and s.at["m", "rows"] == 2 and abs(s.at["m", "sd"] - (1e-3 / 3) ** 0.5) < 1e-12
    assert len(pooled_sd({"c": {"m": [5.0]}}, ["m"])) == 0
    h = seed_halfwidth(s, "m", 3, 2)
    assert abs(h - 3.182446305284263 * (1e-3 / 3) ** 0.5 * (1 / 3 + 1 / 2) ** 0.5) < 1e-12     # t(0.975, 3 dof)
    assert abs(seed_halfwidth(s, "m", 3) - 3.182446305284263 * (1e-3 / 3) ** 0.5 / 3 ** 0.5) < 1e-12   # baseline
    assert np.isnan(seed_halfwidth(pooled_sd({"c": {"m": [5.0]}}, ["m"]), "m", 3))
    lo, hi = widen_by_seeds(0.02, 0.01, 0.04, 0.03)
    assert abs(lo - (0.02 - (0.01 ** 2 + 0.03 ** 2) ** 0.5)) < 1e-15 and abs(hi - (0.02 + (0.02 ** 2 + 0.03 ** 2) ** 0.5)) < 1e-15


def _results(rrg, row, diff, ci):
    "A results file of two rows (seed values per metric), RRG-Mamba minus `row` = diff [ci], and one baseline."
    k = "BLEU_4"
    rows = {"RRG-Mamba": dict(seeds=list(range(len(rrg))), values={k: rrg}),
            row[0]: dict(seeds=list(range(len(row[1]))), values={k: row[1]},
                         diff_from_rrg_mamba={k: dict(value=diff, ci=ci)})}
    return dict(rows_run=list(rows), paper={"RRG-Mamba": {k: 0.20}, row[0]: {k: 0.18}},
                settings=dict(train=dict(epochs=10), model_set={}),
                table=dict(rows=rows, baselines={"most common report": dict(
                    rrg_mamba_minus_baseline={k: dict(value=diff, ci=ci)})}))


def test_orderings_and_targets_count_the_seeds():
    doc = _results([0.10, 0.12, 0.14], ("w/o RoPE", [0.08, 0.08, 0.08]), 0.03, [0.02, 0.04])
    o = orderings(doc, metrics=("BLEU_4",)).iloc[0]
    sd = (8e-4 / 4) ** 0.5                                             # 2 + 2 dof, the second row adds nothing
    h = 2.7764451051977987 * sd * (2 / 3) ** 0.5                        # t(0.975, 4 dof)
    assert o.verdict == "reproduced" and abs(o["lo, seeds too"] - (0.03 - (0.01 ** 2 + h ** 2) ** 0.5)) < 1e-12
    assert o["verdict, seeds too"] == "within noise"                   # 0.01 and h = 0.032 in quadrature > 0.03
    t = target_check(doc, metrics=("BLEU_4",)).iloc[0]
    h0 = 2.7764451051977987 * sd / 3 ** 0.5                            # a baseline has no seeds
    assert t.verdict == "above" and abs(t["lo, seeds too"] - (0.03 - (0.01 ** 2 + h0 ** 2) ** 0.5)) < 1e-12
    assert t["verdict, seeds too"] == "above"                          # 0.01 and h0 = 0.023 in quadrature < 0.03
    one = _results([0.10], ("w/o RoPE", [0.08]), 0.04, [0.03, 0.05])   # one seed a row: no spread, no verdict on it
    o1 = orderings(one, metrics=("BLEU_4",)).iloc[0]
    assert o1.verdict == "reproduced" and o1["verdict, seeds too"] == "unknown" and np.isnan(o1["lo, seeds too"])


def test_k_sweep_compares_each_k_with_k_one_half():
    doc = _results([0.10, 0.12, 0.14], ("w/o RoPE", [0.08, 0.08, 0.08]), 0.03, [0.02, 0.04])
    rows = doc["table"]["rows"]
    for r, v, ci in (("k=0.9", 0.07, [0.01, 0.05]), ("k=0.1", 0.13, [-0.02, -0.005])):     # one seed each
        rows[r] = dict(seeds=[0], values={"BLEU_4": [v]}, mean={"BLEU_4": v},
                       diff_from_rrg_mamba={"BLEU_4": dict(value=float(np.mean(ci)), ci=ci)})
        doc["rows_run"].append(r)
    assert list(orderings(doc, metrics=("BLEU_4",)).row) == ["w/o RoPE"]           # the sweep is not an ablation
    ks = k_sweep(doc, metrics=("BLEU_4",))
    assert list(ks.k) == [0.1, 0.9] and list(ks.seeds) == [1, 1] and list(ks["mean"]) == [0.13, 0.07]
    assert list(ks.verdict) == ["reversed", "reproduced"]                           # the paper: k = 0.5 is the peak
    sd = (8e-4 / 4) ** 0.5                                                          # pooled over the 3-seed rows
    h = 2.7764451051977987 * sd * (1 / 3 + 1) ** 0.5                                # one seed on the k side
    hi = ks.iloc[1]
    assert abs(hi["lo, seeds too"] - (0.03 - (0.02 ** 2 + h ** 2) ** 0.5)) < 1e-12 and hi["verdict, seeds too"] == "within noise"
    assert len(k_sweep(_results([0.1, 0.12], ("w/o RoPE", [0.08, 0.09]), 0.03, [0.02, 0.04]), metrics=("BLEU_4",))) == 0


def test_replication_compares_verdicts_of_two_files():
    here = _results([0.10, 0.12, 0.14], ("w/o RoPE", [0.08, 0.08, 0.08]), 0.03, [0.02, 0.04])
    earlier = _results([0.10, 0.12, 0.14], ("w/o RoPE", [0.08, 0.08, 0.08]), -0.03, [-0.04, -0.02])
    r = replication(here, earlier, metrics=("BLEU_4",)).iloc[0]
    assert (r["verdict (earlier)"], r["verdict"]) == ("reversed", "reproduced")
    assert r["opposite (test studies)"] and not r["agree (test studies)"]
    assert r["agree (seeds too)"] and not r["opposite (seeds too)"]       # both within noise with the seeds counted
    assert r["verdict, seeds too"] == r["verdict, seeds too (earlier)"] == "within noise"
    earlier["settings"]["train"]["epochs"] = 30                          # trained otherwise: no comparison
    with pytest.raises(ValueError, match="other train settings"):
        replication(here, earlier, metrics=("BLEU_4",))


def test_forest_plot_draws_the_wide_interval_only_where_given():
    import matplotlib
    matplotlib.use("Agg")
    from rrg_tutorial.tables import forest_plot
    e = dict(name="a", model=True, point={"m": 0.5}, ci={"m": (0.4, 0.6)})
    plain = forest_plot([e], ["m"]).axes[0]
    wide = forest_plot([{**e, "wide": {"m": (0.3, 0.7)}}], ["m"]).axes[0]
    assert len(wide.lines) == len(plain.lines) + 1
    assert any(list(l.get_xdata()) == [0.3, 0.7] for l in wide.lines)


def test_plot_k_sweep_puts_each_k_at_its_place():
    import matplotlib
    matplotlib.use("Agg")
    from rrg_tutorial.tables import plot_k_sweep
    m = "BLEU_4"
    rows = {"RRG-Mamba": dict(seeds=[0, 1, 2], values={m: [0.10, 0.12, 0.14]}, mean={m: 0.12}, ci={m: [0.11, 0.13]}),
            "k=0.9": dict(seeds=[0], values={m: [0.09]}, mean={m: 0.09}, ci={m: [0.08, 0.10]})}
    doc = dict(rows_run=list(rows), table=dict(rows=rows))
    ax = plot_k_sweep(doc, metrics=(m,)).axes[0]
    assert list(ax.get_xticks()) == [0.5, 0.9]
    dots = [l for l in ax.lines if l.get_marker() == "o"]
    assert [(l.get_xdata()[0], l.get_ydata()[0]) for l in dots] == [(0.5, 0.12), (0.9, 0.09)]
    assert sum(l.get_marker() == "x" for l in ax.lines) == 1                        # seeds drawn for k = 0.5 only
    assert any(list(l.get_ydata()) == [0.08, 0.10] for l in ax.lines)               # k = 0.9's interval
