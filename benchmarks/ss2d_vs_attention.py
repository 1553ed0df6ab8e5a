"""SS2D (VMamba's four-route selective scan block) vs same-width multi-head self-attention over the H*W tokens of a
grid: forward+backward time, activation bytes kept for backward, and peak allocated bytes, at several grid sizes,
measured side by side in one run. Prints one table, the log-log slopes (1 = linear, 2 = quadratic) and the machine.

    python benchmarks/ss2d_vs_attention.py                       # grids 7 14 28 56 64, width 96, batch 1
    python benchmarks/ss2d_vs_attention.py --grids 7 14 28 --width 192 --repeats 5 --device cuda

What is measured (see lesson 06): median wall-clock time of `repeats` forward+backward passes after one warm-up;
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
    s = f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
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
    a = ap.parse_args(argv)
    seed_everything(a.seed)
    dev = torch.device(a.device)
    df = ss2d_vs_attention(a.grids, width=a.width, d_state=a.d_state, heads=a.heads, batch=a.batch, repeats=a.repeats, device=dev)
    try:
        from rrg_tutorial.scan import last_backend
        backend = last_backend()
    except ImportError: backend = "?"
    print(f"machine: {machine()}")
    print(f"width {a.width}, d_state {a.d_state}, batch {a.batch}, repeats {a.repeats}, device {dev}, SS2D scan backend: {backend}\n")
    ms = df.pivot(index="L", columns="block", values="ms")
    kept = df.pivot(index="L", columns="block", values="kept_MiB")
    peak = df.pivot(index="L", columns="block", values="peak_MiB")
    blocks = list(dict.fromkeys(df.block))
    head = f"{'grid':>7} {'L':>6} | " + " | ".join(f"{b[:18]:^31}" for b in blocks) + f" | {'attn(math)/SS2D':^17}"
    sub = f"{'':>7} {'':>6} | " + " | ".join(f"{'ms':>9} {'kept MiB':>10} {'peak MiB':>10}" for _ in blocks) + f" | {'time':>7} {'peak':>8}"
    print(head); print(sub); print("-" * len(sub))
    for L in ms.index:
        g = int(round(L ** 0.5))
        cells = " | ".join(f"{ms.loc[L, b]:9.2f} {kept.loc[L, b]:10.2f} {peak.loc[L, b]:10.2f}" for b in blocks)
        print(f"{g:>3}x{g:<3} {L:>6} | {cells} | {ms.loc[L, 'attention (math)'] / ms.loc[L, 'SS2D']:7.2f} "
              f"{peak.loc[L, 'attention (math)'] / peak.loc[L, 'SS2D']:8.2f}")
    print("\nlog-log slopes over all grids (1 = linear in L, 2 = quadratic); and over the two largest:")
    for b in blocks:
        d = df[df.block == b]
        print(f"  {b:<18} time {slope(d.L, d.ms):.2f} ({slope(d.L.iloc[-2:], d.ms.iloc[-2:]):.2f})   kept {slope(d.L, d.kept_MiB):.2f} "
              f"({slope(d.L.iloc[-2:], d.kept_MiB.iloc[-2:]):.2f})   peak {slope(d.L, d.peak_MiB):.2f} ({slope(d.L.iloc[-2:], d.peak_MiB.iloc[-2:]):.2f})")
    return df


if __name__ == "__main__":
    main()
