import random
from collections import Counter

from models.training.augment import (
    UNK,
    AugmentConfig,
    augment_text,
    augment_texts,
    drop_tokens,
    mask_tokens,
    sample_ngram,
    swap_tokens,
)

WORDS = "i feel really happy about the new job today".split()


def test_mask_tokens_rate_and_determinism():
    out = mask_tokens(WORDS * 200, 0.2, random.Random(1))
    assert out == mask_tokens(WORDS * 200, 0.2, random.Random(1))
    rate = out.count(UNK) / len(out)
    assert 0.15 < rate < 0.25
    assert mask_tokens(WORDS, 0.0, random.Random(0)) == WORDS


def test_drop_tokens_keeps_order_and_at_least_one_word():
    out = drop_tokens(WORDS, 0.5, random.Random(3))
    it = iter(WORDS)
    assert all(w in it for w in out)  # a subsequence
    assert drop_tokens(["only"], 1.0, random.Random(0)) == ["only"]


def test_swap_tokens_is_a_permutation_of_neighbours():
    out = swap_tokens(WORDS, 0.5, random.Random(2))
    assert Counter(out) == Counter(WORDS) and out != WORDS
    assert all(abs(WORDS.index(w) - i) <= 1 for i, w in enumerate(out))
    assert swap_tokens(WORDS, 0.0, random.Random(2)) == WORDS


def test_sample_ngram_is_contiguous_and_bounded():
    rng = random.Random(5)
    for _ in range(50):
        gram = sample_ngram(WORDS, 3, rng)
        assert 1 <= len(gram) <= 3
        start = WORDS.index(gram[0])
        assert WORDS[start : start + len(gram)] == gram
    assert sample_ngram([], 3, rng) == []


def test_augment_texts_deterministic_unique_and_informative():
    texts = ["i feel really happy about the new job", "this is so sad and awful", "ok"]
    cfg = AugmentConfig(per_text=5, seed=7)
    out = augment_texts(texts, cfg)
    assert out == augment_texts(texts, cfg)
    assert len(out) == len(set(out)) and not set(out) & set(texts)
    assert 0 < len(out) <= 15
    assert all(any(w != UNK for w in t.split()) for t in out)
    assert augment_texts(texts, AugmentConfig(per_text=0)) == []
    # with everything switched off a variant equals its source
    plain = AugmentConfig(p_mask=0, p_drop=0, p_swap=0, p_ngram=0)
    assert augment_text(texts[0], plain, random.Random(0)) == texts[0]
