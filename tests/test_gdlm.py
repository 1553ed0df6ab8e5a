import math
import pytest
import torch
from rrg_tutorial.gdlm import GDLM, GDLMConfig, gdlm_config, GDLM_CONFIGS


def small(**kw): return gdlm_config("tiny-ci", in_channels=12, **kw)


@pytest.mark.parametrize("g", [7, 14])
@pytest.mark.parametrize("views", [1, 2])
def test_shapes_one_and_two_views(g, views):
    torch.manual_seed(0)
    m = GDLM(small())
    x = torch.randn(2, views, 12, g, g) if views == 2 else torch.randn(2, 12, g, g)
    with torch.no_grad(): out = m(x)
    assert out.shape == (2, views * (1 + g * g), 16)


def test_channel_concat_and_views_are_independent():
    torch.manual_seed(0)
    m = GDLM(small(concat="channel"))
    x = torch.randn(2, 2, 12, 5, 5)
    with torch.no_grad():
        out = m(x)
        assert out.shape == (2, 2 * 25, 32)
        torch.testing.assert_close(out, torch.cat([m(x[:, 0]), m(x[:, 1])], 1))
        p = m.parts(x[:, 0])
        torch.testing.assert_close(out[:, :25, :16], m.ln_s(m.proj(p["v_G"]))[:, None].expand(-1, 25, -1))


def test_parts_follow_the_equations():
    torch.manual_seed(0)
    m = GDLM(small())
    v = torch.randn(1, 12, 4, 5)
    with torch.no_grad():
        p = m.parts(v)
        torch.testing.assert_close(p["v_G"], v.mean((2, 3)))
        torch.testing.assert_close(p["v_S"], m.ln_s(m.proj(v.flatten(2).transpose(1, 2))))
        torch.testing.assert_close(p["v_P"], p["v_S"] + m.dpb(p["v_S"], (4, 5)))
        y = m.ss2d(p["v_con_m"]).flatten(2).transpose(1, 2)
        torch.testing.assert_close(p["v_M"], m.out_proj(p["v_con_s"] * m.norm(y)))
        assert torch.equal(p["v'_G"][:, 1:], p["v_M"])


@pytest.mark.parametrize("over", [{}, dict(rope="none"), dict(use_dpb=False), dict(use_gdlm=False), dict(rope="input"),
                                  dict(rope_kind="mixed"), dict(concat="channel")],
                         ids=["full", "no-rope", "no-dpb", "no-gdlm", "rope-input", "mixed", "channel"])
def test_gradients_reach_every_parameter(over):
    torch.manual_seed(0)
    m = GDLM(small(**over))
    m(torch.randn(2, 2, 12, 4, 4)).square().mean().backward()
    bad = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0]
    assert bad == []


def test_ablation_switches_remove_what_they_say():
    full, nodpb, nogdlm = GDLM(small()), GDLM(small(use_dpb=False)), GDLM(small(use_gdlm=False))
    assert full.dpb is not None and nodpb.dpb is None
    assert not hasattr(nogdlm, "ss2d") and {n.split(".")[0] for n, _ in nogdlm.named_parameters()} == {"proj", "ln_s"}
    v = torch.randn(1, 12, 3, 3)
    with torch.no_grad():
        p = nodpb.parts(v); assert torch.equal(p["v_P"], p["v_S"])
        p = nogdlm.parts(v); assert torch.equal(p["v'_G"][:, 1:], p["v_S"])
    assert GDLM(small(rope="none")).ss2d.rope2d is None


def test_deterministic_under_seed():
    x = torch.randn(1, 2, 12, 4, 4)
    outs = []
    for s in (3, 3, 4):
        torch.manual_seed(s)
        with torch.no_grad(): outs.append(GDLM(small())(x))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def expected_params(c: GDLMConfig) -> int:
    d, di, N, Cin = c.d_model, c.d_inner, c.d_state, c.in_channels
    R = c.dt_rank or math.ceil(d / 16)
    n = Cin * d + d + 2 * d                                    # Eq. 6
    n += d * c.dpb_kernel ** 2 + d                             # Eq. 7
    n += d * d * c.conv_kernel ** 2 + d                        # Eq. 8
    n += 2 * d + 2 * d * di + di * c.d_conv ** 2 + di          # Eq. 9
    n += 4 * (R + 2 * N) * di + 4 * di * R + 4 * di + 4 * di * (N // 2 if c.rope == "ssm" else N) + 4 * di   # SS2D
    n += 2 * di + di * d                                       # Eq. 11
    return n


@pytest.mark.parametrize("name", ["T", "S", "B"])
def test_param_counts_match_the_formula(name):
    c = gdlm_config(name)
    assert sum(p.numel() for p in GDLM(c).parameters()) == expected_params(c)


def test_config_errors():
    with pytest.raises(ValueError, match="unknown configuration"): gdlm_config("L")
    with pytest.raises(ValueError, match="rope must be"): GDLMConfig(rope="qk")
    with pytest.raises(ValueError, match="concat must be"): GDLMConfig(concat="add")
    with pytest.raises(ValueError, match="odd"): GDLMConfig(d_conv=4)
    m = GDLM(small())
    with pytest.raises(ValueError, match="expected visual features"): m(torch.randn(1, 13, 4, 4))
    with pytest.raises(ValueError, match="expected visual features"): m(torch.randn(12, 4, 4))
    assert set(GDLM_CONFIGS) >= {"T", "S", "B"}


BAD_GDLM = [
    (lambda: GDLMConfig(ssm_ratio=0), ValueError, "d_inner >= 1"),
    (lambda: GDLMConfig(d_model=16.5), ValueError, "positive ints"),
    (lambda: GDLMConfig(in_channels=0), ValueError, "positive ints"),
    (lambda: GDLMConfig(dt_rank=0), ValueError, "positive ints"),
    (lambda: GDLMConfig(rope_kind="rel"), ValueError, "rope_kind"),
    (lambda: GDLMConfig(use_dpb="no"), ValueError, "True or False"),
    (lambda: GDLMConfig(d_state=6), ValueError, "d_state must be divisible by 4"),
    (lambda: GDLMConfig(d_model=6, ssm_ratio=1.0, rope="input"), ValueError, "divisible by 4"),
    (lambda: GDLMConfig(dpb_kernel=0), ValueError, "positive ints"),
    (lambda: gdlm_config("T", width=3), TypeError, "unknown field"),
    (lambda: GDLM(dict(d_model=8)), TypeError, "GDLMConfig"),
    (lambda: GDLM(small())(torch.randn(0, 12, 3, 3)), ValueError, "non-empty"),
    (lambda: GDLM(small())(torch.randn(1, 12, 0, 3)), ValueError, "non-empty"),
    (lambda: GDLM(small())(torch.randn(1, 0, 12, 3, 3)), ValueError, "non-empty"),
    (lambda: GDLM(small())(torch.randn(1, 2, 13, 3, 3)), ValueError, r"\(B, V, 12, H, W\)"),
    (lambda: GDLM(small())(torch.ones(1, 12, 3, 3, dtype=torch.long)), TypeError, "floating-point"),
    (lambda: GDLM(small())([1, 2]), ValueError, "expected visual features"),
    (lambda: GDLM(small()).parts(torch.randn(1, 2, 12, 3, 3)), ValueError, r"\(B, 12, H, W\)"),
]


@pytest.mark.parametrize("i", range(len(BAD_GDLM)))
def test_bad_input_gets_a_clear_error(i):
    fn, exc, msg = BAD_GDLM[i]
    with pytest.raises(exc, match=msg): fn()


NO_TRITON = '''
import sys, torch
from rrg_tutorial.gdlm import GDLM, gdlm_config
from rrg_tutorial.ss2d import SS2D, GridSelfAttention
from rrg_tutorial.dpb import DynamicPosBias
from rrg_tutorial.scan import record_backends
assert sys.modules.get("triton") is None and sys.modules.get("mamba_ssm") is None
torch.manual_seed(0)
with record_backends() as used:
    GDLM(gdlm_config("tiny-ci", in_channels=8))(torch.randn(1, 2, 8, 3, 3)).sum().backward()
    SS2D(8, 4)(torch.randn(1, 3, 3, 8)).sum().backward()
GridSelfAttention(8, 2, pos_bias=DynamicPosBias(2))(torch.randn(1, 3, 3, 8)).sum().backward()
print("backends", sorted(set(used)))
'''


def test_part2_modules_work_without_triton_and_mamba_ssm(tmp_path):
    "Readers on macOS/Windows/CPU wheels have neither: SS2D, RoPE, DPB, GDLM must run (forward and backward)."
    import os, subprocess, sys
    from pathlib import Path
    (tmp_path / "sitecustomize.py").write_text('import sys\nsys.modules["triton"] = None\nsys.modules["mamba_ssm"] = None\n')
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])}
    r = subprocess.run([sys.executable, "-c", NO_TRITON], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "backends" in r.stdout and "triton" not in r.stdout.split("backends", 1)[1]
