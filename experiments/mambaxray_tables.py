"""MambaXray-CTL's stage 3 in miniature on the offline IU X-Ray set, and the two papers side by side.

Rows (Table II in miniature): a frozen LLM reads the frozen tokens of each study through a trained Linear + LayerNorm
mapper (lesson 20), trained with the SFT loss alone or with SFT + 0.4 x the symmetric InfoNCE of the paper's
fine-tuning stage (CTL-FT), several seeds each. The tokens come from the ImageNet EfficientNet-Lite0 of lesson 14
("SFT", "SFT + CTL-FT": the paper's #7 and #4 differ only in CTL-FT) or from one Vim (lesson 18) in three states,
all with SFT + CTL-FT: random init ("Vim:", #5, no pretraining), after stage 1's ARM pretraining (lesson 18a;
"Vim ARM:", #4) and after stage 2's image-report contrastive training on top (lesson 19; "Vim ARM + CTL:", #3).
The Vim stages run once, before the LLM runs, on the training studies (stage 2 keeps the step of the best
validation recall). Every LLM run selects its step on the validation loss only, then generates the test studies
with beam search and is scored once.

The comparison (lesson 21) scores, on the SAME test studies, these runs, RRG-Mamba and the Transformer baseline (the
finished runs of experiments/offline_tables.py, whose reports are read from its work folder) and its baselines, with
paired bootstrap intervals; then measures parameters, seconds per training step and seconds per generated study of
RRG-Mamba, the Transformer and the LLM decoder side by side in one process.

Resumable: every run keeps a checkpoint (heads, optimizer, losses) every few steps and continues exactly where it
stopped; finished runs are never repeated. A finished run is also kept in the run records (experiments/runs/,
committed; offline_tables.py keeps its runs there too), so another machine tabulates it without training it again.
Results: one JSON file with the device, versions and the exact command.

    python experiments/offline_tables.py --rows RRG-Mamba Transformer     # first: the RRG-Mamba side
    python experiments/mambaxray_tables.py                                # the cpu profile (hours on 2 cores)
    python experiments/mambaxray_tables.py --profile ci                   # a tiny end-to-end check
"""
from __future__ import annotations

import argparse, functools, hashlib, json, os, shlex, sys, time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "experiments"):
    if str(p) not in sys.path: sys.path.insert(0, str(p))

import numpy as np

import offline_tables as OT

# Each row: the contrastive weight of stage 3 and the frozen image encoder whose tokens the mapper reads: "lite0"
# (lesson 14's ImageNet EfficientNet-Lite0 grids) or a Vim of lesson 18 with the same architecture in three states:
# "vim" (random init: no pretraining), "vim-arm" (stage 1, lesson 18a's ARM pretraining), "vim-arm-ctl" (stage 1,
# then stage 2, lesson 19's image-report contrastive training, end to end).
ROWS = {"SFT": dict(ctl_weight=0.0, encoder="lite0"),
        "SFT + CTL-FT": dict(ctl_weight=0.4, encoder="lite0"),
        "Vim: SFT + CTL-FT": dict(ctl_weight=0.4, encoder="vim"),
        "Vim ARM: SFT + CTL-FT": dict(ctl_weight=0.4, encoder="vim-arm"),
        "Vim ARM + CTL: SFT + CTL-FT": dict(ctl_weight=0.4, encoder="vim-arm-ctl")}
# Table II's differences this miniature can measure (A - B): CTL-FT (#4 - #7), ARM (#4 - #5), CTL (#3 - #4)
TABLE2_PAIRS = [("SFT + CTL-FT", "SFT"), ("Vim ARM: SFT + CTL-FT", "Vim: SFT + CTL-FT"),
                ("Vim ARM + CTL: SFT + CTL-FT", "Vim ARM: SFT + CTL-FT")]

# The Vim encoders: ARM pretraining (lesson 18a's sizes per profile; encoder blocks d_enc x depth, one direction),
# then the fine-tuning backbone (four scans, weights copied from the pretrained direction, `ft_img` px), stage 2's
# contrastive training (lesson 19: symmetric InfoNCE against frozen report features, `text` model); the LLM reads the
# frozen tokens of the backbone, the two views averaged token-wise. Unlike the paper's fine-tuning backbone, which
# adds a middle class token, this one keeps ARM's token set (patch tokens only), as lesson 19 does.
VISION = {
    "cpu": dict(img=192, patch=16, cluster=4, d_enc=48, depth=3, mlp=2.0, d_dec=48, dec_depth=2, heads=4,
                arm_steps=300, arm_batch=32, arm_lr=2e-3, ft_img=192, ctl_steps=300, ctl_batch=64, ctl_lr=1e-4,
                ctl_eval_every=50, proj=2048, text="minilm", max_len=128, seed=0),
    "gpu": dict(img=192, patch=16, cluster=4, d_enc=768, depth=12, mlp=4.0, d_dec=512, dec_depth=4, heads=8,
                arm_steps=20000, arm_batch=128, arm_lr=1.5e-4, ft_img=224, ctl_steps=5000, ctl_batch=192,
                ctl_lr=1e-4, ctl_eval_every=250, proj=2048, text="emilyalsentzer/Bio_ClinicalBERT", max_len=128,
                seed=0),
    "ci": dict(img=32, patch=8, cluster=2, d_enc=16, depth=1, mlp=2.0, d_dec=16, dec_depth=1, heads=2,
               arm_steps=3, arm_batch=8, arm_lr=1e-3, ft_img=32, ctl_steps=3, ctl_batch=8, ctl_lr=1e-4,
               ctl_eval_every=3, proj=64, text="minilm", max_len=64, seed=0),
}

# llm: lesson 20's names; bf16: autocast the frozen LLM to bfloat16: True, False or "auto" (`llm.resolve_bf16`: on where CUDA
# supports bfloat16 or an x86 CPU reports bfloat16 instructions, elsewhere where a timed bfloat16 matrix product wins by 1.2x;
# on a CPU with AVX-512 BF16 a training step took 0.6x the float32 time, on one with AVX2 only bfloat16 is emulated and a step
# took about 30x); offline: the offline_tables.py profile whose runs, data and features are shared.
PROFILES = {
    "cpu": dict(llm="smollm2-135m", offline="cpu", n_train=None, n_val=64, n_test=200, steps=300, batch_size=8,
                lr=3e-3, weight_decay=0.05, eval_every=50, ckpt_every=10, beam=3, min_new=20, max_new=50,
                repetition_penalty=2.0, length_penalty=2.0, bf16="auto", rows=list(ROWS), seeds=[0, 1], jobs=2,
                threads=1, n_boot=1000, timing_steps=2, timing_rounds=2),
    # the paper's IU stage 3 setting for the decoder (Qwen1.5-1.8B-Chat, beam 5, 40-100 new tokens) over the same
    # frozen features; a GPU box
    "gpu": dict(llm="Qwen/Qwen1.5-1.8B-Chat", offline="gpu", n_train=None, n_val=None, n_test=None, steps=3600,
                batch_size=20, lr=1e-4, weight_decay=0.05, eval_every=300, ckpt_every=100, beam=5, min_new=40,
                max_new=100, repetition_penalty=2.0, length_penalty=2.0, bf16="auto", rows=list(ROWS),
                seeds=[0, 1, 2], jobs=1, threads=8, n_boot=1000, timing_steps=5, timing_rounds=3),
    "ci": dict(llm="tiny", offline="ci", n_train=32, n_val=8, n_test=12, steps=6, batch_size=4, lr=3e-3,
               weight_decay=0.05, eval_every=3, ckpt_every=2, beam=2, min_new=2, max_new=8, repetition_penalty=2.0,
               length_penalty=2.0, bf16=False, rows=list(ROWS), seeds=[0, 1], jobs=1, threads=1, n_boot=50,
               timing_steps=1, timing_rounds=1),
}
RUN_KEYS = ("llm", "offline", "n_train", "n_val", "n_test", "steps", "batch_size", "lr", "weight_decay",
            "eval_every", "beam", "min_new", "max_new", "repetition_penalty", "length_penalty", "bf16")

# The paper's numbers on real IU X-Ray (Large model). Table II's rows #7 (ARM, SFT only) and #4 (ARM, SFT + CTL-FT)
# differ, like this miniature's two Lite0 rows, only in the contrastive term of the fine-tuning stage; #5 (no
# pretraining), #4 and #3 (ARM + CTL) differ, like its three Vim rows, in the encoder's pretraining; Table I's row
# is the full model (ARM + CTL + CTL-FT + SFT).
PAPER = {
    "SFT": dict(table="II #7", BLEU_1=0.457, BLEU_4=0.174, ROUGE_L=0.353, CIDEr=0.467),
    "SFT + CTL-FT": dict(table="II #4", BLEU_1=0.463, BLEU_4=0.185, ROUGE_L=0.364, CIDEr=0.451),
    "Vim: SFT + CTL-FT": dict(table="II #5", BLEU_1=0.444, BLEU_4=0.175, ROUGE_L=0.358, CIDEr=0.352),
    "Vim ARM: SFT + CTL-FT": dict(table="II #4", BLEU_1=0.463, BLEU_4=0.185, ROUGE_L=0.364, CIDEr=0.451),
    "Vim ARM + CTL: SFT + CTL-FT": dict(table="II #3", BLEU_1=0.479, BLEU_4=0.193, ROUGE_L=0.375, CIDEr=0.607),
    "MambaXray-CTL-Large": dict(table="I", BLEU_1=0.491, BLEU_4=0.199, ROUGE_L=0.374, CIDEr=0.544),
}

slug = OT.slug


def by_hash(ids) -> list[str]:
    "Study ids in the order of the SHA-256 of the id: a fixed subset that does not depend on the file's order."
    return sorted(ids, key=lambda i: hashlib.sha256(str(i).encode()).hexdigest())


# ----------------------------------------------------------------------------------------------- data
def offline_setup(profile: str) -> dict:
    "The data root, the model config and the test studies of the offline_tables profile these runs share."
    from rrg_tutorial.model import preset
    from rrg_tutorial.reports import read_r2gen_annotation
    from rrg_tutorial.train import data_root
    P = PROFILES[profile]
    oprof = OT.PROFILES[P["offline"]]
    cfg = OT.train_config(oprof, "RRG-Mamba", 0)
    root = data_root(cfg.data_dir)
    mcfg = preset(cfg.model, **cfg.model_set)
    ann = read_r2gen_annotation(root / "annotation.json")
    return dict(root=root, mcfg=mcfg, ann=ann, cfg=cfg)


def study_subsets(profile: str, setup: dict, test_pool: list[str] | None = None) -> dict:
    """Train / val / test study ids: the first n of each split by hash; the test studies are drawn from
    `test_pool` (the studies offline_tables scored) so every system is scored on the same ones."""
    P, ann = PROFILES[profile], setup["ann"]
    pick = lambda ids, n: by_hash(ids)[:n] if n else by_hash(ids)
    tr = list(ann.id[ann.split == "train"])
    if setup["cfg"].n_train: tr = tr[:setup["cfg"].n_train]            # offline_tables' training studies
    return dict(train=pick(tr, P["n_train"]),
                val=pick(list(ann.id[ann.split == "val"]), P["n_val"]),
                test=pick(test_pool if test_pool is not None else list(ann.id[ann.split == "test"]), P["n_test"]))


def load_features(setup: dict, ids: list[str], split: str):
    "Cached feature grids (N, V, C, h, w) of `ids`, in that order (lesson 14's cache, shared with lesson 17)."
    from rrg_tutorial.visual import split_features
    m = setup["mcfg"]
    got = split_features(setup["root"] / "annotation.json", setup["root"] / "images", split, m.visual, m.pretrained,
                         n_views=m.n_views, ids=ids, device="cpu", progress=False)
    return got["feats"]


def inputs(part: dict):
    """The visual input of a data part and its batch key: Lite0 grids ('feats', (N, V, C, h, w)) or Vim tokens
    ('tokens', (N, L, d))."""
    return ("tokens", part["tokens"]) if "tokens" in part else ("feats", part["feats"])


def batch_at(feats, ids, reports, step: int, batch_size: int, seed: int, key: str = "feats") -> dict:
    "The training batch of `step`: epochs of a seeded permutation, so a resumed run sees the same batches."
    import torch
    n = len(ids)
    per = max(1, n // batch_size)
    epoch, k = divmod(step, per)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    ix = order[k * batch_size:(k + 1) * batch_size].tolist()
    return {"id": [ids[i] for i in ix], key: feats[ix], "report": [reports[i] for i in ix]}


# ----------------------------------------------------------------------------------------------- one run
@functools.lru_cache(maxsize=None)
def bf16_on(flag, device_type: str) -> bool:
    "A profile's bf16 (True, False or 'auto', decided by `llm.resolve_bf16`)."
    from rrg_tutorial.llm import resolve_bf16
    return resolve_bf16(flag, device_type)


def _autocast(model, on):
    """bfloat16 autocast on the device the model lives on (the frozen LLM's matrix products) when `on` (a profile's
    bf16) resolves to True there; else a no-op."""
    import torch
    dev = model.before.device.type
    return torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16_on(on, dev))


def heads(model) -> dict:
    "The trained tensors of a ReportLLM (mapper, text projection, LoRA if any)."
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in names}


def build_model(profile: str, row: str, seed: int, train_texts, visual_dim: int):
    from rrg_tutorial.core import get_device, seed_everything
    from rrg_tutorial.llm import LLMDecoderConfig, ReportLLM, load_llm
    P = PROFILES[profile]
    lm, tok = load_llm(P["llm"], texts=train_texts)
    seed_everything(seed)                                           # the heads' initialisation
    cfg = LLMDecoderConfig(llm=P["llm"], visual_dim=visual_dim, beam=P["beam"], min_new_tokens=P["min_new"],
                           max_new_tokens=P["max_new"], repetition_penalty=P["repetition_penalty"],
                           length_penalty=P["length_penalty"], ctl_weight=ROWS[row]["ctl_weight"])
    return ReportLLM(cfg, lm, tok).to(get_device())     # a GPU where there is one; batches follow the model


def val_loss(model, feats, ids, reports, batch_size: int, bf16: bool, key: str = "feats") -> float:
    "Mean SFT loss per report token over the validation studies (the selection criterion)."
    import torch
    from rrg_tutorial.llm import target_ids
    model.eval()
    tot = cnt = 0.0
    with torch.no_grad(), _autocast(model, bf16):
        for i in range(0, len(ids), batch_size):
            b = {"id": ids[i:i + batch_size], key: feats[i:i + batch_size], "report": reports[i:i + batch_size]}
            n = float(target_ids(model.tokenizer, b["report"], model.cfg.max_target_tokens)[1].sum())
            tot += float(model(b)["sft"]) * n
            cnt += n
    return tot / cnt


def train_run(profile: str, row: str, seed: int, out: Path, data: dict, stop_after: int | None = None) -> dict:
    """Train one (row, seed) from its last checkpoint (if any) to the profile's steps; `stop_after`: stop (as if
    killed) after that many steps of this call. Returns the run state (losses, validation, best step)."""
    import torch
    from rrg_tutorial.core import atomic_write
    P = PROFILES[profile]
    tr, va = data["train"], data["val"]
    key, x = inputs(tr)
    model = build_model(profile, row, seed, tr["reports"], x.shape[-1] if key == "tokens" else x.shape[2])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=P["lr"], weight_decay=P["weight_decay"])
    state = dict(step=0, history=[], val=[], best=None, seconds=0.0)
    out.mkdir(parents=True, exist_ok=True)
    last, best = out / "last.pt", out / "best.pt"
    if last.exists():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        if ck.get("tag", run_tag(profile, row)) != run_tag(profile, row):
            raise SystemExit(f"{last} was trained on other encoder tokens ({ck['tag']['encoder']}, other settings): "
                             "move its folder away to run this row again")
        model.load_state_dict(ck["heads"], strict=False)
        opt.load_state_dict(ck["opt"])
        state = ck["state"]
    save = lambda path, obj: atomic_write(path, lambda t: torch.save(obj, t))
    done_here = 0
    model.train()
    while state["step"] < P["steps"]:
        t = time.perf_counter()
        b = batch_at(x, tr["ids"], tr["reports"], state["step"], P["batch_size"], seed, key)
        with _autocast(model, P["bf16"]): o = model(b)                              # Eq. 12
        o["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["step"] += 1
        done_here += 1
        state["history"].append({k: v.item() for k, v in o.items()})
        state["seconds"] += time.perf_counter() - t
        s = state["step"]
        if s % P["eval_every"] == 0 or s == P["steps"]:
            v = val_loss(model, inputs(va)[1], va["ids"], va["reports"], P["batch_size"], P["bf16"], key)
            model.train()
            state["val"].append(dict(step=s, val_loss=v))
            if state["best"] is None or v < state["best"]["val_loss"]:
                state["best"] = dict(step=s, val_loss=v)
                save(best, dict(heads=heads(model), step=s, val_loss=v))
        if s % P["ckpt_every"] == 0 or s == P["steps"] or (stop_after and done_here >= stop_after):
            save(last, dict(heads=heads(model), opt=opt.state_dict(), state=state, tag=run_tag(profile, row)))
        if stop_after and done_here >= stop_after: break
    return dict(state=state, model=model)


def run_one(profile: str, row: str, seed: int, work: Path, records: Path | None = OT.RECORDS) -> dict:
    """Train (or resume) one (row, seed), select on validation, generate and score the test studies; result.json (and
    its run record in `records`)."""
    import torch
    from rrg_tutorial.evaluate import generate_reports, study_stats, corpus_scores, diversity
    from rrg_tutorial.llm import ReportText, trainable_parameters
    from rrg_tutorial.metrics import NLGScorer
    P = PROFILES[profile]
    out = work / slug(row) / f"seed{seed}"
    if (out / "result.json").exists():
        done = json.loads((out / "result.json").read_text())
        check_tag(done, profile, row, out / "result.json")
        return done
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(profile, work, ROWS[row]["encoder"])
    t0 = time.perf_counter()
    r = train_run(profile, row, seed, out, data)
    fit_s = time.perf_counter() - t0
    model, state = r["model"], r["state"]
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=False)      # validation's choice
    model.load_state_dict(best["heads"], strict=False)
    te = data["test"]
    bs = max(1, 24 // P["beam"])
    key, x = inputs(te)
    batches = [{"id": te["ids"][i:i + bs], key: x[i:i + bs], "report": te["reports"][i:i + bs]}
               for i in range(0, len(te["ids"]), bs)]
    text = ReportText(model.tokenizer)
    t1 = time.perf_counter()
    with _autocast(model, P["bf16"]):
        ids, refs, hyps = generate_reports(model, batches, text, beam_size=P["beam"], max_len=P["max_new"],
                                           progress=False)
    gen_s = time.perf_counter() - t1
    with NLGScorer() as scorer:
        st = study_stats(refs, hyps, scorer, truncate_words=data["truncate_words"])
        scores = {k: float(v[0]) for k, v in corpus_scores(st).items()}
    res = dict(row=row, seed=seed, ids=ids, hyps=hyps, scores=scores, diversity=diversity(hyps),
               best_step=state["best"]["step"], steps=state["step"], val_history=state["val"],
               loss_history=state["history"], train_seconds=state["seconds"], fit_seconds=fit_s,
               generate_seconds=gen_s, threads=torch.get_num_threads(), params=trainable_parameters(model),
               settings={k: P[k] for k in RUN_KEYS}, bf16_used=bf16_on(P["bf16"], model.before.device.type),
               ctl_weight=ROWS[row]["ctl_weight"], **run_tag(profile, row),
               environment=OT.environment())
    OT.atomic_json(out / "result.json", res)
    OT.keep_record(work, row, seed, records, record_name(profile), tag_problem(profile))
    return res


def check_tag(result: dict, profile: str, row: str, where: Path):
    "A finished run of a Vim row must come from the current encoder settings (runs before the Vim rows: Lite0)."
    tag = {"encoder": result.get("encoder", "lite0"), "vision": result.get("vision")}
    if tag != run_tag(profile, row):
        raise SystemExit(f"{where} was made from other encoder tokens ({tag['encoder']}, other settings than "
                         f"VISION[{profile!r}]): move its folder away to run this row again")


def load_data(profile: str, work: Path, encoder: str = "lite0") -> dict:
    """Visual inputs and reports of the train / val / test studies of the runs (the test ones fixed in the work
    folder): Lite0 feature grids, or the frozen tokens of a Vim encoder (built by `prepare`)."""
    setup = offline_setup(profile)
    ann = setup["ann"]
    report_of = dict(zip(ann.id, ann.report))
    split_of = dict(zip(ann.id, ann.split))
    subsets = json.loads((work / "subsets.json").read_text())
    data = dict(truncate_words=setup["mcfg"].max_seq_length - 1)
    for name, ids in subsets.items():
        data[name] = dict(ids=ids, reports=[report_of[i] for i in ids])
        if encoder == "lite0": data[name]["feats"] = load_features(setup, ids, split_of[ids[0]])
        else: data[name]["tokens"] = vision_tokens(profile, work, encoder, name)
    return data


# ----------------------------------------------------------------------------------------------- the Vim encoders
def vision_folder(profile: str, work: Path) -> Path:
    """Where the Vim encoders and their tokens live: named by the encoder settings and the studies of the runs
    (subsets.json), so that new settings or studies never meet old encoders or tokens."""
    sub = (work / "subsets.json").read_bytes() if (work / "subsets.json").exists() else b""
    key = hashlib.sha1(json.dumps(VISION[profile], sort_keys=True).encode() + sub).hexdigest()[:10]
    return work / "encoders" / key


def run_tag(profile: str, row: str) -> dict:
    "What a run's inputs depend on beyond the profile's settings: its encoder and, for a Vim, the encoder settings."
    enc = ROWS[row]["encoder"]
    return dict(encoder=enc, vision=VISION[profile] if enc != "lite0" else None)


def study_images(setup: dict, ids: list[str], px: int, folder: Path) -> np.ndarray:
    """Both views of each study as grey `px` x `px` uint8, (n, 2, px, px), read through annotation.json's image
    paths (a one-view study repeats its view), cached in `folder` (written atomically)."""
    from PIL import Image
    from rrg_tutorial.core import atomic_write
    key = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:10]
    path = folder / f"images_{px}px_{key}.npy"
    if path.exists(): return np.load(path)
    root, ann = setup["root"], setup["ann"].set_index("id")
    X = np.empty((len(ids), 2, px, px), np.uint8)
    for i, sid in enumerate(ids):
        views = list(ann.image_path[sid])
        if not views: raise ValueError(f"{root / 'annotation.json'}: study {sid!r} lists no image")
        for v in (0, 1):
            f = root / "images" / views[min(v, len(views) - 1)]
            try: X[i, v] = np.asarray(Image.open(f).convert("L").resize((px, px), Image.BOX))
            except OSError as e: raise ValueError(f"{f}: not a readable image ({e})") from e
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda t: np.save(t, X))
    return X


def _arm_config(V: dict):
    from rrg_tutorial.arm import ArmConfig
    return ArmConfig(img_size=V["img"], patch_size=V["patch"], cluster=V["cluster"], d_enc=V["d_enc"],
                     depth=V["depth"], mlp_ratio=V["mlp"], d_dec=V["d_dec"], dec_depth=V["dec_depth"], heads=V["heads"])


def build_encoder(profile: str, work: Path, encoder: str, subsets: dict, setup: dict):
    """The Vim of `encoder` (built once, saved in the vision folder): 'vim' random init, 'vim-arm' ARM-pretrained
    (stage 1) on the training studies' views, 'vim-arm-ctl' that backbone after stage 2 (contrastive, end to end,
    the step of the best validation recall kept). Every one: four scans, `ft_img` px, the same architecture."""
    import pandas as pd
    import torch
    from rrg_tutorial.arm import ARM, load_backbone, pretrain_arm, save_backbone
    from rrg_tutorial.core import atomic_write, get_device, seed_everything
    from rrg_tutorial.vim import at_image_size, widen_scans
    V, folder, dev = VISION[profile], vision_folder(profile, work), get_device()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{encoder}.pt"
    if path.exists():
        from rrg_tutorial.train import load_checkpoint
        ck = load_checkpoint(path, "cpu")
        seed_everything(V["seed"])
        m = at_image_size(widen_scans(ARM(_arm_config(V)).encoder, 4), V["ft_img"])
        m.load_state_dict(ck["model"])
        return m.eval()
    seed_everything(V["seed"])
    if encoder == "vim":                                                   # Table II #5: no pretraining
        m = at_image_size(widen_scans(ARM(_arm_config(V)).encoder, 4), V["ft_img"])
        hist = None
    elif encoder == "vim-arm":                                             # stage 1
        arm_path = folder / "arm_backbone.pt"
        if not arm_path.exists():
            X = study_images(setup, subsets["train"], V["img"], folder)
            arm = ARM(_arm_config(V)).to(dev)
            h = pretrain_arm(arm, X.reshape(-1, V["img"], V["img"]), V["arm_steps"], V["arm_batch"], V["arm_lr"],
                             log_every=max(1, V["arm_steps"] // 30), seed=V["seed"])
            save_backbone(arm.cpu(), arm_path, V, history=h.to_dict("list"))
        m = at_image_size(widen_scans(load_backbone(arm_path), 4), V["ft_img"])
        hist = None
    elif encoder == "vim-arm-ctl":                                         # stage 2 on top of stage 1
        from rrg_tutorial.contrastive import ImageReportModel, cached_report_features, fit_contrastive
        vis = build_encoder(profile, work, "vim-arm", subsets, setup)
        ann = setup["ann"].set_index("id")
        I = {k: study_images(setup, subsets[k], V["ft_img"], folder) for k in ("train", "val")}
        T = {k: cached_report_features(setup["root"], list(ann.report[subsets[k]]), V["text"], V["max_len"])
             for k in ("train", "val")}
        seed_everything(V["seed"])
        model = ImageReportModel(V["d_enc"], T["train"].shape[1], V["proj"], vis.train()).to(dev)
        h = fit_contrastive(model, I["train"], T["train"], V["ctl_steps"], V["ctl_batch"], V["ctl_lr"],
                            val=(I["val"], T["val"]), eval_every=V["ctl_eval_every"], seed=V["seed"])
        m, hist = model.vision.cpu(), h
    else: raise ValueError(f"unknown encoder {encoder!r}: expected one of lite0, vim, vim-arm, vim-arm-ctl")
    from rrg_tutorial.train import save_atomic
    meta = dict(encoder=encoder, vision=V, history=None if hist is None else pd.DataFrame(hist).to_dict("list"))
    save_atomic(dict(format="rrg_tutorial.train/1", config=V, meta=meta, model=m.state_dict()), path)
    return m.eval()


def vision_tokens(profile: str, work: Path, encoder: str, split: str):
    "The frozen tokens of `encoder` for the studies of `split` (one of subsets.json's): (n, L, d) float32 tensor."
    import torch
    path = vision_folder(profile, work) / f"tokens_{encoder}_{split}.pt"
    if not path.exists():
        raise SystemExit(f"{path} is missing: the encoders are built before the runs start (`prepare`)")
    got = torch.load(path, weights_only=True)
    ids = json.loads((work / "subsets.json").read_text())[split]
    if got["ids"] != ids: raise SystemExit(f"{path} holds the tokens of other studies than subsets.json's {split!r}")
    return got["tokens"]


def prepare_tokens(profile: str, work: Path, encoder: str, subsets: dict, setup: dict, batch: int = 64):
    "Build `encoder` and write its tokens for every subset (views averaged token-wise), once."
    import torch
    from rrg_tutorial.core import atomic_write, get_device
    V, folder = VISION[profile], vision_folder(profile, work)
    todo = [k for k in subsets if not (folder / f"tokens_{encoder}_{k}.pt").exists()]
    print(f"encoder {encoder}: " + (f"building it and its tokens of {todo} (once)" if todo else "tokens on disk"),
          flush=True)
    if not todo: return
    dev = get_device()
    m = build_encoder(profile, work, encoder, subsets, setup).to(dev).eval()
    for k in todo:
        X, out = study_images(setup, subsets[k], V["ft_img"], folder), []
        with torch.no_grad():
            for i in range(0, len(X), batch):
                x = torch.from_numpy(X[i:i + batch]).to(dev)                                # (b, 2, H, W) uint8
                img = x.reshape(-1, 1, *x.shape[2:]).float() / 127.5 - 1                    # (2b, 1, H, W)
                t = m.forward_features(img)                                                 # (2b, L, d)
                out.append(t.reshape(len(x), 2, *t.shape[1:]).mean(1).float().cpu())       # (b, L, d)
        got = dict(ids=list(subsets[k]), tokens=torch.cat(out))
        atomic_write(folder / f"tokens_{encoder}_{k}.pt", lambda f: torch.save(got, f))


def encoder_histories(profile: str, work: Path) -> dict:
    """How the Vim stages built in `work` trained: {'ARM': pretraining loss per logged step, 'CTL': InfoNCE loss and
    validation recall (mean own-report R@1/5/10, the step kept is the best) with their chance levels}; {} when
    no stage was built here (another machine tabulating run records)."""
    import numpy as np
    from rrg_tutorial.contrastive import chance_recall
    from rrg_tutorial.train import load_checkpoint
    V, folder, out = VISION[profile], vision_folder(profile, work), {}
    for name, file in (("ARM", "arm_backbone.pt"), ("CTL", "vim-arm-ctl.pt")):
        if (folder / file).exists():
            h = load_checkpoint(folder / file, "cpu")["meta"].get("history")
            if h: out[name] = dict(h)
    if "CTL" in out:
        n_val = len(json.loads((work / "subsets.json").read_text())["val"])
        out["CTL"].update(batch=V["ctl_batch"], loss_chance=float(np.log(V["ctl_batch"])), n_val=n_val,
                          val_recall_chance=float(np.mean([chance_recall(np.ones(n_val, int), k)    # val_score's
                                                           for k in (1, 5, 10)])))                  # groups: own
    return out


# ----------------------------------------------------------------------------------------------- the comparison
def offline_systems(profile: str, test_ids: list[str], records: Path | None = OT.RECORDS) -> dict:
    """Reports of RRG-Mamba, the Transformer (every finished seed) and the baselines of offline_tables.py on
    `test_ids`, read from its work folder: {system: [reports of each seed]}."""
    P = PROFILES[profile]
    owork = OT.work_folder(P["offline"], None)
    OT.restore_records(owork, records, OT.record_name(P["offline"]), need=("stats.npz",))  # runs only recorded
    base = OT.baselines(P["offline"], owork)
    pos = {i: k for k, i in enumerate(base["ids"])}
    missing = [i for i in test_ids if i not in pos]
    if missing: raise SystemExit(f"{len(missing)} test studies are not in {owork / 'baselines.json'}")
    ix = [pos[i] for i in test_ids]
    out = {}
    for row in ("RRG-Mamba", "Transformer"):
        runs = sorted((owork / slug(row)).glob("seed*/result.json"))
        got = [json.loads(p.read_text()) for p in runs]
        for g in got:
            if g["ids"] != base["ids"]: raise SystemExit(f"{row} seed {g['seed']} scored other studies")
        if got: out[row] = dict(seeds=[g["seed"] for g in got], hyps=[[g["hyps"][k] for k in ix] for g in got])
    if "RRG-Mamba" not in out:
        raise SystemExit(f"no finished RRG-Mamba run in {owork} or its run records: run `python "
                         f"experiments/offline_tables.py --profile {P['offline']} --rows RRG-Mamba Transformer` first")
    for name, b in base["systems"].items():
        out[name] = dict(seeds=[None], hyps=[[b["hyps"][k] for k in ix]])
    return out, [base["refs"][k] for k in ix], owork


def compare(profile: str, work: Path, llm_results: dict, n_boot: int, seed: int = 0,
            records: Path | None = OT.RECORDS) -> dict:
    """Every system on the same test studies: per-seed scores, seed means with bootstrap CIs and paired differences
    (the same resampled studies for every run), RRG-Mamba against each MambaXray row and each row against the
    baselines."""
    from rrg_tutorial.evaluate import corpus_scores, diversity, study_stats
    from rrg_tutorial.metrics import NLGScorer
    subsets = json.loads((work / "subsets.json").read_text())
    test_ids = subsets["test"]
    systems, refs, owork = offline_systems(profile, test_ids, records)
    for row, runs in llm_results.items():
        for r in runs:
            if r["ids"] != test_ids: raise SystemExit(f"{row} seed {r['seed']} scored other studies")
        systems[f"MambaXray-CTL ({row})"] = dict(seeds=[r["seed"] for r in runs], hyps=[r["hyps"] for r in runs])
    tw = OT.train_config(OT.PROFILES[PROFILES[profile]["offline"]], "RRG-Mamba", 0)
    from rrg_tutorial.model import preset
    truncate = preset(tw.model, **tw.model_set).max_seq_length - 1
    rng = np.random.default_rng(seed)
    n = len(refs)
    w = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)])      # (B, n)
    table, boot = {}, {}
    with NLGScorer() as scorer:
        for name, s in systems.items():
            per_seed, vals = [], {k: [] for k in OT.METRICS}
            for hyps in s["hyps"]:
                st = study_stats(refs, hyps, scorer, truncate_words=truncate)
                v = corpus_scores(st)
                for k in OT.METRICS: vals[k].append(float(v[k][0]))
                per_seed.append(OT._scores(st, w))
            boot[name] = {k: np.mean([p[k] for p in per_seed], 0) for k in OT.BOOT_METRICS}
            table[name] = dict(seeds=s["seeds"], values=vals,
                               mean={k: float(np.mean(v)) for k, v in vals.items()},
                               sd={k: float(np.std(v, ddof=1)) if len(v) > 1 else None for k, v in vals.items()},
                               ci={k: [float(np.quantile(boot[name][k], q)) for q in (0.025, 0.975)]
                                   for k in OT.BOOT_METRICS},
                               distinct_reports=[diversity(h)["distinct_reports"] for h in s["hyps"]])
    diff = lambda a, b: {k: dict(value=table[a]["mean"][k] - table[b]["mean"][k],
                                 ci=[float(np.quantile(boot[a][k] - boot[b][k], q)) for q in (0.025, 0.975)])
                         for k in OT.BOOT_METRICS}
    llm_rows = [f"MambaXray-CTL ({r})" for r in llm_results]
    baselines = [b for b in systems if b not in ("RRG-Mamba", "Transformer", *llm_rows)]
    pairs = {}
    for m in llm_rows:
        pairs[f"RRG-Mamba - {m}"] = diff("RRG-Mamba", m)
        for b in baselines: pairs[f"{m} - {b}"] = diff(m, b)
    for x, y in TABLE2_PAIRS:                                               # Table II's differences
        x, y = f"MambaXray-CTL ({x})", f"MambaXray-CTL ({y})"
        if x in table and y in table: pairs[f"{x} - {y}"] = diff(x, y)
    return dict(n_test=n, n_boot=n_boot, test_ids=test_ids, systems=table, pairs=pairs,
                offline_work=owork.name, examples=dict(ids=test_ids[:6], references=refs[:6],
                                                       **{k: s["hyps"][0][:6] for k, s in systems.items()}))


# ----------------------------------------------------------------------------------------------- side-by-side timing
def timing(profile: str, work: Path) -> dict:
    """Parameters (trainable and total), seconds per training step and per generated study of RRG-Mamba, the
    Transformer and the LLM decoder, in one process on the profile's threads, the models interleaved in rounds."""
    path = work / "timing.json"
    if path.exists(): return json.loads(path.read_text())
    import torch
    from dataclasses import replace
    from torch.utils.data import DataLoader
    from rrg_tutorial.train import build_run, to_device
    from rrg_tutorial.llm import trainable_parameters
    P = PROFILES[profile]
    torch.set_num_threads(P["threads"])
    oprof = OT.PROFILES[P["offline"]]
    data = load_data(profile, work)
    n_train = len(data["train"]["ids"])
    systems = {}
    for row in ("RRG-Mamba", "Transformer"):
        cfg = OT.train_config(oprof, row, 0)
        tr = build_run(replace(cfg, n_train=2 * cfg.batch_size, n_val=8), work / "timing" / slug(row))
        b = to_device(next(iter(DataLoader(tr.train_ds, batch_size=cfg.batch_size, collate_fn=tr.collate))), tr.device)
        m = tr.raw_model
        systems[row] = dict(step=lambda tr=tr, b=b: tr.train_step([b]),
                            gen=lambda m=m, b=b, k=cfg.beam_size: m.generate(b, beam_size=k), batch=cfg.batch_size,
                            n_gen=len(b["ids"]), params=dict(trainable=sum(p.numel() for p in m.parameters()
                                                                           if p.requires_grad),
                                                             total=sum(p.numel() for p in m.parameters())),
                            beam=cfg.beam_size)
    model = build_model(profile, "SFT + CTL-FT", 0, data["train"]["reports"], data["train"]["feats"].shape[2])
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=P["lr"])
    b = batch_at(data["train"]["feats"], data["train"]["ids"], data["train"]["reports"], 0, P["batch_size"], 0)

    def llm_step():
        model.train()
        with _autocast(model, P["bf16"]): o = model(b)
        o["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def llm_gen():
        model.eval()
        with _autocast(model, P["bf16"]): model.generate(b, beam_size=P["beam"], max_len=P["max_new"])
    systems["MambaXray-CTL"] = dict(step=llm_step, gen=llm_gen, batch=P["batch_size"], n_gen=len(b["id"]),
                                    params=trainable_parameters(model), beam=P["beam"])
    clock = lambda f: (lambda t: (f(), time.perf_counter() - t)[1])(time.perf_counter())
    for s in systems.values(): s["step"]()                                        # warm-up
    steps, gens = {k: [] for k in systems}, {k: [] for k in systems}
    for _ in range(P["timing_rounds"]):
        for k, s in systems.items():
            steps[k] += [clock(s["step"]) for _ in range(P["timing_steps"])]
            gens[k].append(clock(s["gen"]) / s["n_gen"])
    out = {}
    for k, s in systems.items():
        sps = float(np.median(steps[k]))
        spe = n_train // s["batch"]
        out[k] = dict(params=s["params"], batch_size=s["batch"], seconds_per_step=sps,
                      seconds_per_study_trained=sps / s["batch"], steps_per_epoch=spe, minutes_per_epoch=sps * spe / 60,
                      seconds_per_study_generated=float(np.median(gens[k])), beam=s["beam"],
                      threads=torch.get_num_threads())
    base = out["RRG-Mamba"]
    for k in out:
        out[k]["epoch_time_vs_rrg_mamba"] = out[k]["minutes_per_epoch"] / base["minutes_per_epoch"]
        out[k]["generation_time_vs_rrg_mamba"] = out[k]["seconds_per_study_generated"] / base["seconds_per_study_generated"]
    OT.atomic_json(path, dict(systems=out, frozen_encoder="left out of every count: the cached EfficientNet-Lite0",
                              bf16=bf16_on(P["bf16"], model.before.device.type), n_train=n_train))
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------------------------- driver
def settings_key(P: dict) -> str:
    "A short hash of the settings that change a run (not how runs are scheduled)."
    return hashlib.sha1(json.dumps({k: P[k] for k in RUN_KEYS}, sort_keys=True).encode()).hexdigest()[:10]


def carry_over(previous: dict | None, doc: dict, wanted: list[str]) -> dict:
    """Rows of `wanted` without a finished run here (neither in the work folder nor in the run records) are taken
    from `previous`, the last results file of the same settings, with their scores, intervals and the paired
    differences that involve only them and the offline systems, but only when the test studies are the same and
    every offline system (RRG-Mamba, the Transformer, the baselines) scores the same per seed in both: the
    differences were then taken against the same reports with the same resamples. Returns {row: why it was not
    carried}."""
    name = lambda r: f"MambaXray-CTL ({r})"
    T = doc["table"]
    left = [r for r in wanted if r not in doc["runs"]]
    if not left: return {}
    if previous is None: return {r: "no earlier results file with these settings" for r in left}
    Tp = previous["table"]
    offline = [k for k in T["systems"] if not k.startswith("MambaXray-CTL (")]
    why = "other test studies" if Tp["test_ids"] != T["test_ids"] else next(
        (f"{k}: {w}" for k in offline for w in [OT.same_runs(Tp["systems"][k], T["systems"][k])
                                                 if k in Tp["systems"] else "not in the earlier file"] if w), None)
    out, env, carried = {}, previous["environment"], []
    for r in left:
        stale = [x for x in previous["runs"].get(r, []) if tag_problem(doc["profile"])({**x, "row": r})]
        if name(r) not in Tp["systems"]: out[r] = "not in the earlier file either"
        elif stale: out[r] = "its runs were made from other encoder settings"
        elif why: out[r] = f"the offline systems are not the same runs as in the earlier file ({why})"
        else:
            prev = Tp["systems"][name(r)]
            T["systems"][name(r)] = {**prev, "carried_from": prev.get("carried_from")
                                     or dict(date=env["date"], git_commit=env["git_commit"])}
            doc["runs"][r] = previous["runs"][r]
            if name(r) in Tp["examples"]: T["examples"][name(r)] = Tp["examples"][name(r)]
            carried.append(name(r))
    both = set(carried) | set(offline)
    for a in T["systems"]:
        for b in T["systems"]:
            k = f"{a} - {b}"
            if k in Tp["pairs"] and k not in T["pairs"] and {a, b} <= both and {a, b} & set(carried):
                T["pairs"][k] = Tp["pairs"][k]
    return OT.settle_carried(doc, wanted, doc["runs"], left, out)


def work_folder(profile: str, root: Path | None) -> Path:
    "The work folder of a profile, named by the settings that change a run (also the name of its run records)."
    from rrg_tutorial.core import cache_dir
    name = record_name(profile)
    return (Path(root) / name) if root else cache_dir("experiments", name)


def record_name(profile: str) -> str:
    "The name of a profile's default work folder and of its run records: the script, the profile, the settings."
    return f"mambaxray_tables-{profile}-{settings_key(PROFILES[profile])}"


def tag_problem(profile: str):
    "For the run records: why a finished run's encoder tag is not this profile's (None: it is)."
    def why(result: dict) -> str | None:
        tag = {"encoder": result.get("encoder", "lite0"), "vision": result.get("vision")}
        row = result.get("row")
        if row not in ROWS: return f"unknown row {row!r}"
        return None if tag == run_tag(profile, row) else f"made from other encoder settings ({tag['encoder']})"
    return why


def prepare(profile: str, work: Path, rows=()) -> dict:
    """Fix the studies of every run once (subsets.json: the test ones are those offline_tables.py scored), and
    build the Vim encoders the `rows` need with their tokens (here, before any worker starts)."""
    path = work / "subsets.json"
    setup = offline_setup(profile)
    if path.exists(): sub = json.loads(path.read_text())
    else:                                      # the test studies: drawn from those offline_tables.py scores
        oprof = PROFILES[profile]["offline"]
        sub = study_subsets(profile, setup, OT.baselines(oprof, OT.work_folder(oprof, None))["ids"])
        OT.atomic_json(path, sub)
    encoders = [e for e in dict.fromkeys(ROWS[r]["encoder"] for r in rows) if e != "lite0"]
    if encoders:
        import fcntl
        folder = vision_folder(profile, work)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)                # a second launch waits, then finds them built
            for enc in encoders:
                prepare_tokens(profile, work, enc, sub, setup)
    return sub


def run_all(profile: str, work: Path, rows, seeds, jobs: int, threads: int, records: Path | None = OT.RECORDS):
    "Every pending (row, seed) in `jobs` worker processes of `threads` threads (offline_tables.run_workers)."
    OT.run_workers(__file__, profile, work, rows, seeds, jobs, threads, OT.records_args(records))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu", choices=list(PROFILES), help="sizes and budgets (default cpu)")
    p.add_argument("--rows", nargs="+", choices=list(ROWS), metavar="ROW", help=f"rows to run, of: {', '.join(ROWS)}")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds per row (default: the profile's)")
    p.add_argument("--jobs", type=int, help="runs at once, each its own process (default: the profile's)")
    p.add_argument("--threads", type=int, help="torch threads per run (default: the profile's)")
    p.add_argument("--work", type=Path, help="work folder (default: the course cache, named by the settings)")
    p.add_argument("--out", type=Path, help="results file (default experiments/results/mambaxray_tables_PROFILE.json)")
    p.add_argument("--no-timing", action="store_true", help="skip the side-by-side timing")
    p.add_argument("--collect", action="store_true", help="run nothing: tabulate the finished runs")
    OT.add_record_args(p, "the offline systems score the same in both")
    p.add_argument("--one", nargs=2, metavar=("ROW", "SEED"), help=argparse.SUPPRESS)   # a worker process
    a = p.parse_args(argv)
    records = None if a.no_records else a.records
    P = PROFILES[a.profile]
    work = a.work or work_folder(a.profile, None)
    if a.one:
        import torch
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", P["threads"])))
        run_one(a.profile, a.one[0], int(a.one[1]), work, records)
        return 0
    rows, seeds = a.rows or P["rows"], a.seeds or P["seeds"]
    t0 = time.perf_counter()
    print(f"work folder: {work}", flush=True)
    sync = lambda: OT.sync_records(work, rows, seeds, records, record_name(a.profile), tag_problem(a.profile))
    sync()
    prepare(a.profile, work, [] if a.collect else rows)
    if not a.collect:
        run_all(a.profile, work, rows, seeds, a.jobs or P["jobs"], a.threads or P["threads"], records)
        sync()
    done = lambda r, s: (work / slug(r) / f"seed{s}" / "result.json").exists()
    missing = [f"{r} seed {s}" for r in rows for s in seeds if not done(r, s)]
    if missing: print(f"not finished, left out: {', '.join(missing)}")
    results = {r: [json.loads((work / slug(r) / f"seed{s}" / "result.json").read_text()) for s in seeds if done(r, s)]
               for r in rows}
    results = {r: v for r, v in results.items() if v}
    for r, v in results.items():
        for x in v: check_tag(x, a.profile, r, work / slug(r) / f"seed{x['seed']}" / "result.json")
    out = a.out or REPO / "experiments" / "results" / f"mambaxray_tables_{a.profile}.json"
    previous = None if a.no_carry else OT.previous_results(out, P, P["n_boot"], settings_key)
    if not results and previous is None: raise SystemExit("no finished run to tabulate")
    table = compare(a.profile, work, results, P["n_boot"], records=records)
    tim, tim_from = (None, None) if a.no_timing else (timing(a.profile, work), None)
    if tim is None and previous and previous.get("timing"):                 # --no-timing keeps the measured one
        tim = previous["timing"]
        tim_from = previous.get("timing_carried_from") or previous["environment"]["date"]
    doc = dict(command=" ".join(shlex.quote(x) for x in ["python", "experiments/mambaxray_tables.py",
                                                          *(argv if argv is not None else sys.argv[1:])]),
               profile=a.profile, settings=P, rows_run=list(results), seeds=seeds, environment=OT.environment(),
               work=work.name, wall_minutes=(time.perf_counter() - t0) / 60, not_finished=missing,
               runs={r: [{k: v for k, v in x.items() if k not in ("ids", "hyps")} for x in v]
                     for r, v in results.items()},
               table=table, timing=tim, timing_carried_from=tim_from, paper=PAPER,
               encoders=encoder_histories(a.profile, work) or (previous or {}).get("encoders") or {})
    if not a.no_carry:
        for r, why in carry_over(previous, doc, rows).items(): print(f"{r}: left out: {why}")
        if doc.get("carried"): print(f"carried from the earlier results file: {', '.join(doc['carried'])}")
    if not doc["rows_run"]: raise SystemExit("no finished or carried run to tabulate")
    doc["precision"] = {r: ["bfloat16" if x.get("bf16_used", x["settings"]["bf16"] is True) else "float32" for x in v]
                        for r, v in doc["runs"].items()}            # "auto" resolves per machine: say what each run did
    if len({p for v in doc["precision"].values() for p in v}) > 1:
        print("note: these runs mix bfloat16 and float32 autocast (bf16 'auto' resolved on different machines); "
              f"the results file says which run used which: {doc['precision']}")
    OT.atomic_json(out, doc)
    print(f"results: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    for name, s in table["systems"].items():
        m = s["mean"]
        print(f"{name:<44} BLEU-4 {m['BLEU_4']:.3f}  CIDEr {m['CIDEr']:.3f}  "
              f"CE micro F1 {m['ce_micro_f1_uncertain_negative']:.3f}  distinct {s['distinct_reports']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
