import math
import pytest
from rrg_tutorial.labeler import CHEXPERT_CLASSES, mesh_to_chexpert, mesh_labels


def test_classes_in_chexpert_order():
    assert len(CHEXPERT_CLASSES) == 14 and CHEXPERT_CLASSES[0] == "No Finding" and CHEXPERT_CLASSES[-1] == "Support Devices"


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
    t0 = time.perf_counter(); lab = chexpert_labels((df.findings + " " + df.impression).tolist())
    assert time.perf_counter() - t0 < 60
    t = agreement_table(lab, mesh_labels(df.mesh_major), 1.0)
    assert (t.loc[["Cardiomegaly", "Pleural Effusion", "Pneumothorax"], "f1"] >= 0.85).all()
