"""Train the toy captioner with rrg_tutorial.train.Trainer, as a script: one process
(`python tests/toy_run.py OUT`) or DDP (`torchrun --standalone --nproc_per_node 2 tests/toy_run.py OUT`, gloo on
CPU). `--resume` continues from OUT/last.pt; `--sleep S` slows each step (for kill tests); KEY=VALUE settings."""
import argparse, sys, time
from pathlib import Path
import torch
import torch.distributed as dist
sys.path.insert(0, str(Path(__file__).parent))
from toy_model import ToyCaptioner, ToyReports, toy_collate, toy_tokenizer
from rrg_tutorial.train import Trainer, load_config


def toy_trainer(out, sets=(), dropout=0.1, **kw):
    cfg = load_config("ci", list(sets), **{**dict(n_train=None, epochs=2, batch_size=8, progress=False, lr=1e-2,
                                                  lr_visual=1e-2), **kw})
    torch.manual_seed(0)
    tok = toy_tokenizer()
    model = ToyCaptioner(tok.vocab_size, dropout=dropout)
    return Trainer(cfg, model, ToyReports(48), ToyReports(16, seed=1), out, tokenizer=tok, collate_fn=toy_collate)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("out"); p.add_argument("sets", nargs="*")
    p.add_argument("--resume", action="store_true"); p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--dropout", type=float, default=0.1)
    a = p.parse_intermixed_args()
    torch.set_num_threads(1)
    tr = toy_trainer(a.out, a.sets, dropout=a.dropout)
    if a.sleep: tr.add_callback("after_step", lambda t: time.sleep(a.sleep))
    tr.fit(resume=a.resume)
    if dist.is_initialized(): dist.destroy_process_group()
