"""Vision Mamba (lesson 18): what each block sees, flip/transpose behaviour, copied routes, shapes, sizes, bad inputs."""
from dataclasses import replace
import pytest
import torch

from rrg_tutorial.vim import (MultiScanMamba, VisionMamba, VimConfig, VIM_CPU, VIM_SIZES, at_image_size, copy_route,
                              count_params, dependency_map, image_orders, line_orders, resize_pos_embed, scan_route,
                              widen_scans)

SMALL = replace(VIM_CPU, img_size=32, patch_size=8, d_model=16, depth=2)


def test_one_route_reads_only_the_past_two_routes_read_both_sides():
    torch.manual_seed(0)
    L = 7
    uni, bi = MultiScanMamba(8, 1), MultiScanMamba(8, 2)
    du, db = dependency_map(uni, line_orders(L, 1), L), dependency_map(bi, line_orders(L, 2), L)
    future = torch.triu(torch.ones(L, L, dtype=torch.bool), 1)
    assert du[future].max() == 0 and (du[~future] > 0).all()
    assert (db > 0).all()


def test_copied_routes_make_the_bidirectional_block_flip_equivariant():
    torch.manual_seed(1)
    bi, o = MultiScanMamba(8, 2), line_orders(6, 2)
    x = torch.randn(2, 6, 8)
    gap = lambda: (bi(x.flip(1), o) - bi(x, o).flip(1)).abs().max().item()
    assert gap() > 1e-4            # independent routes (Vim's initialisation): not equivariant
    copy_route(bi)
    assert gap() < 1e-5


def test_image_orders_are_permutations_with_the_class_token_mid_way():
    o = image_orders(3, 4)
    assert o[0].tolist() == list(range(10)) and o[1].tolist() == list(range(10))[::-1]
    assert o[2].tolist() == [0, 3, 7, 1, 4, 5, 8, 2, 6, 9]
    assert o[3].tolist() == o[2].tolist()[::-1]
    assert image_orders(2, 2, cls_token=False).tolist() == [[0, 1, 2, 3], [3, 2, 1, 0]]


def test_widen_scans_copies_route_0_into_every_route_and_keeps_shared_weights():
    torch.manual_seed(2)
    one = VisionMamba(replace(SMALL, n_routes=1))
    four = widen_scans(one, 4)
    assert four.config.n_routes == 4 and len(four.layers[0].mixer.routes) == 4
    for new, old in zip(four.layers, one.layers):
        assert torch.equal(new.mixer.in_proj.weight, old.mixer.in_proj.weight)
        for r in new.mixer.routes:
            for k, v in old.mixer.routes[0].state_dict().items(): assert torch.equal(r.state_dict()[k], v), k
    assert torch.equal(four.pos_embed, one.pos_embed)
    x = torch.randn(1, 3, 32, 32)
    tok = four.embed(x)
    mix = four.layers[0].mixer
    xs, z = mix.in_proj(tok).transpose(1, 2).chunk(2, dim=1)
    assert torch.equal(scan_route(mix.routes[3], xs, z), scan_route(one.layers[0].mixer.routes[0], xs, z))


@pytest.mark.parametrize("img", [192, 224])
def test_shapes(img):
    m = VisionMamba(replace(VIM_CPU, img_size=img, d_model=8, depth=1, n_classes=3))
    x = torch.randn(2, 3, img, img)
    assert m.forward_features(x).shape == (2, (img // 16) ** 2 + 1, 8)
    assert m(x).shape == (2, 3)


def test_vim_tiny_parameter_count_is_close_to_the_papers_7M():
    n = count_params(VisionMamba(replace(VIM_SIZES["tiny"], n_classes=1000)))
    assert abs(n / 7e6 - 1) < 0.05, n


def test_bad_inputs_raise_clear_errors():
    m = VisionMamba(SMALL)
    with pytest.raises(ValueError, match=r"expected images \(B, 3, 32, 32\)"): m(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="multiple of patch_size"): VisionMamba(replace(SMALL, img_size=30))
    with pytest.raises(ValueError, match="n_routes must be 1, 2 or 4"): VisionMamba(replace(SMALL, n_routes=3))
    with pytest.raises(ValueError, match="scan orders must be"): MultiScanMamba(8, 2)(torch.randn(1, 5, 8), line_orders(4))


def test_pos_embed_resize_192_to_224_keeps_the_class_token_and_loads_into_a_224_model():
    torch.manual_seed(4)
    m192 = VisionMamba(replace(VIM_CPU, img_size=192, d_model=8, depth=1))
    pe = m192.pos_embed.detach()
    new = resize_pos_embed(pe, 14)
    assert new.shape == (1, 14 * 14 + 1, 8)
    assert torch.equal(new[:, 98], pe[:, 72])                     # the class token's row, mid-sequence, kept
    assert torch.equal(resize_pos_embed(pe, 12), pe)               # identity resize
    assert resize_pos_embed(pe[:, :-1].clone(), 14, cls_token=False).shape == (1, 196, 8)
    m224 = at_image_size(m192, 224)
    assert m224.config.img_size == 224 and torch.equal(m224.pos_embed, new)
    assert torch.equal(m224.layers[0].mixer.in_proj.weight, m192.layers[0].mixer.in_proj.weight)
    assert m224.forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 197, 8)


def test_pos_embed_resize_interpolates_a_constant_exactly_and_rejects_bad_shapes():
    c = torch.ones(1, 12 * 12, 3) * torch.tensor([1.0, -2.0, 0.5])
    assert torch.allclose(resize_pos_embed(c, 14, cls_token=False), torch.ones(1, 196, 3) * c[0, 0], atol=1e-6)
    with pytest.raises(ValueError, match="position embedding"): resize_pos_embed(torch.zeros(1, 10, 4), 3, cls_token=False)
    with pytest.raises(ValueError, match="position embedding"): resize_pos_embed(torch.zeros(145, 4), 14)
