"""experiments/offline_tables.py: per-study statistics survive the round trip to disk, a row's seed mean and its
paired difference to RRG-Mamba are what they claim (the same resamples for every run), work folders follow the
settings, the command line explains itself."""
import importlib.util, json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from rrg_tutorial.evaluate import corpus_scores, study_stats
from rrg_tutorial.metrics import NLGScorer

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "offline_tables.py"
spec = importlib.util.spec_from_file_location("offline_tables", SCRIPT)
ot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ot)

REFS = ["the heart is normal . the lungs are clear .", "small left pleural effusion . no pneumothorax .",
        "the heart is enlarged . small left pleural effusion .", "the lungs are clear . no effusion ."] * 5
GOOD = list(REFS)
BAD = ["the heart is normal . the lungs are clear ."] * len(REFS)
MID = [r if i % 2 else BAD[0] for i, r in enumerate(REFS)]


@pytest.fixture(scope="module")
def stats():
    with NLGScorer() as scorer:                                  # one METEOR process for the three systems
        return {name: study_stats(REFS, hyps, scorer, truncate_words=5) for name, hyps in
                (("good", GOOD), ("bad", BAD), ("mid", MID))}


def test_stats_round_trip(tmp_path, stats):
    ot.save_stats(tmp_path / "s.npz", stats["mid"])
    back = ot.load_stats(tmp_path / "s.npz")
    a, b = corpus_scores(stats["mid"], meteor=False), corpus_scores(back, meteor=False)
    assert set(a) == set(b) and all(np.allclose(a[k], b[k]) for k in a)
    assert not list(tmp_path.glob(".*tmp*"))                     # no temporary left behind


def _fake_work(tmp_path, stats, rows):
    "A work folder as run_one and baselines leave it: stats.npz + the scores each result.json holds."
    results = {}
    for row, names in rows.items():
        results[row] = []
        for seed, name in enumerate(names):
            d = tmp_path / ot.slug(row) / f"seed{seed}"
            ot.save_stats(d / "stats.npz", stats[name])
            sc = {k: float(v[0]) for k, v in corpus_scores(stats[name], meteor=False).items()}
            sc["METEOR"] = 0.0
            results[row].append(dict(seed=seed, scores=sc, diversity={"distinct_reports": len(set(GOOD))},
                                     best_epoch=1, fit_seconds=60.0))
    ot.save_stats(tmp_path / "baselines" / "bad.npz", stats["bad"])
    sc = {k: float(v[0]) for k, v in corpus_scores(stats["bad"], meteor=False).items()}
    base = dict(refs=REFS, systems={"most common report": dict(scores=sc, stats="baselines/bad.npz",
                                                                  diversity={"distinct_reports": 1})})
    return results, base


def test_aggregate_means_and_paired_differences(tmp_path, stats):
    results, base = _fake_work(tmp_path, stats, {"RRG-Mamba": ["good", "mid"], "w/o CMA": ["mid", "mid"],
                                                  "Transformer": ["good", "mid"]})
    t = ot.aggregate("ci", tmp_path, results, base, n_boot=200)
    r = t["rows"]["RRG-Mamba"]
    k = "BLEU_4"
    per_seed = [float(corpus_scores(stats[n], meteor=False)[k][0]) for n in ("good", "mid")]
    assert r["mean"][k] == pytest.approx(np.mean(per_seed))
    assert r["sd"][k] == pytest.approx(np.std(per_seed, ddof=1))
    assert r["ci"][k][0] <= r["mean"][k] <= r["ci"][k][1]
    # the same runs: the difference is exactly zero in every resample
    same = t["rows"]["Transformer"]["diff_from_rrg_mamba"][k]
    assert same["value"] == pytest.approx(0) and same["ci"] == pytest.approx([0, 0])
    # a better row: positive difference with an interval above zero
    better = t["rows"]["w/o CMA"]["diff_from_rrg_mamba"]
    assert better[k]["value"] > 0 and better[k]["ci"][0] > 0
    b = t["baselines"]["most common report"]["rrg_mamba_minus_baseline"]["ce_micro_f1_uncertain_positive"]
    assert b["value"] > 0 and b["ci"][0] > 0
    assert "diff_from_rrg_mamba" not in r


def test_work_folder_follows_settings(tmp_path, monkeypatch):
    a = ot.work_folder("ci", tmp_path)
    monkeypatch.setitem(ot.PROFILES["ci"]["train"], "epochs", 7)
    assert ot.work_folder("ci", tmp_path) != a
    assert ot.work_folder("ci", tmp_path).parent == tmp_path


def test_rows_build_their_configs():
    for row, over in ot.ROWS.items():
        cfg = ot.train_config(ot.PROFILES["ci"], row, 3)
        assert cfg.seed == 3 and all(cfg.model_set[k] == v for k, v in over.items())
    assert set(ot.PAPER) <= set(ot.ROWS)                          # every paper row has a model row
    assert "GDLM-T" not in ot.PROFILES["cpu"]["rows"]              # on the CPU, RRG-Mamba is GDLM-T already
    from rrg_tutorial.model import preset
    for row in ot.SWEEP_K:                                         # Fig. 4: only the adapter's k changes
        cfg = ot.train_config(ot.PROFILES["cpu"], row, 0)
        base = ot.train_config(ot.PROFILES["cpu"], "RRG-Mamba", 0)
        assert row in ot.PROFILES["cpu"]["rows"] and preset(cfg.model, **cfg.model_set).k == float(row[2:])
        assert {k: v for k, v in vars(cfg).items() if k != "model_set"} == \
            {k: v for k, v in vars(base).items() if k != "model_set"}


def test_help():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and "--profile" in out.stdout and "Resumable" in out.stdout


def test_retrieval_features_same_from_cache_and_encoder():
    "The retrieval baseline's pooled features: a feature dataset's grids = the encoder's features of its images."
    from types import SimpleNamespace
    from rrg_tutorial.model import preset
    from rrg_tutorial.tokenizer import ReportTokenizer
    from rrg_tutorial.train import split_dataset
    mcfg = preset("ci")
    tok = ReportTokenizer.from_reports(["the heart is normal .", "no effusion ."], max_seq_length=mcfg.max_seq_length)
    ds = split_dataset("test", tok, mcfg, 6)
    a = ot.pooled_features(ds, mcfg)
    images_only = SimpleNamespace(annotation=ds.annotation, image_dir=ds.image_dir, split="test",
                                  items=ds.items.iloc[::-1])                  # another order: rows follow the items
    b = ot.pooled_features(images_only, mcfg)
    assert a.shape == (6, mcfg.in_channels)
    assert np.allclose(a.numpy()[::-1], b.numpy(), atol=1e-6)
    assert np.allclose(np.linalg.norm(a.numpy(), axis=1), 1, atol=1e-5)


def _finished(work, row, seed, body=b'{"seed": 0, "hyps": ["a ."]}', stats=b"npz"):
    d = work / ot.slug(row) / f"seed{seed}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "stats.npz").write_bytes(stats)
    (d / "result.json").write_bytes(body)
    return d


def test_run_records_travel_to_a_fresh_work_folder(tmp_path):
    records, work = tmp_path / "records", tmp_path / "a" / "w"
    name = "offline_tables-cpu-0123456789"                           # named by the settings, not by --work
    _finished(work, "RRG-Mamba", 0)
    (work / "w_o_cma" / "seed1").mkdir(parents=True)                # a run that did not finish: no record
    rec = ot.keep_record(work, "RRG-Mamba", 0, records, name)
    assert rec == records / name / "rrg_mamba" / "seed0" and (rec / "result.json.gz").exists()
    assert ot.keep_record(work, "w/o CMA", 1, records, name) is None and ot.keep_record(work, "RRG-Mamba", 0, None) is None
    ino = (rec / "result.json.gz").stat().st_ino
    assert ot.keep_record(work, "RRG-Mamba", 0, records, name) is None        # unchanged: not rewritten
    assert (rec / "result.json.gz").stat().st_ino == ino
    assert ot.keep_record(work, "RRG-Mamba", 0, records, name, accept=lambda r: "refused") is None
    fresh = tmp_path / "b" / "elsewhere"                             # another machine: same settings, empty folder
    assert ot.restore_records(fresh, records, name) == ["rrg_mamba/seed0"]
    d = fresh / "rrg_mamba" / "seed0"
    assert (d / "result.json").read_bytes() == (work / "rrg_mamba" / "seed0" / "result.json").read_bytes()
    assert (d / "stats.npz").read_bytes() == b"npz"
    assert ot.restore_records(fresh, records, name) == []            # already there: nothing to do
    assert ot.restore_records(tmp_path / "c", records, "offline_tables-cpu-other") == []   # other settings
    busy = tmp_path / "e" / "rrg_mamba" / "seed0"                   # a run of its own (checkpoints): left alone
    busy.mkdir(parents=True)
    (busy / "last.pt").write_bytes(b"ck")
    assert ot.restore_records(tmp_path / "e", records, name) == [] and not (busy / "result.json").exists()
    assert ot.restore_records(tmp_path / "f", records, name, accept=lambda r: "other encoder") == []
    assert ot.restore_records(tmp_path / "g", records, name, need=("other.npz",)) == []
    (rec / "result.json.gz").write_bytes(b"not gzip")
    with pytest.raises(SystemExit, match="not a readable run record"):
        ot.restore_records(tmp_path / "d", records, name)
    import gzip
    bad = bytearray(gzip.compress(b'{"seed": 0, "hyps": ["a longer report ."]}' * 20))
    bad[20:30] = b"\xff" * 10                                        # a damaged deflate stream
    (rec / "result.json.gz").write_bytes(bytes(bad))
    with pytest.raises(SystemExit, match="not a readable run record"):
        ot.restore_records(tmp_path / "h", records, name)


def _doc(rrg_values, rows=("RRG-Mamba", "w/o CMA"), date="2026-11-30"):
    "A results document as main() writes it, with the parts carry_over reads."
    vals = lambda v: {k: list(v) for k in ot.METRICS}
    return dict(environment=dict(date=date, git_commit="abc"),
                table=dict(rows={r: dict(seeds=[0, 1], values=vals(rrg_values if r == "RRG-Mamba" else (0.1, 0.2)),
                                         diff_from_rrg_mamba={"BLEU_4": dict(value=0.01, ci=[0.0, 0.02])})
                                 for r in rows}, n_boot=10),
                runs={r: [dict(seed=0), dict(seed=1)] for r in rows}, examples={r: ["x ."] for r in rows},
                rows_run=list(rows))


def test_rows_without_runs_are_carried_only_against_the_same_reference_runs():
    previous = _doc((0.3, 0.4))
    doc = _doc((0.3, 0.4), rows=("RRG-Mamba",), date="2026-12-02")
    assert ot.carry_over(previous, doc, ["RRG-Mamba", "w/o CMA", "GDLM-S"]) == {"GDLM-S": "not in the earlier file either"}
    row = doc["table"]["rows"]["w/o CMA"]
    assert row["carried_from"] == dict(date="2026-11-30", git_commit="abc") and row["diff_from_rrg_mamba"]
    assert doc["rows_run"] == ["RRG-Mamba", "w/o CMA"] and doc["carried"] == ["w/o CMA"]
    assert doc["runs"]["w/o CMA"] == previous["runs"]["w/o CMA"]
    # RRG-Mamba re-run with another outcome: the old differences do not hold, nothing is carried
    doc = _doc((0.3, 0.41), rows=("RRG-Mamba",))
    why = ot.carry_over(previous, doc, ["RRG-Mamba", "w/o CMA"])
    assert "not the same runs" in why["w/o CMA"] and "w/o CMA" not in doc["table"]["rows"]
    assert doc["rows_run"] == ["RRG-Mamba"]
    assert "no earlier" in ot.carry_over(None, _doc((0.3,), rows=("RRG-Mamba",)), ["w/o CMA"])["w/o CMA"]


def test_previous_results_needs_the_same_settings(tmp_path):
    prof = ot.PROFILES["ci"]
    doc = dict(settings=prof, table=dict(n_boot=prof["n_boot"]))
    ot.atomic_json(tmp_path / "r.json", doc)
    assert ot.previous_results(tmp_path / "r.json", prof, prof["n_boot"]) is not None
    assert ot.previous_results(tmp_path / "r.json", prof, prof["n_boot"] + 1) is None
    other = {**prof, "train": {**prof["train"], "epochs": 9}}
    assert ot.previous_results(tmp_path / "r.json", other, prof["n_boot"]) is None
    assert ot.previous_results(tmp_path / "missing.json", prof, 10) is None


def test_adapter_findings_score_the_classifier_against_reference_and_own_reports(stats):
    "The adapter's 14 logits of each study, thresholded, scored against the reference labels and the model's reports."
    import torch
    from rrg_tutorial.model import build_model, preset
    from rrg_tutorial.tables import micro_f1
    c = preset("ci", vocab_size=30, grid=3)
    torch.manual_seed(0)
    m = build_model(c)
    n = len(REFS)
    feats = torch.randn(n, c.n_views, c.in_channels, c.grid, c.grid).relu()
    dl = [dict(feats=feats[i:i + 6]) for i in range(0, n, 6)]                     # batches in study order
    st = stats["mid"]
    got = ot.adapter_findings(m, dl, st)
    with torch.no_grad():
        pred = torch.sigmoid(m.encoder_input(feats)[1]["logits"]).numpy() > c.cls_threshold   # (n, 14) at once
    back = np.array([[(v >> i) & 1 for i in range(14)] for v in got["predicted"]], bool)
    assert (back == pred).all() and len(got["predicted"]) == n
    y, g = st["y_uncertain_negative"], st["g_uncertain_negative"]
    assert got["micro_f1_vs_reference"] == micro_f1(y, pred) and got["micro_f1_vs_own_reports"] == micro_f1(g, pred)
    assert got["reports_micro_f1_vs_reference"] == micro_f1(y, g) < 1
    with pytest.raises(ValueError, match="other studies"):
        ot.adapter_findings(m, dl[:1], st)
