"""Student networks: a bag-of-embeddings MLP and a BiLSTM (the Tango work's), and a word-window CNN.

All take right-padded token ids (``PAD_ID`` = 0) and return logits. They are built
from a plain ``config`` dict so that a bundle's manifest fully describes them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from models.student_tokenizer import PAD_ID


class MLPStudent(nn.Module):
    """Pooled word embeddings, one hidden layer (Tango's 80K-parameter student).

    ``pooling="mean"`` (the default) averages the embeddings; ``pooling="attention"``
    learns one scalar score per vocabulary entry and takes the softmax-weighted sum, so
    that "sad" counts for more than "i" and "feel" (``vocab_size`` more parameters).
    With attention pooling, ``bigram_buckets > 0`` adds hashed word bigrams (fastText
    style) as further tokens of the bag, each with an embedding and a score.
    """

    def __init__(
        self, vocab_size: int, num_labels: int, embed_dim: int = 16, hidden_dim: int = 64, dropout: float = 0.1,
        pooling: str = "mean", bigram_buckets: int = 0,
    ):
        super().__init__()
        if pooling not in ("mean", "attention"):
            raise ValueError(f"pooling must be 'mean' or 'attention', got {pooling!r}")
        if bigram_buckets and pooling != "attention":
            raise ValueError("bigram_buckets needs pooling='attention'")
        self.pooling = pooling
        self.bigram_buckets = bigram_buckets
        if pooling == "mean":
            self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="sum", padding_idx=PAD_ID)
        else:
            self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
            self.score = nn.Embedding(vocab_size, 1, padding_idx=PAD_ID)
        if bigram_buckets:
            self.bigram_embedding = nn.Embedding(bigram_buckets, embed_dim)
            self.bigram_score = nn.Embedding(bigram_buckets, 1)
        self.hidden = nn.Sequential(nn.Dropout(dropout), nn.Linear(embed_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout))
        self.out = nn.Linear(hidden_dim, num_labels)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != PAD_ID
        if self.pooling == "mean":
            pooled = self.embedding(ids) / mask.sum(dim=1, keepdim=True).clamp(min=1)
        else:
            vectors, scores = self.embedding(ids), self.score(ids).squeeze(-1)
            if self.bigram_buckets:
                pairs = (ids[:, :-1] * 1_000_003 + ids[:, 1:]) % self.bigram_buckets
                vectors = torch.cat([vectors, self.bigram_embedding(pairs)], dim=1)
                scores = torch.cat([scores, self.bigram_score(pairs).squeeze(-1)], dim=1)
                mask = torch.cat([mask, mask[:, :-1] & mask[:, 1:]], dim=1)
            weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1).nan_to_num(0.0)
            pooled = (weights.unsqueeze(-1) * vectors).sum(dim=1)
        return self.out(self.hidden(pooled))


class BiLSTMStudent(nn.Module):
    """Bidirectional LSTM over word embeddings with max-pooling over time."""

    def __init__(self, vocab_size: int, num_labels: int, embed_dim: int = 64, hidden_dim: int = 128, layers: int = 1, dropout: float = 0.2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, num_layers=layers, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden_dim, num_labels)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != PAD_ID
        lengths = mask.sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.lstm(packed)
        states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=ids.shape[1])
        states = states.masked_fill(~mask[:, :, None], float("-inf"))
        pooled = states.max(dim=1).values
        pooled = torch.where(torch.isfinite(pooled), pooled, torch.zeros_like(pooled))
        return self.out(self.dropout(pooled))


class CNNStudent(nn.Module):
    """Word embeddings, one convolution over ``width`` neighbouring words, max-pooled over the text.

    A bag of words cannot tell which word an emotion attaches to ("i feel bad saying this because
    i should be happy"); a window of neighbours can, at an MLP's parameter count. On emotion, from
    the same soft labels, over 5 words: 85.6K parameters, 92.60–92.75% on test against the MLP's
    90.40–90.90%, and 0.111 CPU-s per 1,000 records against the BiLSTM's 0.457 in the bundle's
    timed run (docs/models.md, "The emotion MLP against 91.8%").

    Padding never counts: embeddings are masked to zero before the convolution (so a row's last
    window reads the same zeros with or without trailing padding) and padded positions are left out
    of the max.
    """

    def __init__(self, vocab_size: int, num_labels: int, embed_dim: int = 16, channels: int = 64, width: int = 5, dropout: float = 0.1):
        super().__init__()
        if width < 1 or width % 2 == 0:
            raise ValueError(f"width must be an odd number of words, got {width}")
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.conv = nn.Conv1d(embed_dim, channels, width, padding=width // 2)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(channels, num_labels)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != PAD_ID).unsqueeze(-1)
        vectors = self.embedding(ids) * mask
        states = torch.relu(self.conv(vectors.transpose(1, 2))).transpose(1, 2)
        pooled = states.masked_fill(~mask, 0.0).max(dim=1).values  # after the ReLU every state is >= 0
        return self.out(self.dropout(pooled))


ARCHITECTURES: dict[str, type[nn.Module]] = {"mlp": MLPStudent, "bilstm": BiLSTMStudent, "cnn": CNNStudent}


def build_student(arch: str, config: dict[str, Any]) -> nn.Module:
    """A fresh network of architecture ``arch`` from its manifest ``config``."""
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown student architecture {arch!r}; known: {sorted(ARCHITECTURES)}") from None
    return cls(**config)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
