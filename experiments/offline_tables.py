"""The RRG-Mamba paper's tables on the offline IU X-Ray set, every number from a real run.

Rows: RRG-Mamba (GDLM-T over frozen pretrained EfficientNet-Lite0 features), Table 4's ablations, Table 5's GDLM-S,
the comparison models (Transformer baseline, R2Gen-Mamba) and Fig. 4's sweep of the adapter's k, each trained with
several seeds, selected on the validation split only and scored once on the test split; the image-blind baselines
(most common report, random report), a nearest-neighbour retrieval baseline on the same visual features and a linear
probe of the findings on those features turned into template reports. Every metric gets a bootstrap 95%
interval over test studies; a row's seed mean gets one too (the same resamples for every run, so differences between
rows are paired). Table 3: parameters and training time per epoch of every model, measured side by side in one
process after the training runs.

Resumable: every run keeps its checkpoints and its result in the work folder; the same command continues where it
stopped (a run killed mid-epoch resumes from its last checkpoint exactly). A finished run is also kept in the run
records (experiments/runs/, committed), so a machine without the work folder tabulates it without training it again:
a table can be built over several machines or sessions, a few runs at a time. Results: one JSON file with the device,
versions and the exact command.

    python experiments/offline_tables.py                      # the cpu profile: 12 rows x 3 seeds (with Fig. 4's
                                                              # k sweep), 15-100 minutes a run on one thread:
                                                              # about 15 hours on 2 cores
    python experiments/offline_tables.py --rows GDLM-S --seeds 0   # one run; then --collect to tabulate
    python experiments/offline_tables.py --profile ci         # a tiny end-to-end check (a minute)
"""
from __future__ import annotations

import argparse, hashlib, json, os, platform, shlex, subprocess, sys, time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path: sys.path.insert(0, str(REPO))

import numpy as np

# Each row: overrides of the model preset (rrg_tutorial.model) on top of the profile's model settings.
ROWS = {
    "RRG-Mamba": {},
    "w/o CMA": dict(use_cma=False),
    "w/o GDLM": dict(use_gdlm=False),
    "w/o RoPE": dict(rope="none"),
    "w/o CMA+GDLM": dict(use_cma=False, use_gdlm=False),
    "Transformer": dict(variant="transformer"),
    "R2Gen-Mamba": dict(variant="r2gen_mamba"),
    "GDLM-S": dict(gdlm="S"),
    "GDLM-T": dict(gdlm="T"),     # the gpu profile's RRG-Mamba is GDLM-B (the paper's); on the CPU it is GDLM-T
}
# Fig. 4: the adapter's word identification ratio k (RRG-Mamba is k = 0.5); the same model and cost as RRG-Mamba
SWEEP_K = {f"k={k}": dict(k=k) for k in (0.1, 0.3, 0.7, 0.9)}
ROWS.update(SWEEP_K)

# Training settings per profile: a named config of rrg_tutorial.train plus overrides; what is evaluated.
PROFILES = {
    "cpu": dict(config="cpu", train=dict(n_train=None, n_val=100, epochs=10, eval_every=1, patience=3,
                                         monitor="val_loss", ckpt_every=50, progress=False),
                model_set={}, rows=[r for r in ROWS if r != "GDLM-T"], seeds=[0, 1, 2], n_test=None, n_boot=1000,
                jobs=2, threads=1,
                timing_steps=4, timing_rounds=3),
    # the paper's IU X-Ray setting (DenseNet-121 fine-tuned, GDLM-B, 30 epochs) on a GPU box; --data-dir: R2Gen's IU
    "gpu": dict(config="paper_iu", train=dict(n_val=None, ckpt_every=500, progress=True),
                model_set={}, rows=["RRG-Mamba", "w/o CMA", "w/o GDLM", "w/o RoPE", "w/o CMA+GDLM", "GDLM-T",
                                    "GDLM-S", "Transformer", "R2Gen-Mamba", *SWEEP_K],
                seeds=[0, 1, 2], n_test=None, n_boot=1000, jobs=1, threads=8, timing_steps=10, timing_rounds=3),
    "ci": dict(config="ci", train=dict(n_train=32, n_val=8, epochs=1, ckpt_every=2, progress=False),
               model_set={}, rows=["RRG-Mamba", "Transformer"], seeds=[0, 1], n_test=16, n_boot=50, jobs=1,
               threads=1, timing_steps=2, timing_rounds=1),
}

# The paper's numbers (IU X-Ray, RRG-Mamba with DenseNet-121): Tables 1, 4 and 5; Table 3's DenseNet-121 row.
PAPER = {
    "RRG-Mamba": dict(BLEU_1=0.528, BLEU_4=0.207, METEOR=0.215, ROUGE_L=0.408),     # = GDLM-B
    "w/o CMA": dict(BLEU_1=0.502, BLEU_4=0.188, METEOR=0.207, ROUGE_L=0.404),
    "w/o GDLM": dict(BLEU_1=0.491, BLEU_4=0.182, METEOR=0.193, ROUGE_L=0.395),
    "w/o RoPE": dict(BLEU_1=0.496, BLEU_4=0.180, METEOR=0.195, ROUGE_L=0.369),
    "w/o CMA+GDLM": dict(BLEU_1=0.451, BLEU_4=0.159, METEOR=0.175, ROUGE_L=0.365),
    "GDLM-T": dict(BLEU_1=0.496, BLEU_4=0.182, METEOR=0.205, ROUGE_L=0.385),
    "GDLM-S": dict(BLEU_1=0.516, BLEU_4=0.198, METEOR=0.208, ROUGE_L=0.396),
    "R2Gen-Mamba": dict(BLEU_1=0.482, BLEU_4=0.176, METEOR=0.208, ROUGE_L=0.382),   # its own paper, ResNet-101
}
PAPER_TABLE3 = {"DenseNet-121": dict(params_mb=66.56, minutes_per_epoch=1.33)}

METRICS = ["BLEU_1", "BLEU_4", "METEOR", "ROUGE_L", "CIDEr", "ce_micro_f1_uncertain_negative",
           "ce_macro_f1_uncertain_negative", "ce_micro_f1_uncertain_positive"]
BOOT_METRICS = [m for m in METRICS if m != "METEOR"]     # METEOR's resamples need Java: point values only


def slug(row: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in row).strip("_").lower()


def atomic_json(path: Path, doc) -> Path:
    "Write `doc` as JSON through a temporary file and a rename (core.atomic_write): never half a file."
    from rrg_tutorial.core import atomic_write
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, json.dumps(doc, indent=1, default=float))


# ----------------------------------------------------------------------------------------------- run records
# A finished run's outcome (its result.json and per-study statistics) is also kept in the repository, under
# experiments/runs/<work folder name>/<row>/seed<k>/: the work folder (checkpoints, caches) lives on one machine, and a
# table must be re-collectable on another. The folder name carries the settings' hash, so only runs with the same
# settings ever meet; each result.json names the machine, versions and commit it ran with.
RECORDS = REPO / "experiments" / "runs"


def keep_record(work: Path, row: str, seed: int, records: Path | None = RECORDS, name: str | None = None,
                accept=None) -> Path | None:
    """Copy a finished run of `work` into `records`/`name` (default: the work folder's name) as result.json.gz and
    stats.npz (if the run has one). `accept(result) -> None or why not` can refuse a run. Returns the record folder
    when something was written; None when records are off, the run is not finished or refused, or the record is
    already the same."""
    import gzip
    from rrg_tutorial.core import atomic_write
    src = work / slug(row) / f"seed{seed}"
    if records is None or not (src / "result.json").exists(): return None
    body = (src / "result.json").read_bytes()
    if accept and accept(json.loads(body)): return None
    dst = Path(records) / (name or work.name) / slug(row) / f"seed{seed}"
    old = dst / "result.json.gz"
    stats = (src / "stats.npz").read_bytes() if (src / "stats.npz").exists() else None
    same_stats = stats is None or ((dst / "stats.npz").exists() and (dst / "stats.npz").read_bytes() == stats)
    if old.exists() and same_stats and gzip.decompress(old.read_bytes()) == body: return None
    dst.mkdir(parents=True, exist_ok=True)
    old.unlink(missing_ok=True)                        # no record claims a result while its stats are rewritten
    if stats is not None: atomic_write(dst / "stats.npz", stats)
    atomic_write(old, gzip.compress(body, mtime=0))    # last: it marks the record whole
    return dst


def restore_records(work: Path, records: Path | None = RECORDS, name: str | None = None, accept=None,
                    need: tuple = ()) -> list[str]:
    """Put every recorded run of `records`/`name` (default: the work folder's name) into `work` where its seed
    folder does not exist yet or is empty (a folder with checkpoints holds a run of its own, maybe in progress:
    left alone). stats.npz first, then result.json, which marks a run finished. `accept(result) -> None or why
    not` can refuse a record; `need`: files a record must have. Returns the runs restored ('row-slug/seedK')."""
    import gzip, zlib
    from rrg_tutorial.core import atomic_write
    if records is None: return []
    here, got = Path(records) / (name or work.name), []
    for rec in sorted(here.glob("*/seed*/result.json.gz")):
        d = work / rec.parent.relative_to(here)
        if d.exists() and any(d.iterdir()): continue
        try: body = gzip.decompress(rec.read_bytes()); doc = json.loads(body)
        except (OSError, EOFError, ValueError, zlib.error) as e:
            raise SystemExit(f"{rec}: not a readable run record ({e}); remove it to run that seed again") from e
        lacks = [f for f in need if not (rec.parent / f).exists()]
        why = f"it lacks {lacks}" if lacks else accept(doc) if accept else None
        if why:
            print(f"{rec.parent}: not restored: {why}", flush=True)
            continue
        d.mkdir(parents=True, exist_ok=True)
        if (rec.parent / "stats.npz").exists(): atomic_write(d / "stats.npz", (rec.parent / "stats.npz").read_bytes())
        atomic_write(d / "result.json", body)
        got.append(str(rec.parent.relative_to(here)))
    return got


def sync_records(work: Path, rows, seeds, records: Path | None = RECORDS, name: str | None = None, accept=None,
                 need: tuple = ()) -> None:
    "Restore the recorded runs the work folder lacks, keep a record of every finished run it has; say what moved."
    got = restore_records(work, records, name, accept, need)
    if got: print(f"{len(got)} finished run(s) restored from the run records: {', '.join(got)}", flush=True)
    kept = [f"{r} seed {s}" for r in rows for s in seeds if keep_record(work, r, s, records, name, accept)]
    if kept: print(f"kept in the run records ({Path(records) / (name or work.name)}): {', '.join(kept)}", flush=True)


def train_config(prof: dict, row: str, seed: int):
    from rrg_tutorial.train import load_config
    model_set = {**prof["model_set"], **ROWS[row]}
    return load_config(prof["config"], {**prof["train"], "model_set": model_set, "seed": seed})


# ----------------------------------------------------------------------------------------------- one run
def run_one(profile: str, row: str, seed: int, work: Path, records: Path | None = RECORDS) -> dict:
    """Train (or resume) one (row, seed), select on validation, generate and score the test split; result.json (and
    its run record in `records`)."""
    import torch
    from rrg_tutorial.evaluate import generate_reports, study_stats, corpus_scores, diversity
    from rrg_tutorial.metrics import NLGScorer
    from rrg_tutorial.train import build_run, split_dataset, collate_for, load_checkpoint, tokenizer_from_state
    from torch.utils.data import DataLoader
    prof = PROFILES[profile]
    out = work / slug(row) / f"seed{seed}"
    if (out / "result.json").exists(): return json.loads((out / "result.json").read_text())
    cfg = train_config(prof, row, seed)
    t0 = time.perf_counter()
    tr = build_run(cfg, out)
    tr.fit(resume=True)
    # the trainer's clock survives a resume; a run resumed from a checkpoint older than that clock has only this
    # process's time, and says so
    whole = tr.state.get("seconds") is not None
    fit_s = tr.state["seconds"] if whole else time.perf_counter() - t0
    model, tok = tr.raw_model, tokenizer_from_state(tr.meta["tokenizer"])
    model.load_state_dict(load_checkpoint(out / "best.pt")["model"])           # selected on validation
    ds = split_dataset("test", tok, model.cfg, prof["n_test"], cfg.data_dir)
    dl = DataLoader(ds, batch_size=32, collate_fn=collate_for(model.cfg))
    t1 = time.perf_counter()
    ids, refs, hyps = generate_reports(model, dl, tok, cfg.beam_size, progress=False)
    gen_s = time.perf_counter() - t1
    with NLGScorer() as scorer:
        st = study_stats(refs, hyps, scorer, truncate_words=tok.max_seq_length - 1)
        scores = {k: float(v[0]) for k, v in corpus_scores(st).items()}
    save_stats(out / "stats.npz", st)
    known = adapter_findings(model, dl, st) if getattr(model, "cma", None) is not None else None
    log = [r for r in tr.state["history"] if r.get("epoch_seconds") is not None]
    res = dict(row=row, seed=seed, ids=ids, hyps=hyps, scores=scores, diversity=diversity(hyps),
               best_epoch=tr.state["best_epoch"], epochs_run=tr.state["epoch"], steps=tr.state["global_step"],
               val_history=[{k: r[k] for k in ("epoch", "val_loss", "BLEU_4", "CIDEr", "distinct_reports",
                                                 "epoch_seconds") if k in r} for r in log],
               params=sum(p.numel() for p in model.parameters()),
               trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
               adapter_findings=known, fit_seconds=fit_s, fit_seconds_whole_run=whole, generate_seconds=gen_s,
               threads=torch.get_num_threads(),
               model_config=asdict(model.cfg), train_config=asdict(cfg), environment=environment())
    atomic_json(out / "result.json", res)
    keep_record(work, row, seed, records, record_name(profile))
    return res


def adapter_findings(model, dl, st: dict, conv: str = "uncertain_negative") -> dict:
    """What the adapter's classifier (Eq. 13's 14 logits, at the model's threshold) says of each test study, scored
    like CE: against the labeler's reading of the reference report (does the model know the findings?) and of the
    model's own generated report (does its generator say what it knows?). `st`: the study statistics of the
    generated reports, in `dl`'s order. The predictions are kept per study as 14-bit integers (bit i: finding i of
    the labeler's order)."""
    import torch
    from rrg_tutorial.tables import micro_f1
    model.eval()
    with torch.no_grad():
        probs = [torch.sigmoid(model.encoder_input(model.features(b))[1]["logits"]) for b in dl]   # (B, 14) each
    pred = torch.cat(probs).numpy() > model.cfg.cls_threshold                                       # (n, 14)
    y, g = st[f"y_{conv}"], st[f"g_{conv}"]
    if pred.shape != y.shape:
        raise ValueError(f"adapter findings {pred.shape} and study statistics {y.shape} cover other studies")
    return dict(threshold=model.cfg.cls_threshold, convention=conv,
                micro_f1_vs_reference=micro_f1(y, pred), micro_f1_vs_own_reports=micro_f1(g, pred),
                reports_micro_f1_vs_reference=micro_f1(y, g),
                predicted=[int(sum(1 << i for i in np.flatnonzero(r))) for r in pred])


def save_stats(path: Path, st: dict):
    "The per-study statistics every corpus score (and its bootstrap) needs, without the Java METEOR lines."
    arrays = {f"{k}_{a}": st[k][a] for k in ("full", "cut") if k in st for a in ("bleu", "rouge", "cider")}
    arrays.update({k: st[k] for k in st if k.startswith(("y_", "g_"))})
    from rrg_tutorial.core import atomic_write
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda t: np.savez_compressed(t, **arrays))


def load_stats(path: Path) -> dict:
    z = np.load(path)
    st = {k: {a: z[f"{k}_{a}"] for a in ("bleu", "rouge", "cider")} for k in ("full", "cut") if f"{k}_bleu" in z}
    st.update({k: z[k] for k in z.files if k.startswith(("y_", "g_"))})
    st["n"] = len(st["full"]["rouge"])
    return st


# ----------------------------------------------------------------------------------------------- baselines
def pooled_features(ds, mcfg):
    """Unit-length mean of a dataset's visual feature grids over views and positions (N, C), in item order: the
    cached grids of a feature dataset, else the model's pretrained encoder through lesson 14's feature cache."""
    import torch
    if hasattr(ds, "feats"): f = torch.as_tensor(ds.feats[ds.rows])                                   # (N, V, C, h, w)
    else:
        from rrg_tutorial.visual import split_features
        got = split_features(ds.annotation, ds.image_dir, ds.split, encoder=mcfg.visual, pretrained=mcfg.pretrained,
                             n_views=mcfg.n_views, progress=False)
        row = {i: k for k, i in enumerate(got["ids"])}
        f = torch.as_tensor(got["feats"])[[row[i] for i in ds.items.id]]
    return torch.nn.functional.normalize(f.float().mean((1, 3, 4)), dim=-1)


BASELINES = ("most common report", "nearest-neighbour retrieval", "label probe + template report")   # + random


def baselines(profile: str, work: Path) -> dict:
    """Most common report, random report (per seed), 1-NN retrieval on pooled visual features and a linear probe's
    findings turned into a template report; scored on test. Systems a cached baselines.json lacks are added."""
    path = work / "baselines.json"
    old = json.loads(path.read_text()) if path.exists() else None
    if old and all(n in old["systems"] for n in BASELINES): return old
    import torch
    from rrg_tutorial.evaluate import baseline_reports, study_stats, corpus_scores, diversity
    from rrg_tutorial.metrics import NLGScorer
    from rrg_tutorial.model import preset
    from rrg_tutorial.reports import read_r2gen_annotation
    from rrg_tutorial.tokenizer import ReportTokenizer
    from rrg_tutorial.train import data_root, split_dataset
    prof = PROFILES[profile]
    cfg = train_config(prof, "RRG-Mamba", 0)
    root = data_root(cfg.data_dir)
    ann = read_r2gen_annotation(root / "annotation.json")
    mcfg = preset(cfg.model, **cfg.model_set)
    tok = ReportTokenizer.from_reports(list(ann[ann.split == "train"].report), max_seq_length=mcfg.max_seq_length)
    train = split_dataset("train", tok, mcfg, cfg.n_train, cfg.data_dir)
    test = split_dataset("test", tok, mcfg, prof["n_test"], cfg.data_dir)
    refs = [tok.clean(r) for r in test.items.report]
    train_reports = [tok.clean(r) for r in train.items.report]
    systems = {}
    for s in prof["seeds"]:
        b = baseline_reports(train_reports, len(refs), tok, seed=s)
        systems.setdefault("most common report", b["most common report"])
        systems[f"random report (seed {s})"] = b["random report"]
    # retrieval: the training report whose studies' pooled features (mean over views and the grid) are closest
    sim = pooled_features(test, mcfg) @ pooled_features(train, mcfg).T                                 # (n, N)
    systems["nearest-neighbour retrieval"] = [train_reports[j] for j in sim.argmax(1).tolist()]
    # lesson 17's linear probe: findings read from the features (C chosen on the validation studies the runs use),
    # then the most common training report with those findings
    from rrg_tutorial.tables import view_features, positive_findings, fit_label_probe, template_reports
    val = split_dataset("val", tok, mcfg, cfg.n_val, cfg.data_dir)
    y_train = positive_findings(train_reports)
    probe, val_f1 = fit_label_probe(view_features(train), y_train, view_features(val),
                                    positive_findings([tok.clean(r) for r in val.items.report]))
    systems["label probe + template report"] = template_reports(probe.predict(view_features(test)), y_train,
                                                                train_reports)
    out = dict(old["systems"]) if old else {}              # systems scored before are kept as they are
    with NLGScorer() as scorer:
        for name, hyps in systems.items():
            if name in out: continue
            st = study_stats(refs, hyps, scorer, truncate_words=tok.max_seq_length - 1)
            save_stats(work / "baselines" / f"{slug(name)}.npz", st)
            out[name] = dict(scores={k: float(v[0]) for k, v in corpus_scores(st).items()},
                             diversity=diversity(hyps), hyps=hyps, stats=f"baselines/{slug(name)}.npz")
    out["label probe + template report"]["probe"] = dict(C=probe.C, val_micro_f1=val_f1)
    atomic_json(path, dict(ids=list(test.items.id), refs=refs, systems=out))
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------------------------- Table 3
def timing(profile: str, work: Path) -> dict:
    "Parameters, seconds per training step (so per epoch) and per generated study of every row, one process."
    path = work / "timing.json"
    if path.exists(): return json.loads(path.read_text())
    import torch
    from torch.utils.data import DataLoader
    from rrg_tutorial.train import build_run, to_device
    prof = PROFILES[profile]
    torch.set_num_threads(prof["threads"])
    from dataclasses import replace
    from rrg_tutorial.reports import read_r2gen_annotation
    from rrg_tutorial.train import data_root
    trainers, batches = {}, {}
    for row in [r for r in prof["rows"] if r not in SWEEP_K]:            # a k row costs what RRG-Mamba costs
        cfg = train_config(prof, row, 0)
        ann = read_r2gen_annotation(data_root(cfg.data_dir) / "annotation.json")
        n_train = min(cfg.n_train or 10**9, int((ann.split == "train").sum()))      # the runs' training set
        small = replace(cfg, n_train=2 * cfg.batch_size, n_val=8)                    # features of 2 batches only
        tr = build_run(small, work / "timing" / slug(row))
        tr.steps_per_epoch = n_train // cfg.batch_size
        dl = DataLoader(tr.train_ds, batch_size=cfg.batch_size, collate_fn=tr.collate)
        trainers[row], batches[row] = tr, to_device(next(iter(dl)), tr.device)
    def step(tr, b):
        t = time.perf_counter()
        tr.train_step([b])
        return time.perf_counter() - t
    def generate(tr, b):
        t = time.perf_counter()
        tr.raw_model.generate(b, beam_size=tr.cfg.beam_size)
        return (time.perf_counter() - t) / len(b["ids"])
    for row, tr in trainers.items(): step(tr, batches[row])                     # warm-up
    steps = {r: [] for r in trainers}
    gens = {r: [] for r in trainers}
    for _ in range(prof["timing_rounds"]):                                       # rounds interleave the models
        for row, tr in trainers.items():
            steps[row] += [step(tr, batches[row]) for _ in range(prof["timing_steps"])]
            gens[row].append(generate(tr, batches[row]))
    out = {}
    for row, tr in trainers.items():
        m, s = tr.raw_model, float(np.median(steps[row]))
        n = sum(p.numel() for p in m.parameters())
        out[row] = dict(params=n, trainable=sum(p.numel() for p in m.parameters() if p.requires_grad),
                        params_mb_fp32=n * 4 / 2**20, seconds_per_step=s, steps_per_epoch=tr.steps_per_epoch,
                        minutes_per_epoch=s * tr.steps_per_epoch / 60, seconds_per_study=float(np.median(gens[row])),
                        batch_size=tr.cfg.batch_size, threads=torch.get_num_threads())
    base = out.get("Transformer", {}).get("seconds_per_step")
    for r in out: out[r]["time_vs_transformer"] = out[r]["seconds_per_step"] / base if base else None
    atomic_json(work / "timing_environment.json", environment())     # where and when: the cache outlives the session
    atomic_json(path, out)
    return out


# ----------------------------------------------------------------------------------------------- tables
def _scores(st: dict, w=None) -> dict:
    from rrg_tutorial.evaluate import corpus_scores
    return {k: v for k, v in corpus_scores(st, w, meteor=False).items() if k in BOOT_METRICS}


def aggregate(profile: str, work: Path, results: dict, base: dict, n_boot: int, seed: int = 0) -> dict:
    """Per row: each seed's scores, mean and sd over seeds, a bootstrap CI of the seed mean, and the paired
    difference to RRG-Mamba (same resampled studies for every run)."""
    rng = np.random.default_rng(seed)
    n = len(base["refs"])
    w = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_boot)])   # (B, n)
    boot, rows = {}, {}
    for row, runs in results.items():
        stats = [load_stats(work / slug(row) / f"seed{r['seed']}" / "stats.npz") for r in runs]
        per_seed = [_scores(st, w) for st in stats]                              # B resamples per seed
        boot[row] = {k: np.mean([p[k] for p in per_seed], 0) for k in BOOT_METRICS}   # (B,) seed means
        vals = {k: [r["scores"][k] for r in runs] for k in METRICS}
        div = [r["diversity"]["distinct_reports"] for r in runs]
        rows[row] = dict(seeds=[r["seed"] for r in runs], values=vals,
                         mean={k: float(np.mean(v)) for k, v in vals.items()},
                         sd={k: float(np.std(v, ddof=1)) if len(v) > 1 else None for k, v in vals.items()},
                         ci={k: [float(np.quantile(boot[row][k], 0.025)), float(np.quantile(boot[row][k], 0.975))]
                             for k in BOOT_METRICS},
                         distinct_reports=div, best_epoch=[r["best_epoch"] for r in runs],
                         adapter_micro_f1=[(r.get("adapter_findings") or {}).get("micro_f1_vs_reference")
                                           for r in runs],
                         fit_minutes=[r["fit_seconds"] / 60 for r in runs])
    ref = "RRG-Mamba"
    for row in rows:
        if row == ref or ref not in boot: continue
        d = {k: boot[ref][k] - boot[row][k] for k in BOOT_METRICS}
        rows[row]["diff_from_rrg_mamba"] = {
            k: dict(value=rows[ref]["mean"][k] - rows[row]["mean"][k],
                    ci=[float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975))]) for k, v in d.items()}
    bl = {}
    for name, b in base["systems"].items():
        st = load_stats(work / b["stats"])
        bs = _scores(st, w)
        bl[name] = dict(scores=b["scores"], distinct_reports=b["diversity"]["distinct_reports"],
                        ci={k: [float(np.quantile(bs[k], 0.025)), float(np.quantile(bs[k], 0.975))] for k in bs})
        if ref in boot:
            bl[name]["rrg_mamba_minus_baseline"] = {
                k: dict(value=rows[ref]["mean"][k] - b["scores"][k],
                        ci=[float(np.quantile(boot[ref][k] - bs[k], 0.025)),
                            float(np.quantile(boot[ref][k] - bs[k], 0.975))]) for k in bs}
    return dict(rows=rows, baselines=bl, n_test=n, n_boot=n_boot)


def environment() -> dict:
    import torch
    try: commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    except OSError: commit = None
    cpu = platform.processor() or platform.machine()
    try: cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration): pass
    try:                              # the vector instructions decide which kernels run, so the last bits of a run
        flags = next(l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags"))
        isa = sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except (OSError, StopIteration): isa = None
    return dict(date=datetime.now(timezone.utc).isoformat(timespec="seconds"), python=platform.python_version(),
                torch=torch.__version__, numpy=np.__version__, platform=platform.platform(), cpu=cpu,
                cpu_count=os.cpu_count(), cpu_isa=isa, cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                git_commit=commit)


def same_runs(then: dict, now: dict, metrics=METRICS) -> str | None:
    "None when two table entries come from the same runs (same seeds, every per-seed score equal); else what differs."
    if list(then["seeds"]) != list(now["seeds"]): return f"seeds {then['seeds']} then, {now['seeds']} now"
    for k in metrics:
        a, b = then["values"].get(k), now["values"].get(k)
        if a is None or b is None or len(a) != len(b) or any(abs(x - y) > 1e-12 for x, y in zip(a, b)):
            return f"{k} {a} then, {b} now"
    return None


def previous_results(path: Path, prof: dict, n_boot: int, key=None) -> dict | None:
    """The results file at `path` if it was written with the same run settings (`key`: the script's settings hash,
    default this one's) and resamples (else None)."""
    key = key or settings_key
    if not path.is_file(): return None
    try: doc = json.loads(path.read_text())
    except ValueError: return None
    try: same = key(doc["settings"]) == key(prof) and doc["table"]["n_boot"] == n_boot
    except (KeyError, TypeError): return None
    return doc if same else None


def carry_over(previous: dict | None, doc: dict, wanted: list[str], ref: str = "RRG-Mamba") -> dict:
    """Rows of `wanted` that have no finished run here (neither in the work folder nor in the run records) are
    taken from `previous`, the last results file of the same settings, with their per-seed scores, intervals and
    paired differences, but only when `ref` comes from the same runs in both (same seeds, every per-seed score
    equal): their differences were then taken against the same runs with the same resamples. Each carried row says
    where it came from. Returns {row: why it was not carried} for the rows left out."""
    left = [r for r in wanted if r not in doc["table"]["rows"]]
    if not left: return {}
    if previous is None: return {r: "no earlier results file with these settings" for r in left}
    why = same_runs(previous["table"]["rows"][ref], doc["table"]["rows"][ref]) if ref in previous["table"]["rows"] \
        else f"the earlier file has no {ref}"
    out, env = {}, previous["environment"]
    for r in left:
        if r not in previous["table"]["rows"]: out[r] = "not in the earlier file either"
        elif why: out[r] = f"{ref} is not the same runs as in the earlier file ({why})"
        else:
            prev = previous["table"]["rows"][r]
            doc["table"]["rows"][r] = {**prev, "carried_from": prev.get("carried_from")
                                       or dict(date=env["date"], git_commit=env["git_commit"])}
            doc["runs"][r] = previous["runs"][r]
            if r in previous.get("examples", {}): doc["examples"][r] = previous["examples"][r]
    return settle_carried(doc, wanted, doc["table"]["rows"], left, out)


# ----------------------------------------------------------------------------------------------- driver
def settings_key(prof: dict) -> str:
    "A short hash of the settings that change a run's outcome (not how runs are scheduled)."
    return hashlib.sha1(json.dumps({k: prof[k] for k in ("config", "train", "model_set", "n_test")},
                                   sort_keys=True).encode()).hexdigest()[:10]


def record_name(profile: str) -> str:
    "The name of a profile's default work folder and of its run records: the script, the profile, the settings."
    return f"offline_tables-{profile}-{settings_key(PROFILES[profile])}"


def work_folder(profile: str, root: Path | None) -> Path:
    "The work folder of a profile: its settings decide the name, so changed settings never mix with old runs."
    from rrg_tutorial.core import cache_dir
    name = record_name(profile)                     # also the name of its run records
    return (Path(root) / name) if root else cache_dir("experiments", name)


def run_workers(script: str, profile: str, work: Path, rows: list[str], seeds: list[int], jobs: int, threads: int,
                extra: list[str] | None = None):
    """Every pending (row, seed) of `script` (a run is done when its result.json exists) in `jobs` worker processes
    of `threads` threads (`script --profile P --work W --one ROW SEED`); a failed run stops the table."""
    from tqdm.auto import tqdm
    todo = [(r, s) for r in rows for s in seeds if not (work / slug(r) / f"seed{s}" / "result.json").exists()]
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {})}
    running, failed = [], []
    bar = tqdm(total=len(rows) * len(seeds), initial=len(rows) * len(seeds) - len(todo), desc="runs")
    while todo or running:
        while todo and len(running) < jobs:
            r, s = todo.pop(0)
            d = work / slug(r) / f"seed{s}"
            d.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, script, "--profile", profile, "--work", str(work), "--one", r, str(s), *(extra or [])]
            running.append((r, s, subprocess.Popen(cmd, env=env, stdout=open(d / "run.log", "a"),
                                                   stderr=subprocess.STDOUT)))
        time.sleep(2)
        for item in list(running):
            r, s, p = item
            if p.poll() is None: continue
            running.remove(item)
            bar.update()
            if p.returncode:
                failed.append(f"{r} seed {s} (exit {p.returncode}; see {work / slug(r) / f'seed{s}' / 'run.log'})")
    bar.close()
    if failed: raise SystemExit("failed runs: " + "; ".join(failed))


def add_record_args(p: argparse.ArgumentParser, carried_when: str) -> None:
    "The command-line options of the run records and of carrying rows, shared by the experiment scripts."
    p.add_argument("--records", type=Path, default=RECORDS,
                   help="where finished runs are kept beside the work folder, so that another machine can tabulate "
                        "them (default experiments/runs; committed with the results file)")
    p.add_argument("--no-records", action="store_true", help="keep no run records")
    p.add_argument("--no-carry", action="store_true",
                   help="leave out rows without finished runs here instead of carrying them from the earlier results "
                        f"file (carried only when {carried_when})")


def settle_carried(doc: dict, wanted: list[str], have, left: list[str], out: dict) -> dict:
    """After a carry: `rows_run` (the rows of `wanted` the file now has, in `have`), `carried` (the rows of `left`
    that were carried) and `not_finished` without the seeds a carried row stands for. Returns `out`."""
    doc["rows_run"] = [r for r in wanted if r in have]
    doc["carried"] = [r for r in left if r not in out]
    doc["not_finished"] = [m for m in doc.get("not_finished", [])
                           if not any(m.startswith(f"{r} seed ") for r in doc["carried"])]
    return out


def records_args(records: Path | None) -> list[str]:
    "How a worker process is told where run records go (`--records DIR` or `--no-records`)."
    return ["--no-records"] if records is None else ["--records", str(records)]


def run_all(profile: str, work: Path, rows: list[str], seeds: list[int], jobs: int, threads: int,
            records: Path | None = RECORDS):
    "Every pending (row, seed) of this script's profile in worker processes (run_workers)."
    data_dir = PROFILES[profile]["train"].get("data_dir")
    run_workers(__file__, profile, work, rows, seeds, jobs, threads,
                (["--data-dir", data_dir] if data_dir else []) + records_args(records))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="cpu", choices=list(PROFILES), help="sizes and budgets (default cpu)")
    p.add_argument("--rows", nargs="+", choices=list(ROWS), metavar="ROW",
                   help=f"rows to run (default: the profile's), of: {', '.join(ROWS)}")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds per row (default: the profile's)")
    p.add_argument("--jobs", type=int, help="runs at once, each its own process (default: the profile's)")
    p.add_argument("--threads", type=int, help="torch threads per run (default: the profile's)")
    p.add_argument("--work", type=Path, help="work folder (default: the course cache, named by the settings)")
    p.add_argument("--out", type=Path, help="results file (default experiments/results/offline_tables_PROFILE.json)")
    p.add_argument("--data-dir", type=Path, help="a dataset in R2Gen's layout (annotation.json + images/); "
                                                 "default: the offline IU X-Ray set")
    p.add_argument("--no-timing", action="store_true", help="skip Table 3's side-by-side timing")
    p.add_argument("--collect", action="store_true",
                   help="run nothing: tabulate the runs already finished in the work folder (a row needs >= 1 seed)")
    add_record_args(p, "RRG-Mamba's runs are the same in both")
    p.add_argument("--one", nargs=2, metavar=("ROW", "SEED"), help=argparse.SUPPRESS)   # a worker process
    a = p.parse_args(argv)
    records = None if a.no_records else a.records
    if a.data_dir:                    # part of the settings: a new work folder, and every worker reads it
        if not (a.data_dir / "annotation.json").is_file():
            p.error(f"--data-dir {a.data_dir} has no annotation.json (R2Gen's layout: annotation.json + images/)")
        PROFILES[a.profile]["train"]["data_dir"] = str(a.data_dir.resolve())
    prof = PROFILES[a.profile]
    work = a.work or work_folder(a.profile, None)
    if a.one:
        import torch
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", prof["threads"])))
        run_one(a.profile, a.one[0], int(a.one[1]), work, records)
        return 0
    rows, seeds = a.rows or prof["rows"], a.seeds or prof["seeds"]
    out = a.out or REPO / "experiments" / "results" / f"offline_tables_{a.profile}.json"
    t0 = time.perf_counter()
    print(f"work folder: {work}", flush=True)
    sync = lambda: sync_records(work, rows, seeds, records, record_name(a.profile), need=("stats.npz",))
    sync()
    base = baselines(a.profile, work)
    if not a.collect:
        run_all(a.profile, work, rows, seeds, a.jobs or prof["jobs"], a.threads or prof["threads"], records)
        sync()
    done = lambda r, s: (work / slug(r) / f"seed{s}" / "result.json").exists()
    missing = [f"{r} seed {s}" for r in rows for s in seeds if not done(r, s)]
    if missing: print(f"not finished, left out: {', '.join(missing)}")
    results = {r: [json.loads((work / slug(r) / f"seed{s}" / "result.json").read_text()) for s in seeds if done(r, s)]
               for r in rows}
    rows = [r for r in rows if results[r]]
    if "RRG-Mamba" not in rows: raise SystemExit("no finished RRG-Mamba run to tabulate")
    results = {r: results[r] for r in rows}
    table = aggregate(a.profile, work, results, base, prof["n_boot"])
    previous = None if a.no_carry else previous_results(out, prof, prof["n_boot"])
    tim, tim_from = (None, None) if a.no_timing else (timing(a.profile, work), None)
    tim_env = work / "timing_environment.json"
    tim_env = json.loads(tim_env.read_text()) if tim is not None and tim_env.exists() else None
    if tim is None and previous and previous.get("timing"):                 # --no-timing keeps the measured one
        tim = previous["timing"]
        tim_from = previous.get("timing_carried_from") or previous["environment"]["date"]
        tim_env = previous.get("timing_environment")
    examples = {"ids": base["ids"][:8], "references": base["refs"][:8],
                **{r: results[r][0]["hyps"][:8] for r in rows}}
    doc = dict(command=" ".join(shlex.quote(x) for x in ["python", "experiments/offline_tables.py", *(argv or sys.argv[1:])]),
               profile=a.profile, settings=prof, all_rows=prof["rows"], rows_run=rows, seeds=seeds,
               environment=environment(), work=work.name,
               wall_minutes=(time.perf_counter() - t0) / 60, not_finished=missing,
               run_minutes=sum(x["fit_seconds"] + x["generate_seconds"] for v in results.values() for x in v) / 60,
               run_minutes_partial=[f"{r} seed {x['seed']}" for r, v in results.items() for x in v
                                    if x.get("fit_seconds_whole_run") is False],   # resumed: last process only
               runs={r: [{k: v for k, v in x.items() if k not in ("ids", "hyps")}
                                                                     for x in results[r]] for r in rows},
               table=table, timing=tim, timing_carried_from=tim_from, timing_environment=tim_env, paper=PAPER,
               paper_table3=PAPER_TABLE3,
               examples=examples)
    if not a.no_carry:
        for r, why in carry_over(previous, doc, a.rows or prof["rows"]).items(): print(f"{r}: left out: {why}")
        if doc.get("carried"): print(f"carried from the earlier results file: {', '.join(doc['carried'])}")
    rows = doc["rows_run"]
    atomic_json(out, doc)
    print(f"results: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    for r in rows:
        m, s = table["rows"][r]["mean"], table["rows"][r]["sd"]
        print(f"{r:<14} BLEU-4 {m['BLEU_4']:.3f}+-{s['BLEU_4'] or 0:.3f}  CIDEr {m['CIDEr']:.3f}  "
              f"CE micro F1 {m['ce_micro_f1_uncertain_negative']:.3f}  distinct {table['rows'][r]['distinct_reports']}")
    for name, b in table["baselines"].items():
        print(f"{name:<30} BLEU-4 {b['scores']['BLEU_4']:.3f}  CIDEr {b['scores']['CIDEr']:.3f}  "
              f"CE micro F1 {b['scores']['ce_micro_f1_uncertain_negative']:.3f}")
    return 0


if __name__ == "__main__": sys.exit(main())
