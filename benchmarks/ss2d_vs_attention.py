"""SS2D (VMamba's four-route selective scan block) vs same-width multi-head self-attention over the H*W tokens of
a grid: forward+backward time, activation bytes kept for backward, and peak allocated bytes, at several grid sizes,
measured side by side in one run. Prints one table, the log-log slopes (1 = linear, 2 = quadratic), the growth
from each grid to the next, and the machine.

    python benchmarks/ss2d_vs_attention.py                       # grids 7 14 28 56 80, width 96, batch 1
    python benchmarks/ss2d_vs_attention.py --grids 7 14 28 --width 192 --repeats 5 --device cuda

What is measured (see lesson 06): the fastest of `repeats` wall-clock times of a forward+backward pass (after two
warm-up calls; the three blocks take turns within each repeat; the median and the process CPU time are printed
too); `kept`: distinct tensor storage autograd saves for backward (rrg_tutorial.core.saved_tensor_bytes); `peak`:
the peak of bytes torch allocated during one forward+backward above what was live before (CPU: profiler allocation
records; CUDA: max_memory_allocated). The SS2D scan is whatever rrg_tutorial.scan.selective_scan picks on the device.

Memory is counted in bytes and is the same on every run. Wall-clock time moves with whatever else the machine is
doing; the process CPU time (`cpu ms`, one thread) is less disturbed by other processes, which is why its slopes
are printed as well.
"""
from __future__ import annotations
import argparse, os, platform, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np
import torch

from rrg_tutorial.core import seed_everything
from rrg_tutorial.ss2d import ss2d_vs_attention

COLS = ("ms", "ms_median", "cpu_ms", "kept_MiB", "peak_MiB")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    s = f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}"
    if torch.cuda.is_available(): s += f", GPU {torch.cuda.get_device_name()}"
    return s


def slope(L, v) -> float:
    "Least-squares slope of log v against log L."
    return float(np.polyfit(np.log(np.asarray(L, float)), np.log(np.asarray(v, float)), 1)[0])


def crossover(L1, v1, L2, v2) -> float:
    "L where the power laws fitted to (L1, v1) and (L2, v2) meet (inf if they never do)."
    b1, a1 = np.polyfit(np.log(np.asarray(L1, float)), np.log(np.asarray(v1, float)), 1)
    b2, a2 = np.polyfit(np.log(np.asarray(L2, float)), np.log(np.asarray(v2, float)), 1)
    return float(np.exp((a1 - a2) / (b2 - b1))) if b2 != b1 else float("inf")


def print_table(df, blocks):
    t = {c: df.pivot(index="L", columns="block", values=c) for c in COLS}
    head = f"{'grid':>7} {'L':>6} | " + " | ".join(f"{b[:18]:^49}" for b in blocks)
    head += f" | {'attn(math)/SS2D':^26}"
    unit = f"{'ms':>8} {'median':>8} {'cpu ms':>8} {'kept MiB':>10} {'peak MiB':>10}"
    sub = f"{'':>7} {'':>6} | " + " | ".join(unit for _ in blocks) + f" | {'time':>7} {'kept':>8} {'peak':>8}"
    print(head)
    print(sub)
    print("-" * len(sub))
    a = "attention (math)"
    for L in t["ms"].index:
        g = int(round(L ** 0.5))
        cells = " | ".join(f"{t['ms'].loc[L, b]:8.1f} {t['ms_median'].loc[L, b]:8.1f} "
                           f"{t['cpu_ms'].loc[L, b]:8.1f} {t['kept_MiB'].loc[L, b]:10.2f} "
                           f"{t['peak_MiB'].loc[L, b]:10.2f}" for b in blocks)
        ratios = [t[c].loc[L, a] / t[c].loc[L, "SS2D"] for c in ("ms", "kept_MiB", "peak_MiB")]
        print(f"{g:>3}x{g:<3} {L:>6} | {cells} | {ratios[0]:7.2f} {ratios[1]:8.2f} {ratios[2]:8.2f}")


def print_slopes(df, blocks):
    print("\nlog-log slopes (1 = linear in L, 2 = quadratic) over all grids, and (in brackets) over the two largest:")
    for b in blocks:
        d = df[df.block == b]
        parts = [f"{c} {slope(d.L, d[c]):.2f} ({slope(d.L.iloc[-2:], d[c].iloc[-2:]):.2f})"
                 for c in ("ms", "cpu_ms", "kept_MiB", "peak_MiB")]
        print(f"  {b:<18} " + "   ".join(parts))
    print("\ngrowth from each grid to the next, divided by the growth of L (1.00 = exactly linear):")
    for b in blocks:
        d = df[df.block == b].sort_values("L")
        tok = d.L.to_numpy()[1:] / d.L.to_numpy()[:-1]
        for c in ("ms", "cpu_ms", "kept_MiB"):
            v = d[c].to_numpy()
            print(f"  {b:<18} {c:<9} " + " ".join(f"{x:6.2f}" for x in (v[1:] / v[:-1]) / tok))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grids", type=int, nargs="+", default=[7, 14, 28, 56, 80])
    ap.add_argument("--width", type=int, default=96, help="d_model of both blocks (VMamba-T's first stage: 96)")
    ap.add_argument("--d-state", type=int, default=16)
    ap.add_argument("--heads", type=int, default=None, help="attention heads (default width // 32)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0 = torch's default)")
    a = ap.parse_args(argv)
    seed_everything(a.seed)
    dev = torch.device(a.device)
    df = ss2d_vs_attention(a.grids, width=a.width, d_state=a.d_state, heads=a.heads, batch=a.batch,
                           repeats=a.repeats, device=dev, threads=a.threads or None)
    from rrg_tutorial.scan import last_backend
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end of the run")
    print(f"width {a.width}, d_state {a.d_state}, batch {a.batch}, repeats {a.repeats}, "
          f"threads {a.threads or torch.get_num_threads()}, device {dev}, SS2D scan backend: {last_backend()}\n")
    blocks = list(dict.fromkeys(df.block))
    print_table(df, blocks)
    print_slopes(df, blocks)
    print("\nwhere attention(math) would cost as much as SS2D (intersection of the two fitted power laws over the")
    print("two largest grids; an extrapolation when it lies beyond the measured range):")
    s_, a_ = df[df.block == "SS2D"], df[df.block == "attention (math)"]
    for col in ("ms", "cpu_ms", "kept_MiB", "peak_MiB"):
        L_star = crossover(s_.L.iloc[-2:], s_[col].iloc[-2:], a_.L.iloc[-2:], a_[col].iloc[-2:])
        print(f"  {col:<9} L* = {L_star:,.0f}")
    return df


if __name__ == "__main__":
    main()
