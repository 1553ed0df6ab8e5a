"""The trainer: exact resume (bitwise, also after a hard kill), DDP with 2 processes = 1 process, the pieces, the CLI."""
import os, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy_run import toy_trainer
from rrg_tutorial.train import (CONFIGS, LRFactor, TrainConfig, epoch_order, load_checkpoint, load_config,
                                rng_state, save_atomic, set_rng_state, step_batches)

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
SETTINGS = dict(epochs=3, batch_size=16, grad_accum=2, ckpt_every=2)   # 3 steps per epoch; checkpoints at 2, 4, ...


def weights(path):
    return load_checkpoint(path)["model"]


def assert_bitwise(a, b):
    assert a.keys() == b.keys()
    for k in a: assert torch.equal(a[k], b[k]), f"{k} differs"


class Stop(Exception): pass


def stop_at(k):
    def fn(t):
        if t.state["global_step"] == k: raise Stop(k)
    return fn


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    toy_trainer(out, **SETTINGS).fit()
    return out


@pytest.mark.parametrize("k", [1, 5, 6, 9])   # before any checkpoint, mid-epoch, at an epoch's end, the last step
def test_resume_is_bitwise_exact(uninterrupted, tmp_path, k):
    with pytest.raises(Stop):
        toy_trainer(tmp_path, **SETTINGS).add_callback("after_step", stop_at(k)).fit()
    toy_trainer(tmp_path, **SETTINGS).fit(resume=True)          # a fresh process would do exactly this
    for name in ("last.pt", "best.pt"): assert_bitwise(weights(uninterrupted / name), weights(tmp_path / name))
    a, b = pd.read_csv(uninterrupted / "log.csv"), pd.read_csv(tmp_path / "log.csv")
    pd.testing.assert_frame_equal(a.drop(columns="epoch_seconds"), b.drop(columns="epoch_seconds"))


class Clock:
    "A perf_counter that moves one second per call: each step and each validation then lasts exactly one second."
    def __init__(self): self.t = 0.0
    def __call__(self):
        self.t += 1.0
        return self.t


def test_clock_survives_a_resume(tmp_path, monkeypatch):
    "3 epochs x 3 steps + 3 validations = 12 s, also when stopped at step 5 (checkpoint at 4) and resumed."
    import rrg_tutorial.train as train
    monkeypatch.setattr(train.time, "perf_counter", Clock())
    full = toy_trainer(tmp_path / "full", **SETTINGS).fit()
    with pytest.raises(Stop):
        toy_trainer(tmp_path / "cut", **SETTINGS).add_callback("after_step", stop_at(5)).fit()
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["state"]["seconds"] == 4 + 1        # 4 steps, 1 validation
    rest = toy_trainer(tmp_path / "cut", **SETTINGS).fit(resume=True)
    for tr in (full, rest):
        assert tr.state["seconds"] == 12
        assert [r["epoch_seconds"] for r in tr.state["history"] if "epoch_seconds" in r] == [3, 3, 3]
    ck = load_checkpoint(tmp_path / "cut" / "last.pt")          # a checkpoint from before the clock existed:
    del ck["state"]["seconds"], ck["state"]["epoch_seconds"]
    ck["state"].update(epoch=2, step=0, order=None)
    save_atomic(ck, tmp_path / "cut" / "last.pt")
    old = toy_trainer(tmp_path / "cut", **SETTINGS).fit(resume=True)
    assert old.state["seconds"] is None                         # its earlier time is unknown, not zero
    assert old.state["history"][-1]["epoch_seconds"] == 3


def test_resume_after_sigkill(tmp_path):
    "A real process killed at an arbitrary moment (even inside a checkpoint write) resumes to the same weights."
    script = [sys.executable, str(ROOT / "tests" / "toy_run.py")]
    sets = [f"{k}={v}" for k, v in {**SETTINGS, "ckpt_every": 1}.items()]
    ref = subprocess.run(script + [str(tmp_path / "ref"), *sets], env=ENV, capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr[-2000:]
    out = tmp_path / "killed"
    p = subprocess.Popen(script + [str(out), "--sleep", "0.3", *sets], env=ENV)
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline and p.poll() is None: time.sleep(0.02)
    assert p.poll() is None, "the training process ended before it could be killed"
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    step = load_checkpoint(out / "last.pt")["state"]["global_step"]
    assert 0 < step < 9, f"the kill came too late (step {step})"
    r = subprocess.run(script + [str(out), "--resume", *sets], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert_bitwise(weights(tmp_path / "ref" / "last.pt"), weights(out / "last.pt"))


def test_ddp_two_processes_match_one(tmp_path):
    "torchrun, 2 CPU processes (gloo), global batch 8 = 4 + 4, against 1 process with batch 8; no dropout."
    one, two = tmp_path / "one", tmp_path / "two"
    base = [str(ROOT / "tests" / "toy_run.py"), "--dropout", "0"]
    r1 = subprocess.run([sys.executable, *base[:1], str(one), *base[1:]], env=ENV, capture_output=True, text=True)
    r2 = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                         base[0], str(two), *base[1:]], env=ENV, capture_output=True, text=True)
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr[-2000:] + r2.stderr[-2000:]
    ck1, ck2 = load_checkpoint(one / "last.pt"), load_checkpoint(two / "last.pt")
    assert ck2["world"] == 2 and len(ck2["rng"]) == 2
    for k, v in ck1["model"].items(): torch.testing.assert_close(ck2["model"][k], v, rtol=1e-5, atol=1e-6)
    l1, l2 = pd.read_csv(one / "log.csv"), pd.read_csv(two / "log.csv")
    np.testing.assert_allclose(l1["loss"].dropna(), l2["loss"].dropna(), rtol=1e-5)


def test_step_batches_partition_the_global_batch():
    order = epoch_order(50, seed=1, epoch=3)
    assert sorted(order) == list(range(50)) and not np.array_equal(order, epoch_order(50, 1, 4))
    one = step_batches(order, 8, grad_accum=2)
    two = [step_batches(order, 8, grad_accum=1, rank=r, world=2) for r in range(2)]
    assert len(one) == 6                                          # 50 // 8: the incomplete batch is dropped
    for s in range(6):
        assert sorted(sum(one[s], [])) == sorted(two[0][s][0] + two[1][s][0]) == sorted(order[8 * s:8 * s + 8])
    with pytest.raises(ValueError, match="multiple"): step_batches(order, 6, grad_accum=4)


def test_lr_factor_matches_torch_schedulers():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    ref = torch.optim.lr_scheduler.StepLR(opt, step_size=2 * 5, gamma=0.5)   # 2 epochs of 5 steps
    f = LRFactor("step", steps_per_epoch=5, total_steps=40, step_size=2, gamma=0.5)
    for t in range(40):
        assert f(t) == pytest.approx(opt.param_groups[0]["lr"])
        opt.step(); ref.step()
    opt = torch.optim.SGD([p], lr=1.0)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=30)
    f = LRFactor("cosine", steps_per_epoch=5, total_steps=40, warmup_steps=10)
    assert [f(t) for t in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    for t in range(10, 40):
        assert f(t) == pytest.approx(opt.param_groups[0]["lr"])
        opt.step(); ref.step()


def test_rng_state_round_trip():
    import random
    s = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(s)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_save_atomic_leaves_no_partial_file(tmp_path, monkeypatch):
    save_atomic({"x": torch.ones(2)}, tmp_path / "a.pt")
    def boom(*a, **k): raise OSError("disk full")
    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError): save_atomic({"x": torch.zeros(2)}, tmp_path / "a.pt")
    assert torch.equal(torch.load(tmp_path / "a.pt")["x"], torch.ones(2))      # the old file is intact


def test_param_groups_and_optimizers(tmp_path):
    tr = toy_trainer(tmp_path, optimizer="adam_amsgrad", lr=1e-4, lr_visual=5e-5)
    names = [g["name"] for g in tr.opt.param_groups]
    assert names == ["visual", "rest"] and isinstance(tr.opt, torch.optim.Adam) and tr.opt.defaults["amsgrad"]
    assert [g["initial_lr"] for g in tr.opt.param_groups] == [5e-5, 1e-4]
    assert isinstance(toy_trainer(tmp_path, optimizer="adamw").opt, torch.optim.AdamW)


def test_early_stopping_and_selection_on_validation(tmp_path):
    tr = toy_trainer(tmp_path, epochs=8, lr=0.0, lr_visual=0.0, patience=2, monitor="val_loss").fit()
    assert tr.state["stopped"] and tr.state["epoch"] == 3     # no change -> no improvement after epoch 1
    assert tr.state["best_epoch"] == 1 and (tmp_path / "best.pt").exists()
    assert "optimizer" not in load_checkpoint(tmp_path / "best.pt")


def test_config_errors(tmp_path):
    assert set(CONFIGS) >= {"paper_iu", "paper_mimic", "cpu", "ci"}
    for name in CONFIGS: assert isinstance(load_config(name), TrainConfig)
    assert load_config("ci", ["lr=0.5", "n_val=null", "model_set.d_model=8"]).model_set == {"d_model": 8}
    with pytest.raises(ValueError, match="unknown setting"): load_config("ci", ["lr_typo=1"])
    with pytest.raises(ValueError, match="neither a named config"): load_config("nope")
    with pytest.raises(ValueError, match="optimizer must be"): load_config("ci", ["optimizer=sgd"])
    with pytest.raises(ValueError, match="key=value"): load_config("ci", ["lr"])
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"): load_config(str(tmp_path / "bad.json"))


def test_resume_refuses_changed_settings(tmp_path):
    toy_trainer(tmp_path, epochs=1).fit()
    with pytest.raises(ValueError, match="different settings"): toy_trainer(tmp_path, epochs=2, lr=0.5).fit(resume=True)
    toy_trainer(tmp_path, epochs=2).fit(resume=True)              # more epochs: allowed
    with pytest.raises(ValueError, match="weights only"): toy_trainer(tmp_path).load(tmp_path / "best.pt")
