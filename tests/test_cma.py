import math
import pytest
import torch
import torch.nn.functional as F
from rrg_tutorial.cma import (cma_targets, class_activation_maps, foreground_map, minmax_normalise, CrossModalAdapter,
                              select_words, alignment_map, cma_loss)
from rrg_tutorial.labeler import CHEXPERT_CLASSES


def test_targets_from_the_labeler():
    y = cma_targets(["The heart is enlarged.", "No acute disease.", "Possible pneumonia."])
    assert y.shape == (3, 14)
    assert y[0, CHEXPERT_CLASSES.index("Cardiomegaly")] == 1
    assert y[1, CHEXPERT_CLASSES.index("No Finding")] == 1
    assert y[2].sum() == 0                                            # uncertain -> 0 by default
    assert cma_targets(["Possible pneumonia."], uncertain_as=1.0)[0, CHEXPERT_CLASSES.index("Pneumonia")] == 1
    with pytest.raises(TypeError): cma_targets("one report")


def test_cam_mean_is_logit_minus_bias():
    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 14)
    x = torch.randn(3, 20, 12)
    cams = class_activation_maps(x, lin.weight)
    torch.testing.assert_close(cams.mean(-1), (lin(x.mean(1)) - lin.bias).detach(), atol=1e-5, rtol=1e-5)
    assert not cams.requires_grad


def test_foreground_map_uses_predicted_classes():
    cams = torch.randn(2, 3, 10)
    logits = torch.tensor([[5.0, -5.0, -5.0], [-5.0, -5.0, -5.0]])
    fm = foreground_map(cams, logits)
    torch.testing.assert_close(fm[0], minmax_normalise(cams[0, 0].relu()))
    assert (fm[1] == 0).all()


@pytest.mark.parametrize("k", [0.1, 0.25, 0.3, 0.5, 1.0])
def test_selected_word_count(k):
    torch.manual_seed(0)
    mask = torch.zeros(4, 11, dtype=torch.long)
    for b, n in enumerate((11, 10, 3, 1)): mask[b, :n] = 1
    sim, sel = select_words(torch.randn(4, 11, 8), torch.randn(4, 8), mask, k)
    assert sel.sum(1).tolist() == [math.ceil(round(k * n, 6)) for n in (11, 10, 3, 1)]
    assert not (sel & ~mask.bool()).any()


def test_zero_loss_when_attention_equals_map():
    torch.manual_seed(0)
    fm = foreground_map(torch.randn(2, 14, 30), torch.randn(2, 14) + 2)
    attn = (fm / fm.sum(-1, keepdim=True))[:, None, None].expand(2, 3, 6, 30)
    sim, sel = select_words(torch.randn(2, 6, 8), torch.randn(2, 8), torch.ones(2, 6), 0.5)
    loss = cma_loss(alignment_map(attn, sim.abs() + 0.1, sel), fm, torch.ones(2, 14))
    assert loss.item() < 1e-10


def test_loss_only_on_samples_with_a_positive_label():
    a, f = torch.rand(3, 5), torch.rand(3, 5)
    labels = torch.zeros(3, 14)
    labels[1, 4] = 1
    torch.testing.assert_close(cma_loss(a, f, labels), F.mse_loss(a[1:2], f[1:2]))
    assert cma_loss(a, f, torch.zeros(3, 14)).item() == 0.0


def test_gradients_reach_the_right_parts():
    torch.manual_seed(0)
    ad = CrossModalAdapter(8)
    tokens = torch.randn(2, 10, 8, requires_grad=True)
    out = ad(tokens)
    attn = torch.softmax(tokens @ tokens.transpose(1, 2), -1)[:, None, :4]       # (B, 1, 4, N) from the tokens
    sim, sel = select_words(tokens[:, :4], out["fore_token"][:, 0], torch.ones(2, 4), 0.5)
    mse = cma_loss(alignment_map(attn, sim, sel), out["fore_map"], torch.ones(2, 14))
    g = torch.autograd.grad(mse, [ad.classifier.weight, ad.classifier.bias, tokens], allow_unused=True)
    assert g[0] is None and g[1] is None and g[2].abs().sum() > 0
    bce = F.binary_cross_entropy_with_logits(out["logits"], torch.ones(2, 14))
    assert torch.autograd.grad(bce, ad.classifier.weight)[0].abs().sum() > 0


@pytest.mark.parametrize("k", [0, -0.5, 1.01, 2, True, "0.5"])
def test_bad_ratio(k):
    with pytest.raises(ValueError, match=r"\(0, 1\]"): CrossModalAdapter(8, k=k)
    with pytest.raises(ValueError, match=r"\(0, 1\]"): select_words(torch.randn(1, 3, 4), torch.randn(1, 4), torch.ones(1, 3), k)
