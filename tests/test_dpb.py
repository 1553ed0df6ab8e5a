import pytest
import torch
from rrg_tutorial.dpb import PosEncGenerator, DynamicPosBias, relative_offsets
from rrg_tutorial.ss2d import GridSelfAttention


def peg_naive(v, hw, weight, bias):
    (H, W), k = hw, weight.shape[-1]
    g = v.view(v.shape[0], H, W, -1)
    out = torch.zeros_like(g) + bias
    for i in range(H):
        for j in range(W):
            for di in range(k):
                for dj in range(k):
                    y, x = i + di - k // 2, j + dj - k // 2
                    if 0 <= y < H and 0 <= x < W: out[:, i, j] += weight[:, 0, di, dj] * g[:, y, x]
    return out.view_as(v)


@pytest.mark.parametrize("hw", [(1, 1), (3, 5), (7, 7)])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_peg_equals_naive_and_keeps_shape(hw, k):
    torch.manual_seed(0)
    peg = PosEncGenerator(6, k)
    v = torch.randn(2, hw[0] * hw[1], 6)
    with torch.no_grad():
        out = peg(v, hw)
        assert out.shape == v.shape
        torch.testing.assert_close(out, peg_naive(v, hw, peg.conv.weight, peg.conv.bias))


def test_peg_translation_equivariant_away_from_borders_only():
    torch.manual_seed(0)
    H, W, (sh, sw) = 10, 11, (2, 1)
    peg = PosEncGenerator(4).double()
    v = torch.randn(1, H * W, 4, dtype=torch.float64)
    roll = lambda t: t.view(1, H, W, -1).roll((sh, sw), (1, 2))
    with torch.no_grad():
        a = peg(roll(v).reshape(1, H * W, 4), (H, W)).view(1, H, W, -1)
        b = roll(peg(v, (H, W)))
    torch.testing.assert_close(a[0, sh + 1:H - 1, sw + 1:W - 1], b[0, sh + 1:H - 1, sw + 1:W - 1])
    assert (a - b).abs().max() > 1e-3        # zero padding: not equivariant at the borders


def test_peg_errors():
    peg = PosEncGenerator(4)
    with pytest.raises(ValueError, match="H\\*W"): peg(torch.randn(1, 10, 4), (3, 3))
    with pytest.raises(ValueError, match="pair of positive ints"): peg(torch.randn(1, 9, 4), 9)
    with pytest.raises(ValueError, match=r"\(B, H\*W, 4\)"): peg(torch.randn(1, 9, 5), (3, 3))
    with pytest.raises(ValueError, match="odd"): PosEncGenerator(4, 4)


def test_relative_offsets():
    off = relative_offsets(2, 3)
    assert off.shape == (6, 6, 2)
    assert off[5, 0].tolist() == [1, 2] and off[0, 5].tolist() == [-1, -2]
    with pytest.raises(ValueError): relative_offsets(0, 2)


@pytest.mark.parametrize("hw", [(1, 1), (4, 6), (7, 7), (14, 14)])
def test_dpb_depends_only_on_offset_and_any_grid(hw):
    torch.manual_seed(0)
    dpb = DynamicPosBias(3, hidden=8)
    H, W = hw
    with torch.no_grad():
        b = dpb(H, W)
        assert b.shape == (3, H * W, H * W)
        off = relative_offsets(H, W)
        torch.testing.assert_close(b, dpb.mlp(off.float()).permute(2, 0, 1))
        key = ((off[..., 0] + H - 1) * (2 * W - 1) + off[..., 1] + W - 1).flatten()
        flat = b.reshape(3, -1)
        for kk in key.unique()[:50]:
            vals = flat[:, key == kk]
            assert (vals == vals[:, :1]).all()


def test_attention_with_dpb_breaks_permutation_equivariance_and_trains_mlp():
    torch.manual_seed(0)
    att = GridSelfAttention(8, heads=2, pos_bias=DynamicPosBias(2))
    x = torch.randn(1, 4, 4, 8)
    perm = torch.randperm(16)
    p = lambda t: t.reshape(1, 16, -1)[:, perm].reshape(t.shape)
    with torch.no_grad(): assert (att(p(x)) - p(att(x))).abs().max() > 1e-4
    att(x).sum().backward()
    assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in att.pos_bias.parameters())


BAD_DPB = [
    (lambda: PosEncGenerator(0), "positive ints"),
    (lambda: PosEncGenerator(4, kernel_size=-1), "positive ints"),
    (lambda: PosEncGenerator(4)(torch.randn(0, 9, 4), (3, 3)), "non-empty"),
    (lambda: PosEncGenerator(4)(torch.randn(1, 0, 4), (0, 3)), "pair of positive ints"),
    (lambda: PosEncGenerator(4)(torch.randn(1, 9, 4), (3.0, 3)), "pair of positive ints"),
    (lambda: PosEncGenerator(4)("tokens", (3, 3)), r"\(B, H\*W, 4\)"),
    (lambda: DynamicPosBias(2.5), "positive ints"),
    (lambda: DynamicPosBias(2, hidden=0), "positive ints"),
    (lambda: DynamicPosBias(2)(0, 3), "positive ints"),
    (lambda: DynamicPosBias(2).table(3, 0), "positive ints"),
    (lambda: GridSelfAttention(8, 2, pos_bias=DynamicPosBias(3))(torch.randn(1, 3, 3, 8)), r"\(heads, L, L\)"),
]


@pytest.mark.parametrize("i", range(len(BAD_DPB)))
def test_bad_input_gets_a_clear_error(i):
    fn, msg = BAD_DPB[i]
    with pytest.raises(ValueError, match=msg): fn()
