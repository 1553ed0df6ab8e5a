"""Image-report contrastive learning (lesson 19): the loss against a direct computation, symmetry, pooling, recall."""
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rrg_tutorial.contrastive import (ImageReportModel, LogitScale, chance_recall, clip_loss, fit_contrastive,
                                      last_token_pool, recall_at_k)
from rrg_tutorial.vim import VimConfig, VisionMamba


def test_clip_loss_matches_a_direct_computation_and_is_symmetric():
    g = torch.Generator().manual_seed(0)
    a, b, s = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g), torch.tensor(2.5)
    u, v = F.normalize(a, dim=1), F.normalize(b, dim=1)
    L = s * u @ v.t()
    direct = -(torch.diag(L.log_softmax(1)).mean() + torch.diag(L.t().log_softmax(1)).mean()) / 2
    assert torch.allclose(clip_loss(a, b, s), direct, atol=1e-6)
    assert torch.allclose(clip_loss(a, b, s), clip_loss(b, a, s), atol=1e-6)
    assert clip_loss(a, a, torch.tensor(100.0)) < 1e-3          # perfectly aligned pairs


def test_logit_scale_init_and_clamp():
    ls = LogitScale()
    assert abs(ls().item() - 1 / 0.07) < 1e-3
    with torch.no_grad(): ls.log_s.fill_(10.0)
    assert ls().item() == pytest.approx(100.0)


def test_last_token_pool():
    h = torch.randn(3, 5, 2)
    m = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert torch.equal(last_token_pool(h, m), torch.stack([h[0, 0], h[1, 2], h[2, 4]]))


def test_recall_and_chance_with_duplicate_reports():
    e = F.normalize(torch.randn(20, 6), dim=-1)
    texts = ["normal"] * 10 + [f"r{i}" for i in range(10)]
    r = recall_at_k(e, e, texts, ks=(1, 5))
    assert r.loc["image->report", "R@1"] == 1.0
    n, k = 20, 1   # chance R@1: half the items share a text with 10 reports, half with 1
    assert r.loc["chance", "R@1"] == pytest.approx(0.5 * 10 / 20 + 0.5 * 1 / 20)


def test_end_to_end_model_shapes_and_loss_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    vim = VisionMamba(VimConfig(img_size=16, patch_size=8, in_chans=1, d_model=8, depth=1))
    m = ImageReportModel(8, d_text=5, proj=6, vision=vim)
    x, t = torch.randint(0, 255, (4, 2, 16, 16), dtype=torch.uint8), torch.randn(4, 5)
    assert m.embed_images(x).shape == (4, 6)
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    l0 = m(x, t).item()
    for _ in range(20):
        loss = m(x, t)
        opt.zero_grad(); loss.backward(); opt.step()
    assert loss.item() < l0


def test_frozen_features_pool_views_then_project():
    torch.manual_seed(1)
    m = ImageReportModel(3, d_text=5, proj=4)
    f = torch.randn(2, 2, 3)                                        # (B, V, d_img): per-view token means
    assert torch.allclose(m.embed_images(f), m.img_proj(f.mean(1)))


def test_fit_keeps_the_best_validation_weights_and_aligns_separable_pairs():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(64, 4, generator=g)                             # a shared latent per pair
    I = torch.stack([z @ torch.randn(4, 6, generator=g)] * 2, 1).numpy()   # (64, 2, 6) two identical "views"
    T = (z @ torch.randn(4, 5, generator=g)).numpy()
    torch.manual_seed(2)
    m = ImageReportModel(6, 5, proj=8)
    h = fit_contrastive(m, I[:48], T[:48], steps=200, batch=16, lr=1e-2, val=(I[48:], T[48:]), eval_every=20)
    assert h.val_recall.iloc[-1] <= h.val_recall.max()
    from rrg_tutorial.contrastive import embed_split, val_score
    assert val_score(m, I[48:], T[48:]) == pytest.approx(h.val_recall.max())   # the kept weights are the best
    u, v = embed_split(m, I[48:], T[48:])
    assert recall_at_k(u, v, list(range(16))).loc["image->report", "R@1"] > 0.5


def test_chance_recall_matches_simulation_and_k_above_n():
    grp = np.random.default_rng(0).integers(0, 5, 30)
    m = np.bincount(grp)[grp]
    rng = np.random.default_rng(1)
    sim = np.mean([(grp[rng.permutation(30)[:3]] == grp[q % 30]).any() for q in range(20000)])
    assert chance_recall(m, 3) == pytest.approx(sim, abs=0.01)
    e = F.normalize(torch.randn(4, 3), dim=-1)
    r = recall_at_k(e, e, list(range(4)), ks=(1, 10))              # k larger than the set: everything is retrieved
    assert r.loc["image->report", "R@10"] == 1.0 and r.loc["chance", "R@10"] == 1.0
