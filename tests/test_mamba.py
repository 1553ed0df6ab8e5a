"""The Mamba block (lesson 05) against mamba-ssm's own block, its initialisation, decoding, and the LTI control."""
import importlib, math
import pytest
import torch
import torch.nn.functional as F

from rrg_tutorial.mamba import Mamba, MambaLTI, mamba_ssm_block, inverse_softplus
from rrg_tutorial.scan import record_backends, use_backend
from rrg_tutorial.scan_ref import mamba_ssm_missing, selective_scan_ref

WHY_NOT = mamba_ssm_missing("mamba_ssm.modules.mamba_simple")
needs_mamba = pytest.mark.skipif(WHY_NOT is not None, reason=f"mamba-ssm's block unavailable: {WHY_NOT}")


def _trained(d_model=16, L=10, seed=0, cls=Mamba):
    "A block moved away from its initialisation by a few optimiser steps."
    torch.manual_seed(seed)
    m = cls(d_model)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(2):
        loss = m(torch.randn(2, L, d_model)).pow(2).mean(); opt.zero_grad(); loss.backward(); opt.step()
    return m


@needs_mamba
def test_defaults_and_names_match_mamba_ssm():
    torch.manual_seed(3); theirs = mamba_ssm_block(40)
    torch.manual_seed(3); ours = Mamba(40)
    assert (ours.d_state, ours.d_conv, ours.expand, ours.d_inner, ours.dt_rank) == (16, 4, 2, 80, math.ceil(40 / 16))
    sd_o, sd_t = ours.state_dict(), theirs.state_dict()
    assert sorted(sd_o) == sorted(sd_t)
    for k in sd_t:   # the same random draws in the same order: identical initial weights
        assert sd_o[k].shape == sd_t[k].shape and sd_o[k].dtype == sd_t[k].dtype and torch.equal(sd_o[k], sd_t[k]), k


def test_initialisation():
    m = Mamba(256, dt_min=1e-3, dt_max=1e-1)
    torch.testing.assert_close(-torch.exp(m.A_log.detach()), -torch.arange(1, 17.).repeat(512, 1))
    assert torch.equal(m.D.detach(), torch.ones(512)) and m.A_log.dtype == m.D.dtype == torch.float32
    dt = F.softplus(m.dt_proj.bias.detach())
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    q = torch.quantile(torch.log10(dt), torch.tensor([0.25, 0.5, 0.75]))
    torch.testing.assert_close(q, torch.tensor([-2.5, -2.0, -1.5]), atol=0.15, rtol=0)   # log-uniform
    std = m.dt_rank ** -0.5
    assert m.dt_proj.weight.abs().max() <= std
    floored = Mamba(16, dt_min=1e-6, dt_max=2e-6, dt_init_floor=1e-3)
    torch.testing.assert_close(F.softplus(floored.dt_proj.bias.detach()), torch.full((32,), 1e-3))
    y = torch.tensor([1e-4, 0.1, 3.0, 30.0])
    torch.testing.assert_close(F.softplus(inverse_softplus(y)), y)
    assert torch.equal(Mamba(16, dt_init="constant").dt_proj.weight, torch.full((32, 1), 1.0))


@needs_mamba
def test_state_dict_both_ways_and_same_outputs_fp32():
    ours = _trained()
    theirs = mamba_ssm_block(16); theirs.load_state_dict(ours.state_dict())
    back = Mamba(16); back.load_state_dict(theirs.state_dict())
    x = torch.randn(3, 10, 16, requires_grad=True)
    yo, yt, yb = ours(x), theirs(x), back(x)
    torch.testing.assert_close(yo, yt, rtol=1e-5, atol=1e-6)
    assert torch.equal(yo, yb)
    go = torch.autograd.grad(yo.sum(), [x, *dict(ours.named_parameters()).values()])
    gt = torch.autograd.grad(yt.sum(), [x, *(dict(theirs.named_parameters())[n] for n, _ in ours.named_parameters())])
    for a, b in zip(go, gt): torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@needs_mamba
def test_same_wiring_to_rounding_in_fp64():
    "With both scans in fp64 (mamba-ssm's block pointed at the fp64-capable reference), only rounding differs."
    ours = _trained().double()
    theirs = mamba_ssm_block(16); theirs.load_state_dict(ours.state_dict()); theirs.double()
    ms = importlib.import_module("mamba_ssm.modules.mamba_simple")
    saved, ms.selective_scan_fn = ms.selective_scan_fn, selective_scan_ref
    try:
        x = torch.randn(2, 9, 16, dtype=torch.float64)
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-12, atol=1e-13)
    finally: ms.selective_scan_fn = saved


@pytest.mark.parametrize("cls", [Mamba, MambaLTI])
def test_step_decoding_equals_forward(cls):
    m = _trained(cls=cls)
    x = torch.randn(2, 11, 16)
    with torch.no_grad():
        full = m(x)
        conv, ssm = m.allocate_inference_cache(2)
        assert conv.shape == (2, 32, 4) and ssm.shape == (2, 32, 16)
        stepped = torch.cat([m.step(x[:, t:t + 1], conv, ssm)[0] for t in range(11)], 1)
        pre, (c2, s2) = m(x[:, :2], return_state=True)          # a prompt shorter than d_conv
        cont = torch.cat([pre] + [m.step(x[:, t:t + 1], c2, s2)[0] for t in range(2, 11)], 1)
    torch.testing.assert_close(stepped, full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cont, full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s2, ssm, rtol=1e-5, atol=1e-6)


@needs_mamba
def test_step_equals_mamba_ssm_step():
    ours = _trained()
    theirs = mamba_ssm_block(16); theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 7, 16)
    co, so = ours.allocate_inference_cache(2); ct, st = theirs.allocate_inference_cache(2, 7)
    with torch.no_grad():
        for t in range(7):
            torch.testing.assert_close(ours.step(x[:, t:t + 1], co, so)[0], theirs.step(x[:, t:t + 1], ct, st)[0],
                                       rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(co, ct); torch.testing.assert_close(so, st, rtol=1e-5, atol=1e-6)


def test_lti_scan_inputs_do_not_depend_on_the_input():
    lti, sel = MambaLTI(16), Mamba(16)
    a, b = torch.randn(2, 32, 5), torch.randn(2, 32, 5)
    for x, y in zip(lti._ssm_inputs(a), lti._ssm_inputs(b)): assert torch.equal(x, y)
    assert not torch.equal(sel._ssm_inputs(a)[1], sel._ssm_inputs(b)[1])
    assert {"dt_bias", "B", "C"} <= set(dict(lti.named_parameters())) and not hasattr(lti, "x_proj")
    g = torch.autograd.grad(lti(torch.randn(2, 5, 16)).sum(), [lti.dt_bias, lti.B, lti.C])
    assert all(t.abs().sum() > 0 for t in g)


def test_uses_the_dispatcher_and_can_be_forced():
    m = Mamba(16)
    with record_backends() as ran:
        m(torch.randn(1, 5, 16))
        with use_backend("reference"): m(torch.randn(1, 5, 16))
    assert len(ran) == 2 and ran[1] == "reference"
    forced = Mamba(16, scan_backend="reference")
    with record_backends() as ran2: forced(torch.randn(1, 3, 16))
    assert ran2 == ["reference"]


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="d_model must be a positive int"): Mamba(0)
    with pytest.raises(ValueError, match="dt_rank"): Mamba(16, dt_rank=0)
    with pytest.raises(ValueError, match="dt_min <= dt_max"): Mamba(16, dt_min=0.2, dt_max=0.1)
    with pytest.raises(ValueError, match="dt_init"): Mamba(16, dt_init="zeros")
    m = Mamba(16)
    with pytest.raises(ValueError, match=r"\(batch, L, d_model\) with d_model = 16"): m(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"\(batch, L, d_model\)"): m(torch.randn(5, 16))
    conv, ssm = m.allocate_inference_cache(2)
    with pytest.raises(ValueError, match="one token at a time"): m.step(torch.randn(2, 3, 16), conv, ssm)
    with pytest.raises(ValueError, match="allocate_inference_cache"): m.step(torch.randn(3, 1, 16), conv, ssm)


def test_bad_sizes_and_backend_fail_in_the_constructor():
    with pytest.raises(ValueError, match=r"d_inner = int\(expand \* d_model\)"): Mamba(1, expand=0.5)
    with pytest.raises(ValueError, match="expand must be a number > 0"): Mamba(16, expand=0)
    with pytest.raises(ValueError, match="expand must be a number > 0"): Mamba(16, expand=True)
    with pytest.raises(ValueError, match="d_state must be a positive int"): Mamba(16, d_state=0)
    with pytest.raises(ValueError, match="scan_backend must be None.*'chunked'"): Mamba(16, scan_backend="fastest")
    with pytest.raises(ValueError, match="scan_backend"): MambaLTI(16, scan_backend="cuda_fast")
    Mamba(16, scan_backend="reference")                                # a known name is accepted


def test_empty_inputs_fail_clearly():
    m = Mamba(8)
    with pytest.raises(ValueError, match="at least one sequence of at least one token"): m(torch.randn(0, 5, 8))
    with pytest.raises(ValueError, match="at least one sequence of at least one token"): m(torch.randn(2, 0, 8))
    with pytest.raises(TypeError, match="floating-point"): m(torch.ones(2, 5, 8, dtype=torch.long))
    with pytest.raises(TypeError, match="expected a tensor"): m([[0.0] * 8])
    with pytest.raises(ValueError, match="batch_size must be a positive int"): m.allocate_inference_cache(0)
    conv, ssm = m.allocate_inference_cache(2)
    with pytest.raises(ValueError, match="at least one sequence"): m.step(torch.randn(0, 1, 8), conv, ssm)
    with pytest.raises(TypeError, match="ssm_state must be a tensor"): m.step(torch.randn(2, 1, 8), conv, None)


def test_helpers_reject_bad_input():
    with pytest.raises(ValueError, match="y must be > 0"): inverse_softplus(torch.tensor([0.5, 0.0]))
    with pytest.raises(TypeError, match="y must be a tensor"): inverse_softplus(0.5)
    with pytest.raises(TypeError, match="dt_min must be a number"): Mamba(8, dt_min="a")
    with pytest.raises(ValueError, match="d_model must be a positive int"): mamba_ssm_block(0)


def test_builds_on_the_meta_device():
    "Counting parameters without memory (`with torch.device('meta')`) must not evaluate the init checks' values."
    from rrg_tutorial.mamba import inverse_softplus
    with torch.device("meta"):
        m = Mamba(16)
    assert m.in_proj.weight.is_meta and sum(p.numel() for p in m.parameters()) > 0
    with pytest.raises(ValueError, match="must be > 0"):
        inverse_softplus(torch.tensor([0.5, 0.0]))
