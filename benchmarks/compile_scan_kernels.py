"""Compile lesson 04's Triton selective-scan kernels for an NVIDIA GPU architecture, without a GPU, and report what
the compiler (Triton, then NVIDIA's ptxas that ships with Triton) made of them: registers per thread, spilled bytes
(stack), shared memory. A kernel that does not compile for the GPU fails here, in CI, instead of on a lent GPU.

    python benchmarks/compile_scan_kernels.py                               # sm_90 (H100), a sweep of block_l x num_warps
    python benchmarks/compile_scan_kernels.py --block-l 64 --num-warps 4    # one configuration
    python benchmarks/compile_scan_kernels.py --arch 80 --dtype fp32        # A100, fp32 inputs

Registers and spills are static facts about the compiled code (the same on every machine with this Triton); they
are not timings. A thread has at most 255 registers; what does not fit is spilled to local memory ("stack"), which
costs memory traffic inside the kernel.
"""
from __future__ import annotations
import argparse, os, re, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["TRITON_INTERPRET"] = "0"        # compile: the interpreter would skip the compiler altogether

try:
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
except ImportError as e:                    # macOS, Windows, CPU-only wheels
    raise SystemExit(f"compile_scan_kernels.py compiles lesson 04's Triton kernels and needs Triton (Linux only): {e}")

PTR = {"fp32": "*fp32", "bf16": "*bf16", "fp16": "*fp16", "fp64": "*fp64"}


def _scan_triton():
    if "rrg_tutorial.scan_triton" in sys.modules and sys.modules["rrg_tutorial.scan_triton"].INTERPRETED:
        raise RuntimeError("rrg_tutorial.scan_triton was imported in interpreter mode in this process; "
                           "run this script in a fresh process (it sets TRITON_INTERPRET=0 itself)")
    from rrg_tutorial import scan_triton
    return scan_triton


def resource_usage(compiled) -> dict:
    "Registers, stack (spilled) bytes and shared memory of a compiled kernel, read from its cubin with cuobjdump."
    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(compiled.asm["cubin"]); name = f.name
    try: out = subprocess.run([str(cuobjdump), "-res-usage", name], capture_output=True, text=True).stdout
    finally: os.unlink(name)
    m = re.search(r"REG:(\d+).*?STACK:(\d+).*?SHARED:(\d+)", out, re.S)
    if not m: raise RuntimeError(f"could not read the resource usage from cuobjdump's output: {out[-500:]}")
    return dict(regs=int(m.group(1)), stack=int(m.group(2)), shared=int(m.group(3)))


def compile_kernels(block_l: int = 64, num_warps: int = 4, arch: int = 90, dtype: str = "bf16", N: int = 16,
                    variable_bc: bool = True, full: bool = True) -> dict:
    """Compile the forward and backward kernels for `sm_<arch>` with u, delta, z, B, C in `dtype` (fp32 compute; fp64
    throughout for dtype fp64), D, z, delta_bias and softplus on (`full`), and return their resource usage."""
    st = _scan_triton()
    cdt = tl.float64 if dtype == "fp64" else tl.float32
    w = "*fp64" if dtype == "fp64" else "*fp32"
    io = PTR[dtype]
    N_PAD = 1 << max(0, N - 1).bit_length()
    ce = dict(VAR_B=variable_bc, VAR_C=variable_bc, HAS_D=full, HAS_Z=full, HAS_BIAS=full, SOFTPLUS=full, SAVE_ALL=True,
              N_PAD=N_PAD, BLOCK_L=block_l, CDT=cdt)
    ptrs = dict(u_ptr=io, dt_ptr=io, z_ptr=io, out_ptr=io, B_ptr=io if variable_bc else w, C_ptr=io if variable_bc else w,
                A_ptr=w, D_ptr=w, bias_ptr=w, state_ptr=w, dout_ptr=io, du_ptr=io, ddt_ptr=io, dz_ptr=io,
                dA_ptr=w, dB_ptr=w, dC_ptr=w, dD_ptr=w, dbias_ptr=w)
    target = GPUTarget("cuda", arch, 32)
    out = {}
    for name, fn in (("fwd", st._s6_fwd_kernel), ("bwd", st._s6_bwd_kernel)):
        consts = {k: v for k, v in ce.items() if k in fn.arg_names}
        sig = {a: "constexpr" if a in consts else (ptrs[a] if a.endswith("_ptr") else "i32") for a in fn.arg_names}
        compiled = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=consts), target=target,
                                  options=dict(num_warps=num_warps))
        out[name] = resource_usage(compiled)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90: H100/H200, 80: A100)")
    ap.add_argument("--block-l", type=int, nargs="*", default=[32, 64, 128, 256])
    ap.add_argument("--num-warps", type=int, nargs="*", default=[4, 8])
    ap.add_argument("--dtype", default="bf16", choices=list(PTR))
    ap.add_argument("--N", type=int, default=16)
    a = ap.parse_args(argv)
    print(f"# sm_{a.arch}, inputs {a.dtype}, N={a.N}, variable B/C, D, z, delta_bias, softplus; triton {triton.__version__}")
    print("| block_l | num_warps | fwd regs | fwd spill bytes | bwd regs | bwd spill bytes |")
    print("|---|---|---|---|---|---|")
    for bl in a.block_l:
        for nw in a.num_warps:
            r = compile_kernels(bl, nw, a.arch, a.dtype, a.N)
            print(f"| {bl} | {nw} | {r['fwd']['regs']} | {r['fwd']['stack']} | {r['bwd']['regs']} | {r['bwd']['stack']} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
