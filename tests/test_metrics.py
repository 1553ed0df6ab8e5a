import shutil, warnings
import numpy as np
import pandas as pd
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge
from rrg_tutorial.labeler import CHEXPERT_CLASSES, chexpert_labels
from rrg_tutorial.metrics import (NLG_KEYS, NLGScorer, nlg_scores, count_subprocesses, ce_scores, ce_per_class, ce_table,
                                  CE_CONVENTIONS)

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs Java 11+")
REFS = ["the heart is normal . the lungs are clear .", "mild cardiomegaly . no pleural effusion .",
        "small left pleural effusion . no pneumothorax .", "no acute cardiopulmonary abnormality ."]
HYPS = ["the heart is normal . lungs clear .", "the heart is enlarged . no effusion .",
        "no pneumothorax . small effusion .", "normal chest ."]


@pytest.fixture(scope="module")
def scorer():
    with count_subprocesses() as started:
        s = NLGScorer()
    assert len(started) == 1 and started[0][0] == "java"
    yield s
    s.close()


@needs_java
def test_equal_to_pycocoevalcap_directly(scorer):
    gts, res = {i: [r] for i, r in enumerate(REFS)}, {i: [h] for i, h in enumerate(HYPS)}
    direct = dict(zip(NLG_KEYS[:4], Bleu(4).compute_score(gts, res, verbose=0)[0]))
    direct.update(METEOR=scorer.meteor.compute_score(gts, res)[0], ROUGE_L=Rouge().compute_score(gts, res)[0],
                  CIDEr=Cider().compute_score(gts, res)[0])
    with count_subprocesses() as started: ours = scorer(REFS, HYPS)
    assert started == [] and list(ours) == NLG_KEYS
    for k in NLG_KEYS: assert ours[k] == pytest.approx(direct[k], abs=1e-12)


@needs_java
def test_nlg_scores_starts_one_process_per_evaluation():
    with count_subprocesses() as started: s = nlg_scores(REFS * 5, HYPS * 5)
    assert len(started) == 1
    assert 0 < s["BLEU_4"] < 1 and 0 < s["METEOR"] < 1


@needs_java
def test_edge_cases_give_defined_scores(scorer):
    for hyps in ([""] * 4, ["", *HYPS[1:]], ["é ü ✓ 肺 .", *HYPS[1:]], ["line one\nline two ||| x", *HYPS[1:]]):
        s = scorer(REFS, hyps)
        assert all(np.isfinite(v) and v >= 0 for v in s.values())
    with pytest.warns(UserWarning, match="max_words"):
        s = scorer(REFS, [" ".join(["the heart is normal ."] * 5000), *HYPS[1:]])
    assert np.isfinite(list(s.values())).all()
    perfect = scorer(REFS, REFS)
    assert perfect["BLEU_4"] == pytest.approx(1.0) and perfect["METEOR"] == pytest.approx(1.0, abs=1e-6)


@needs_java
def test_r2gen_truncation_changes_only_long_references(scorer):
    long_ref = " ".join(f"w{i}" for i in range(80)) + " ."
    a = scorer([long_ref, *REFS[1:]], HYPS)
    b = scorer([long_ref, *REFS[1:]], HYPS, truncate_references=59)
    c = scorer(REFS, HYPS, truncate_references=59)
    assert a != b and c == scorer(REFS, HYPS)
    with pytest.raises(ValueError, match="truncate_references"): scorer(REFS, HYPS, truncate_references=0)


@needs_java
def test_nlg_input_errors(scorer):
    with pytest.raises(ValueError, match="one hypothesis per reference"): scorer(REFS, HYPS[:2])
    with pytest.raises(TypeError, match="lists of strings"): scorer("a", "b")
    with pytest.raises(TypeError, match=r"hypotheses\[1\] is int"): scorer(REFS[:2], ["a", 3])
    with pytest.raises(ValueError, match="at least one"): nlg_scores([], [])


def test_ce_worked_example():
    ref = "The heart is enlarged. Small left pleural effusion. No pneumothorax."
    perfect = ce_scores([ref], ["Cardiomegaly. Small left pleural effusion."])
    assert all(perfect[f"ce_micro_f1_{c}"] == 1.0 for c in CE_CONVENTIONS)
    part = ce_scores([ref], ["Heart size is normal. Small left pleural effusion. Small right pneumothorax. Possible atelectasis."])
    assert [part[f"ce_micro_{m}_uncertain_negative"] for m in ("precision", "recall", "f1")] == pytest.approx([0.5, 0.5, 0.5])
    assert [part[f"ce_micro_{m}_uncertain_positive"] for m in ("precision", "recall", "f1")] == pytest.approx([1 / 3, 0.5, 0.4])
    empty = ce_scores([ref], [""])
    assert empty["ce_micro_f1_uncertain_negative"] == 0.0 and empty["ce_macro_f1_uncertain_positive"] == 0.0
    assert ce_table(part).shape == (6, 2)


def test_ce_micro_and_macro_against_direct_counts():
    rng = np.random.default_rng(0)
    vals = np.array([1.0, 0.0, -1.0, np.nan])
    ref = pd.DataFrame(rng.choice(vals, (50, 14)), columns=CHEXPERT_CLASSES)
    gen = pd.DataFrame(rng.choice(vals, (50, 14)), columns=CHEXPERT_CLASSES)
    for conv, u in CE_CONVENTIONS.items():
        y = (ref.values == 1) | ((ref.values == -1) & (u == 1)); g = (gen.values == 1) | ((gen.values == -1) & (u == 1))
        per = ce_per_class(ref, gen, u)
        tp = (y & g).sum(0)
        assert per.precision.tolist() == pytest.approx((tp / g.sum(0)).tolist())
        s = ce_scores(["x"] * 50, ["y"] * 50, labeler=lambda reps, _l=iter([ref, gen]): next(_l))
        assert s[f"ce_micro_precision_{conv}"] == pytest.approx(tp.sum() / g.sum())
        assert s[f"ce_micro_recall_{conv}"] == pytest.approx(tp.sum() / y.sum())
        assert s[f"ce_macro_f1_{conv}"] == pytest.approx(per.f1.mean())


def test_ce_errors():
    with pytest.raises(ValueError, match="one hypothesis per reference"): ce_scores(["a"], ["a", "b"])
    lab = chexpert_labels(["a"])
    with pytest.raises(ValueError, match="uncertain_as"): ce_per_class(lab, lab, 0.5)
    with pytest.raises(ValueError, match="14 CHEXPERT_CLASSES"): ce_per_class(lab.iloc[:, :3], lab)


@needs_java
def test_all_empty_references_and_text_encoding_errors(scorer):
    with pytest.raises(ValueError, match="all 2 references are empty"): scorer(["", " ||| "], ["a .", "b ."])
    assert scorer(REFS[:2], ["", ""])["BLEU_1"] < 1e-6                      # empty hypotheses: defined zeros
    with pytest.raises(ValueError, match=r"hypotheses\[1\] cannot be encoded as UTF-8"):
        scorer(REFS[:2], ["a .", "b \ud800 ."])
    with pytest.raises(ValueError, match="truncate_references must be an int"): scorer(REFS, HYPS, truncate_references=2.5)
    assert scorer(REFS, HYPS)["BLEU_1"] >= 0                                  # the process survived the bad calls


def test_metrics_bad_arguments_before_java():
    with pytest.raises(ValueError, match="all 1 references are empty"): nlg_scores([""], ["a"])
    with pytest.raises(ValueError, match="max_words must be an int >= 1"): NLGScorer(max_words=0)
    with pytest.raises(ValueError, match="references are empty"): ce_scores(["", ""], ["a", "b"])
    lab = chexpert_labels(["a"])
    with pytest.raises(ValueError, match="reference_labels: expected a DataFrame"): ce_per_class(None, lab)
    with pytest.raises(KeyError, match="expected the dict returned by ce_scores"): ce_table({"ce_micro_f1": 1.0})
    with pytest.raises(KeyError, match="expected the dict returned by ce_scores"): ce_table(None)
