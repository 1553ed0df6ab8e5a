"""SS2D (VMamba's four-route selective scan block) vs same-width multi-head self-attention over the H*W tokens of a
grid: forward+backward time, activation bytes kept for backward, and peak allocated bytes, at several grid sizes,
measured side by side in one run. Prints one table, the log-log slopes (1 = linear, 2 = quadratic) and the machine.

    python benchmarks/ss2d_vs_attention.py                       # grids 7 14 28 56 64, width 96, batch 1
    python benchmarks/ss2d_vs_attention.py --grids 7 14 28 --width 192 --repeats 5 --device cuda

What is measured (see lesson 06): the fastest of `repeats` wall-clock times of a forward+backward pass (after two
warm-up calls; the three blocks take turns within each repeat; the median and the process CPU time are printed too);
`kept`: distinct tensor storage autograd saves for backward (rrg_tutorial.core.saved_tensor_bytes); `peak`: the peak
of bytes torch allocated during one forward+backward above what was live before (CPU: profiler allocation records;
CUDA: max_memory_allocated). The SS2D scan is whatever rrg_tutorial.scan.selective_scan picks on the device.
"""
from __future__ import annotations
import argparse, os, platform, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np
import torch

from rrg_tutorial.core import seed_everything
from rrg_tutorial.ss2d import ss2d_vs_attention


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"): cpu = line.split(":", 1)[1].strip(); break
    except OSError: pass
    s = f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}"
    if torch.cuda.is_available(): s += f", GPU {torch.cuda.get_device_name()}"
    return s


def slope(L, v): return float(np.polyfit(np.log(np.asarray(L, float)), np.log(np.asarray(v, float)), 1)[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grids", type=int, nargs="+", default=[7, 14, 28, 56, 64])
    ap.add_argument("--width", type=int, default=96, help="d_model of both blocks (VMamba-T's first stage: 96)")
    ap.add_argument("--d-state", type=int, default=16)
    ap.add_argument("--heads", type=int, default=None, help="attention heads (default width // 32)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: stable on a shared machine; 0 = torch's default)")
    a = ap.parse_args(argv)
    seed_everything(a.seed)
    dev = torch.device(a.device)
    df = ss2d_vs_attention(a.grids, width=a.width, d_state=a.d_state, heads=a.heads, batch=a.batch, repeats=a.repeats, device=dev,
                           threads=a.threads or None)
    try:
        from rrg_tutorial.scan import last_backend
        backend = last_backend()
    except ImportError: backend = "?"
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end of the run")
    print(f"width {a.width}, d_state {a.d_state}, batch {a.batch}, repeats {a.repeats}, threads {a.threads or torch.get_num_threads()}, "
          f"device {dev}, SS2D scan backend: {backend}\n")
    ms = df.pivot(index="L", columns="block", values="ms")
    med = df.pivot(index="L", columns="block", values="ms_median")
    cpu = df.pivot(index="L", columns="block", values="cpu_ms")
    kept = df.pivot(index="L", columns="block", values="kept_MiB")
    peak = df.pivot(index="L", columns="block", values="peak_MiB")
    blocks = list(dict.fromkeys(df.block))
    head = f"{'grid':>7} {'L':>6} | " + " | ".join(f"{b[:18]:^49}" for b in blocks) + f" | {'attn(math)/SS2D':^26}"
    sub = f"{'':>7} {'':>6} | " + " | ".join(f"{'ms':>8} {'median':>8} {'cpu ms':>8} {'kept MiB':>10} {'peak MiB':>10}" for _ in blocks) + f" | {'time':>7} {'kept':>8} {'peak':>8}"
    print(head); print(sub); print("-" * len(sub))
    for L in ms.index:
        g = int(round(L ** 0.5))
        cells = " | ".join(f"{ms.loc[L, b]:8.1f} {med.loc[L, b]:8.1f} {cpu.loc[L, b]:8.1f} {kept.loc[L, b]:10.2f} {peak.loc[L, b]:10.2f}" for b in blocks)
        a = "attention (math)"
        print(f"{g:>3}x{g:<3} {L:>6} | {cells} | {ms.loc[L, a] / ms.loc[L, 'SS2D']:7.2f} "
              f"{kept.loc[L, a] / kept.loc[L, 'SS2D']:8.2f} {peak.loc[L, a] / peak.loc[L, 'SS2D']:8.2f}")
    print("\nlog-log slopes (fastest times; 1 = linear in L, 2 = quadratic) over all grids, and over the two largest:")
    for b in blocks:
        d = df[df.block == b]
        print(f"  {b:<18} time {slope(d.L, d.ms):.2f} ({slope(d.L.iloc[-2:], d.ms.iloc[-2:]):.2f})   kept {slope(d.L, d.kept_MiB):.2f} "
              f"({slope(d.L.iloc[-2:], d.kept_MiB.iloc[-2:]):.2f})   peak {slope(d.L, d.peak_MiB):.2f} ({slope(d.L.iloc[-2:], d.peak_MiB.iloc[-2:]):.2f})")
    print("\nwhere attention(math) would cost as much as SS2D (intersection of the two fitted power laws over the two")
    print("largest grids; an extrapolation when it lies beyond the measured range):")
    s_, a_ = df[df.block == "SS2D"], df[df.block == "attention (math)"]
    for col in ("ms", "kept_MiB", "peak_MiB"):
        print(f"  {col:<9} L* = {crossover(s_.L.iloc[-2:], s_[col].iloc[-2:], a_.L.iloc[-2:], a_[col].iloc[-2:]):,.0f}")
    return df


def crossover(L1, v1, L2, v2):
    "L where the power laws fitted to (L1, v1) and (L2, v2) meet (inf if they never do)."
    b1, a1 = np.polyfit(np.log(np.asarray(L1, float)), np.log(np.asarray(v1, float)), 1)
    b2, a2 = np.polyfit(np.log(np.asarray(L2, float)), np.log(np.asarray(v2, float)), 1)
    return float(np.exp((a1 - a2) / (b2 - b1))) if b2 != b1 else float("inf")


if __name__ == "__main__":
    main()
