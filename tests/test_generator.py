import itertools, math
import pytest
import torch
from rrg_tutorial.generator import (ReportGenerator, sinusoidal_positions, decoder_self_mask, greedy_decode, beam_search,
                                    new_caches, decode_step, sequence_logprob, MultiHeadAttention)


def small(vocab=20, **kw):
    torch.manual_seed(0)
    return ReportGenerator(vocab, d_model=16, n_heads=2, d_ff=16, n_enc=1, n_dec=2, dropout=0.0, **kw).eval()


def test_shapes_and_initial_loss():
    g = small()
    src, ids = torch.randn(2, 7, 16), torch.randint(1, 21, (2, 9))
    ids[:, 0] = 0
    logits, loss = g(src, ids, torch.ones_like(ids))
    assert logits.shape == (2, 8, 21)
    assert abs(loss.item() - math.log(21)) < 1.0


def test_decoder_is_causal():
    g = small()
    mem, ids = g.encode(torch.randn(2, 7, 16)), torch.randint(1, 21, (2, 9))
    with torch.no_grad():
        full = g.head(g.decode(ids, mem))
        ids2 = ids.clone()
        ids2[:, 5] = ids2[:, 5] % 20 + 1
        out = g.head(g.decode(ids2, mem))
    torch.testing.assert_close(out[:, :5], full[:, :5])
    assert (out[:, 5:] - full[:, 5:]).abs().max() > 1e-4


def test_padding_keys_are_ignored():
    g = small()
    mem, ids = g.encode(torch.randn(1, 7, 16)), torch.randint(1, 21, (1, 9))
    m = torch.ones_like(ids)
    m[:, -2:] = 0
    ids2 = ids.clone()
    ids2[:, -2:] = 3
    with torch.no_grad():
        torch.testing.assert_close(g.head(g.decode(ids, mem, m))[:, :-2], g.head(g.decode(ids2, mem, m))[:, :-2])


@pytest.mark.parametrize("offset", [0, 1])
def test_incremental_equals_full(offset):
    g = small()
    mem, ids = g.encode(torch.randn(2, 7, 16)), torch.randint(0, 21, (2, 9))
    with torch.no_grad():
        full = g.head(g.decode(ids, mem, torch.ones_like(ids), memory_offset=offset)).log_softmax(-1)
        caches = new_caches(g)
        steps = torch.stack([decode_step(g, ids[:, t], mem, caches, t, offset) for t in range(9)], 1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)


def test_beam_one_is_greedy():
    g = small()
    mem = g.encode(torch.randn(4, 7, 16))
    assert beam_search(g, mem, 1, 15) == greedy_decode(g, mem, 15)


def test_wide_beam_is_exhaustive():
    torch.manual_seed(1)
    g = ReportGenerator(2, 16, 2, 16, 1, 1, dropout=0.0).eval()
    with torch.no_grad(): g.head.weight.mul_(4)
    mem = g.encode(torch.randn(2, 5, 16))
    for b in range(2):
        m1 = mem[b:b + 1]
        cands = [(sequence_logprob(g, m1, list(w), True), list(w)) for n in range(4) for w in itertools.product([1, 2], repeat=n)]
        cands += [(sequence_logprob(g, m1, list(w), False), list(w)) for w in itertools.product([1, 2], repeat=4)]
        best = max(cands, key=lambda c: c[0])
        (s, w), = beam_search(g, m1, 24, 4, return_scores=True)
        assert w == best[1] and abs(s - best[0]) < 1e-4


def test_beam_scores_are_sequence_logprobs():
    g = small()
    mem = g.encode(torch.randn(3, 7, 16))
    for b, (s, w) in enumerate(beam_search(g, mem, 3, 6, return_scores=True)):
        ended = len(w) < 6
        assert abs(sequence_logprob(g, mem[b:b + 1], w, ended) - s) < 1e-4
        assert 0 not in w


def test_mamba_encoder():
    g = small(encoder="mamba")
    assert g.encode(torch.randn(2, 7, 16)).shape == (2, 7, 16)


def test_positions_and_masks():
    pe = sinusoidal_positions(10, 8)
    torch.testing.assert_close(pe[:, 0], torch.sin(torch.arange(10.)))
    m = decoder_self_mask(torch.tensor([[1, 1, 0]]))[0, 0]
    assert m.tolist() == [[True, False, False], [True, True, False], [True, True, False]]


def test_bad_arguments():
    with pytest.raises(ValueError, match="divisible"): MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="encoder must be"): ReportGenerator(5, encoder="gru")
    with pytest.raises(ValueError, match="max_len"): small().embed(torch.zeros(1, 600, dtype=torch.long))
