"""rrg_tutorial.scan_fast: the associative operator, the log-depth and chunked selective scans against the reference
(outputs, last states, gradients), chunk-size invariance, initial_state, numerics at large delta*|A|, memory, errors."""
import itertools
import pytest
import torch
from rrg_tutorial.core import saved_tensor_bytes
from rrg_tutorial.scan_ref import mamba_ssm_missing, mamba_ssm_reference, random_scan_inputs, selective_scan_ref
from rrg_tutorial.scan_fast import (default_chunk_size, parallel_scan, scan_op, selective_scan_chunked,
                                    selective_scan_mambapy, selective_scan_parallel)

MAMBA_REF = mamba_ssm_reference(required=False)
needs_mamba = pytest.mark.skipif(MAMBA_REF is None, reason=f"mamba-ssm reference unavailable: {mamba_ssm_missing()}")
try:
    import mambapy  # noqa: F401
    HAS_MAMBAPY = True
except ImportError:
    HAS_MAMBAPY = False
KINDS = ["const", "var", "var_g2"]
SCANS = {"parallel": selective_scan_parallel, "chunked": selective_scan_chunked,
         "chunked_q3": lambda *a, **k: selective_scan_chunked(*a, chunk_size=3, **k)}
if HAS_MAMBAPY: SCANS["mambapy"] = selective_scan_mambapy


def make(kb, kc, D=True, z=True, db=True, dtype=torch.float64, batch=2, dim=4, L=13, N=3, seed=0, requires_grad=False):
    x = random_scan_inputs(batch, dim, L, N, groups=2 if "g2" in kb + kc else 1, variable_B=kb != "const",
                           variable_C=kc != "const", with_D=D, with_z=z, with_delta_bias=db, dtype=dtype, seed=seed)
    for k, kind in (("B", kb), ("C", kc)):
        if kind == "var" and x[k].dim() == 4: x[k] = x[k][:, 0]
    if requires_grad:
        for v in x.values():
            if v is not None: v.requires_grad_(True)
    return x


def out_last_grads(fn, x, **kw):
    xs = {k: (v.detach().clone().requires_grad_(True) if v is not None else None) for k, v in x.items()}
    out, last = fn(**xs, return_last_state=True, **kw)
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    ((out * w).sum() + (last * last).sum()).backward()
    return out.detach(), last.detach(), {k: v.grad for k, v in xs.items() if v is not None}


def assert_same(p, q, tol, where=""):
    torch.testing.assert_close(p[0], q[0], rtol=tol, atol=tol, msg=lambda m: f"out {where}: {m}")
    torch.testing.assert_close(p[1], q[1], rtol=tol, atol=tol, msg=lambda m: f"last_state {where}: {m}")
    for k in q[2]: torch.testing.assert_close(p[2][k], q[2][k], rtol=tol, atol=tol, msg=lambda m: f"d{k} {where}: {m}")


def sequential(a, b, h0=None):
    h, hs = (torch.zeros_like(a[0]) if h0 is None else h0), []
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]; hs.append(h)
    return torch.stack(hs)


def test_operator_is_associative_with_identity_and_composes_steps():
    g = torch.Generator().manual_seed(0)
    p = [(torch.rand(500, generator=g, dtype=torch.float64), torch.randn(500, generator=g, dtype=torch.float64)) for _ in range(3)]
    for x, y in zip(scan_op(scan_op(p[0], p[1]), p[2]), scan_op(p[0], scan_op(p[1], p[2]))):
        torch.testing.assert_close(x, y, rtol=1e-14, atol=1e-14)
    one = (torch.ones(500, dtype=torch.float64), torch.zeros(500, dtype=torch.float64))
    for x, y in zip(scan_op(one, p[0]), p[0]): assert torch.equal(x, y)
    for x, y in zip(scan_op(p[0], one), p[0]): assert torch.equal(x, y)
    h = torch.randn(500, dtype=torch.float64)
    a, b = scan_op(p[0], p[1])
    torch.testing.assert_close(a * h + b, p[1][0] * (p[0][0] * h + p[0][1]) + p[1][1])
    assert not torch.allclose(scan_op(p[0], p[1])[1], scan_op(p[1], p[0])[1])   # order matters


@pytest.mark.parametrize("L", [1, 2, 3, 7, 8, 33, 100])
def test_parallel_scan_matches_sequential(L):
    g = torch.Generator().manual_seed(L)
    a, b = torch.rand(L, 3, 2, generator=g, dtype=torch.float64), torch.randn(L, 3, 2, generator=g, dtype=torch.float64)
    h0 = torch.randn(3, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(parallel_scan(a, b), sequential(a, b))
    torch.testing.assert_close(parallel_scan(a, b, h0), sequential(a, b, h0))
    torch.testing.assert_close(parallel_scan(a.movedim(0, 1), b.movedim(0, 1), dim=1), sequential(a, b).movedim(0, 1))


def test_parallel_scan_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"): parallel_scan(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="h0 must be"): parallel_scan(torch.ones(3, 2), torch.ones(3, 2), torch.ones(2, 2))
    with pytest.raises(ValueError, match="out of range"): parallel_scan(torch.ones(3), torch.ones(3), dim=2)
    with pytest.raises(ValueError, match="non-empty"): parallel_scan(torch.ones(0), torch.ones(0))
    with pytest.raises(TypeError, match="torch.Tensor"): parallel_scan([1.0], torch.ones(1))


@pytest.mark.parametrize("name", list(SCANS))
@pytest.mark.parametrize("kb,kc", list(itertools.product(KINDS, KINDS)))
def test_matches_reference_fp64_outputs_last_state_gradients(name, kb, kc):
    for i, (D, z, db, sp) in enumerate([(True, True, True, True), (False, False, False, False), (True, False, True, False)]):
        x = make(kb, kc, D, z, db, seed=i)
        assert_same(out_last_grads(SCANS[name], x, delta_softplus=sp), out_last_grads(selective_scan_ref, x, delta_softplus=sp),
                    1e-10, f"{name} B={kb} C={kc} D={D} z={z} db={db} sp={sp}")


@needs_mamba
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", list(SCANS))
def test_matches_mamba_ssm_reference(name, dtype):
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    for i, (kb, kc) in enumerate(itertools.product(KINDS, KINDS)):
        x = make(kb, kc, dtype=dtype, L=40, dim=8, N=4, seed=i)
        ours, ol = SCANS[name](**x, delta_softplus=True, return_last_state=True)
        theirs, tl = MAMBA_REF(**x, delta_softplus=True, return_last_state=True)
        assert ours.dtype == theirs.dtype == dtype and ol.dtype == tl.dtype == torch.float32
        scale = theirs.float().abs().max()
        assert (ours.float() - theirs.float()).abs().max() <= tol * scale, (kb, kc)
        torch.testing.assert_close(ol, tl, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("L,sizes", [(1, [1, 4, 64]), (17, [1, 2, 4, 8, 16, 17, 40]), (100, [3, 7, 64]),
                                     (8192, [64, 1000, 8192])])
def test_chunked_is_invariant_to_chunk_size(L, sizes):
    x = make("var", "var", batch=1, dim=2, L=L, N=2, seed=L)
    base = out_last_grads(selective_scan_chunked, x, delta_softplus=True)
    if L <= 100: assert_same(base, out_last_grads(selective_scan_ref, x, delta_softplus=True), 1e-10, f"L={L} vs ref")
    else: torch.testing.assert_close(base[0], selective_scan_ref(**x, delta_softplus=True), rtol=1e-10, atol=1e-10)
    for q in sizes: assert_same(out_last_grads(selective_scan_chunked, x, delta_softplus=True, chunk_size=q), base, 1e-10, f"L={L} Q={q}")


@pytest.mark.parametrize("name", list(SCANS))
@pytest.mark.parametrize("kb,kc", [("var", "var"), ("const", "var_g2")])
def test_initial_state_matches_reference(name, kb, kc):
    x = make(kb, kc, seed=5)
    x["initial_state"] = torch.randn(2, 4, 3, dtype=torch.float64)
    assert_same(out_last_grads(SCANS[name], x, delta_softplus=True), out_last_grads(selective_scan_ref, x, delta_softplus=True),
                1e-10, f"{name} B={kb} C={kc}")


@pytest.mark.parametrize("name", ["parallel", "chunked", "chunked_q3"] + (["mambapy"] if HAS_MAMBAPY else []))
def test_initial_state_continues_a_split_sequence(name):
    x = make("var", "var_g2", L=20, seed=3)
    whole, last = selective_scan_ref(**x, delta_softplus=True, return_last_state=True)
    seq = ("u", "delta", "z", "B", "C")
    for cut in (1, 7, 19):
        o1, l1 = SCANS[name](**{k: (v[..., :cut] if k in seq else v) for k, v in x.items()}, delta_softplus=True, return_last_state=True)
        o2, l2 = SCANS[name](**{k: (v[..., cut:] if k in seq else v) for k, v in x.items()}, delta_softplus=True,
                             return_last_state=True, initial_state=l1)
        torch.testing.assert_close(torch.cat([o1, o2], -1), whole, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(l2, last, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kb,kc,q", [("var_g2", "var", 4), ("const", "const", 3), ("var", "const", 20)])
def test_chunked_gradcheck_every_input(kb, kc, q):
    x = make(kb, kc, L=9, dim=4, N=2, batch=1)
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    h0 = torch.randn(1, 4, 2, dtype=torch.float64, requires_grad=True)
    def f(*a):
        return selective_scan_chunked(*a[:8], delta_softplus=True, return_last_state=True, initial_state=a[8], chunk_size=q)
    assert torch.autograd.gradcheck(f, [x[k].clone().requires_grad_(True) for k in names] + [h0])


def test_gradients_only_where_asked():
    x = make("var", "var")
    u = x["u"].clone().requires_grad_(True)
    selective_scan_chunked(**{**x, "u": u}, delta_softplus=True).sum().backward()
    ref_u = x["u"].clone().requires_grad_(True)
    selective_scan_ref(**{**x, "u": ref_u}, delta_softplus=True).sum().backward()
    torch.testing.assert_close(u.grad, ref_u.grad)


@pytest.mark.parametrize("scale", [5.0, 50.0, 500.0])
def test_finite_at_large_delta_abs_A(scale):
    g = torch.Generator().manual_seed(1)
    N = 16
    x = dict(u=torch.randn(1, 3, 64, generator=g), delta=scale * torch.rand(1, 3, 64, generator=g),
             A=-torch.arange(1, N + 1, dtype=torch.float32).repeat(3, 1), B=torch.randn(1, N, 64, generator=g),
             C=torch.randn(1, N, 64, generator=g))
    ref = selective_scan_ref(**x)
    assert ref.isfinite().all()
    for name in ("parallel", "chunked", "chunked_q3"):
        out, last, grads = out_last_grads(SCANS[name], x)
        assert out.isfinite().all() and last.isfinite().all() and all(v.isfinite().all() for v in grads.values()), name
        assert (out - ref).abs().max() <= 1e-5 * ref.abs().max(), name


def test_recomputing_backward_saves_far_less():
    x = random_scan_inputs(2, 16, 256, 16, requires_grad=True, seed=0)
    state_bytes = 2 * 16 * 256 * 16 * 4
    _, chunked = saved_tensor_bytes(selective_scan_chunked, **x, delta_softplus=True)
    _, parallel = saved_tensor_bytes(selective_scan_parallel, **x, delta_softplus=True)
    # the chunked scan keeps (batch, dim, L)-sized tensors and chunk-start states: less than one copy of the states;
    # autograd through the log-depth scan keeps several copies
    assert chunked < state_bytes, chunked / state_bytes
    assert parallel > 4 * chunked, (parallel / state_bytes, chunked / state_bytes)
    y = selective_scan_chunked(**x, delta_softplus=True)
    assert y.requires_grad and y.grad_fn is not None


def test_default_chunk_size():
    assert [default_chunk_size(1, 4, L, 4) for L in (1, 5, 8, 100, 1024, 4096, 8192)] == [1, 5, 8, 8, 8, 16, 32]
    assert [default_chunk_size(*s) for s in [(2, 256, 1024, 16), (1, 64, 4096, 16), (8, 512, 256, 16)]] == [16, 16, 32]
    with pytest.raises(ValueError, match="positive int"): default_chunk_size(1, 1, 0, 1)


def test_bad_input_is_rejected_with_a_clear_error():
    x = make("var", "var", dtype=torch.float32)
    with pytest.raises(ValueError, match="chunk_size must be"): selective_scan_chunked(**x, chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size must be"): selective_scan_chunked(**x, chunk_size=True)
    with pytest.raises(ValueError, match=r"initial_state must have shape \(batch, dim, N\)"):
        selective_scan_chunked(**x, initial_state=torch.zeros(2, 4, 4))
    with pytest.raises(TypeError, match="initial_state must be a floating-point tensor"):
        selective_scan_parallel(**x, initial_state=torch.zeros(2, 4, 3, dtype=torch.int32))
    with pytest.raises(TypeError, match="initial_state must be a torch.Tensor"):
        selective_scan_chunked(**x, initial_state=[0.0])
    with pytest.raises(TypeError, match="must be a bool"): selective_scan_chunked(**x, return_last_state=1)
    with pytest.raises(TypeError, match="real A only"):
        selective_scan_chunked(**{**x, "A": torch.complex(x["A"], x["A"])})
    with pytest.raises(ValueError, match="delta must have the shape of u"):
        selective_scan_parallel(**{**x, "delta": x["delta"][..., :-1]})


@pytest.mark.parametrize("with_z", [True, False])
def test_second_derivative_raises_instead_of_being_wrong(with_z):
    # without z the upstream gradient needs no graph, so once_differentiable let the mixed d2/du d(delta)
    # through silently wrong (9.86 vs the reference's 8.84): any create_graph=True must raise
    x = make("var", "var", requires_grad=True)
    if not with_z: x["z"] = None
    y = selective_scan_chunked(**x, delta_softplus=True)
    with pytest.raises(RuntimeError, match="second derivative.*backend='parallel'"):
        torch.autograd.grad(y.sum(), x["u"], create_graph=True)


def test_second_derivative_through_parallel_matches_reference():
    x = make("var", "var", z=False, requires_grad=True)
    mixed = []
    for fn in (selective_scan_parallel, selective_scan_ref):
        (gu,) = torch.autograd.grad(fn(**x, delta_softplus=True).sum(), x["u"], create_graph=True)
        mixed.append(torch.autograd.grad(gu.sum(), x["delta"])[0])
    torch.testing.assert_close(mixed[0], mixed[1], rtol=1e-9, atol=1e-9)

