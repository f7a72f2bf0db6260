"""``WordIds`` gives exactly the ids the ``tokenizers`` library gives, on its fast path and off it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.student_tokenizer import PAD_ID, UNK_TOKEN, WordIds, _blank_tokenizer, train_tokenizer

CORPUS = [
    "I feel SO happy today!!", "don't @bob me www.example.com/x?y=1 ok", "sad... really sad :(",
    "visit https://t.co/abc_DEF #blessed", "snake_case and it's fine", "<url> <user> <URL> a<user>b",
    "tabs\tand\nnew lines\r", "café naïve ﬁne ½ 😀", "x" * 3,
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS * 2, vocab_size=200, min_frequency=1)


def library_ids(tokenizer, texts, max_length):
    """What ``encode_batch`` did before ``WordIds``: every text through the library."""
    unk = tokenizer.token_to_id(UNK_TOKEN)
    rows = [e.ids[:max_length] or [unk] for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]
    out = np.full((len(rows), max(len(r) for r in rows)), PAD_ID, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def test_the_corpus_encodes_as_the_library_encodes_it(tokenizer):
    ids = WordIds(tokenizer)
    assert ids.vocab is not None
    for max_length in (64, 3):
        assert np.array_equal(ids(CORPUS + ["", "   "], max_length), library_ids(tokenizer, CORPUS + ["", "   "], max_length))


def test_plain_ascii_takes_the_fast_path_and_other_text_the_library(tokenizer):
    ids = WordIds(tokenizer)
    assert ids.tokens("Hi @bob, see http://x.io") == ["hi", "<user>", ",", "see", "<url>"]
    assert ids.tokens("café") is None and ids.tokens("form\x0cfeed") is None and ids.tokens("unit\x1fsep") is None


def test_a_tokenizer_of_another_pipeline_goes_through_the_library():
    other = _blank_tokenizer()
    other.normalizer = None
    other.train_from_iterator(CORPUS, trainer=__import__("tokenizers").trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]"]))
    ids = WordIds(other)
    assert ids.vocab is None
    assert np.array_equal(ids(CORPUS, 64), library_ids(other, CORPUS, 64))


ascii_words = st.text(st.sampled_from("abcXYZ019_'@#:/.!<>-?"), min_size=0, max_size=12)
glue = st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "", "http://", "https://a.b/", "www.", "@", "<url>", "<user>", "'"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(ascii_words, glue), max_size=12), st.text(max_size=20))
def test_any_text_encodes_as_the_library_encodes_it(tokenizer, parts, anything):
    plain = "".join(word + sep for word, sep in parts)
    texts = [plain, anything, plain.upper(), anything + plain]
    assert np.array_equal(WordIds(tokenizer)(texts, 16), library_ids(tokenizer, texts, 16))
