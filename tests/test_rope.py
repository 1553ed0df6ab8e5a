import math
import pytest
import torch
from rrg_tutorial.rope import (rope_freqs, rotate_pairs, rope_angles_1d, grid_positions, axial_freqs, mixed_freqs_init,
                               rope_angles_2d, RoPE2D, RoPESelectiveScan2D)
from rrg_tutorial.scan_ref import selective_scan_ref

f64 = torch.float64


def test_rotate_pairs_matches_matrix_and_keeps_norm():
    x = torch.randn(4, 6, dtype=f64)
    ang = torch.randn(4, 3, dtype=f64)
    for m in range(4):
        R = torch.zeros(6, 6, dtype=f64)
        for i in range(3):
            c, s = math.cos(ang[m, i]), math.sin(ang[m, i])
            R[2 * i:2 * i + 2, 2 * i:2 * i + 2] = torch.tensor([[c, -s], [s, c]], dtype=f64)
        torch.testing.assert_close(rotate_pairs(x[m], ang[m]), R @ x[m])
    torch.testing.assert_close(rotate_pairs(x, ang).norm(dim=-1), x.norm(dim=-1))
    with pytest.raises(ValueError, match="even"): rotate_pairs(torch.randn(2, 3), torch.randn(2, 1))
    with pytest.raises(ValueError, match="d/2"): rotate_pairs(torch.randn(2, 4), torch.randn(2, 3))


def test_freqs():
    f = rope_freqs(4, 10000.0, f64)
    torch.testing.assert_close(f, torch.tensor([1.0, 10.0, 100.0, 1000.0], dtype=f64) ** -1)
    with pytest.raises(ValueError): rope_freqs(0)
    with pytest.raises(ValueError): rope_freqs(4, theta=1.0)


def test_1d_relative():
    q, k = torch.randn(500, 16, dtype=f64), torch.randn(500, 16, dtype=f64)
    m, n = 100 * torch.rand(500, dtype=f64), 100 * torch.rand(500, dtype=f64)
    lhs = (rotate_pairs(q, rope_angles_1d(m, 16)) * rotate_pairs(k, rope_angles_1d(n, 16))).sum(-1)
    rhs = (q * rotate_pairs(k, rope_angles_1d(n - m, 16))).sum(-1)
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["axial", "mixed"])
def test_2d_relative(kind):
    torch.manual_seed(0)
    f = (axial_freqs(16, dtype=f64) if kind == "axial" else mixed_freqs_init(16, 1)[0]).to(f64)
    q, k = torch.randn(300, 16, dtype=f64), torch.randn(300, 16, dtype=f64)
    p, p2 = 30 * torch.rand(300, 2, dtype=f64), 30 * torch.rand(300, 2, dtype=f64)
    lhs = (rotate_pairs(q, rope_angles_2d(p, f)) * rotate_pairs(k, rope_angles_2d(p2, f))).sum(-1)
    rhs = (q * rotate_pairs(k, rope_angles_2d(p2 - p, f))).sum(-1)
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-10)


def test_axial_layout_and_mixed_init():
    f = axial_freqs(8)
    assert f.shape == (4, 2) and (f[:2, 0] == 0).all() and (f[2:, 1] == 0).all()
    torch.testing.assert_close(mixed_freqs_init(8, 2, theta=100.0, phi=0.0), f.expand(2, -1, -1))
    m = mixed_freqs_init(8, 3, theta=10.0)
    n = m.norm(dim=-1)
    torch.testing.assert_close(n, n[:1].expand(3, -1))   # magnitudes per pair shared by the heads; directions differ
    with pytest.raises(ValueError, match="divisible by 4"): axial_freqs(6)


def test_grid_positions():
    p = grid_positions(2, 3, offset=(1, -1))
    assert p.tolist() == [[1, -1], [1, 0], [1, 1], [2, -1], [2, 0], [2, 1]]


def test_rope2d_new_grid_recomputes_and_caches():
    r = RoPE2D(8)
    a7, a14 = r.angles(7, 7), r.angles(14, 14)
    assert a7.shape == (1, 49, 4) and a14.shape == (1, 196, 4)
    assert r.angles(7, 7) is a7
    torch.testing.assert_close(a14[0].view(14, 14, 4)[:7, :7].reshape(49, 4), a7[0])
    rd = r.double()
    assert rd.angles(7, 7).dtype == f64
    with pytest.raises(ValueError, match=r"\(\.\.\., H\*W, dim\)"): r(torch.randn(2, 48, 8), (7, 7))
    with pytest.raises(ValueError, match="axial"): RoPE2D(8, kind="rel")


def test_mixed_rope_learns():
    r = RoPE2D(8, kind="mixed", heads=2)
    x = torch.randn(3, 2, 12, 8)
    r(x, (3, 4)).square().sum().backward()
    assert r.freqs.grad is not None and r.freqs.grad.abs().sum() > 0


def _shift_change(core, x):
    with torch.no_grad(): return (core(x, offset=(2, -3)) - core(x)).abs().max().item()


@pytest.mark.parametrize("kind", ["axial", "mixed"])
def test_rope_on_bc_is_shift_invariant_input_rope_is_not(kind):
    torch.manual_seed(0)
    x = torch.randn(1, 8, 3, 4, dtype=f64)
    ssm = RoPESelectiveScan2D(8, 8, rope="ssm", rope_kind=kind, scan_fn=selective_scan_ref).double()
    inp = RoPESelectiveScan2D(8, 8, rope="input", rope_kind=kind, scan_fn=selective_scan_ref).double()
    assert _shift_change(ssm, x) < 1e-10
    assert _shift_change(inp, x) > 1e-3
    nor = RoPESelectiveScan2D(8, 8, rope="ssm", rope_kind=kind, scan_fn=selective_scan_ref).double()
    nor.load_state_dict(ssm.state_dict())
    with torch.no_grad():
        nor.rope2d.freqs.zero_()
        assert (nor(x) - ssm(x)).abs().max() > 1e-3          # the rotation does change the output


def test_rope_ssm_ties_A_in_pairs_and_grouped_equals_four():
    core = RoPESelectiveScan2D(8, 8, rope="ssm")
    A = core.A()
    assert A.shape == (32, 8) and torch.equal(A[:, 0::2], A[:, 1::2])
    x = torch.randn(2, 8, 3, 3)
    torch.testing.assert_close(core(x), core(x, grouped=False), rtol=1e-5, atol=1e-5)
    plain = RoPESelectiveScan2D(8, 8, rope="none")
    assert plain.A().shape == (32, 8) and plain.rope2d is None
    with pytest.raises(ValueError, match="divisible by 4"): RoPESelectiveScan2D(8, 6, rope="ssm")
    with pytest.raises(ValueError, match="'ssm', 'input' or 'none'"): RoPESelectiveScan2D(8, 8, rope="qk")


BAD_ROPE = [
    (lambda: rope_freqs(True), "positive ints"),
    (lambda: rope_angles_1d(torch.arange(3), 0), "positive ints"),
    (lambda: rope_angles_1d(torch.arange(3), 6.0), "positive ints"),
    (lambda: rotate_pairs([1.0, 2.0], torch.zeros(1)), "tensor"),
    (lambda: rotate_pairs(torch.randn(3, 4), torch.randn(5, 2)), "do not broadcast"),
    (lambda: grid_positions(2, 2, offset=(1,)), "pair of numbers"),
    (lambda: grid_positions(0, 2), "positive ints"),
    (lambda: axial_freqs(0), "positive ints"),
    (lambda: mixed_freqs_init(8, heads=0), "positive ints"),
    (lambda: mixed_freqs_init(6), "divisible by 4"),
    (lambda: rope_angles_2d(torch.randn(5, 3), torch.randn(4, 2)), r"positions \(L, 2\)"),
    (lambda: rope_angles_2d("p", torch.randn(4, 2)), "tensor"),
    (lambda: RoPE2D(0), "positive ints"),
    (lambda: RoPE2D(8, kind="mixed", heads=0), "positive ints"),
    (lambda: RoPE2D(8)(torch.randn(1, 12, 8), 12), "pair of positive ints"),
    (lambda: RoPE2D(8)(torch.randn(1, 0, 8), (0, 3)), "positive ints"),
    (lambda: RoPE2D(8, kind="mixed", heads=4)(torch.randn(2, 3, 12, 8), (3, 4)), r"\(B, heads, H\*W, dim\)"),
    (lambda: RoPE2D(8).angles(0, 3), "positive ints"),
    (lambda: RoPESelectiveScan2D(8, 6), "d_state must be divisible by 4"),
    (lambda: RoPESelectiveScan2D(6, 8, rope="input"), "d_inner divisible by 4"),
    (lambda: RoPESelectiveScan2D(8, 8, rope_kind="rel"), "'axial' or 'mixed'"),
    (lambda: RoPESelectiveScan2D(8, 8)(torch.randn(0, 8, 3, 3)), "non-empty"),
    (lambda: RoPESelectiveScan2D(8, 8)(torch.randn(1, 8, 3, 3), offset=3), "pair of numbers"),
    (lambda: RoPESelectiveScan2D(8, 8, rope="input")(torch.randn(8, 3, 3)), r"\(B, D, H, W\)"),
    (lambda: RoPESelectiveScan2D(8, 8, rope="input")(torch.randn(1, 12, 3, 3)), "expected 8 channels"),
]


@pytest.mark.parametrize("i", range(len(BAD_ROPE)))
def test_bad_input_gets_a_clear_error(i):
    fn, msg = BAD_ROPE[i]
    with pytest.raises(ValueError, match=msg): fn()
