import json
import numpy as np
import pytest
from rrg_tutorial.tokenizer import clean_report_iu, clean_report_mimic, ReportTokenizer, UNK

TRAIN = ["The heart is normal. Lungs are clear.", "1. Heart normal. 2. No effusion.", "Lungs clear. Heart normal."] * 3


def test_clean_iu_ours_and_r2gen():
    r = "1. Heart is normal.. Lungs clear/expanded. 2. No effusion; (T11)."
    assert clean_report_iu(r) == "heart is normal . lungs clear expanded . no effusion t11 ."
    assert clean_report_iu(r, r2gen_compat=True) == "heart is normal . lungs clearexpanded . no effusion t11 ."
    assert clean_report_iu("Level of T11. Scoliosis.", r2gen_compat=True) == "level of t1scoliosis ."   # R2Gen's '1. ' quirk
    assert clean_report_iu("Level of T11. Scoliosis.") == "level of t11 . scoliosis ."
    assert clean_report_iu("") == "" and clean_report_iu("   ") == ""
    assert clean_report_iu("Normal. . Clear.") == "normal . clear ."
    with pytest.raises(TypeError, match="must be a str"): clean_report_iu(None)


def test_clean_mimic():
    r = "FINDINGS:\nNo ___ effusion.\n\nIMPRESSION: Normal."
    assert clean_report_mimic(r) == "findings no effusion . impression normal ."
    assert "___" not in clean_report_mimic(r, r2gen_compat=True)


def test_vocab_ids_and_defaults():
    tok = ReportTokenizer.from_reports(TRAIN)
    assert (tok.threshold, tok.max_seq_length) == (3, 60)
    assert tok.idx2token[1] == "." and UNK in tok.token2idx and min(tok.token2idx.values()) == 1
    assert sorted(tok.token2idx, key=tok.token2idx.get) == sorted(tok.token2idx)
    assert "effusion" in tok.token2idx                 # seen 3 times
    assert ReportTokenizer.from_reports(TRAIN, threshold=4).vocab_size < tok.vocab_size
    m = ReportTokenizer.from_reports(TRAIN, dataset="mimic_cxr")
    assert (m.threshold, m.max_seq_length) == (10, 100)
    with pytest.raises(ValueError, match="dataset must be one of"): ReportTokenizer.from_reports(TRAIN, dataset="x")
    with pytest.raises(TypeError, match="not one str"): ReportTokenizer.from_reports("one report")


def test_encode_decode_round_trip_and_unk():
    tok = ReportTokenizer.from_reports(TRAIN)
    ids = tok.encode("The heart is normal.")
    assert ids[0] == 0 and ids[-1] == 0 and 0 not in ids[1:-1]
    assert tok.decode(ids) == "the heart is normal ."
    assert tok.decode(tok.encode("Heart enormous.")) == f"heart {UNK} ."
    assert tok.decode([5, 0, 6]) == tok.idx2token[5]
    with pytest.raises(ValueError, match="not in the vocabulary"): tok.decode([999])


def test_truncation_like_r2gen():
    tok = ReportTokenizer.from_reports(TRAIN, max_seq_length=5)
    long = "Lungs clear. " * 10
    assert len(tok.encode(long)) == 5 and tok.encode(long)[-1] != 0            # eos lost, as in R2Gen
    assert len(tok.encode(long, truncate=False)) == 2 + 30
    ids, mask = tok.encode_batch(["Normal.", long])
    assert ids.shape == mask.shape == (2, 5) and mask[0].tolist() == [1, 1, 1, 1, 0] and ids[0, 4] == 0


def test_save_load(tmp_path):
    tok = ReportTokenizer.from_reports(TRAIN)
    p = tok.save(tmp_path / "t.json")
    tok2 = ReportTokenizer.load(p)
    assert tok2.token2idx == tok.token2idx and tok2.threshold == 3
    assert tok2.encode("Lungs clear.") == tok.encode("Lungs clear.")
    d = json.loads(p.read_text()); d["vocab"] = d["vocab"][::-1]; p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match="sorted order"): ReportTokenizer.load(p)
    p.write_text("[]")
    with pytest.raises(ValueError, match="not a file written by"): ReportTokenizer.load(p)


def test_iu_vocabulary_size_on_real_train_split():
    from rrg_tutorial.reports import iu_split
    sp = iu_split()
    tok = ReportTokenizer.from_reports(sp[sp.split == "train"].findings)
    assert 700 < tok.vocab_size < 950
    assert all(tok.decode(tok.encode(r, truncate=False)) == " ".join(w if w in tok.token2idx else UNK for w in tok.clean(r).split())
               for r in sp.findings[:500])


def test_a_string_is_not_a_list():
    tok = ReportTokenizer.from_reports(TRAIN, threshold=1)
    with pytest.raises(TypeError, match="vocab must be a list of words"): ReportTokenizer("heart")
    with pytest.raises(TypeError, match="reports must be a list"): tok.encode_batch("heart")
    with pytest.raises(TypeError, match="ids must be a list"): tok.decode("123")
    with pytest.raises(TypeError, match="batch must be a list"): tok.decode_batch("123")
    with pytest.raises(TypeError, match="reports must be a list"): ReportTokenizer.from_reports("heart normal")
    with pytest.raises(TypeError, match="reports must be a list"): ReportTokenizer.from_reports(None)
    with pytest.raises(ValueError, match="non-empty words"): ReportTokenizer(["heart", None])


@pytest.mark.parametrize("n", [0, 1, -5, 2.5, True])
def test_max_seq_length_is_never_silently_replaced(n):
    with pytest.raises(ValueError, match="max_seq_length must be an int >= 2"): ReportTokenizer(["a"], max_seq_length=n)
    assert ReportTokenizer(["a"], max_seq_length=None).max_seq_length == 60
    assert ReportTokenizer(["a"], max_seq_length=2).max_seq_length == 2


@pytest.mark.parametrize("damage", ["half", "not json", "empty object", "missing key", "bad vocab", "bytes"])
def test_damaged_vocabulary_file_names_the_file(tmp_path, damage):
    path = ReportTokenizer.from_reports(TRAIN, threshold=1).save(tmp_path / "vocab.json")
    good = path.read_text(encoding="utf-8")
    d = json.loads(good)
    if damage == "half": path.write_text(good[: len(good) // 2])
    elif damage == "not json": path.write_text("vocab: [heart]")
    elif damage == "empty object": path.write_text("{}")
    elif damage == "missing key": path.write_text(json.dumps({k: v for k, v in d.items() if k != "dataset"}))
    elif damage == "bad vocab": path.write_text(json.dumps({**d, "vocab": "heart"}))
    else: path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="vocab.json"): ReportTokenizer.load(path)
