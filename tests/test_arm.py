"""ARM pretraining (lesson 18a): clusters, the block-causal mask, the causal-leak check, the loss, checkpoints, errors."""
from dataclasses import replace
import numpy as np
import pytest
import torch

from rrg_tutorial.arm import (ARM, ArmConfig, arm_loss, block_causal_mask, cluster_order, leak_matrix, load_backbone,
                              normalize_patches, patchify, pretrain_arm, save_backbone, sincos_2d)
from rrg_tutorial.train import load_checkpoint, save_atomic

TINY = ArmConfig(img_size=48, patch_size=4, d_enc=16, depth=2, mlp_ratio=2.0, d_dec=16, dec_depth=2, heads=2)


def _future(c):
    return torch.tensor([[k >= j + 1 for k in range(c.n_clusters)] for j in range(c.n_clusters - 1)])


def test_cluster_order_reads_cluster_by_cluster():
    o = cluster_order(4, 2)                      # 2x2 clusters of 2x2 patches on a 4x4 grid
    assert o.tolist() == [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]
    assert sorted(cluster_order(12, 4).tolist()) == list(range(144))


def test_block_causal_mask():
    m = block_causal_mask(9, 16)
    assert m.shape == (128, 128)
    for q in (0, 15, 16, 127):                   # the queries for cluster j + 2 see clusters 1 .. j + 1
        j = q // 16
        assert not m[q, : (j + 1) * 16].any() and m[q, (j + 1) * 16:].all()


def test_no_causal_leak_and_a_bidirectional_encoder_leaks():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 48, 48)
    fut = _future(TINY)
    uni = leak_matrix(ARM(TINY), x)
    assert uni[fut].max() == 0 and (uni[~fut] > 0).all()
    bi = leak_matrix(ARM(replace(TINY, n_routes=2)), x)
    assert (bi[fut] > 0).any()


def test_shapes_loss_and_per_patch_normalised_target():
    torch.manual_seed(1)
    arm = ARM(TINY)
    x = torch.rand(2, 1, 48, 48)
    pred, target = arm(x)
    assert pred.shape == target.shape == (2, 128, 16)
    assert torch.allclose(target, normalize_patches(patchify(x, 4)[:, cluster_order(12, 4)[16:]]))
    assert torch.allclose(arm_loss(pred, target), ((pred - target) ** 2).mean())
    assert torch.allclose(target.mean(-1), torch.zeros(2, 128), atol=1e-5)


def test_pretraining_reduces_the_loss_on_a_fixed_batch():
    torch.manual_seed(2)
    arm = ARM(TINY)
    imgs = (np.random.default_rng(0).random((8, 48, 48)) * 255).astype(np.uint8)
    imgs[:, :, ::2] = 255                        # a pattern the next cluster can be predicted from
    h = pretrain_arm(arm, imgs, steps=30, batch=8, lr=3e-3, log_every=5)
    assert h.loss.iloc[-1] < h.loss.iloc[0]


def test_checkpoint_round_trip_in_lesson_15s_format(tmp_path):
    torch.manual_seed(3)
    arm = ARM(TINY)
    p = save_backbone(arm, tmp_path / "b.pt", config=dict(steps=0, lr=1e-3), seed=3)
    assert [f.name for f in tmp_path.iterdir()] == ["b.pt"]          # no temporary file left
    ck = load_checkpoint(p)                                         # lesson 15's loader accepts it
    assert ck["format"] == "rrg_tutorial.train/1" and ck["config"] == dict(steps=0, lr=1e-3)
    assert ck["meta"]["seed"] == 3 and ck["meta"]["arm_config"]["d_enc"] == 16
    assert set(ck["model"]) == set(arm.encoder.state_dict())
    back = load_backbone(p)
    x = torch.rand(1, 1, 48, 48)
    assert torch.equal(back.forward_features(x), arm.encoder.forward_features(x))
    assert back.config == arm.encoder.config


def test_load_backbone_rejects_other_checkpoints(tmp_path):
    save_atomic(dict(format="rrg_tutorial.train/1", config={}, meta={}, model={}), tmp_path / "trainer.pt")
    with pytest.raises(ValueError, match="not a backbone"): load_backbone(tmp_path / "trainer.pt")
    torch.save({"state_dict": {}}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="not written by rrg_tutorial.train"): load_backbone(tmp_path / "old.pt")


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="clusters of 4x4"): ARM(replace(TINY, img_size=40))
    with pytest.raises(ValueError, match="divisible by 4"): sincos_2d(4, 6)
    with pytest.raises(FileNotFoundError, match="save_backbone"): load_backbone(tmp_path / "none.pt")
    with pytest.raises(ValueError, match=r"expected images \(B, 1, 48, 48\)"): ARM(TINY)(torch.rand(1, 3, 48, 48))
