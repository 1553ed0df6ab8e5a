"""experiments/mambaxray_tables.py: a run killed after any step and resumed ends bitwise where an uninterrupted run
ends; the training batches are seeded permutations; the test studies are fixed by hash, not by file order; work
folders follow the settings; the command line explains itself."""
import importlib.util, math, subprocess, sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "mambaxray_tables.py"
sys.path.insert(0, str(ROOT / "experiments"))
spec = importlib.util.spec_from_file_location("mambaxray_tables", SCRIPT)
mx = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mx)

REPORTS = ["the heart is normal . the lungs are clear .", "small left pleural effusion . no pneumothorax .",
           "the heart is enlarged . small left pleural effusion .", "the lungs are clear . no effusion .",
           "no acute disease .", "mild cardiomegaly . no focal consolidation ."]


def _data(n_train=10, n_val=4, c=16):
    g = torch.Generator().manual_seed(0)
    part = lambda n, off: dict(ids=[f"s{off + i}" for i in range(n)], reports=[REPORTS[(off + i) % 6] for i in range(n)],
                               feats=torch.randn(n, 2, c, 7, 7, generator=g))
    return dict(train=part(n_train, 0), val=part(n_val, 100))


def test_batches_are_seeded_permutations():
    d = _data()["train"]
    per = len(d["ids"]) // 4
    epoch0 = [i for s in range(per) for i in mx.batch_at(d["feats"], d["ids"], d["reports"], s, 4, 7)["id"]]
    assert len(set(epoch0)) == len(epoch0) == per * 4                         # no study twice in an epoch
    again = mx.batch_at(d["feats"], d["ids"], d["reports"], 1, 4, 7)
    assert again["id"] == epoch0[4:8] and torch.equal(again["feats"], d["feats"][[d["ids"].index(i) for i in again["id"]]])
    other = [i for s in range(per) for i in mx.batch_at(d["feats"], d["ids"], d["reports"], s, 4, 8)["id"]]
    nxt = [i for s in range(per, 2 * per) for i in mx.batch_at(d["feats"], d["ids"], d["reports"], s, 4, 7)["id"]]
    assert other != epoch0 and nxt != epoch0                                  # seeds and epochs reshuffle


def test_resume_is_exact(tmp_path):
    data = _data()
    full = mx.train_run("ci", "SFT + CTL-FT", 3, tmp_path / "full", data)
    steps = mx.PROFILES["ci"]["steps"]
    assert full["state"]["step"] == steps and full["state"]["best"] is not None
    part = mx.train_run("ci", "SFT + CTL-FT", 3, tmp_path / "cut", data, stop_after=steps // 2 + 1)   # "killed"
    assert part["state"]["step"] == steps // 2 + 1
    rest = mx.train_run("ci", "SFT + CTL-FT", 3, tmp_path / "cut", data)                          # resumed
    a, b = mx.heads(full["model"]), mx.heads(rest["model"])
    assert set(a) == {k for k in a if k.startswith(("mapper.", "text_proj."))} and a
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda s: {k: v for k, v in s.items() if k != "seconds"}
    assert strip(full["state"]) == strip(rest["state"])                     # losses, validation, best step
    best_a = torch.load(tmp_path / "full" / "best.pt", weights_only=False)
    best_b = torch.load(tmp_path / "cut" / "best.pt", weights_only=False)
    assert best_a["step"] == best_b["step"] and all(torch.equal(best_a["heads"][k], best_b["heads"][k]) for k in a)
    # the contrastive weight is the only difference between the two rows, and it changes the training
    sft = mx.train_run("ci", "SFT", 3, tmp_path / "sft", data)
    assert sft["model"].cfg.ctl_weight == 0.0 and full["model"].cfg.ctl_weight == 0.4
    assert not all(torch.equal(a[k], mx.heads(sft["model"])[k]) for k in a if k.startswith("mapper."))


def test_test_studies_follow_the_hash_not_the_file_order():
    ids = [f"CXR{i}_IM-{i}" for i in range(50)]
    assert mx.by_hash(ids) == mx.by_hash(list(reversed(ids))) and sorted(mx.by_hash(ids)) == sorted(ids)


def test_work_folder_follows_the_settings(tmp_path, monkeypatch):
    a = mx.work_folder("ci", tmp_path)
    monkeypatch.setitem(mx.PROFILES["ci"], "steps", 7)
    assert mx.work_folder("ci", tmp_path) != a
    monkeypatch.setitem(mx.PROFILES["ci"], "steps", 6)
    monkeypatch.setitem(mx.PROFILES["ci"], "jobs", 3)                     # how runs are scheduled: same folder
    assert mx.work_folder("ci", tmp_path) == a


def test_help():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "--profile" in out.stdout and "--collect" in out.stdout


def _tiny_set(tmp_path, n=6, px=40):
    "A dataset in R2Gen's layout (annotation paths, PNG views) of n studies, with its setup dict."
    import numpy as np
    import pandas as pd
    from PIL import Image
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        (tmp_path / "images" / f"s{i}").mkdir(parents=True)
        for v in (0, 1):
            Image.fromarray(rng.integers(0, 255, (px, px), dtype=np.uint8)).save(tmp_path / "images" / f"s{i}" / f"{v}.png")
        rows.append(dict(id=f"s{i}", report=REPORTS[i % 6], image_path=[f"s{i}/0.png", f"s{i}/1.png"],
                         split="train" if i < 4 else "val" if i == 4 else "test"))
    ann = pd.DataFrame(rows)
    subsets = {k: list(ann.id[ann.split == k]) for k in ("train", "val", "test")}
    return dict(root=tmp_path, ann=ann), subsets


def test_vim_encoders_and_their_tokens(tmp_path, monkeypatch):
    "The three Vim states of Table II's rows: built once, same architecture, different tokens, reloaded exactly."
    setup, subsets = _tiny_set(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    (work / "subsets.json").write_text(__import__("json").dumps(subsets))
    V = mx.VISION["ci"]
    L = (V["ft_img"] // V["patch"]) ** 2
    for enc in ("vim", "vim-arm", "vim-arm-ctl"):
        mx.prepare_tokens("ci", work, enc, subsets, setup)
    folder = mx.vision_folder("ci", work)
    assert (folder / "arm_backbone.pt").exists()
    tok = {e: mx.vision_tokens("ci", work, e, "train") for e in ("vim", "vim-arm", "vim-arm-ctl")}
    assert all(t.shape == (4, L, V["d_enc"]) for t in tok.values())
    assert mx.vision_tokens("ci", work, "vim-arm", "test").shape == (1, L, V["d_enc"])
    assert not torch.equal(tok["vim"], tok["vim-arm"]) and not torch.equal(tok["vim-arm"], tok["vim-arm-ctl"])
    # the cached tokens are the saved encoder's features of the two views, scaled to [-1, 1], averaged
    enc = mx.build_encoder("ci", work, "vim-arm-ctl", subsets, setup)
    X = torch.from_numpy(mx.study_images(setup, subsets["train"], V["ft_img"], folder)).float() / 127.5 - 1
    with torch.no_grad():
        mine = (enc.forward_features(X[:, 0:1]) + enc.forward_features(X[:, 1:2])) / 2
    assert torch.allclose(mine, tok["vim-arm-ctl"], atol=1e-5)
    # the results file records how the stages trained, with the chance levels to read them against
    h = mx.encoder_histories("ci", work)
    assert set(h) == {"ARM", "CTL"} and len(h["ARM"]["loss"]) == len(h["ARM"]["step"]) > 0
    assert len(h["CTL"]["val_recall"]) == len(h["CTL"]["step"]) and h["CTL"]["n_val"] == 1
    assert h["CTL"]["val_recall_chance"] == 1.0 and abs(h["CTL"]["loss_chance"] - math.log(V["ctl_batch"])) < 1e-12
    assert mx.encoder_histories("ci", tmp_path / "elsewhere") == {}
    # stage 2 starts from the ARM weights: with a zero learning rate it leaves them, and the tokens, as they were
    monkeypatch.setitem(mx.VISION["ci"], "ctl_lr", 0.0)
    for enc in ("vim-arm", "vim-arm-ctl"): mx.prepare_tokens("ci", work, enc, subsets, setup)
    assert mx.vision_folder("ci", work) != folder                         # other settings: another folder
    assert torch.equal(mx.vision_tokens("ci", work, "vim-arm-ctl", "train"), mx.vision_tokens("ci", work, "vim-arm", "train"))
    # tokens of other studies are refused, and so is a run made from other encoder settings
    path = mx.vision_folder("ci", work) / "tokens_vim-arm_val.pt"
    torch.save(dict(ids=["another study"], tokens=torch.zeros(1, L, V["d_enc"])), path)
    with pytest.raises(SystemExit, match="other studies"):
        mx.vision_tokens("ci", work, "vim-arm", "val")
    with pytest.raises(SystemExit, match="other encoder"):
        mx.check_tag({"encoder": "vim-arm", "vision": {**V, "d_enc": 99}}, "ci", "Vim ARM: SFT + CTL-FT", tmp_path)
    mx.check_tag({}, "ci", "SFT", tmp_path)                                 # a run from before the Vim rows: Lite0
    # a broken image is named
    (tmp_path / "images" / "s5" / "0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="0.png"):
        mx.study_images(setup, ["s5"], 24, tmp_path / "other")


def test_llm_rows_are_carried_with_their_pairs_only_against_the_same_offline_systems():
    from offline_tables import METRICS
    vals = lambda v: {k: [v] for k in METRICS}
    sys_ = lambda v: dict(seeds=[0], values=vals(v))
    def doc(llm, rrg=0.3, date="2026-11-30"):
        names = [f"MambaXray-CTL ({r})" for r in llm]
        systems = {"RRG-Mamba": sys_(rrg), "most common report": sys_(0.1), **{n: sys_(0.2) for n in names}}
        pairs = {f"{a} - {b}": dict(value=0.0) for a in systems for b in systems if a != b}
        return dict(profile="ci", environment=dict(date=date, git_commit="abc"), runs={r: [dict(seed=0)] for r in llm},
                    rows_run=list(llm), table=dict(test_ids=["s1", "s2"], systems=systems, pairs=pairs,
                                                   examples={n: ["x ."] for n in systems}))
    previous = doc(["SFT", "SFT + CTL-FT"])
    now = doc(["Vim: SFT + CTL-FT"])
    now["table"]["pairs"] = {}
    assert mx.carry_over(previous, now, ["SFT", "SFT + CTL-FT", "Vim: SFT + CTL-FT"]) == {}
    T = now["table"]
    assert T["systems"]["MambaXray-CTL (SFT)"]["carried_from"]["date"] == "2026-11-30"
    assert "MambaXray-CTL (SFT + CTL-FT) - MambaXray-CTL (SFT)" in T["pairs"]        # both carried
    assert "RRG-Mamba - MambaXray-CTL (SFT)" in T["pairs"]                           # carried vs an offline system
    assert not any("Vim" in k for k in T["pairs"])                                   # a new row: computed, not carried
    assert now["rows_run"] == ["SFT", "SFT + CTL-FT", "Vim: SFT + CTL-FT"]
    changed = doc(["Vim: SFT + CTL-FT"], rrg=0.31)
    why = mx.carry_over(previous, changed, ["SFT", "Vim: SFT + CTL-FT"])
    assert "RRG-Mamba" in why["SFT"] and "MambaXray-CTL (SFT)" not in changed["table"]["systems"]
    stale = doc(["SFT", "Vim: SFT + CTL-FT"])                        # a Vim run of other encoder settings
    stale["runs"]["Vim: SFT + CTL-FT"] = [dict(seed=0, encoder="vim", vision={"img": 1})]
    fresh = doc([])
    assert "other encoder settings" in mx.carry_over(stale, fresh, ["Vim: SFT + CTL-FT"])["Vim: SFT + CTL-FT"]
    assert mx.tag_problem("ci")(dict(row="Vim: SFT + CTL-FT", encoder="vim", vision={"img": 1}))
    assert mx.tag_problem("ci")(dict(row="Vim: SFT + CTL-FT", encoder="vim", vision=mx.VISION["ci"])) is None
    other = doc(["Vim: SFT + CTL-FT"])
    other["table"]["test_ids"] = ["s3"]
    assert "other test studies" in mx.carry_over(previous, other, ["SFT"])["SFT"]
