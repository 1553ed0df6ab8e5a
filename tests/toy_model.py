"""A tiny captioner with the course model's contract (for the trainer and evaluator tests): batches with
`feats (B, V, C, h, w)`, `ids (B, T)`, `mask (B, T)`, `report`; `model(batch) -> dict(loss, ...)`;
`model.generate(batch, beam_size, max_len) -> list[list[int]]`; a `visual` submodule for the parameter groups."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class ToyCaptioner(nn.Module):
    def __init__(self, vocab_size: int, channels: int = 8, d: int = 16, dropout: float = 0.1, max_len: int = 12):
        super().__init__()
        self.visual = nn.Linear(channels, d)             # stands in for the visual extractor (its own lr group)
        self.embed = nn.Embedding(vocab_size + 1, d)
        self.gru = nn.GRU(d, d, batch_first=True)
        self.drop = nn.Dropout(dropout)                  # randomness inside a step: resume must restore the RNG
        self.head = nn.Linear(d, vocab_size + 1)
        self.max_len = max_len

    def _h0(self, feats):                                # (B, V, C, h, w) -> (1, B, d)
        return torch.tanh(self.visual(feats.mean((1, 3, 4)))).unsqueeze(0)

    def forward(self, batch):
        ids, mask = batch["ids"], batch["mask"].float()
        x = self.drop(self.embed(ids[:, :-1]))           # (B, T-1, d)
        y, _ = self.gru(x, self._h0(batch["feats"]))
        logits = self.head(self.drop(y))                 # (B, T-1, V+1)
        ce = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        loss = (ce * mask[:, 1:]).sum() / mask[:, 1:].sum()
        return {"loss": loss, "logits": logits, "ce": loss.detach()}

    @torch.no_grad()
    def generate(self, batch, beam_size: int = 3, max_len: int | None = None):
        "Greedy decoding (the toy ignores beam_size): ids up to the first 0."
        h, B = self._h0(batch["feats"]), batch["feats"].shape[0]
        tok = torch.zeros(B, 1, dtype=torch.long, device=h.device)
        out, done = [], torch.zeros(B, dtype=torch.bool, device=h.device)
        for _ in range(max_len or self.max_len):
            y, h = self.gru(self.embed(tok), h)
            tok = self.head(y).argmax(-1)                # (B, 1)
            out.append(tok[:, 0])
            done |= tok[:, 0] == 0
            if done.all(): break
        seqs = torch.stack(out, 1).tolist()
        return [s[:s.index(0)] if 0 in s else s for s in seqs]


class ToyReports(torch.utils.data.Dataset):
    "Random features; the report is a fixed function of the features (so the toy can learn it)."
    WORDS = ["heart", "normal", "lungs", "clear", "effusion", "no", "small", "left", "right", "."]

    def __init__(self, n: int = 48, seed: int = 0, channels: int = 8, length: int = 6):
        g = torch.Generator().manual_seed(seed)
        self.feats = torch.randn(n, 2, channels, 2, 2, generator=g)
        key = (self.feats.mean((1, 3, 4))[:, :3] > 0).long() @ torch.tensor([1, 2, 4])   # 8 report classes
        self.reports = [" ".join(self.WORDS[(k + j) % 9] for j in range(length - 1)) + " ." for k in key.tolist()]
        self.length = length

    def __len__(self): return len(self.feats)

    def __getitem__(self, i):
        return {"id": f"S{i}", "feats": self.feats[i], "report": self.reports[i]}


def toy_tokenizer():
    from rrg_tutorial.tokenizer import ReportTokenizer
    return ReportTokenizer(ToyReports.WORDS, max_seq_length=12)


def toy_collate(items, tokenizer=None):
    tok = tokenizer or toy_tokenizer()
    ids, mask = tok.encode_batch([it["report"] for it in items])
    return {"id": [it["id"] for it in items], "feats": torch.stack([it["feats"] for it in items]),
            "ids": torch.from_numpy(ids), "mask": torch.from_numpy(mask), "report": [it["report"] for it in items]}
