"""The scan dispatcher (lesson 04a): automatic choice, forcing, recording, refusing with a reason."""
import importlib.util
import pytest
import torch

from rrg_tutorial import scan
from rrg_tutorial.scan import (selective_scan, last_backend, use_backend, record_backends, available_backends,
                               choose_backend, backend_unavailable, BACKENDS)
from rrg_tutorial.scan_ref import mamba_ssm_missing, mamba_ssm_reference, random_scan_inputs, selective_scan_ref

MAMBA_REF = mamba_ssm_reference(required=False)
needs_mamba = pytest.mark.skipif(MAMBA_REF is None, reason=f"mamba-ssm reference unavailable: {mamba_ssm_missing()}")
HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="the Triton backend needs the triton package (Linux only)")
# the ground truth: mamba-ssm's reference where it imports, else lesson 02's (checked against it in test_scan_ref)
TRUTH = MAMBA_REF or selective_scan_ref
HAS_FAST = scan._fast_fn("chunked") is not None
CPU_DEFAULT = "chunked" if HAS_FAST else "reference"


@pytest.fixture(scope="module")
def x():
    return random_scan_inputs(1, 2, 9, 3, device="cpu", seed=0)


def test_cpu_availability_and_default(x):
    av = available_backends("cpu")
    assert set(av) == set(BACKENDS) and av["reference"] is None
    assert "needs CUDA tensors" in av["cuda"]
    if HAS_FAST: assert av["chunked"] is None
    assert choose_backend(*(x[k] for k in ("u", "delta", "A", "B", "C"))) == CPU_DEFAULT
    selective_scan(**x)
    assert last_backend() == CPU_DEFAULT


@needs_mamba
def test_mamba_cuda_not_mistaken_for_installed():
    "A CPU install of mamba-ssm (reached through lesson 02's stand-in) is not the CUDA backend."
    mamba_ssm_reference()
    assert scan._mamba_cuda_fn() is None or torch.cuda.is_available()


def test_every_available_backend_agrees_with_the_reference(x):
    ref = TRUTH
    o_ref, last_ref = ref(**x, delta_softplus=True, return_last_state=True)
    ran = []
    for name, why in available_backends("cpu").items():
        if why is not None: continue
        out, last = selective_scan(**x, delta_softplus=True, return_last_state=True, backend=name)
        ran.append(last_backend())
        torch.testing.assert_close(out, o_ref, rtol=6e-4, atol=2e-3)
        torch.testing.assert_close(last, last_ref, rtol=6e-4, atol=2e-3)
    assert "reference" in ran and ran == [n for n, w in available_backends("cpu").items() if w is None]


def test_forcing_nesting_and_recording(x):
    with record_backends() as outer:
        selective_scan(**x)
        with use_backend("reference"):
            selective_scan(**x)
            with record_backends() as inner:
                with use_backend(None):
                    selective_scan(**x)                          # None inside: automatic again
                selective_scan(**x, backend=CPU_DEFAULT)         # an argument beats the context
        selective_scan(**x)
    assert outer == [CPU_DEFAULT, "reference", CPU_DEFAULT, CPU_DEFAULT, CPU_DEFAULT]
    assert inner == [CPU_DEFAULT, CPU_DEFAULT]


def test_refusals_say_why(x):
    with pytest.raises(RuntimeError, match="cannot run here.*needs CUDA tensors"): selective_scan(**x, backend="cuda")
    with pytest.raises(RuntimeError, match="unknown backend"): selective_scan(**x, backend="fastest")
    with pytest.raises(ValueError, match="unknown backend"):
        with use_backend("fastest"): pass
    with pytest.raises(ValueError, match="delta must have the shape of u"): selective_scan(**{**x, "delta": x["delta"][..., :3]})


def test_complex_A_goes_to_the_reference(x):
    xc = dict(x, A=torch.complex(x["A"], torch.randn_like(x["A"])), B=torch.randn(2, 3, dtype=torch.cfloat),
              C=torch.randn(2, 3, dtype=torch.cfloat))
    out = selective_scan(**xc)
    assert last_backend() == "reference"
    torch.testing.assert_close(out, TRUTH(**xc), rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="real A only"): selective_scan(**xc, backend="triton")


@needs_triton
def test_forced_triton_on_cpu_under_the_interpreter(x):
    from rrg_tutorial import scan_triton
    if not scan_triton.INTERPRETED: pytest.skip("TRITON_INTERPRET was not set at import")
    assert available_backends("cpu")["triton"] is None
    assert choose_backend(*(x[k] for k in ("u", "delta", "A", "B", "C"))) != "triton"   # never chosen on a CPU
    out = selective_scan(**x, delta_softplus=True, backend="triton")
    assert last_backend() == "triton"
    torch.testing.assert_close(out, TRUTH(**x, delta_softplus=True), rtol=6e-4, atol=2e-3)


@needs_triton
def test_triton_refused_clearly_without_interpreter(x, monkeypatch):
    from rrg_tutorial import scan_triton
    monkeypatch.setattr(scan_triton, "INTERPRETED", False)
    assert "TRITON_INTERPRET=1" in available_backends("cpu")["triton"]
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"): selective_scan(**x, backend="triton")


def test_cuda_kernel_dtype_rules():
    "What mamba-ssm's CUDA kernel would reject is routed elsewhere instead of failing inside it."
    u = torch.zeros(1, 2, 4, dtype=torch.bfloat16)
    A, Bv, Bc = torch.zeros(2, 3), torch.zeros(1, 3, 4, dtype=torch.bfloat16), torch.zeros(2, 3)
    ok = scan._cuda_kernel_problem(u, u, A, Bv, Bc, torch.zeros(2), u, torch.zeros(2))
    assert ok is None
    assert "fp32 A" in scan._cuda_kernel_problem(u, u, A.double(), Bv, Bc, None, None, None)
    assert "variable B" in scan._cuda_kernel_problem(u, u, A, Bv.float(), Bc, None, None, None)
    assert "constant C" in scan._cuda_kernel_problem(u, u, A, Bv, Bc.half(), None, None, None)
    assert "fp32 D" in scan._cuda_kernel_problem(u, u, A, Bv, Bc, torch.zeros(2, dtype=torch.bfloat16), None, None)
    assert "fp32/fp16/bf16 u" in scan._cuda_kernel_problem(u.double(), u, A, Bv, Bc, None, None, None)
    assert "N <= 256" in scan._cuda_kernel_problem(u, u, torch.zeros(2, 300), Bv, Bc, None, None, None)


def test_automatic_triton_failure_falls_back_with_a_warning(x, monkeypatch):
    "If our Triton kernel cannot build on some GPU, automatic dispatch warns once and moves on; forcing still raises."
    monkeypatch.setattr(scan, "_failed", {})
    order = iter(["triton", CPU_DEFAULT])
    monkeypatch.setattr(scan, "choose_backend", lambda *a: (lambda n: n if n not in scan._failed else CPU_DEFAULT)(next(order, CPU_DEFAULT)))
    real_run = scan._run
    def run(name, args, kw):
        if name == "triton": raise RuntimeError("PTX assembly failed (simulated)")
        return real_run(name, args, kw)
    monkeypatch.setattr(scan, "_run", run)
    with pytest.warns(RuntimeWarning, match="backend 'triton' failed .*simulated"):
        out = selective_scan(**x)
    assert last_backend() == CPU_DEFAULT and "simulated" in scan._failed["triton"]
    torch.testing.assert_close(out, TRUTH(**x))
    with pytest.raises(RuntimeError, match="simulated" if HAS_TRITON else "needs the triton package"):
        selective_scan(**x, backend="triton")


NO_TRITON = """
import sys
sys.modules["triton"] = None                      # what a machine without Triton looks like to Python
import torch
from rrg_tutorial.scan import available_backends, selective_scan, last_backend
from rrg_tutorial.scan_ref import random_scan_inputs, mamba_ssm_missing
from rrg_tutorial import scan_triton
x = random_scan_inputs(1, 2, 9, 3, seed=0)
selective_scan(**x)
assert last_backend() == "chunked", last_backend()
assert "needs the triton package" in available_backends("cpu")["triton"]
assert not scan_triton.HAS_TRITON
try: scan_triton.selective_scan_triton(**x)
except ModuleNotFoundError as e: assert "needs the triton package" in str(e) and e.name == "triton", e
else: raise AssertionError("the Triton scan ran without Triton")
try: scan_triton.s6_forward(**x)
except ModuleNotFoundError as e: assert "triton" in str(e)
else: raise AssertionError("s6_forward ran without Triton")
why = mamba_ssm_missing()
assert why is not None and ("Triton" in why or "not installed" in why), why
print("ok")
"""


def test_everything_but_the_kernels_imports_and_runs_without_triton():
    import os, subprocess, sys
    env = dict(os.environ, TRITON_INTERPRET="1")
    r = subprocess.run([sys.executable, "-c", NO_TRITON], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
