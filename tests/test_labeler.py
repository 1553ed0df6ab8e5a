import math
import pytest
from rrg_tutorial.labeler import CHEXPERT_CLASSES, mesh_to_chexpert, mesh_labels


def test_classes_in_chexpert_order():
    assert len(CHEXPERT_CLASSES) == 14 and CHEXPERT_CLASSES[0] == "No Finding" and CHEXPERT_CLASSES[-1] == "Support Devices"


def test_mesh_rules_variant():
    from rrg_tutorial.labeler import MESH_RULES, MeshRule
    tag = ["Markings/lung/interstitial/prominent"]
    assert mesh_to_chexpert(tag)["Lung Opacity"] == 0.0                     # the shared reference is unchanged
    extra = MESH_RULES + [MeshRule("Lung Opacity", "Markings", any_of=("interstitial",))]
    assert mesh_to_chexpert(tag, extra)["Lung Opacity"] == 1.0
    assert mesh_labels([tag], extra)["Lung Opacity"].tolist() == [1.0]


def test_mesh_to_chexpert():
    assert mesh_to_chexpert(["normal"]) == {c: float(c == "No Finding") for c in CHEXPERT_CLASSES}
    m = mesh_to_chexpert(["Pleural Effusion/right/small", "Opacity/ribs/left", "Catheters, Indwelling/right"])
    assert [c for c, v in m.items() if v == 1.0] == ["Pleural Effusion", "Support Devices"]
    assert mesh_to_chexpert(["Cardiomegaly/borderline"])["No Finding"] == 0.0
    assert all(math.isnan(v) for v in mesh_to_chexpert(["No Indexing"]).values())
    with pytest.raises(TypeError, match="list of MeSH"): mesh_to_chexpert("normal")
    assert list(mesh_labels([["normal"], ["Pneumothorax/apex"]]).columns) == CHEXPERT_CLASSES


from rrg_tutorial.labeler import chexpert_labels, label_report, report_mentions, agreement_table
import numpy as np
import pandas as pd


@pytest.mark.parametrize("text,cls,want", [
    ("No pneumothorax.", "Pneumothorax", 0.0),
    ("There is a small right pneumothorax.", "Pneumothorax", 1.0),
    ("Lungs are clear without effusion.", "Pleural Effusion", 0.0),
    ("Lungs are free of focal airspace disease.", "Lung Opacity", 0.0),
    ("Lungs clear of consolidation.", "Consolidation", 0.0),
    ("Heart size is normal.", "Cardiomegaly", 0.0),
    ("Heart size within normal limits.", "Cardiomegaly", 0.0),
    ("Heart size is upper limits of normal.", "Cardiomegaly", 0.0),
    ("The heart is mildly enlarged.", "Cardiomegaly", 1.0),
    # uncertainty inside a multi-word mention
    ("The heart may be enlarged.", "Cardiomegaly", -1.0),
    ("The heart is possibly enlarged.", "Cardiomegaly", -1.0),
    ("The heart is likely enlarged.", "Cardiomegaly", -1.0),
    ("The mediastinum may be widened.", "Enlarged Cardiomediastinum", -1.0),
    ("Borderline heart size.", "Cardiomegaly", -1.0),
    ("Heart size is borderline enlarged.", "Cardiomegaly", -1.0),
    ("Borderline cardiomegaly.", "Cardiomegaly", -1.0),
    ("The heart is enlarged.", "Cardiomegaly", 1.0),
    # uncertainty scope: a finding before "may represent X" stays positive, X is uncertain
    ("Right basilar opacity may represent atelectasis.", "Lung Opacity", 1.0),
    ("Right basilar opacity may represent atelectasis.", "Atelectasis", -1.0),
    ("Minimal patchy airspace disease within the lingula, may reflect atelectasis or consolidation.",
     "Lung Opacity", 1.0),
    ("Minimal patchy airspace disease within the lingula, may reflect atelectasis or consolidation.",
     "Atelectasis", -1.0),
    ("Minimal patchy airspace disease within the lingula, may reflect atelectasis or consolidation.",
     "Consolidation", -1.0),
    ("A small effusion may be present.", "Pleural Effusion", -1.0),
    ("Bibasilar opacities could reflect atelectasis or pneumonia.", "Lung Opacity", 1.0),
    ("Bibasilar opacities could reflect atelectasis or pneumonia.", "Pneumonia", -1.0),
    ("Opacity in the right lower lobe, which may represent pneumonia.", "Lung Opacity", 1.0),
    ("Left basilar opacity likely represents atelectasis.", "Lung Opacity", 1.0),
    ("Right effusion or atelectasis.", "Pleural Effusion", -1.0),
    ("Effusion versus atelectasis.", "Pleural Effusion", -1.0),
    ("Cardiac silhouette is questionably enlarged.", "Cardiomegaly", -1.0),
    ("The heart size is probably mildly enlarged.", "Cardiomegaly", -1.0),
    ("Mediastinal contours are possibly widened.", "Enlarged Cardiomediastinum", -1.0),
    # negation scope ends at "and the" / "there" + verb
    ("The heart is not enlarged, and there may be a small effusion.", "Pleural Effusion", -1.0),
    ("Negative for pneumonia and the heart is enlarged.", "Cardiomegaly", 1.0),
    ("Negative for pneumonia and the heart is enlarged.", "Pneumonia", 0.0),
    ("Pneumonia is possible.", "Pneumonia", -1.0),
    # a newline ends a sentence; a hard-wrapped line starting in lower case does not
    ("No pneumothorax\nLarge right pleural effusion\nCardiomegaly", "Pleural Effusion", 1.0),
    ("No pneumothorax\nLarge right pleural effusion\nCardiomegaly", "Cardiomegaly", 1.0),
    ("No pneumothorax\nLarge right pleural effusion\nCardiomegaly", "Pneumothorax", 0.0),
    ("No focal consolidation or\npleural effusion.", "Pleural Effusion", 0.0),
    ("no pneumothorax\nlarge right pleural effusion", "Pleural Effusion", 1.0),
    # phrase gaps against CheXpert's lists
    ("Massive hiatal hernia.", "Lung Lesion", np.nan),
    ("There is a mass in the left upper lobe.", "Lung Lesion", 1.0),
    ("Masslike opacity in the right base.", "Lung Lesion", 1.0),
    ("Calcified nodule in the right upper lobe.", "Lung Lesion", np.nan),
    ("Calcified right hilar nodules.", "Lung Lesion", np.nan),
    ("Calcified granuloma in the left base.", "Lung Lesion", np.nan),
    ("A 1 cm noncalcified nodule.", "Lung Lesion", 1.0),
    ("Interstitial markings are increased.", "Lung Opacity", 1.0),
    ("Prominent interstitial markings.", "Lung Opacity", 1.0),
    ("Right internal jugular line terminates in the SVC.", "Support Devices", 1.0),
    ("Left subclavian line is stable.", "Support Devices", 1.0),
    ("Portacatheter tip in the SVC.", "Support Devices", 1.0),
    ("Right internal jugular central line has been removed.", "Support Devices", 0.0),
    ("Cannot exclude small effusion.", "Pleural Effusion", -1.0),
    ("Opacity may represent atelectasis.", "Atelectasis", -1.0),
    ("Possible pneumonia.", "Pneumonia", -1.0),
    ("No pneumothorax, but small left effusion.", "Pleural Effusion", 1.0),
    ("No interval change in the left effusion.", "Pleural Effusion", 1.0),
    ("Pericardial effusion.", "Pleural Effusion", np.nan),
    ("Healed left rib fractures.", "Fracture", 1.0),
    ("Right IJ catheter tip in the SVC.", "Support Devices", 1.0),
])
def test_label_report_cues(text, cls, want):
    got = label_report(text)[cls]
    assert (np.isnan(want) and np.isnan(got)) or got == want, (text, got)


@pytest.mark.parametrize("text", ["Mild dextroscoliosis.", "Levoscoliosis of the lumbar spine.",
                                  "Calcified granuloma.", "Calcified nodule in the right upper lobe."])
def test_other_abnormalities_block_no_finding(text):
    assert np.isnan(label_report("Heart size normal. Lungs clear. " + text)["No Finding"])


@pytest.mark.parametrize("text", ["", "   ", "...", " .\n, ;\t", "2.", "\n\n"])
def test_reports_without_words_get_no_label(text):
    assert all(np.isnan(v) for v in label_report(text).values())      # never No Finding = 1
    assert chexpert_labels([text]).isna().all().all()


def test_bad_input_clear_errors():
    from rrg_tutorial.labeler import split_sentences, mention_status, sentence_mentions, mesh_labels, heldout_mask
    for fn in (label_report, report_mentions, split_sentences, sentence_mentions):
        with pytest.raises(TypeError, match="expected a .*\\(a str\\), got NoneType"): fn(None)
    with pytest.raises(TypeError, match="got int"): label_report(5)
    with pytest.raises(TypeError, match="a sentence"): mention_status(None, 0, 1)
    from rrg_tutorial.labeler import clause_bounds, MeshRule
    with pytest.raises(TypeError, match="a sentence"): clause_bounds(None, 0, 1)
    with pytest.raises(TypeError, match="a MeSH term"): MeshRule("Edema", "Pulmonary Edema").matches(None)
    with pytest.raises(TypeError, match="list of report strings"): chexpert_labels(None)
    with pytest.raises(TypeError, match="item 1 is float"): chexpert_labels(["ok", float("nan")])
    with pytest.raises(TypeError, match="list of MeSH term strings"): mesh_to_chexpert(None)
    with pytest.raises(TypeError, match="per-report MeSH term lists"): mesh_labels(None)
    with pytest.raises(TypeError, match="MeSH term"): mesh_to_chexpert(["normal", None])
    with pytest.raises(TypeError, match="list of report ids"): heldout_mask("CXR1")
    with pytest.raises(ValueError, match="label DataFrame"): agreement_table(None, None)


def test_split_sentences_newlines():
    from rrg_tutorial.labeler import split_sentences
    assert split_sentences("No pneumothorax\nLarge effusion\r\nCardiomegaly") == \
        ["no pneumothorax", "large effusion", "cardiomegaly"]
    assert split_sentences("A left internal jugular central venous line\n ends in the low SVC.") == \
        ["a left internal jugular central venous line ends in the low svc."]          # hard-wrapped: long line
    assert split_sentences("No consolidation or\npleural effusion.") == \
        ["no consolidation or pleural effusion."]                                      # ends mid-phrase
    assert split_sentences("no pneumothorax\nlarge effusion") == ["no pneumothorax", "large effusion"]
    assert split_sentences("no effusion\n\nlungs clear") == ["no effusion", "lungs clear"]   # blank line


def test_heldout_mask_deterministic():
    from rrg_tutorial.labeler import heldout_mask
    ids = [f"CXR{i}" for i in range(1, 2001)]
    m = heldout_mask(ids)
    assert m.dtype == bool and 0.25 < m.mean() < 0.35
    assert (heldout_mask(ids[::-1])[::-1] == m).all()                   # order does not matter
    assert heldout_mask(["CXR1", "CXR2"]).tolist() == heldout_mask(["CXR1", "CXR2"]).tolist()


def _cpu_cost(fn, repeats=3):
    import time
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


@pytest.mark.parametrize("unit", [
    "the heart size is normal and there is no focal airspace disease or effusion in\n",   # hard-wrapped lines
    "no effusion and\n",                                                            # short lines ending mid-phrase
    "heart size normal no pneumothorax or effusion the heart may be enlarged opacity may represent atelectasis ",
    "heart ",                                     # many starts for the heart patterns' bounded gaps
    "no " * 30 + "effusion ",                     # long negation runs
])
def test_linear_time_on_long_texts_without_periods(unit):
    # a time-insensitive check: the cost of 120k characters relative to 60k (linear: 2, quadratic: 4)
    text = lambda n: (unit * (n // len(unit) + 1))[:n]
    t60, t120 = (_cpu_cost(lambda n=n: label_report(text(n))) for n in (60_000, 120_000))
    assert t120 < 3.0 * t60, (t60, t120)


def test_no_finding_derivation():
    assert label_report("No acute cardiopulmonary abnormality.")["No Finding"] == 1.0
    assert np.isnan(label_report("Mild cardiomegaly.")["No Finding"])
    assert np.isnan(label_report("Possible small effusion.")["No Finding"])       # uncertain blocks it too
    assert np.isnan(label_report("Scoliosis of the thoracic spine.")["No Finding"])  # another abnormality
    assert label_report("Lungs clear. Pacemaker in place.")["No Finding"] == 1.0   # devices do not count
    assert all(np.isnan(v) for v in label_report("").values())


def test_chexpert_labels_shape_and_errors():
    out = chexpert_labels(pd.Series(["No effusion.", "Cardiomegaly.", "", "é ünïcode ✓ opacity"]))
    assert list(out.columns) == CHEXPERT_CLASSES and len(out) == 4 and out.dtypes.eq(float).all()
    assert out.loc[3, "Lung Opacity"] == 1.0
    with pytest.raises(TypeError, match="single str"): chexpert_labels("No effusion.")
    with pytest.raises(TypeError, match="item 0"): chexpert_labels([1.0])


def test_report_mentions_explains():
    ms = report_mentions("No pneumothorax. Mild scoliosis.")
    assert ("Pneumothorax", "pneumothorax", 0.0) in ms and ("(other)", "scoliosis", 1.0) in ms


def test_agreement_table_counts():
    ref = pd.DataFrame(0.0, index=range(4), columns=CHEXPERT_CLASSES); ref["Edema"] = [1, 1, 0, np.nan]
    pred = pd.DataFrame(np.nan, index=range(4), columns=CHEXPERT_CLASSES); pred["Edema"] = [1, -1, 1, 1]
    t1 = agreement_table(pred, ref, 1.0).loc["Edema"]; t0 = agreement_table(pred, ref, 0.0).loc["Edema"]
    assert (t1.support, t1.predicted, t1.precision, t1.recall) == (2, 3, 2 / 3, 1.0)   # the NaN row is left out
    assert (t0.predicted, t0.precision, t0.recall) == (2, 0.5, 0.5)
    with pytest.raises(ValueError, match="uncertain_as"): agreement_table(pred, ref, 0.5)


def test_labels_all_iu_reports_fast_and_agree_with_mesh():
    import time
    from rrg_tutorial.reports import iu_reports
    from rrg_tutorial.labeler import mesh_labels
    df = iu_reports()
    t0 = time.perf_counter()
    lab = chexpert_labels((df.findings + " " + df.impression).tolist())
    assert time.perf_counter() - t0 < 60
    t = agreement_table(lab, mesh_labels(df.mesh_major), 1.0)
    assert (t.loc[["Cardiomegaly", "Pleural Effusion", "Pneumothorax"], "f1"] >= 0.85).all()


def test_uncertain_labels_only_where_hedged():
    # the labels keep CheXpert's format: 14 columns, values in {1, 0, -1, NaN}
    out = chexpert_labels(["Possible effusion.", "No effusion.", "Effusion.", "Heart normal."])
    assert set(np.unique(out.fillna(9).to_numpy())) <= {1.0, 0.0, -1.0, 9.0}
    assert out["Pleural Effusion"].tolist()[:3] == [-1.0, 0.0, 1.0]
