import pytest
import torch
from dataclasses import replace, fields
from rrg_tutorial.model import (RRGConfig, RRGMamba, build_model, preset, PRESETS, ABLATIONS, COMPARISONS, VISUAL_ENCODERS)
from rrg_tutorial.generator import greedy_decode, new_caches, decode_step


def cfg(**kw): return preset("ci", vocab_size=30, grid=3, **kw)


def batch(c, B=2, T=8, labels=True):
    torch.manual_seed(0)
    ids = torch.randint(1, c.vocab_size + 1, (B, T))
    ids[:, 0] = 0
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, -2:] = 0
    ids[1, -2:] = 0
    b = dict(feats=torch.randn(B, c.n_views, c.in_channels, c.grid, c.grid).relu(), ids=ids, mask=mask)
    if labels: b["labels"] = (torch.rand(B, 14) < 0.4).float()
    return b


def test_presets_and_fields_documented():
    for name in PRESETS: assert isinstance(preset(name), RRGConfig)
    p = preset("paper_iu")
    assert (p.d_model, p.d_ff, p.n_heads, p.n_enc, p.n_dec, p.dropout, p.k, p.beam_size, p.max_seq_length) == (512, 512, 8, 3, 3, 0.1, 0.5, 3, 60)
    assert preset("paper_mimic").n_views == 1 and preset("paper_mimic").max_seq_length == 100
    assert preset("paper_iu", visual="resnet101").in_channels == 2048
    assert preset("paper_iu", visual="vit_b_16").grid == 14


@pytest.mark.parametrize("name,over", list({**ABLATIONS, **COMPARISONS}.items()))
def test_contract_forward_and_generate(name, over):
    c = cfg(**over)
    m = build_model(c)
    b = batch(c)
    out = m(b)
    assert out["logits"].shape == (2, 7, 31) and out["loss"].dim() == 0
    has_cma = c.use_cma and c.variant == "rrg_mamba"
    assert ("bce" in out) == has_cma and ("mse" in out) == has_cma and "ce" in out
    out["loss"].backward()
    assert all(p.grad is not None for p in m.parameters())
    hyps = m.generate(b, beam_size=3, max_len=5)
    assert len(hyps) == 2 and all(isinstance(h, list) and len(h) <= 5 and 0 not in h for h in hyps)
    assert m.training                                          # generate restores the mode


def test_without_cma_needs_no_labels():
    c = cfg(use_cma=False)
    m = build_model(c).eval()
    b = batch(c, labels=False)
    assert set(m(b)) == {"loss", "logits", "ce"}


def test_forward_equals_cached_decoding_and_beam1_is_greedy():
    c = cfg(dropout=0.0)
    m = build_model(c).eval()
    b = batch(c)
    b["mask"][:] = 1
    with torch.no_grad():
        src, cma = m.encoder_input(b["feats"])
        mem = m.generator.encode(src)
        caches = new_caches(m.generator)
        steps = torch.stack([decode_step(m.generator, b["ids"][:, t], mem, caches, t, 1) for t in range(7)], 1)
        torch.testing.assert_close(steps, m(b)["logits"].log_softmax(-1), atol=1e-5, rtol=1e-4)
        assert m.generate(b, beam_size=1, max_len=6) == greedy_decode(m.generator, mem, 6, 1)


def test_param_groups():
    m = build_model(cfg())
    groups = m.param_groups(1e-5, 1e-4, 0.0)
    assert [g["name"] for g in groups] == ["rest"]
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in m.parameters())
    opt = m.configure_optimizers()
    assert isinstance(opt, torch.optim.Adam)


def test_bad_batches():
    c = cfg()
    m = build_model(c)
    b = batch(c)
    with pytest.raises(ValueError, match="view"): m({**b, "feats": b["feats"][:, :1]})
    with pytest.raises(ValueError, match="channels"): m({**b, "feats": b["feats"][:, :, :5]})
    with pytest.raises(ValueError, match="empty report"): m({**b, "ids": b["ids"][:, :1], "mask": b["mask"][:, :1]})
    mask = b["mask"].clone()
    mask[0, 1:] = 0
    with pytest.raises(ValueError, match="empty report"): m({**b, "mask": mask})
    with pytest.raises(ValueError, match="labels"): m({k: v for k, v in b.items() if k != "labels"})
    with pytest.raises(ValueError, match="labels"): m({**b, "labels": b["labels"][:, :3]})
    with pytest.raises(ValueError, match=r"\[0, 31\)"): m({**b, "ids": b["ids"] + 40})
    with pytest.raises(KeyError, match="feats"): m({k: v for k, v in b.items() if k != "feats"})
    with pytest.raises(ValueError, match="feats_only"):
        m({**{k: v for k, v in b.items() if k != "feats"}, "images": torch.zeros(2, 2, 3, 32, 32)})
    with pytest.raises(ValueError, match="beam_size"): m.generate(b, beam_size=0)


def test_bad_configs():
    with pytest.raises(ValueError, match=r"\(0, 1\]"): preset("ci", k=0.0)
    with pytest.raises(ValueError, match=r"\(0, 1\]"): preset("ci", k=1.5)
    with pytest.raises(ValueError, match="variant"): preset("ci", variant="lstm")
    with pytest.raises(ValueError, match="visual"): preset("ci", visual="alexnet")
    with pytest.raises(ValueError, match="densenet121 gives 1024"): preset("paper_iu", in_channels=2048)
    with pytest.raises(ValueError, match="unknown name"): preset("huge")
    with pytest.raises(ValueError, match="vocab_size"): build_model(preset("ci"))
    with pytest.raises(ValueError, match="divisible"): preset("ci", n_heads=3)


def test_mimic_single_view():
    c = cfg(n_views=1)
    m = build_model(c)
    out = m(batch(c))
    assert out["logits"].shape[0] == 2
