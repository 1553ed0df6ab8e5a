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
