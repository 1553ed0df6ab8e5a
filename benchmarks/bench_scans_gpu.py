"""Every selective-scan backend of rrg_tutorial.scan on one CUDA GPU, side by side in one run.

    python benchmarks/bench_scans_gpu.py                   # the full comparison (about 5-10 minutes on an H100)
    python benchmarks/bench_scans_gpu.py --quick --out -   # one small shape, fp32, printed only
    python benchmarks/bench_scans_gpu.py --tune            # also sweep the Triton kernel's block_l and num_warps

For each shape (batch, dim, L, N) and dtype (fp32, bf16: u, delta, z, B, C in that dtype; A, D, delta_bias fp32;
variable B and C, D, z, delta_bias, softplus: the Mamba block's configuration):
  1. every backend's output and gradients are checked against the reference (lesson 02) on the same inputs;
     a backend that fails the check is reported, not timed;
  2. forward, and forward+backward (torch.autograd.grad of all inputs), are timed with CUDA events: warm-up,
     then the median of repeated runs, the L2 cache flushed before each (as triton.testing.do_bench does);
  3. the achieved bandwidth is the compulsory HBM traffic of a fused scan (lesson 04's `scan_hbm_bytes`) over the
     measured time, next to a device-to-device copy measured in the same run, and next to lesson 04's roofline
     estimate for an H100 SXM (spec-sheet numbers).
Results go to benchmarks/results/scans_gpu_<device>_<date>.{json,md} with the device, versions and command.
Without a CUDA GPU the script says so and exits with status 2: nothing is measured.
"""
from __future__ import annotations
import argparse, datetime, json, math, os, platform, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import torch

SHAPES = [(8, 1536, 2048, 16), (64, 1024, 128, 16), (1, 1024, 16384, 16)]
QUICK_SHAPES = [(4, 512, 1024, 16)]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
ARGS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
# relative error (max |x - ref| / max |ref|) allowed against the reference, per input dtype: output, gradients
TOL = {"fp32": (2e-3, 1e-2), "bf16": (3e-2, 1e-1)}


def make_inputs(batch, dim, L, N, dtype, seed=0, device="cuda"):
    "mamba-ssm's test distribution (A = -0.5*rand, delta and delta_bias = 0.5*rand, others randn), generated on the GPU."
    g = torch.Generator(device=device).manual_seed(seed)
    rn = lambda *s, dt=dtype: torch.randn(*s, generator=g, device=device, dtype=torch.float32).to(dt)
    ru = lambda *s, dt=dtype: torch.rand(*s, generator=g, device=device, dtype=torch.float32).to(dt)
    x = dict(u=rn(batch, dim, L), delta=0.5 * ru(batch, dim, L), A=-0.5 * ru(dim, N, dt=torch.float32),
             B=rn(batch, N, L), C=rn(batch, N, L), D=rn(dim, dt=torch.float32), z=rn(batch, dim, L),
             delta_bias=0.5 * ru(dim, dt=torch.float32))
    return {k: v.requires_grad_() for k, v in x.items()}


def rel_err(a, b):
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30)).item()


class Timer:
    "Median milliseconds of `fn()` with CUDA events, the L2 cache flushed before each run."
    def __init__(self, budget_ms=400.0, min_reps=3, max_reps=100):
        self.budget_ms, self.min_reps, self.max_reps = budget_ms, min_reps, max_reps
        self.flush = torch.empty(256 * 1024 * 1024, dtype=torch.int8, device="cuda")

    def __call__(self, fn):
        fn(); torch.cuda.synchronize()                                 # compile, allocate
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record(); torch.cuda.synchronize()
        est = max(s.elapsed_time(e), 1e-3)
        reps = int(min(self.max_reps, max(self.min_reps, self.budget_ms / est)))
        for _ in range(int(min(10, max(1, 0.25 * self.budget_ms / est)))): fn()   # warm-up
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        for i in range(reps):
            self.flush.zero_()
            starts[i].record(); fn(); ends[i].record()
        torch.cuda.synchronize()
        times = [a.elapsed_time(b) for a, b in zip(starts, ends)]
        return dict(median_ms=statistics.median(times), min_ms=min(times), reps=reps)


class WallTimer:
    "For --cpu-smoke only: median wall-clock milliseconds of a few runs (the script's logic, not a measurement)."
    def __init__(self, reps=2): self.reps = reps
    def __call__(self, fn):
        fn(); times = []
        for _ in range(self.reps):
            t0 = time.perf_counter(); fn(); times.append((time.perf_counter() - t0) * 1e3)
        return dict(median_ms=statistics.median(times), min_ms=min(times), reps=self.reps)


def copy_bandwidth(timer, nbytes=1 << 30, device="cuda"):
    "Device-to-device copy bandwidth (bytes read + bytes written per second) of a 1 GiB buffer."
    src = torch.randn(nbytes // 4, device=device); dst = torch.empty_like(src)
    t = timer(lambda: dst.copy_(src))
    return 2 * nbytes / (t["median_ms"] * 1e-3), t


def versions():
    v = dict(python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda)
    for mod in ("triton", "mamba_ssm"):
        try: v[mod] = __import__(mod).__version__
        except Exception as e: v[mod] = f"not importable ({type(e).__name__})"
    try: v["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError: v["git_commit"] = None
    return v


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one small shape, fp32 only")
    ap.add_argument("--backends", nargs="*", help="subset of backends (default: every available one)")
    ap.add_argument("--dtypes", nargs="*", default=None, choices=list(DTYPES))
    ap.add_argument("--shapes", nargs="*", default=None, help="shapes as batch,dim,L,N")
    ap.add_argument("--no-backward", action="store_true", help="forward only")
    ap.add_argument("--tune", action="store_true", help="also sweep the Triton kernel's block_l x num_warps (forward and fwd+bwd)")
    ap.add_argument("--budget-ms", type=float, default=400.0, help="time spent per measurement (at least 3 runs)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="results folder, or '-' to print only")
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="test this script without a GPU: a tiny shape on the CPU, wall-clock timing (measures nothing)")
    a = ap.parse_args(argv)

    if a.cpu_smoke:
        device, timer = "cpu", WallTimer()
        shapes, dtypes = [(1, 2, 16, 4)], a.dtypes or list(DTYPES)
        dev_name, capability = f"CPU smoke test ({platform.processor() or platform.machine()})", None
        bw_copy, t_copy = copy_bandwidth(timer, 1 << 24, device)
    else:
        if not torch.cuda.is_available():
            print("bench_scans_gpu: no CUDA GPU is visible here (torch.cuda.is_available() is False): nothing measured. "
                  "Run it on a machine with an NVIDIA GPU (or use --cpu-smoke to test the script).", file=sys.stderr)
            return 2
        if os.environ.get("TRITON_INTERPRET", "0").strip() not in ("", "0"):   # kernels would run in the CPU interpreter
            print("note: unsetting TRITON_INTERPRET so that Triton compiles for the GPU", file=sys.stderr)
            os.environ["TRITON_INTERPRET"] = "0"
        device = "cuda"
        shapes = [tuple(int(v) for v in s.split(",")) for s in a.shapes] if a.shapes else (QUICK_SHAPES if a.quick else SHAPES)
        dtypes = a.dtypes or (["fp32"] if a.quick else list(DTYPES))
        timer = Timer(budget_ms=a.budget_ms if not a.quick else 100.0)
        dev_name, capability = torch.cuda.get_device_name(), list(torch.cuda.get_device_capability())
        bw_copy, t_copy = copy_bandwidth(timer)

    from rrg_tutorial.scan import available_backends, selective_scan, BACKENDS
    from rrg_tutorial import scan_triton
    from rrg_tutorial.scan_triton import scan_hbm_bytes, scan_roofline, selective_scan_triton
    if device == "cuda" and scan_triton.INTERPRETED:
        print("bench_scans_gpu: rrg_tutorial.scan_triton was imported in interpreter mode; run this script in a fresh "
              "process without TRITON_INTERPRET=1", file=sys.stderr)
        return 2
    avail = {dt: available_backends(device, DTYPES[dt]) for dt in dtypes}
    print(f"# {dev_name}, capability {capability}, device-to-device copy {bw_copy / 1e9:.0f} GB/s")
    for dt in dtypes:
        for n, why in avail[dt].items(): print(f"#   {dt} {n:10s} {'available' if why is None else why}")

    rows, checks, tune = [], [], []
    for shape in shapes:
        batch, dim, L, N = shape
        for dt in dtypes:
            names = [n for n in BACKENDS if avail[dt][n] is None and (not a.backends or n in a.backends)]
            x = make_inputs(*shape, DTYPES[dt], seed=sum(shape), device=device)
            grad_in = [x[k] for k in ARGS]
            g = torch.randn(batch, dim, L, device=device).to(DTYPES[dt])
            # 1. correctness against the reference, before any timing
            ref_out = selective_scan(**x, delta_softplus=True, backend="reference")
            ref_grads = torch.autograd.grad(ref_out, grad_in, g) if not a.no_backward else None
            ok = {}
            for n in names:
                if n == "reference": ok[n] = True; continue
                try:
                    out = selective_scan(**x, delta_softplus=True, backend=n)
                    errs = {"out": rel_err(out, ref_out)}
                    if ref_grads is not None:
                        grads = torch.autograd.grad(out, grad_in, g)
                        errs.update({f"d{k}": rel_err(gr, rg) for k, gr, rg in zip(ARGS, grads, ref_grads)})
                    tol_o, tol_g = TOL[dt]
                    ok[n] = errs["out"] <= tol_o and all(v <= tol_g for k, v in errs.items() if k != "out")
                    checks.append(dict(shape=shape, dtype=dt, backend=n, passed=ok[n], **errs))
                except Exception as e:                                   # report, do not hide
                    ok[n] = False
                    checks.append(dict(shape=shape, dtype=dt, backend=n, passed=False, error=f"{type(e).__name__}: {e}"[:300]))
                print(f"  check {shape} {dt} {n:10s} {'ok' if ok[n] else 'FAILED'} {checks[-1]}")
            del ref_out, ref_grads
            # 2. timing
            roof = scan_roofline(batch, dim, L, N, itemsize=DTYPES[dt].itemsize)
            b_fwd = scan_hbm_bytes(batch, dim, L, N, itemsize=DTYPES[dt].itemsize)
            b_bwd = scan_hbm_bytes(batch, dim, L, N, itemsize=DTYPES[dt].itemsize, backward=True)
            for n in names:
                if not ok[n]: continue
                fwd = lambda: selective_scan(**x, delta_softplus=True, backend=n)
                fb = lambda: torch.autograd.grad(selective_scan(**x, delta_softplus=True, backend=n), grad_in, g)
                for mode, fn, nbytes in (("fwd", fwd, b_fwd), ("fwd+bwd", fb, b_fwd + b_bwd)):
                    if mode == "fwd+bwd" and a.no_backward: continue
                    try:
                        with torch.no_grad() if mode == "fwd" else torch.enable_grad():
                            t = timer(fn)
                    except Exception as e:                               # e.g. out of memory: report and go on
                        checks.append(dict(shape=shape, dtype=dt, backend=n, passed=False,
                                           error=f"timing {mode}: {type(e).__name__}: {e}"[:300]))
                        print(f"  {str(shape):22s} {dt} {mode:8s} {n:10s} FAILED to time: {checks[-1]['error']}")
                        if device == "cuda": torch.cuda.empty_cache()
                        continue
                    gbps = nbytes / (t["median_ms"] * 1e-3) / 1e9
                    rows.append(dict(shape=str(shape), dtype=dt, mode=mode, backend=n, **t, GB_s=gbps,
                                     pct_copy=100 * gbps * 1e9 / bw_copy,
                                     roofline_ms=roof["t_fused"] * 1e3 if mode == "fwd" else None))
                    print(f"  {str(shape):22s} {dt} {mode:8s} {n:10s} {t['median_ms']:9.3f} ms  {gbps:7.0f} GB/s "
                          f"({rows[-1]['pct_copy']:.0f}% of copy)")
            if a.tune and "triton" in names and ok["triton"]:
                for bl in (32, 64, 128, 256):
                    for nw in (2, 4, 8):
                        fwd = lambda: selective_scan_triton(**x, delta_softplus=True, block_l=bl, num_warps=nw)
                        fb = lambda: torch.autograd.grad(fwd(), grad_in, g)
                        try:
                            with torch.no_grad(): tf = timer(fwd)["median_ms"]
                            tfb = timer(fb)["median_ms"] if not a.no_backward else None
                        except Exception as e:
                            tf, tfb = None, f"{type(e).__name__}"
                        tune.append(dict(shape=str(shape), dtype=dt, block_l=bl, num_warps=nw, fwd_ms=tf, fwd_bwd_ms=tfb))
                        print(f"  tune {shape} {dt} block_l={bl} num_warps={nw}: fwd {tf} ms, fwd+bwd {tfb} ms")
            del x, grad_in, g
            if device == "cuda": torch.cuda.empty_cache()

    # speed-ups over the reference, per (shape, dtype, mode)
    for r in rows:
        base = [q for q in rows if (q["shape"], q["dtype"], q["mode"], q["backend"]) == (r["shape"], r["dtype"], r["mode"], "reference")]
        r["speedup_vs_reference"] = base[0]["median_ms"] / r["median_ms"] if base else None
    meta = dict(device=dev_name, capability=capability, copy_GB_s=bw_copy / 1e9,
                copy_timing=t_copy, versions=versions(), command=" ".join([sys.executable, *sys.argv]),
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                bytes_model="rrg_tutorial.scan_triton.scan_hbm_bytes (compulsory traffic of a fused scan)",
                roofline="rrg_tutorial.scan_triton.scan_roofline with H100_SXM spec-sheet numbers (an estimate)",
                tolerances={k: dict(out=v[0], grads=v[1]) for k, v in TOL.items()}, backends=avail)
    md = [f"# Selective-scan backends on {dev_name}", "",
          f"{meta['date']}; torch {meta['versions']['torch']}, triton {meta['versions'].get('triton')}, "
          f"mamba_ssm {meta['versions'].get('mamba_ssm')}; commit {meta['versions'].get('git_commit')}", "",
          f"Command: `{meta['command']}`", "", f"Device-to-device copy: {bw_copy / 1e9:.0f} GB/s (read + write).", "",
          "| shape (batch, dim, L, N) | dtype | mode | backend | median ms | GB/s | % of copy | x reference | H100 roofline ms |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sp = f"{r['speedup_vs_reference']:.1f}" if r["speedup_vs_reference"] else ""
        rl = f"{r['roofline_ms']:.3f}" if r["roofline_ms"] else ""
        md.append(f"| {r['shape']} | {r['dtype']} | {r['mode']} | {r['backend']} | {r['median_ms']:.3f} | {r['GB_s']:.0f} | "
                  f"{r['pct_copy']:.0f} | {sp} | {rl} |")
    md += ["", "Correctness before timing (relative error max|x - ref| / max|ref| against the reference):", "",
           "| shape | dtype | backend | passed | out | worst gradient |", "|---|---|---|---|---|---|"]
    for c in checks:
        worst = max((v for k, v in c.items() if k.startswith("d") and isinstance(v, float)), default=float("nan"))
        md.append(f"| {c['shape']} | {c['dtype']} | {c['backend']} | {c['passed']} | {c.get('out', float('nan')):.2e} | "
                  f"{worst:.2e} | {c.get('error', '')}")
    if tune:
        md += ["", "Triton kernel sweep:", "", "| shape | dtype | block_l | num_warps | fwd ms | fwd+bwd ms |", "|---|---|---|---|---|---|"]
        f3 = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
        md += [f"| {t['shape']} | {t['dtype']} | {t['block_l']} | {t['num_warps']} | {f3(t['fwd_ms'])} | {f3(t['fwd_bwd_ms'])} |"
               for t in tune]
    text = "\n".join(md) + "\n"
    print(text)
    if a.out != "-":
        out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
        stem = f"scans_gpu_{''.join(ch if ch.isalnum() else '_' for ch in dev_name)}_{meta['date'][:10]}"
        (out / f"{stem}.json").write_text(json.dumps(dict(meta=meta, results=rows, checks=checks, tune=tune), indent=1, default=str))
        (out / f"{stem}.md").write_text(text)
        print(f"results written to {out / stem}.json and .md")
    return 0 if all(c["passed"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
