"""Transfer-set augmentation for distillation (Tang et al. 2019, as used by Tango).

Each augmented text is made from one training text by, per word: masking with ``[UNK]``
(probability ``p_mask``), else dropping it (``p_drop``); then swapping neighbouring words
(``p_swap`` per position); and, with probability ``p_ngram``, keeping only a random
n-gram of 1..``max_ngram`` words. The teacher labels the result; it never has a gold label.
All functions are pure given a ``random.Random``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

UNK = "[UNK]"


@dataclass(frozen=True)
class AugmentConfig:
    per_text: int = 8  # augmented texts made from each original
    p_mask: float = 0.1
    p_drop: float = 0.1
    p_swap: float = 0.1
    p_ngram: float = 0.25
    max_ngram: int = 5
    seed: int = 13


def mask_tokens(words: Sequence[str], p: float, rng: random.Random) -> list[str]:
    return [UNK if rng.random() < p else w for w in words]


def drop_tokens(words: Sequence[str], p: float, rng: random.Random) -> list[str]:
    kept = [w for w in words if rng.random() >= p]
    return kept or list(words[:1])


def swap_tokens(words: Sequence[str], p: float, rng: random.Random) -> list[str]:
    out = list(words)
    i = 0
    while i < len(out) - 1:
        if rng.random() < p:
            out[i], out[i + 1] = out[i + 1], out[i]
            i += 2
        else:
            i += 1
    return out


def sample_ngram(words: Sequence[str], max_n: int, rng: random.Random) -> list[str]:
    if not words:
        return []
    n = rng.randint(1, min(max_n, len(words)))
    start = rng.randint(0, len(words) - n)
    return list(words[start : start + n])


def augment_text(text: str, cfg: AugmentConfig, rng: random.Random) -> str:
    """One augmented variant of ``text`` (may equal it)."""
    words = text.split()
    out: list[str] = []
    for w in words:  # mask or drop, one decision per word
        r = rng.random()
        if r < cfg.p_mask:
            out.append(UNK)
        elif r < cfg.p_mask + cfg.p_drop:
            continue
        else:
            out.append(w)
    out = out or words[:1]
    out = swap_tokens(out, cfg.p_swap, rng)
    if rng.random() < cfg.p_ngram:
        out = sample_ngram(out, cfg.max_ngram, rng)
    return " ".join(out)


def augment_texts(texts: Sequence[str], cfg: AugmentConfig = AugmentConfig()) -> list[str]:
    """``cfg.per_text`` variants of each text, without duplicates of each other or of ``texts``.

    A variant made only of ``[UNK]`` is skipped: it says nothing about its origin.
    Deterministic for a given ``cfg.seed``.
    """
    rng = random.Random(cfg.seed)
    seen = set(texts)
    out: list[str] = []
    for text in texts:
        for _ in range(cfg.per_text):
            variant = augment_text(text, cfg, rng)
            if variant and variant not in seen and any(w != UNK for w in variant.split()):
                seen.add(variant)
                out.append(variant)
    return out
