import pytest
import torch
from rrg_tutorial.ss2d import (route_indices, cross_scan, cross_merge, SelectiveScan2D, SS2D, GridSelfAttention,
                               peak_alloc_bytes, ss2d_vs_attention)
from rrg_tutorial.scan_ref import selective_scan_ref

GRIDS = [(1, 1), (1, 5), (3, 4), (4, 3), (6, 6)]


def gather_scan(x):
    B, C, H, W = x.shape
    idx = route_indices(H, W)
    return torch.stack([x.flatten(2)[:, :, idx[k]] for k in range(4)], 1)


@pytest.mark.parametrize("hw", GRIDS)
def test_routes_are_permutations_and_scan_matches_table(hw):
    H, W = hw
    r = route_indices(H, W)
    assert r.shape == (4, H * W)
    assert torch.equal(r.sort(1).values, torch.arange(H * W).expand(4, -1))
    if H * W > 1: assert not torch.equal(r[0], r[2])
    x = torch.randn(2, 3, H, W)
    assert torch.equal(cross_scan(x), gather_scan(x))


def test_column_major_route():
    assert route_indices(2, 3)[1].tolist() == [0, 3, 1, 4, 2, 5]
    assert route_indices(2, 3)[3].tolist() == [5, 2, 4, 1, 3, 0]


@pytest.mark.parametrize("hw", GRIDS)
def test_merge_of_scan_is_4x_and_adjoint(hw):
    H, W = hw
    x = torch.randn(2, 3, H, W, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 4, 3, H * W, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(cross_merge(cross_scan(x), H, W), 4 * x)
    lhs, rhs = (cross_scan(x) * y).sum(), (x * cross_merge(y, H, W)).sum()
    torch.testing.assert_close(lhs, rhs)
    gx, = torch.autograd.grad(lhs, x)
    torch.testing.assert_close(gx, cross_merge(y, H, W))
    gy, = torch.autograd.grad(rhs, y)
    torch.testing.assert_close(gy, cross_scan(x))


def test_cross_scan_merge_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"): cross_scan(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"\(B, 4, C, H\*W\)"): cross_merge(torch.randn(1, 4, 2, 11), 3, 4)
    with pytest.raises(ValueError, match=r"\(B, 4, C, H\*W\)"): cross_merge(torch.randn(1, 3, 2, 12), 3, 4)
    with pytest.raises(ValueError, match="positive ints"): route_indices(2, 0)


@pytest.mark.parametrize("scan_fn", [None, selective_scan_ref], ids=["dispatcher", "reference"])
def test_one_grouped_scan_equals_four_scans(scan_fn):
    torch.manual_seed(0)
    core = SelectiveScan2D(8, 4, scan_fn=scan_fn)
    x = torch.randn(2, 8, 3, 5, requires_grad=True)
    y1 = core(x)
    g1 = torch.autograd.grad(y1.square().sum(), [x, *core.parameters()])
    y4 = core(x, grouped=False)
    g4 = torch.autograd.grad(y4.square().sum(), [x, *core.parameters()])
    torch.testing.assert_close(y1, y4, rtol=1e-5, atol=1e-5)
    for a, b in zip(g1, g4): torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert y1.shape == x.shape


def test_grouped_scan_matches_reference_scan():
    torch.manual_seed(1)
    core = SelectiveScan2D(8, 4)
    ref = SelectiveScan2D(8, 4, scan_fn=selective_scan_ref); ref.load_state_dict(core.state_dict())
    x = torch.randn(1, 8, 4, 4)
    torch.testing.assert_close(core(x), ref(x), rtol=2e-4, atol=2e-4)


def test_ss2d_reads_every_direction():
    torch.manual_seed(0)
    core = SelectiveScan2D(4, 4)
    x0 = torch.randn(1, 4, 5, 5); x1 = x0.clone(); x1[0, :, 2, 2] += 1
    with torch.no_grad(): d = (core(x1) - core(x0)).abs().sum(1)[0]
    assert (d > 0).all()


def test_ss2d_block_channel_first_equals_channel_last():
    torch.manual_seed(0)
    a, b = SS2D(12, 4), SS2D(12, 4, channel_first=True)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 5, 12)
    out = a(x)
    assert out.shape == x.shape
    torch.testing.assert_close(b(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), out)
    with pytest.raises(ValueError, match="channels"): a(torch.randn(1, 3, 5, 13))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"): b(torch.randn(3, 5, 12))
    with pytest.raises(ValueError, match="odd"): SS2D(8, d_conv=4)


def test_attention_math_equals_sdpa_and_is_permutation_equivariant():
    torch.manual_seed(0)
    att = GridSelfAttention(16, heads=4)
    sd = GridSelfAttention(16, heads=4, impl="sdpa"); sd.load_state_dict(att.state_dict())
    x = torch.randn(2, 3, 4, 16)
    torch.testing.assert_close(att(x), sd(x), rtol=1e-5, atol=1e-5)
    perm = torch.randperm(12)
    px = x.reshape(2, 12, 16)[:, perm].reshape(x.shape)
    torch.testing.assert_close(att(px).reshape(2, 12, 16), att(x).reshape(2, 12, 16)[:, perm], rtol=1e-5, atol=1e-5)
    cf = GridSelfAttention(16, heads=4, channel_first=True); cf.load_state_dict(att.state_dict())
    torch.testing.assert_close(cf(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), att(x))
    with pytest.raises(ValueError, match="must divide"): GridSelfAttention(10, heads=4)
    with pytest.raises(ValueError, match="impl"): GridSelfAttention(8, impl="flash")


def test_peak_alloc_bytes_is_exact_on_a_known_pattern():
    def pattern():
        a = torch.empty(1 << 20); b = torch.empty(1 << 19); del a
        c = torch.empty(1 << 18)
        return b, c
    _, peak = peak_alloc_bytes(pattern)
    assert peak == 6 << 20


def test_cost_table_has_every_block_and_grid():
    df = ss2d_vs_attention([2, 4], width=8, d_state=4, repeats=1)
    assert len(df) == 6 and set(df.block) == {"SS2D", "attention (math)", "attention (sdpa)"}
    assert (df.ms > 0).all() and (df.kept_MiB > 0).all() and (df.peak_MiB > 0).all()
    att = df[df.block == "attention (math)"].set_index("L")
    assert att.kept_MiB[16] > att.kept_MiB[4]


# Bad input at every public entry point: a clear error naming what was expected.
BAD_SS2D = [
    (lambda: cross_scan(torch.randn(0, 3, 4, 4)), ValueError, "non-empty"),
    (lambda: cross_scan(torch.randn(1, 3, 0, 4)), ValueError, "non-empty"),
    (lambda: cross_scan([1, 2]), ValueError, r"\(B, C, H, W\)"),
    (lambda: cross_merge(torch.randn(1, 4, 3, 12), 3.0, 4), ValueError, "positive ints"),
    (lambda: cross_merge(torch.randn(1, 4, 3, 12), -3, -4), ValueError, "positive ints"),
    (lambda: route_indices(True, 3), ValueError, "positive ints"),
    (lambda: SelectiveScan2D(0, 4), ValueError, "positive ints"),
    (lambda: SelectiveScan2D(8.0, 4), ValueError, "positive ints"),
    (lambda: SelectiveScan2D(8, 4, dt_rank=0), ValueError, "positive ints"),
    (lambda: SelectiveScan2D(8, 4, dt_min=0.5, dt_max=0.1), ValueError, "dt_min <= dt_max"),
    (lambda: SelectiveScan2D(8, 4, scan_fn="chunked"), TypeError, "scan_fn"),
    (lambda: SelectiveScan2D(8, 4)(torch.randn(0, 8, 3, 3)), ValueError, "non-empty"),
    (lambda: SelectiveScan2D(8, 4)(torch.randn(1, 8, 0, 3)), ValueError, "non-empty"),
    (lambda: SelectiveScan2D(8, 4)(torch.randn(1, 9, 3, 3)), ValueError, "expected 8 channels"),
    (lambda: SelectiveScan2D(8, 4)(torch.ones(1, 8, 3, 3, dtype=torch.long)), TypeError, "floating-point"),
    (lambda: SS2D(0), ValueError, "positive ints"),
    (lambda: SS2D(8, d_state=0), ValueError, "positive ints"),
    (lambda: SS2D(8, ssm_ratio=0), ValueError, "inner channel"),
    (lambda: SS2D(8, d_conv=-1), ValueError, "positive ints"),
    (lambda: SS2D(8, 4)(torch.randn(0, 3, 3, 8)), ValueError, "non-empty"),
    (lambda: SS2D(8, 4)(torch.randn(1, 0, 3, 8)), ValueError, "non-empty"),
    (lambda: SS2D(8, 4, channel_first=True)(torch.randn(1, 3, 3, 8)), ValueError, "expected 8 channels"),
    (lambda: GridSelfAttention(8, heads=0), ValueError, "positive ints"),
    (lambda: GridSelfAttention(0, heads=1), ValueError, "positive ints"),
    (lambda: GridSelfAttention(8, 2)(torch.randn(0, 3, 3, 8)), ValueError, "non-empty"),
    (lambda: GridSelfAttention(8, 2)(torch.randn(1, 0, 3, 8)), ValueError, "non-empty"),
    (lambda: GridSelfAttention(8, 2, pos_bias=lambda H, W: torch.zeros(3, H * W, H * W))(torch.randn(1, 3, 3, 8)),
     ValueError, r"\(heads, L, L\)"),
    (lambda: peak_alloc_bytes(3), TypeError, "callable"),
    (lambda: ss2d_vs_attention([]), ValueError, "non-empty list"),
    (lambda: ss2d_vs_attention([0], width=8, d_state=4), ValueError, "positive ints"),
    (lambda: ss2d_vs_attention([2], width=8, d_state=4, repeats=0), ValueError, "positive ints"),
    (lambda: ss2d_vs_attention([2], width=8, d_state=4, warmup=-1), ValueError, "warmup"),
]


@pytest.mark.parametrize("i", range(len(BAD_SS2D)))
def test_bad_input_gets_a_clear_error(i):
    fn, exc, msg = BAD_SS2D[i]
    with pytest.raises(exc, match=msg): fn()
