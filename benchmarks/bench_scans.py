"""The selective scans on the CPU, side by side in one run: mamba-ssm's reference, lesson 02's reference, mambapy's
pscan fed the same inputs, and rrg_tutorial's log-depth (a) and chunked (b) scans; forward and forward+backward.

    python benchmarks/bench_scans.py                                   # the three shapes of issue 3; one table
    python benchmarks/bench_scans.py --out benchmarks/results/scans_cpu.txt
    python benchmarks/bench_scans.py --shapes 1,32,256,16 --repeats 3 --threads 1

Every scan gets the same inputs, a full S6 as a Mamba block calls it (variable B and C, D, z, delta_bias, softplus).
Before anything is timed, every output and every input gradient is compared with mamba-ssm's reference (the
largest error, relative to the largest reference value, is a column of the table; the run stops if it is above
--tol). Forward times are taken under torch.no_grad(); forward+backward with requires_grad inputs and a random
upstream gradient. The fast scans are timed --repeats times, interleaved, and the median reported; the two
references, whose backward is a Python loop with autograd through every step, --ref-repeats times (default 1).
"saved MiB" is what autograd keeps between forward and backward (rrg_tutorial.core.saved_tensor_bytes).
"""
from __future__ import annotations
import argparse, datetime, os, platform, shlex, statistics, sys, time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rrg_tutorial.core import saved_tensor_bytes
from rrg_tutorial.scan_ref import mamba_ssm_reference, random_scan_inputs, selective_scan_ref
from rrg_tutorial.scan_fast import selective_scan_chunked, selective_scan_mambapy, selective_scan_parallel

SHAPES = [(2, 256, 1024, 16), (1, 64, 4096, 16), (8, 512, 256, 16)]   # (batch, dim, L, N)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"): return line.split(":", 1)[1].strip()
    except OSError: pass
    return platform.processor() or platform.machine()


def load() -> str:
    try: return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError: return "n/a"


def clear_grads(x):
    for v in x.values():
        if v is not None: v.grad = None


def fwd(fn, x):
    with torch.no_grad(): return fn(**x, delta_softplus=True)


def fwd_bwd(fn, x, gy):
    clear_grads(x)
    fn(**x, delta_softplus=True).backward(gy)


def timed(f, *args):
    t0 = time.perf_counter(); f(*args); return time.perf_counter() - t0


def rel_err(p, q) -> float:
    return ((p.double() - q.double()).abs().max() / q.double().abs().max().clamp_min(1e-30)).item()


def load1() -> float:
    try: return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError): return 0.0


def wait_for_quiet(limit, max_wait, log) -> float:
    "Wait (at most max_wait s) until the 1-minute load average is at most `limit`; returns the seconds waited."
    t0 = time.perf_counter()
    while load1() > limit and time.perf_counter() - t0 < max_wait:
        time.sleep(10)
    waited = time.perf_counter() - t0
    if waited > 1: log(f"  waited {waited:.0f} s for the load average to drop to {limit} (now {load1():.2f})")
    return waited


def bench_shape(shape, impls, ref_name, args, log):
    b, d, L, N = shape
    x = random_scan_inputs(b, d, L, N, requires_grad=True, seed=args.seed)
    gy = torch.randn(b, d, L, generator=torch.Generator().manual_seed(args.seed + 1))
    slow = {k for k in impls if "reference" in k}
    # 1) correctness: one forward+backward of each (the references' run is also their timed run when --ref-repeats 1)
    outs, grads, fb = {}, {}, {k: [] for k in impls}
    for name, fn in impls.items():
        outs[name] = fwd(fn, x)
        fb[name].append(timed(fwd_bwd, fn, x, gy))
        grads[name] = {k: v.grad.clone() for k, v in x.items() if v is not None}
        log(f"  checked {name}: {fb[name][-1]:.2f} s for one fwd+bwd")
    errs = {}
    for name in impls:
        errs[name] = max([rel_err(outs[name], outs[ref_name])] + [rel_err(grads[name][k], grads[ref_name][k]) for k in grads[ref_name]])
        if errs[name] > args.tol:
            raise SystemExit(f"{name} differs from {ref_name} at {shape}: max relative error {errs[name]:.2e} > --tol {args.tol}")
    # 2) timing: the fast scans interleaved, --repeats times (after the check's warm-up run); the references' extra runs
    fw = {k: [] for k in impls}
    for name in slow:
        for _ in range(args.ref_repeats): fw[name].append(timed(fwd, impls[name], x))
        for _ in range(args.ref_repeats - 1): fb[name].append(timed(fwd_bwd, impls[name], x, gy))
    fast = [k for k in impls if k not in slow]
    for k in fast: fb[k] = []
    for _ in range(args.repeats):
        for name in fast:
            fw[name].append(timed(fwd, impls[name], x))
            fb[name].append(timed(fwd_bwd, impls[name], x, gy))
    saved = {}
    for name, fn in impls.items():
        clear_grads(x)
        _, saved[name] = saved_tensor_bytes(fn, **x, delta_softplus=True)
    return {name: dict(fwd=statistics.median(fw[name]), fwd_bwd=statistics.median(fb[name]), n=len(fb[name]),
                       saved=saved[name] / 2**20, err=errs[name]) for name in impls}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", nargs="+", default=[",".join(map(str, s)) for s in SHAPES], help="batch,dim,L,N ...")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each fast scan (median reported)")
    ap.add_argument("--ref-repeats", type=int, default=1, help="timed runs of each reference (slow: default 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's default)")
    ap.add_argument("--tol", type=float, default=1e-3, help="max relative error vs mamba-ssm's reference before timing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    ap.add_argument("--wait-load", type=float, default=None,
                    help="before each shape, wait until the 1-minute load average is at most this (shared machines)")
    ap.add_argument("--wait-max", type=float, default=900, help="the longest wait for --wait-load, in seconds")
    ap.add_argument("--note", default=None, help="a line of context written into the report's header")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.ref_repeats < 1: ap.error("--repeats and --ref-repeats must be >= 1")
    shapes = []
    for s in args.shapes:
        try: shapes.append(tuple(int(v) for v in s.split(",")))
        except ValueError: ap.error(f"--shapes takes batch,dim,L,N; got {s!r}")
        if len(shapes[-1]) != 4 or min(shapes[-1]) < 1: ap.error(f"--shapes takes four positive ints batch,dim,L,N; got {s!r}")
    if args.threads: torch.set_num_threads(args.threads)

    mamba_ref = mamba_ssm_reference(required=False)
    impls = {"mamba-ssm reference": mamba_ref, "reference (lesson 02)": selective_scan_ref,
             "mambapy pscan": selective_scan_mambapy, "log-depth scan (a)": selective_scan_parallel,
             "chunked scan (b)": selective_scan_chunked}
    impls = {k: v for k, v in impls.items() if v is not None}
    ref_name = "mamba-ssm reference" if mamba_ref is not None else "reference (lesson 02)"

    lines = []
    def log(s=""): print(s, file=sys.stderr, flush=True)
    def out(s=""): print(s, flush=True); lines.append(s)

    start, load0 = datetime.datetime.now(), load()
    results, loads = {}, {}
    for shape in shapes:
        log(f"shape {shape}")
        if args.wait_load is not None: wait_for_quiet(args.wait_load, args.wait_max, log)
        l0 = load1()
        results[shape] = bench_shape(shape, impls, ref_name, args, log)
        loads[shape] = (l0, load1())

    out("# Selective scans on the CPU: forward and forward+backward, side by side in one run")
    args = [os.path.basename(a) if os.path.isabs(a) else a for a in (argv if argv is not None else sys.argv[1:])]
    out(f"# command : python {' '.join(shlex.quote(a) for a in [os.path.relpath(__file__)] + args)}")   # no machine paths
    out(f"# machine : {cpu_name()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
        f"torch {torch.__version__} on CPU, {torch.get_num_threads()} threads; Python {platform.python_version()}")
    out(f"# date    : {start:%Y-%m-%d %H:%M}; load average (1, 5, 15 min) at start {load0}, at end {load()}")
    out(f"# timing  : median of {args.repeats} interleaved runs for the fast scans, {args.ref_repeats} run(s) for each reference; "
        "forward under no_grad" + (f"; each shape started once the 1-min load average was <= {args.wait_load}" if args.wait_load is not None else ""))
    if args.note: out(f"# note    : {args.note}")
    out(f"# inputs  : random_scan_inputs(batch, dim, L, N) (mamba-ssm's test distributions), variable B and C, D, z, "
        "delta_bias, delta_softplus=True; fp32")
    out(f"# max err : largest |difference| over out and every input gradient, relative to the largest value of {ref_name}'s")
    out()
    refs = [k for k in impls if "reference" in k]
    short = {"mamba-ssm reference": "mamba-ssm ref", "reference (lesson 02)": "lesson-02 ref"}
    hdr = (f"{'(batch, dim, L, N)':<18} {'scan':<22} {'fwd ms':>9} {'fwd+bwd ms':>10} {'runs':>4} "
           + "".join(f" {'f+b x ' + short[k]:>19}" for k in refs) + f" {'f+b x mambapy':>13} "
           + "".join(f" {'fwd x ' + short[k]:>19}" for k in refs) + f" {'saved MiB':>9} {'max err':>8}")
    out(hdr); out("-" * len(hdr))
    for shape, res in results.items():
        m = res.get("mambapy pscan")
        for name, v in res.items():
            vs_m = f"{m['fwd_bwd'] / v['fwd_bwd']:13.2f}" if m else f"{'-':>13}"
            out(f"{str(shape):<18} {name:<22} {1e3 * v['fwd']:9.1f} {1e3 * v['fwd_bwd']:10.1f} {v['n']:4d} "
                + "".join(f" {res[k]['fwd_bwd'] / v['fwd_bwd']:19.1f}" for k in refs) + f" {vs_m} "
                + "".join(f" {res[k]['fwd'] / v['fwd']:19.1f}" for k in refs) + f" {v['saved']:9.1f} {v['err']:8.1e}")
        out()
    out("# targets (issue 3): chunked scan forward+backward >= 50x the reference and >= 1.5x mambapy's pscan at every shape")
    for shape, res in results.items():
        c, m = res["chunked scan (b)"], res.get("mambapy pscan")
        ratios = {k: v["fwd_bwd"] / c["fwd_bwd"] for k, v in res.items() if "reference" in k}
        if m: ratios["mambapy pscan"] = m["fwd_bwd"] / c["fwd_bwd"]
        verdict = all(v >= 50 for k, v in ratios.items() if "reference" in k) and (not m or ratios["mambapy pscan"] >= 1.5)
        out(f"#   {str(shape):<20} " + ", ".join(f"{v:.1f}x vs {k}" for k, v in ratios.items()) + ("  -> met" if verdict else "  -> MISSED")
            + f"  (1-min load {loads[shape][0]:.1f} -> {loads[shape][1]:.1f})")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        log(f"written to {args.out}")


if __name__ == "__main__":
    main()
