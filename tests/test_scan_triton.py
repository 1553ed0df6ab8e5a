"""The fused Triton selective scan (lesson 04), run on the CPU by Triton's interpreter (TRITON_INTERPRET=1, set in
conftest.py before anything imports triton). Shapes stay tiny: the interpreter costs about 0.1 s per program."""
import itertools
import pytest
import torch

pytest.importorskip("triton", reason="the Triton kernels need the triton package (Linux only)")
from rrg_tutorial import scan_triton as st
from rrg_tutorial.scan_triton import (selective_scan_triton, s6_forward, s6_backward, scan_hbm_bytes,
                                      materialised_scan_bytes, scan_roofline, default_block_l, check_triton_runnable)
from rrg_tutorial.scan_ref import selective_scan_ref, mamba_ssm_missing, mamba_ssm_reference, random_scan_inputs

ARGS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
pytestmark = pytest.mark.skipif(not st.INTERPRETED and not torch.cuda.is_available(),
                                reason="needs CUDA or TRITON_INTERPRET=1 at import")
DEV = "cuda" if torch.cuda.is_available() and not st.INTERPRETED else "cpu"


@pytest.fixture(scope="module")
def ref_mamba():
    why = mamba_ssm_missing()
    if why is not None: pytest.skip(f"mamba-ssm reference unavailable: {why}")
    return mamba_ssm_reference()


def _grads(fn, x, g, **kw):
    names = [k for k in ARGS if x[k] is not None]
    out = fn(**x, **kw)
    return out, dict(zip(names, torch.autograd.grad(out, [x[k] for k in names], g)))


# every option on and off (a covering design of the 128 combinations), forward vs mamba-ssm's own reference in fp32
COMBOS = [  # variable_B, variable_C, groups, D, z, delta_bias, softplus
    (True, True, 1, True, True, True, True), (False, False, 1, False, False, False, False),
    (True, False, 2, False, True, False, True), (False, True, 2, True, False, True, False),
    (True, True, 2, False, False, True, True), (False, False, 1, True, True, False, True)]


@pytest.mark.parametrize("vB,vC,G,wD,wz,wb,sp", COMBOS)
def test_forward_matches_mamba_ssm(ref_mamba, vB, vC, G, wD, wz, wb, sp):
    x = random_scan_inputs(1, 2, 13, 3, groups=G, variable_B=vB, variable_C=vC, with_D=wD, with_z=wz,
                           with_delta_bias=wb, device=DEV, seed=G + 3 * vB)
    out, last = selective_scan_triton(**x, delta_softplus=sp, return_last_state=True, block_l=4)
    o_ref, last_ref = ref_mamba(**x, delta_softplus=sp, return_last_state=True)
    torch.testing.assert_close(out, o_ref, rtol=6e-4, atol=2e-3)
    torch.testing.assert_close(last, last_ref, rtol=6e-4, atol=2e-3)
    assert out.dtype == x["u"].dtype and last.dtype == torch.float32 and not last.requires_grad


@pytest.mark.parametrize("vB,vC,G,wD,wz,wb,sp", COMBOS[:4])
def test_gradients_fp64_match_reference_to_rounding(vB, vC, G, wD, wz, wb, sp):
    "In fp64 the kernel must equal the reference's autograd to rounding: any mistake in the adjoint would show."
    x = random_scan_inputs(2, 2, 11, 3, groups=G, variable_B=vB, variable_C=vC, with_D=wD, with_z=wz,
                           with_delta_bias=wb, dtype=torch.float64, device=DEV, seed=7, requires_grad=True)
    g = torch.randn(2, 2, 11, dtype=torch.float64, device=DEV)
    out, ours = _grads(selective_scan_triton, x, g, delta_softplus=sp, block_l=4)
    o_ref, theirs = _grads(selective_scan_ref, x, g, delta_softplus=sp)
    torch.testing.assert_close(out, o_ref, rtol=1e-12, atol=1e-12)
    for k in theirs:
        torch.testing.assert_close(ours[k], theirs[k], rtol=1e-10, atol=1e-11, msg=lambda m: f"d{k}: {m}")


@pytest.mark.parametrize("vB,vC,G", [(True, True, 2), (False, False, 1)])
def test_gradients_fp32_match_mamba_ssm(ref_mamba, vB, vC, G):
    "fp32 against mamba-ssm's reference with its test tolerances (du x2, ddelta x5)."
    x = random_scan_inputs(1, 2, 17, 5, groups=G, variable_B=vB, variable_C=vC, device=DEV, seed=11, requires_grad=True)
    g = torch.randn(1, 2, 17, device=DEV)
    _, ours = _grads(selective_scan_triton, x, g, delta_softplus=True, block_l=8)
    _, theirs = _grads(ref_mamba, x, g, delta_softplus=True)
    for k in theirs:
        f = {"u": 2, "delta": 5}.get(k, 1)
        torch.testing.assert_close(ours[k], theirs[k], rtol=f * 6e-4, atol=f * 2e-3, msg=lambda m: f"d{k}: {m}")


@pytest.mark.parametrize("L,block_l", [(1, 16), (16, 16), (17, 16), (9, 1), (5, 2)])
def test_chunking_does_not_change_the_result(L, block_l):
    "L = 1, a multiple of the chunk, one more, chunks of one step: same output, state and gradients as the reference."
    x = random_scan_inputs(1, 1, L, 2, dtype=torch.float64, device=DEV, seed=L, requires_grad=True)
    g = torch.randn(1, 1, L, dtype=torch.float64, device=DEV)
    out, ours = _grads(selective_scan_triton, x, g, delta_softplus=True, block_l=block_l)
    o_ref, theirs = _grads(selective_scan_ref, x, g, delta_softplus=True)
    torch.testing.assert_close(out, o_ref, rtol=1e-12, atol=1e-12)
    for k in theirs: torch.testing.assert_close(ours[k], theirs[k], rtol=1e-10, atol=1e-11)
    last = selective_scan_triton(**x, delta_softplus=True, return_last_state=True, block_l=block_l)[1]
    torch.testing.assert_close(last, selective_scan_ref(**x, delta_softplus=True, return_last_state=True)[1])


def test_strided_and_broadcast_inputs():
    "A transposed u and a delta broadcast over batch and time (stride 0, as an LTI model makes it) need no copies."
    x = random_scan_inputs(2, 3, 7, 2, dtype=torch.float64, device=DEV, seed=3)
    x["u"] = torch.randn(2, 7, 3, dtype=torch.float64, device=DEV).transpose(1, 2)
    dt = (0.5 * torch.rand(3, dtype=torch.float64, device=DEV)).requires_grad_()
    x["delta"] = dt[None, :, None].expand(2, 3, 7)
    assert x["delta"].stride() == (0, 1, 0) and not x["u"].is_contiguous()
    g = torch.randn(2, 3, 7, dtype=torch.float64, device=DEV)
    out = selective_scan_triton(**x, delta_softplus=True, block_l=4)
    (d_ours,) = torch.autograd.grad(out, dt, g)
    o_ref = selective_scan_ref(**x, delta_softplus=True)
    (d_ref,) = torch.autograd.grad(o_ref, dt, g)
    torch.testing.assert_close(out, o_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(d_ours, d_ref, rtol=1e-10, atol=1e-11)


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 5e-2), (torch.float16, 5e-3)])
def test_half_precision_inputs(ref_mamba, dtype, tol):
    x = random_scan_inputs(1, 2, 9, 4, dtype=dtype, device=DEV, seed=5, requires_grad=True)
    g = torch.randn(1, 2, 9, dtype=dtype, device=DEV)
    out, ours = _grads(selective_scan_triton, x, g, delta_softplus=True, block_l=4)
    o_ref, theirs = _grads(ref_mamba, x, g, delta_softplus=True)
    assert out.dtype == dtype and ours["u"].dtype == dtype and ours["A"].dtype == torch.float32
    torch.testing.assert_close(out.float(), o_ref.float(), rtol=tol, atol=tol)
    for k in ("u", "B", "D"): torch.testing.assert_close(ours[k].float(), theirs[k].float(), rtol=2 * tol, atol=2 * tol)


def test_large_delta_and_softplus_threshold():
    "delta*|A| large (the state forgets at once) and delta above softplus's threshold of 20: finite and exact."
    x = random_scan_inputs(1, 2, 6, 2, dtype=torch.float64, device=DEV, seed=9)
    x["delta"] = torch.tensor([[[-30.0, -5.0, 0.0, 19.5, 20.5, 60.0]] * 2], dtype=torch.float64, device=DEV)
    x["A"] = torch.tensor([[-1.0, -200.0], [-1e-3, -50.0]], dtype=torch.float64, device=DEV)
    for sp in (True, False):
        xx = dict(x, delta=x["delta"].abs()) if not sp else x
        out = selective_scan_triton(**xx, delta_softplus=sp, block_l=2)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, selective_scan_ref(**xx, delta_softplus=sp), rtol=1e-12, atol=1e-12)


def test_backward_saves_chunk_states_not_step_states():
    "Autograd keeps the inputs plus one state per chunk: nothing of size (batch, dim, L, N)."
    from rrg_tutorial.core import saved_tensor_bytes
    x = random_scan_inputs(1, 1, 64, 16, device=DEV, seed=1, requires_grad=True)
    _, saved = saved_tensor_bytes(lambda: selective_scan_triton(**x, block_l=16))
    inputs = sum(v.numel() * v.element_size() for v in x.values() if v is not None)
    assert saved == inputs + 4 * 1 * 1 * (64 // 16) * 16
    _, ref_saved = saved_tensor_bytes(lambda: selective_scan_ref(**x))
    assert ref_saved > 2 * saved


def test_no_states_saved_without_grad():
    x = random_scan_inputs(1, 1, 8, 2, device=DEV, seed=1)
    out, states = s6_forward(**x, block_l=2)
    assert states.shape == (1, 1, 1, 2)                # only the final state
    out2, states2 = s6_forward(**x, block_l=2, save_all=True)
    assert states2.shape == (1, 1, 4, 2) and torch.equal(states2[:, :, -1], states[:, :, 0]) and torch.equal(out, out2)


def test_errors_name_what_was_expected():
    x = random_scan_inputs(1, 2, 8, 3, device=DEV, seed=0)
    with pytest.raises(ValueError, match="must have shape"): selective_scan_triton(**{**x, "B": x["B"][:, :2]})
    with pytest.raises(ValueError, match="power of two"): selective_scan_triton(**x, block_l=3)
    with pytest.raises(ValueError, match="power of two"): selective_scan_triton(**x, block_l=0)
    with pytest.raises(TypeError, match="must be a bool"): selective_scan_triton(**x, delta_softplus=1)
    xc = dict(x, A=torch.complex(x["A"], x["A"]))
    with pytest.raises(TypeError, match="real A only"): selective_scan_triton(**xc)
    with pytest.raises(TypeError, match="torch.Tensor"): selective_scan_triton(**{**x, "u": x["u"].tolist()})
    out, states = s6_forward(**x, block_l=4, save_all=True)
    with pytest.raises(ValueError, match="chunk states"):
        s6_backward(torch.ones_like(out), *(x[k] for k in ARGS), False, states, block_l=2)


def test_refuses_cpu_without_interpreter_and_cuda_with_it(monkeypatch):
    monkeypatch.setattr(st, "INTERPRETED", False)
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"): check_triton_runnable("cpu")
    monkeypatch.setattr(st, "INTERPRETED", True)
    check_triton_runnable("cpu")
    with pytest.raises(RuntimeError, match="unset TRITON_INTERPRET"): check_triton_runnable("cuda")
    with pytest.raises(RuntimeError, match="runs on CUDA tensors"): check_triton_runnable("meta")


def test_traffic_model_and_roofline():
    # fp32, variable B and C, z, D, delta_bias: u, delta, z, out = 16 bytes per element, B and C 8*N per (batch, L)
    b, d, L, N = 2, 8, 32, 4
    assert scan_hbm_bytes(b, d, L, N) == 4 * (3 * b * d * L + 2 * b * N * L + d * N + 2 * d) + 4 * b * d * L
    assert scan_hbm_bytes(b, d, L, N, itemsize=2) < scan_hbm_bytes(b, d, L, N)
    # backward: u, delta, z, dout, B, C in; du, ddelta, dz, dB, dC (and the small weight gradients) out
    assert scan_hbm_bytes(b, d, L, N, backward=True) == 4 * (7 * b * d * L + 4 * b * N * L + 2 * (d * N + 2 * d))
    assert materialised_scan_bytes(b, d, L, N) - scan_hbm_bytes(b, d, L, N) == 24 * b * d * L * N
    r32, r16 = scan_roofline(8, 1536, 2048, 16, itemsize=4), scan_roofline(8, 1536, 2048, 16, itemsize=2)
    assert r32["bound"] == "HBM" and r16["bound"] == "exp (SFU)"       # fp32 memory bound, bf16 exp bound
    assert 15 < r32["bytes_per_elem"] < 17 and r32["traffic_ratio"] > 20
    assert default_block_l(2048, 16) == 64 and default_block_l(5, 16) == 16 and default_block_l(4096, 5) == 128


def test_second_derivative_raises_instead_of_being_wrong():
    x = random_scan_inputs(1, 2, 6, 3, with_z=False, seed=5, requires_grad=True, device=DEV)
    out = selective_scan_triton(**x, delta_softplus=True, block_l=4)
    with pytest.raises(RuntimeError, match="second derivative"):
        torch.autograd.grad(out.sum(), x["u"], create_graph=True)


def test_traffic_model_rejects_bad_sizes():
    with pytest.raises(ValueError, match="L must be a positive int"): scan_hbm_bytes(1, 1, 0, 4)
    with pytest.raises(ValueError, match="dim must be a positive int"): scan_roofline(1, -1, 4, 4)
    with pytest.raises(ValueError, match="N must be a positive int"): default_block_l(16, 0)
    with pytest.raises(ValueError, match="itemsize must be a positive int"): materialised_scan_bytes(1, 1, 4, 4, itemsize=0)
