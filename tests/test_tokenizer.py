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
