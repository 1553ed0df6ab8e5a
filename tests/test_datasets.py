"""CheXpert Plus and MIMIC-CXR loaders (lesson 13b) on fixtures in the real layouts."""
import json
import pandas as pd
import pytest

from rrg_tutorial.data import R2GenDataset
from rrg_tutorial.datasets import (chexpert_plus_fixture, mimic_cxr_fixture, read_chexpert_plus, split_7_1_2,
                                   write_r2gen_annotation)


class Tok:
    pad_id = 0
    def encode(self, t): return [0] + [len(w) for w in t.split()] + [0]


def test_chexpert_plus_studies_split_and_annotation(tmp_path):
    fx = chexpert_plus_fixture(tmp_path, n_patients=12, seed=1)
    raw = pd.read_csv(fx / "df_chexpert_plus_240401.csv")
    st = split_7_1_2(read_chexpert_plus(fx / "df_chexpert_plus_240401.csv"), seed=0)
    study = raw.path_to_image.str.extract(r"(patient\d+/study\d+)", expand=False)
    has_text = raw.groupby(study).section_findings.first().notna()
    assert sorted(st.study_id) == sorted(has_text[has_text].index)
    assert st.groupby("patient_id").split.nunique().max() == 1
    assert all(p[0].endswith("_frontal.png") for p in st.image_path)
    assert set(st.split) <= {"train", "val", "test"}
    ann = json.loads(write_r2gen_annotation(st, fx / "annotation.json").read_text())
    assert sum(len(v) for v in ann.values()) == len(st)
    ds = R2GenDataset(fx / "annotation.json", fx / "PNG", "train", Tok(), layout="mimic_cxr")
    assert len(ds) == len(ann["train"]) and ds[0]["image"].shape == (3, 224, 224)


def test_split_is_7_1_2_by_key_and_seeded():
    df = pd.DataFrame({"patient_id": [f"p{i // 2}" for i in range(2000)]})
    a, b = split_7_1_2(df, seed=0), split_7_1_2(df, seed=1)
    per_patient = a.drop_duplicates("patient_id").split.value_counts()
    assert per_patient.to_dict() == {"train": 700, "test": 200, "val": 100}
    assert a.groupby("patient_id").split.nunique().max() == 1
    assert (a.split != b.split).any() and a.split.equals(split_7_1_2(df, seed=0).split)


def test_mimic_cxr_r2gen_annotation_loads(tmp_path):
    mx = mimic_cxr_fixture(tmp_path, n=6)
    ds = R2GenDataset(mx / "annotation.json", mx / "files", "val", Tok(), layout="mimic_cxr")
    assert len(ds) == 2 and ds[0]["image"].shape == (3, 224, 224)


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="CheXpert Plus's CSV"): read_chexpert_plus(tmp_path / "none.csv")
    pd.DataFrame({"path_to_image": ["train/patient1/study1/view1_frontal.jpg"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="missing"): read_chexpert_plus(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="no column"): split_7_1_2(pd.DataFrame({"x": [1]}))
