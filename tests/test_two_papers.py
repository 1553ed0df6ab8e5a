"""rrg_tutorial.two_papers (lesson 21): results files are checked on reading, verdicts follow the intervals, the
Table II comparison takes the paper's difference in the right direction, and the frames read the committed file."""
import json
from pathlib import Path

import numpy as np
import pytest

from rrg_tutorial.two_papers import (cost_frame, load_comparison, pairs_frame, quality_frame, seed_noise,
                                     table2_frame, verdicts)

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / "experiments" / "results" / "mambaxray_tables_ci.json"


def test_bad_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="mambaxray_tables.py"):
        load_comparison(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_comparison(tmp_path / "bad.json")
    doc = json.loads(CI.read_text())
    (tmp_path / "notiming.json").write_text(json.dumps({**doc, "timing": None}))
    with pytest.raises(ValueError, match="no-timing"):
        load_comparison(tmp_path / "notiming.json")


def _doc(ci_of_pair):
    a, b = "MambaXray-CTL (SFT + CTL-FT)", "MambaXray-CTL (SFT)"
    metrics = ("BLEU_1", "BLEU_4", "ROUGE_L", "CIDEr", "ce_micro_f1_uncertain_negative")
    return {"table": {"pairs": {f"{a} - {b}": {k: dict(value=sum(ci_of_pair[k]) / 2, ci=ci_of_pair[k])
                                               for k in metrics}}},
            "paper": {"SFT": dict(BLEU_1=0.457, BLEU_4=0.174, ROUGE_L=0.353, CIDEr=0.467),
                      "SFT + CTL-FT": dict(BLEU_1=0.463, BLEU_4=0.185, ROUGE_L=0.364, CIDEr=0.451)}}


def test_verdicts_follow_the_intervals():
    doc = _doc({"BLEU_1": [0.01, 0.02], "BLEU_4": [-0.01, 0.02], "ROUGE_L": [-0.03, -0.01], "CIDEr": [-0.05, -0.01],
                "ce_micro_f1_uncertain_negative": [0.0, 0.1]})
    t = table2_frame(doc).set_index("metric")
    assert t.loc["BLEU-1", "verdict"] == "reproduced" and t.loc["BLEU-4", "verdict"] == "within noise"
    assert t.loc["ROUGE-L", "verdict"] == "reversed" and t.loc["CIDEr", "verdict"] == "reproduced"   # paper: -0.016
    assert abs(t.loc["BLEU-4", "paper"] - 0.011) < 1e-9
    p = pairs_frame(doc, metrics=("BLEU_1", "ROUGE_L", "BLEU_4")).set_index("metric")
    assert list(p.verdict) == ["above", "below", "within noise"]
    assert verdicts(pairs_frame(doc)).shape == (1, 4)


def test_table2_stages_take_their_own_rows_and_name_missing_runs():
    a, b = "MambaXray-CTL (Vim ARM + CTL: SFT + CTL-FT)", "MambaXray-CTL (Vim ARM: SFT + CTL-FT)"
    metrics = ("BLEU_1", "BLEU_4", "ROUGE_L", "CIDEr")
    doc = {"table": {"pairs": {f"{a} - {b}": {k: dict(value=-0.02, ci=[-0.03, -0.01]) for k in metrics}}},
           "paper": {"Vim ARM: SFT + CTL-FT": dict(BLEU_1=0.463, BLEU_4=0.185, ROUGE_L=0.364, CIDEr=0.451),
                     "Vim ARM + CTL: SFT + CTL-FT": dict(BLEU_1=0.479, BLEU_4=0.193, ROUGE_L=0.375, CIDEr=0.607)}}
    t = table2_frame(doc, "CTL").set_index("metric")
    assert (t.verdict == "reversed").all() and abs(t.loc["CIDEr", "paper"] - 0.156) < 1e-9   # #3 - #4
    with pytest.raises(KeyError, match="Vim: SFT"):
        table2_frame(doc, "ARM")
    with pytest.raises(ValueError, match="stage must be one of CTL-FT, ARM, CTL, got .MAE."):
        table2_frame(doc, "MAE")


def test_seed_noise_pools_the_rows_and_widens_the_table2_interval():
    a, b = "MambaXray-CTL (SFT + CTL-FT)", "MambaXray-CTL (SFT)"
    metrics = ("BLEU_1", "BLEU_4", "ROUGE_L", "CIDEr", "ce_micro_f1_uncertain_negative")
    doc = _doc({k: [0.01, 0.03] for k in metrics})
    assert "verdict, seeds too" not in table2_frame(doc)           # no systems: the test-study interval alone
    vals = lambda *v: {k: list(v) for k in metrics}
    doc["table"]["systems"] = {a: dict(seeds=[0, 1, 2], values=vals(0.10, 0.12, 0.14)),   # variance about 0.12: 8e-4
                               b: dict(seeds=[0, 1], values=vals(0.20, 0.22)),             # about 0.21: 2e-4
                               "RRG-Mamba": dict(seeds=[0, 1, 2], values=vals(0.0, 0.5, 1.0))}   # not an LLM row
    n = seed_noise(doc, ("BLEU_4",))
    assert n.at["BLEU_4", "dof"] == 3 and n.at["BLEU_4", "rows"] == 2
    assert abs(n.at["BLEU_4", "sd"] - (1e-3 / 3) ** 0.5) < 1e-12     # (8e-4 + 2e-4) over 2 + 1 dof
    t = table2_frame(doc).set_index("metric")
    h = 3.182446305284263 * (1e-3 / 3) ** 0.5 * (1 / 3 + 1 / 2) ** 0.5     # t(0.975, 3 dof)
    assert abs(t.at["BLEU-4", "± seeds"] - h) < 1e-9
    assert abs(t.at["BLEU-4", "lo, seeds too"] - (0.02 - (0.01 ** 2 + h ** 2) ** 0.5)) < 1e-12
    assert t.at["BLEU-4", "verdict"] == "reproduced" and t.at["BLEU-4", "verdict, seeds too"] == "within noise"
    doc["table"]["pairs"][f"{a} - {b}"]["BLEU_4"] = dict(value=0.5, ci=[0.45, 0.55])
    t = table2_frame(doc, metrics=("BLEU_4", "ce_micro_f1_uncertain_negative")).set_index("metric")
    assert t.at["BLEU-4", "verdict, seeds too"] == "reproduced"
    assert np.isnan(t.at["CE micro F1", "paper"]) and t.at["CE micro F1", "verdict"] == "above"   # no paper value


def test_frames_read_the_committed_file():
    doc = load_comparison(CI)
    q = quality_frame(doc)
    assert len(q) == len(doc["table"]["systems"]) and "CE micro F1" in q.columns
    c = cost_frame(doc)
    assert set(c.index) == {"RRG-Mamba", "Transformer", "MambaXray-CTL"}
    assert c.loc["RRG-Mamba", "epoch vs RRG-Mamba"] == 1.0
    assert (c["total (M)"] >= c["trainable (M)"]).all()


def test_forest_plots_draw_every_system_with_its_interval():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rrg_tutorial.tables import load_results, plot_rows
    from rrg_tutorial.two_papers import plot_systems
    doc = load_comparison(CI)
    systems = doc["table"]["systems"]
    fig = plot_systems(doc, metrics=("BLEU_4", "CIDEr"))
    assert len(fig.axes) == 2 and [t.get_text() for t in fig.axes[0].get_yticklabels()] == list(systems)
    for y, x in enumerate(systems.values()):       # line y: its interval bar, then its point (then seeds, if several)
        bar, point = [l for l in fig.axes[1].lines if list(l.get_ydata()) in ([y, y], [y])][:2]
        assert list(bar.get_xdata()) == list(x["ci"]["CIDEr"]) and point.get_xdata()[0] == x["mean"]["CIDEr"]
    plt.close(fig)
    doc17 = load_results(ROOT / "experiments" / "results" / "offline_tables_ci.json")
    fig = plot_rows(doc17, metrics=("BLEU_4",))
    names = list(doc17["rows_run"]) + list(doc17["table"]["baselines"])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == names
    assert sum(l.get_marker() == "D" for l in fig.axes[0].lines) == len(doc17["table"]["baselines"])
    plt.close(fig)


def test_encoder_stages_plot_reads_the_recorded_histories():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rrg_tutorial.two_papers import plot_encoder_stages
    with pytest.raises(ValueError, match="no Vim stage"):
        plot_encoder_stages({"encoders": {}})
    doc = {"encoders": {"ARM": dict(step=[10, 20], loss=[1.0, 0.8]),
                        "CTL": dict(step=[50, 100, 150], loss=[4.1, 4.0, 3.9], val_recall=[0.1, 0.3, 0.2], batch=64,
                                    loss_chance=4.16, n_val=64, val_recall_chance=0.083)}}
    fig = plot_encoder_stages(doc)
    arm, ctl, rec = fig.axes
    assert list(arm.lines[0].get_ydata()) == [1.0, 0.8]
    assert [l.get_ydata()[0] for l in ctl.lines[1:]] == [4.16]                      # the chance line
    kept = [l for l in rec.lines if l.get_label() == "step kept"][0]
    assert list(kept.get_xdata()) == [100] and list(kept.get_ydata()) == [0.3]      # the best validation recall
    plt.close(fig)
