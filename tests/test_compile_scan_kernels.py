"""Lesson 04's Triton kernels must compile for a real GPU (sm_90) with Triton's compiler and NVIDIA's ptxas, which
need no GPU: a kernel that only works in the interpreter fails here, not on a lent GPU. Runs in a subprocess because
this test process imported the kernels in interpreter mode."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = """
import json, sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {root!r} + "/benchmarks")
from compile_scan_kernels import compile_kernels
out = {{}}
for dtype, var, full in (("bf16", True, True), ("fp32", False, False), ("fp64", True, True)):
    out[f"{{dtype}}-{{var}}-{{full}}"] = compile_kernels(block_l=64, num_warps=4, arch=90, dtype=dtype, variable_bc=var, full=full)
print(json.dumps(out))
"""


def test_kernels_compile_for_sm90_without_spills_at_the_default_tile():
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="0", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", CODE.format(root=str(ROOT))], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    for variant, k in res.items():
        for which in ("fwd", "bwd"):
            assert 0 < k[which]["regs"] <= 255, (variant, which, k)
        if not variant.startswith("fp64"):   # fp32 compute at the default tile (N=16, block_l=64, 4 warps): no spills
            assert k["fwd"]["stack"] == 0 and k["bwd"]["stack"] == 0, (variant, k)
