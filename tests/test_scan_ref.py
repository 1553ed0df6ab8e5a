"""rrg_tutorial.scan_ref: the reference selective scan against mamba-ssm's own selective_scan_ref, gradients, validation."""
import itertools, sys
import pytest
import torch
from rrg_tutorial.scan_ref import (ScanInfo, check_scan_inputs, import_mamba_ssm, mamba_ssm_missing, mamba_ssm_reference,
                                   random_scan_inputs, selective_scan_ref)

MAMBA_REF = mamba_ssm_reference(required=False)
needs_mamba = pytest.mark.skipif(MAMBA_REF is None, reason=f"mamba-ssm reference unavailable: {mamba_ssm_missing()}")
KINDS = ["const", "var", "var_g2"]
FLAGS = list(itertools.product(*[(False, True)] * 5))   # D, z, delta_bias, softplus, return_last_state
# (rtol, atol) of the output: fp32 differs from mamba-ssm only by summation order; fp16/bf16 by one rounding of that
TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1.6e-2, 1.6e-2)}


def make(kb, kc, D, z, db, dtype=torch.float32, batch=2, dim=4, L=12, N=3, seed=0):
    x = random_scan_inputs(batch, dim, L, N, groups=2 if "g2" in kb + kc else 1, variable_B=kb != "const",
                           variable_C=kc != "const", with_D=D, with_z=z, with_delta_bias=db, dtype=dtype, seed=seed)
    for k, kind in (("B", kb), ("C", kc)):
        if kind == "var" and x[k].dim() == 4: x[k] = x[k][:, 0]    # ungrouped beside a grouped partner
    return x


@needs_mamba
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("kb,kc", list(itertools.product(KINDS, KINDS)))
def test_matches_mamba_ssm_every_combination(kb, kc, dtype):
    rtol, atol = TOL[dtype]
    for i, (D, z, db, sp, last) in enumerate(FLAGS):
        x = make(kb, kc, D, z, db, dtype, seed=i)
        ours = selective_scan_ref(**x, delta_softplus=sp, return_last_state=last)
        theirs = MAMBA_REF(**x, delta_softplus=sp, return_last_state=last)
        if not last: ours, theirs = (ours,), (theirs,)
        for name, a, b in zip(("out", "last_state"), ours, theirs):
            where = f"{name} B={kb} C={kc} D={D} z={z} delta_bias={db} softplus={sp} {dtype}"
            assert a.dtype == b.dtype and a.shape == b.shape, where
            torch.testing.assert_close(a, b, rtol=rtol if name == "out" else 1e-5, atol=atol if name == "out" else 1e-5,
                                       msg=lambda m: f"{where}: {m}")


@needs_mamba
@pytest.mark.parametrize("kb,kc", [("const", "const"), ("var", "var_g2"), ("var_g2", "const")])
def test_gradients_match_mamba_ssm(kb, kc):
    x = make(kb, kc, True, True, True, L=10)
    names = [k for k, v in x.items() if v is not None]
    grads = []
    for fn in (selective_scan_ref, MAMBA_REF):
        xs = {k: (v.detach().clone().requires_grad_(True) if v is not None else None) for k, v in x.items()}
        out, last = fn(**xs, delta_softplus=True, return_last_state=True)
        w = torch.linspace(-1, 1, out.numel()).reshape(out.shape)   # a non-uniform upstream gradient
        ((out * w).sum() + (last * last).sum()).backward()
        grads.append({k: xs[k].grad for k in names})
    for k in names: torch.testing.assert_close(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-4, msg=lambda m: f"d{k}: {m}")


@needs_mamba
def test_complex_A_matches_mamba_ssm():
    g = torch.Generator().manual_seed(0)
    b, d, L, N = 2, 4, 7, 3
    A = torch.complex(-0.5 * torch.rand(d, N, generator=g), torch.randn(d, N, generator=g))
    u, delta = torch.randn(b, d, L, generator=g), 0.5 * torch.rand(b, d, L, generator=g)
    for B, C in [(torch.randn(d, N, generator=g, dtype=torch.complex64), torch.randn(b, N, 2 * L, generator=g)),
                 (torch.randn(b, 2, N, 2 * L, generator=g), torch.randn(d, N, generator=g, dtype=torch.complex64))]:
        D = torch.randn(d, generator=g)
        ours, s1 = selective_scan_ref(u, delta, A, B, C, D=D, return_last_state=True)
        theirs, s2 = MAMBA_REF(u, delta, A, B, C, D=D, return_last_state=True)
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(s1, s2, rtol=1e-5, atol=1e-5)
        assert s1.dtype == torch.complex64


@pytest.mark.parametrize("kb,kc", [("const", "const"), ("var", "var"), ("var_g2", "var"), ("const", "var_g2")])
def test_gradcheck_fp64(kb, kc):
    x = make(kb, kc, True, True, True, dtype=torch.float64, batch=1, dim=2, L=4, N=2)
    names = [k for k, v in x.items() if v is not None]
    for v in x.values():
        if v is not None: v.requires_grad_(True)
    def f(*args):
        out, last = selective_scan_ref(**dict(zip(names, args)), delta_softplus=True, return_last_state=True)
        return out, last
    assert torch.autograd.gradcheck(f, tuple(x[k] for k in names))


def test_against_explicit_loops():
    "Independent of mamba-ssm: one (batch, channel, state) at a time in float64, variable B and C, groups 2."
    x = make("var_g2", "var_g2", True, True, True, batch=2, dim=4, L=6, N=3, dtype=torch.float64)
    out, last = selective_scan_ref(**x, delta_softplus=True, return_last_state=True)
    u, A, B, C, D, z = x["u"], x["A"], x["B"], x["C"], x["D"], x["z"]
    delta = torch.nn.functional.softplus(x["delta"] + x["delta_bias"][:, None])
    for b in range(2):
        for d in range(4):
            g = d // 2
            h = torch.zeros(3, dtype=torch.float64)
            for t in range(6):
                h = torch.exp(delta[b, d, t] * A[d]) * h + delta[b, d, t] * B[b, g, :, t] * u[b, d, t]
                y = (h * C[b, g, :, t]).sum() + D[d] * u[b, d, t]
                y = y * z[b, d, t] * torch.sigmoid(z[b, d, t])
                assert torch.allclose(out[b, d, t], y, rtol=1e-12, atol=1e-12)
            assert torch.allclose(last[b, d], h, rtol=1e-12, atol=1e-12)


def test_dtypes_and_info():
    x = make("var_g2", "const", True, False, True, dtype=torch.bfloat16)
    out, last = selective_scan_ref(**x, return_last_state=True)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 4, 12) and last.dtype == torch.float32 and last.shape == (2, 4, 3)
    info = check_scan_inputs(**x)
    assert isinstance(info, ScanInfo)
    assert (info.batch, info.dim, info.L, info.N) == (2, 4, 12, 3)
    assert (info.variable_B, info.variable_C, info.groups_B, info.groups_C, info.groups) == (True, False, 2, None, 2)
    assert info.compute_dtype == torch.float32 and info.out_dtype == torch.bfloat16 and not info.is_complex
    x64 = make("var", "var", False, False, False, dtype=torch.float64)
    assert check_scan_inputs(**x64).compute_dtype == torch.float64
    assert selective_scan_ref(**x64, return_last_state=True)[1].dtype == torch.float64


def test_random_scan_inputs():
    x = random_scan_inputs(2, 6, 5, 4, groups=3, variable_C=False, with_z=False, dtype=torch.float16, seed=3)
    assert x["u"].shape == (2, 6, 5) and x["u"].dtype == torch.float16 and x["B"].shape == (2, 3, 4, 5)
    assert x["C"].shape == (6, 4) and x["C"].dtype == torch.float32 and x["z"] is None
    assert (x["A"] < 0).all() and (x["A"] >= -0.5).all() and (x["delta"] >= 0).all() and (x["delta_bias"] <= 0.5).all()
    y = random_scan_inputs(2, 6, 5, 4, groups=3, variable_C=False, with_z=False, dtype=torch.float16, seed=3)
    assert all(torch.equal(x[k], y[k]) for k in x if x[k] is not None)
    assert not torch.equal(x["u"], random_scan_inputs(2, 6, 5, 4, groups=3, seed=4, dtype=torch.float16)["u"])
    g = random_scan_inputs(1, 2, 3, 2, requires_grad=True)
    assert all(v.requires_grad and v.is_leaf for v in g.values())
    with pytest.raises(ValueError, match="must divide dim"): random_scan_inputs(1, 5, 3, 2, groups=2)
    with pytest.raises(TypeError, match="dtype"): random_scan_inputs(1, 2, 3, 2, dtype=torch.int32)


def _bad(**changes):
    x = make("var_g2", "var", True, True, True)
    x.update(changes)
    return x


@pytest.mark.parametrize("changes,exc,msg", [
    (dict(u=[1.0]), TypeError, "u must be a torch.Tensor"),
    (dict(u=torch.randn(2, 4)), ValueError, r"u must have shape \(batch, dim, L\)"),
    (dict(u=torch.ones(2, 4, 12, dtype=torch.int64)), TypeError, "u .* real floating-point"),
    (dict(u=torch.randn(2, 4, 0)), ValueError, "non-empty"),
    (dict(delta=torch.rand(2, 4, 11)), ValueError, "delta must have the shape of u"),
    (dict(A=torch.randn(5, 3)), ValueError, r"A must have shape \(dim, N\) = \(4, N\)"),
    (dict(A=-torch.rand(4, 3, dtype=torch.float64).to(torch.int32)), TypeError, "A .* real floating-point"),
    (dict(B=torch.randn(2, 3, 3, 12)), ValueError, "3 groups.*does not divide dim = 4"),
    (dict(B=torch.randn(2, 2, 3, 11)), ValueError, r"grouped B must have shape \(batch, G, N, L\)"),
    (dict(C=torch.randn(2, 3, 11)), ValueError, r"variable C must have shape \(batch, N, L\) = \(2, 3, 12\)"),
    (dict(C=torch.randn(2, 5, 12)), ValueError, "variable C must have shape"),
    (dict(C=torch.randn(3, 3, 12)), ValueError, "variable C must have shape"),
    (dict(C=torch.randn(4, 2)), ValueError, r"constant C must have shape \(dim, N\) = \(4, 3\)"),
    (dict(C=torch.randn(1, 2, 2, 3, 12)), ValueError, "5-D"),
    (dict(B=torch.ones(2, 2, 3, 12, dtype=torch.int32)), TypeError, "B .* real floating-point"),
    (dict(D=torch.randn(3)), ValueError, r"D must have shape \(dim,\) = \(4,\)"),
    (dict(delta_bias=torch.randn(4, 1)), ValueError, "delta_bias must have shape"),
    (dict(z=torch.randn(2, 4, 13)), ValueError, "z must have the shape of u"),
    (dict(z=torch.ones(2, 4, 12, dtype=torch.bool)), TypeError, "z .* real floating-point"),
    (dict(D=torch.randn(4, device="meta")), ValueError, "on u's device"),
])
def test_validation_errors(changes, exc, msg):
    with pytest.raises(exc, match=msg): check_scan_inputs(**_bad(**changes))
    with pytest.raises(exc, match=msg): selective_scan_ref(**_bad(**changes))


def test_complex_A_rejected_where_not_allowed():
    x = make("var", "var", False, False, False)
    x["A"] = x["A"].to(torch.complex64)
    with pytest.raises(TypeError, match="real A only"): check_scan_inputs(**x)
    assert check_scan_inputs(**{**x, "B": torch.randn(2, 3, 24), "C": torch.randn(2, 3, 24)}, allow_complex=True).is_complex
    with pytest.raises(ValueError, match=r"\(batch, N, 2L\)"): check_scan_inputs(**x, allow_complex=True)


def test_flags_must_be_bool():
    x = make("var", "var", False, False, False)
    with pytest.raises(TypeError, match="delta_softplus must be a bool"): selective_scan_ref(**x, delta_softplus="yes")
    with pytest.raises(TypeError, match="return_last_state must be a bool"): selective_scan_ref(**x, return_last_state=1)


@needs_mamba
def test_mamba_ssm_reference_leaves_no_stub():
    assert MAMBA_REF.__module__ == "mamba_ssm.ops.selective_scan_interface"
    mod = sys.modules.get("selective_scan_cuda")
    assert mod is None or hasattr(mod, "fwd"), "an empty selective_scan_cuda stand-in was left in sys.modules"
    assert mamba_ssm_reference() is MAMBA_REF


def test_forgetting_curve():
    from rrg_tutorial.scan_ref import forgetting_curve
    kept = forgetting_curve(0.2, -2.0, L=20, remember_at=3, reset_at=10, reset_delta=4.0)
    assert kept.shape == (2, 20) and (kept[:, :3] == 0).all()
    torch.testing.assert_close(kept[0, 3:10], torch.exp(-0.4 * torch.arange(7.0)))
    torch.testing.assert_close(kept[0, 10], kept[0, 9] * torch.exp(torch.tensor(-8.0)))
    torch.testing.assert_close(kept[1, 10:], torch.exp(-0.4 * torch.arange(10.0)))
    with pytest.raises(ValueError, match="negative"): forgetting_curve(0.1, 1.0)
    with pytest.raises(ValueError, match="positive"): forgetting_curve(0.0, -1.0)
    with pytest.raises(ValueError, match="must lie in"): forgetting_curve(0.1, -1.0, L=8, reset_at=8)


def test_forgetting_explorer_builds_and_redraws():
    import matplotlib
    matplotlib.use("Agg")
    import ipywidgets
    from rrg_tutorial.scan_ref import forgetting_explorer, plot_forgetting
    w = forgetting_explorer(L=32)
    assert isinstance(w, ipywidgets.interactive)
    sliders = {c.description: c for c in w.children if isinstance(c, ipywidgets.FloatSlider)}
    assert set(sliders) == {"log10 Δ", "a", "reset Δ (0: off)"}
    sliders["reset Δ (0: off)"].value = 2.0       # triggers a redraw through the callback
    sliders["a"].value = -8.0
    assert w.kwargs == {"log10_delta": -1.0, "a": -8.0, "reset_delta": 2.0}
    fig = plot_forgetting(0.1, -1.0, 3.0, L=32)
    assert len(fig.axes[0].lines) >= 2


def _cut(x, sl):
    return {k: (v[..., sl] if v is not None and v.dim() >= 3 else v) for k, v in x.items()}


@pytest.mark.parametrize("kb,kc", [("const", "var"), ("var_g2", "const")])
def test_initial_state_chains_pieces(kb, kc):
    x = make(kb, kc, True, True, True, L=13)
    full, h = selective_scan_ref(**x, delta_softplus=True, return_last_state=True)
    outs, state = [], None
    for sl in (slice(0, 1), slice(1, 6), slice(6, 13)):
        o, state = selective_scan_ref(**_cut(x, sl), delta_softplus=True, return_last_state=True, initial_state=state)
        outs.append(o)
    torch.testing.assert_close(torch.cat(outs, -1), full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state, h, rtol=1e-5, atol=1e-5)
    # a zero initial state is the default
    torch.testing.assert_close(selective_scan_ref(**x, initial_state=torch.zeros(2, 4, 3)), selective_scan_ref(**x))


def test_gradcheck_fp64_initial_state():
    x = make("var", "var", True, False, True, dtype=torch.float64, batch=1, dim=2, L=3, N=2)
    x["initial_state"] = torch.randn(1, 2, 2, dtype=torch.float64)
    names = [k for k, v in x.items() if v is not None]
    for k in names: x[k].requires_grad_(True)
    f = lambda *a: selective_scan_ref(**dict(zip(names, a)), return_last_state=True)
    assert torch.autograd.gradcheck(f, tuple(x[k] for k in names))


def test_initial_state_validation():
    x = make("var", "var", False, False, False)
    with pytest.raises(ValueError, match=r"initial_state must have shape \(batch, dim, N\) = \(2, 4, 3\)"):
        check_scan_inputs(**x, initial_state=torch.zeros(2, 4))
    with pytest.raises(TypeError, match="initial_state must be a floating-point"):
        selective_scan_ref(**x, initial_state=torch.zeros(2, 4, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="initial_state must be a torch.Tensor"):
        selective_scan_ref(**x, initial_state=0.0)


def test_import_mamba_ssm_guards():
    with pytest.raises(ValueError, match="mamba_ssm or one of its submodules"): import_mamba_ssm("torch")


@pytest.mark.skipif(mamba_ssm_missing("mamba_ssm.modules.mamba_simple") is not None,
                    reason=f"mamba-ssm block unavailable: {mamba_ssm_missing('mamba_ssm.modules.mamba_simple')}")
def test_import_mamba_ssm_module():
    mod = import_mamba_ssm("mamba_ssm.modules.mamba_simple")
    assert hasattr(mod, "Mamba")
    m = sys.modules.get("selective_scan_cuda")
    assert m is None or hasattr(m, "fwd")


def test_random_scan_inputs_rejects_non_int_sizes():
    with pytest.raises(TypeError, match="batch must be an int"): random_scan_inputs(1.5, 2, 3, 2)
    with pytest.raises(TypeError, match="N must be an int"): random_scan_inputs(1, 2, 3, True)
    with pytest.raises(ValueError, match="must be >= 1"): random_scan_inputs(1, 2, 0, 2)
