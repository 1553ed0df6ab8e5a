"""The evaluator: corpus scores rebuilt from per-study statistics equal pycocoevalcap's, known values, bootstrap
intervals (reproducible, containing the estimate), diversity, the viewer's sentence matching, the command lines."""
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rrg_tutorial.evaluate import (adapter_readout, bootstrap, corpus_scores, diversity, foreground_maps, read_views,
                                   report_sentences, score, sentence_matches, study_stats)
from rrg_tutorial.metrics import NLGScorer, ce_scores

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
REFS = ["the heart is normal . the lungs are clear .", "small left pleural effusion . no pneumothorax .",
        "the heart is enlarged . small left pleural effusion . no pneumothorax .", "the lungs are clear . no effusion ."] * 6
HYPS = ["the heart is normal . the lungs are clear .", "no pneumothorax . small right pleural effusion .",
        "heart size is normal . small left pleural effusion . possible basilar atelectasis .", "the lungs are clear ."] * 6


@pytest.fixture(scope="module")
def scorer():
    with NLGScorer() as s: yield s


@pytest.fixture(scope="module")
def stats(scorer):
    return study_stats(REFS, HYPS, scorer, truncate_words=5)


def test_corpus_scores_equal_pycocoevalcap(scorer, stats):
    point = {k: float(v[0]) for k, v in corpus_scores(stats).items()}
    for k, v in scorer(REFS, HYPS).items(): assert point[k] == pytest.approx(v, abs=1e-12), k
    for k, v in scorer(REFS, HYPS, truncate_references=5).items(): assert point[f"{k}_cut"] == pytest.approx(v, abs=1e-12), k
    for k, v in ce_scores(REFS, HYPS).items(): assert point[k] == pytest.approx(v), k


def test_known_values(scorer):
    s = score(REFS[:4], REFS[:4], scorer=scorer)
    for k in ("BLEU_4", "METEOR", "ROUGE_L", "ce_micro_f1_uncertain_negative"): assert s[k] == pytest.approx(1.0, abs=1e-6)
    # lesson 12's worked example: TP 1, FP 1, FN 1 with uncertain as negative; the hedge is a 2nd FP as positive
    ref = ["The heart is enlarged. Small left pleural effusion. No pneumothorax."]
    hyp = ["Heart size is normal. Small left pleural effusion. Small right pneumothorax. Possible basilar atelectasis."]
    s = score(ref, hyp, scorer=scorer)
    assert s["ce_micro_f1_uncertain_negative"] == pytest.approx(0.5)
    assert s["ce_micro_precision_uncertain_positive"] == pytest.approx(1 / 3)
    assert s["distinct_reports"] == 1 and s["top_report_share"] == 1.0


def test_bootstrap_contains_estimate_and_is_reproducible(stats):
    a, b, c = bootstrap(stats, 200, seed=1), bootstrap(stats, 200, seed=1), bootstrap(stats, 200, seed=2)
    assert a.equals(b) and not a.equals(c)
    boot = a[a.n_boot > 0]
    assert {"BLEU_4", "METEOR", "CIDEr", "BLEU_4_cut", "METEOR_cut", "ce_macro_f1_uncertain_positive"} <= set(boot.index)
    assert (boot.lo <= boot.value + 1e-12).all() and (boot.value <= boot.hi + 1e-12).all()
    assert (boot.hi - boot.lo).loc[["BLEU_4", "ROUGE_L", "CIDEr", "METEOR"]].gt(0).all()    # studies differ: a real spread
    # METEOR's own number of resamples: a few, or none at all (then no interval, the other metrics unchanged)
    few, none = bootstrap(stats, 200, seed=1, meteor_boot=7), bootstrap(stats, 200, seed=1, meteor_boot=0)
    assert few.loc["METEOR", "n_boot"] == 7 and few.loc["BLEU_4", "n_boot"] == 200
    assert none.loc[["METEOR", "METEOR_cut"], "n_boot"].eq(0).all() and none.loc["METEOR", "lo"] != none.loc["METEOR", "lo"]
    assert none.loc["METEOR", "value"] == a.loc["METEOR", "value"] and none.drop(index=["METEOR", "METEOR_cut"]).equals(
        a.drop(index=["METEOR", "METEOR_cut"]))
    with pytest.raises(ValueError, match="meteor_boot"): bootstrap(stats, 10, meteor_boot=-1)


def test_bootstrap_resample_equals_scoring_the_resample(scorer, stats):
    "A bootstrap weight vector gives exactly the corpus scores of the resampled list of studies."
    idx = np.random.default_rng(0).integers(0, len(REFS), len(REFS))
    w = np.bincount(idx, minlength=len(REFS))
    ours = {k: float(v[0]) for k, v in corpus_scores(stats, w[None]).items()}
    ref = scorer([REFS[i] for i in idx], [HYPS[i] for i in idx])
    for k in ("BLEU_1", "BLEU_4", "METEOR", "ROUGE_L"): assert ours[k] == pytest.approx(ref[k], abs=1e-9), k


def test_diversity_known_values():
    d = diversity(["a b", "a b", "c"])
    assert d["distinct_reports"] == 2 and d["top_report_share"] == pytest.approx(2 / 3)
    assert d["distinct_1"] == pytest.approx(3 / 5) and d["distinct_2"] == pytest.approx(1 / 2)
    with pytest.raises(ValueError): diversity([])


def test_sentence_matches():
    assert report_sentences("a b . c d .") == ["a b", "c d"]
    ref, gen = sentence_matches("the heart is normal . no pleural effusion .", "the heart is normal . no effusion . x y z .")
    assert [t for _, t in ref] == ["same", "close"] and [t for _, t in gen] == ["same", "close", ""]


def test_read_views_errors(tmp_path):
    good = tmp_path / "a.png"
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(good)
    Image.fromarray(np.zeros((100, 300), np.uint8)).save(tmp_path / "small.png")
    (tmp_path / "text.png").write_text("not an image")
    assert read_views([good, good], 2).shape == (1, 2, 3, 224, 224)
    with pytest.raises(ValueError, match="reads 2 image"): read_views([good], 2)
    with pytest.raises(FileNotFoundError, match="does not exist"): read_views([good, tmp_path / "nope.png"], 2)
    with pytest.raises(ValueError, match="cannot read"): read_views([good, tmp_path / "text.png"], 2)
    with pytest.raises(ValueError, match="100 pixels|100x|300x100"): read_views([good, tmp_path / "small.png"], 2)


@pytest.mark.parametrize("mod", ["train", "evaluate", "generate"])
def test_cli_help(mod):
    r = subprocess.run([sys.executable, "-m", f"rrg_tutorial.{mod}", "--help"], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert ("--resume" if mod == "train" else "--checkpoint") in r.stdout
    if mod == "train":                       # every setting listed with its default and the comment beside it
        from dataclasses import fields
        from rrg_tutorial.train import TrainConfig
        lines = {l.split()[0]: l for l in r.stdout.splitlines() if l.startswith("  ") and len(l.split()) > 2}
        for f in fields(TrainConfig): assert f.name in lines, f.name


def test_cli_errors(tmp_path):
    def run(*a): return subprocess.run([sys.executable, "-m", *a], env=ENV, capture_output=True, text=True)
    r = run("rrg_tutorial.generate", "--checkpoint", str(tmp_path / "none.pt"), "a.png")
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run("rrg_tutorial.evaluate", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "x.json"))
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run("rrg_tutorial.train", "--config", "nope", "--out", str(tmp_path))
    assert r.returncode == 2 and "neither a named config" in r.stderr
    (tmp_path / "junk.pt").write_bytes(b"junk")
    r = run("rrg_tutorial.generate", "--checkpoint", str(tmp_path / "junk.pt"), "a.png", "b.png")
    assert r.returncode == 2 and "not a readable checkpoint" in r.stderr


def test_explorer_lists_studies_by_bleu4_and_redraws():
    "The ipywidgets explorer (live in JupyterLab only): studies best BLEU-4 first, the figure redrawn on a pick."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from rrg_tutorial.evaluate import explore
    studies = pd.DataFrame({"id": ["a", "b", "c"], "BLEU_4": [0.1, 0.5, 0.3]})
    drawn = []
    def draw(i):
        drawn.append(i)
        return plt.figure()
    pick = explore(studies, draw).children[0]
    assert [v for _, v in pick.options] == [1, 2, 0] and pick.options[0][0].startswith("b  BLEU-4 0.50")
    assert drawn == [1]
    pick.value = 0
    assert drawn == [1, 0]
    plt.close("all")


def test_adapter_readout_is_the_adapters_map_and_classifier_in_one_pass():
    from rrg_tutorial.model import build_model, preset
    c = preset("ci", vocab_size=30, grid=3)
    m = build_model(c).train()
    torch.manual_seed(0)
    b = dict(feats=torch.randn(2, c.n_views, c.in_channels, 3, 3).relu())
    out = adapter_readout(m, b)
    assert not m.training                                                       # evaluation mode, no dropout
    with torch.no_grad(): _, cma = m.encoder_input(b["feats"])
    torch.testing.assert_close(out["probs"], cma["logits"].sigmoid())
    torch.testing.assert_close(out["fore_map"], cma["fore_map"].reshape(2, c.n_views, 3, 3))   # (B, V, h, w)
    torch.testing.assert_close(foreground_maps(m, b), out["fore_map"])
    assert adapter_readout(build_model(preset("ci", vocab_size=30, grid=3, use_cma=False)), b) is None

