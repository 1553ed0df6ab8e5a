import json
import pandas as pd
import pytest
from rrg_tutorial.reports import (iu_reports, iu_split, parse_iu_xml, read_r2gen_annotation, to_r2gen_annotation,
                                  r2gen_iu_id, words, sentences)

XML = b"""<?xml version="1.0"?><eCitation><uId id="CXR7"/><licenseURL>L</licenseURL>
<MedlineCitation><Article><Abstract>
<AbstractText Label="FINDINGS">Heart  is
 normal. No effusion.</AbstractText><AbstractText Label="IMPRESSION"/></Abstract></Article></MedlineCitation>
<MeSH><major>Cardiomegaly/mild</major><automatic>effusion</automatic></MeSH>
<parentImage id="CXR7_IM-0001-1001"/><parentImage id="CXR7_IM-0001-2001"/></eCitation>"""


@pytest.fixture(scope="module")
def df(): return iu_reports()


def test_parse_iu_xml_fields():
    r = parse_iu_xml(XML)
    assert r["study_id"] == "CXR7" and r["findings"] == "Heart is normal. No effusion." and r["impression"] == ""
    assert r["mesh_major"] == ["Cardiomegaly/mild"] and r["mesh_automatic"] == ["effusion"]
    assert r["image_ids"] == ["CXR7_IM-0001-1001", "CXR7_IM-0001-2001"] and r["r2gen_id"] == "CXR7_IM-0001"


def test_parse_iu_xml_rejects_bad_input():
    with pytest.raises(ValueError, match="XML report record"): parse_iu_xml(b"<oops")
    with pytest.raises(ValueError, match="uId"): parse_iu_xml(b"<eCitation/>")


def test_iu_reports_corpus(df):
    assert len(df) == 3955 and df.study_id.is_unique and df.study_id.iloc[0] == "CXR1"
    assert (df.findings != "").sum() == 3425 and (df.impression != "").sum() == 3921
    assert df.image_ids.map(len).sum() == 7470
    for col in ("findings", "impression"): assert df[col].map(type).eq(str).all()
    for col in ("mesh_major", "mesh_automatic", "image_ids"): assert df[col].map(type).eq(list).all()


def test_iu_reports_returns_independent_copies(df):
    df.loc[0, "findings"] = "changed"; df.image_ids.iloc[0].append("x")
    again = iu_reports()
    assert again.findings.iloc[0] != "changed" and "x" not in again.image_ids.iloc[0]


def test_iu_reports_missing_archive(tmp_path):
    with pytest.raises(FileNotFoundError, match="NLMCXR_reports.tgz"): iu_reports(tmp_path / "nope.tgz")


def test_iu_split_deterministic_and_proportional(df):
    sp = iu_split(df)
    c = sp.split.value_counts()
    assert len(sp) == 3425 and (sp.findings != "").all()
    assert (c["train"], c["val"], c["test"]) == (2398, 342, 685)
    assert iu_split(df.sample(frac=1, random_state=0)).split.tolist() == sp.split.tolist()
    assert iu_split().split.tolist() == sp.split.tolist()
    with pytest.raises(ValueError, match="three non-negative"): iu_split(df, ratios=(1, 1))
    with pytest.raises(ValueError, match="'findings' column"): iu_split(df.drop(columns="findings"))


def test_r2gen_annotation_round_trip(df, tmp_path):
    sp = iu_split(df)
    p = tmp_path / "annotation.json"; p.write_text(json.dumps(to_r2gen_annotation(sp)))
    back = read_r2gen_annotation(p)
    assert dict(zip(back.id, back.report)) == dict(zip(sp.study_id, sp.findings))
    assert back.image_path.iloc[0][0].endswith(".png")


def test_read_r2gen_annotation_errors(tmp_path):
    p = tmp_path / "a.json"
    p.write_text("{not json"); 
    with pytest.raises(ValueError, match="not JSON"): read_r2gen_annotation(p)
    p.write_text(json.dumps({"train": [{"id": "x", "report": "r"}]}))
    with pytest.raises(ValueError, match="image_path"): read_r2gen_annotation(p)
    with pytest.raises(FileNotFoundError): read_r2gen_annotation(tmp_path / "missing.json")


def test_text_helpers():
    assert r2gen_iu_id([]) == "" and r2gen_iu_id(["CXR1_1_IM-0001-3001"]) == "CXR1_1_IM-0001"
    assert words("Heart: XXXX, 5th rib.") == ["heart", "xxxx", "5th", "rib"]
    assert sentences("A b. C d? E") == ["a b.", "c d?", "e"]


def test_plots_work_from_the_library(df):
    import matplotlib; matplotlib.use("Agg")
    from rrg_tutorial.reports import plot_report_lengths, plot_vocabulary_growth
    assert plot_report_lengths(df.iloc[:200]).get_xlabel() == "words per report"
    assert plot_vocabulary_growth(df.findings.iloc[:200].tolist()).get_ylabel() == "distinct words"


def test_r2gen_iu_id_of_one_image_id():
    assert r2gen_iu_id("CXR1_1_IM-0001-3001") == "CXR1_1_IM-0001"          # was 'C': the string read as a list
    with pytest.raises(TypeError, match=r"image_ids\[0\] must be a str"): r2gen_iu_id([None])


def test_text_helpers_refuse_none():
    from rrg_tutorial.reports import mesh_heading
    for f in (words, sentences, mesh_heading):
        with pytest.raises(TypeError, match="must be a str, got NoneType"): f(None)
    with pytest.raises(TypeError, match="bytes or str"): parse_iu_xml(None)


@pytest.mark.parametrize("bad", [None, 5, ["Heart normal."], {"text": "x"}])
def test_a_report_that_is_not_a_string(tmp_path, bad):
    p = tmp_path / "annotation.json"
    items = [{"id": "a", "report": "Heart normal.", "image_path": ["a.png"]},
             {"id": "b", "report": bad, "image_path": ["b.png"]}]
    p.write_text(json.dumps({"train": [], "val": items, "test": []}))
    with pytest.raises(ValueError, match=r"annotation.json: item 1 of 'val' \(id 'b'\) has a report of type"):
        read_r2gen_annotation(p)
    with pytest.warns(UserWarning, match="skipped 1 malformed"):
        df = read_r2gen_annotation(p, skip_bad=True)
    assert df.id.tolist() == ["a"] and df.report.tolist() == ["Heart normal."] and len(df.attrs["skipped"]) == 1


def test_annotation_split_keys_and_image_paths(tmp_path):
    p = tmp_path / "annotation.json"
    p.write_text(json.dumps({"train": [], "validation": [], "test": []}))
    with pytest.raises(ValueError, match="unknown split key.*'validation'.*called 'val'"): read_r2gen_annotation(p)
    p.write_text(json.dumps({"train": [{"id": "a", "report": "r", "image_path": [None]}]}))
    with pytest.raises(ValueError, match="item 0 of 'train'.*list of str"): read_r2gen_annotation(p)
    p.write_text(json.dumps({"train": ["not an item"]}))
    with pytest.raises(ValueError, match="item 0 of 'train' is a str"): read_r2gen_annotation(p)
    p.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match="annotation.json is not JSON"): read_r2gen_annotation(p)


def test_nan_findings_are_absent_not_the_text_nan(df):
    sp = iu_split(df).head(4)
    csv = sp.assign(findings=[sp.findings.iloc[0], float("nan"), None, "  "])
    assert iu_split(csv).study_id.tolist() == [sp.study_id.iloc[0]]
    ann = to_r2gen_annotation(csv)
    reports = [it["report"] for v in ann.values() for it in v]
    assert reports == [sp.findings.iloc[0]] and "nan" not in json.dumps(ann)
    with pytest.raises(TypeError, match="findings must be str.*row 1 holds int"):
        iu_split(csv.assign(findings=[sp.findings.iloc[0], 5, None, ""]))


def test_iu_archive_path_uses_the_package_data_helper(monkeypatch):
    import rrg_tutorial.reports as R
    assert R.iu_archive_path().name == R.IU_ARCHIVE_NAME
    monkeypatch.setattr(R, "IU_ARCHIVE_NAME", "nope.tgz")
    with pytest.raises(FileNotFoundError, match=r"data/nope.tgz is not in the installed package 'torchxrayvision'"):
        R.iu_archive_path()