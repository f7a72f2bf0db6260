"""``WordIds`` gives exactly the ids the ``tokenizers`` library gives, on its fast path and off it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.student_tokenizer import PAD_ID, UNK_TOKEN, WordIds, _blank_tokenizer, _library_words, train_tokenizer

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


def test_plain_ascii_takes_the_fast_path(tokenizer):
    ids = WordIds(tokenizer)
    assert ids.tokens("Hi @bob, see http://x.io") == ["hi", "<user>", ",", "see", "<url>"]


@pytest.mark.parametrize("text", [
    "café naïve", "😀 so HAPPY 😀😀", "ﬁne ½ …", "e\u0301te", "Ünïcödé @bøb http://ü.de", "日本語のツイート", "привет мир",
    "form\x0cfeed",
])
def test_other_text_takes_the_fast_path_where_its_characters_pass_their_probes(tokenizer, text):
    ids = WordIds(tokenizer)
    assert ids.tokens(text) == _library_words(tokenizer, text)


@pytest.mark.parametrize("text", ["I \u2764\ufe0f you", "ΣΟΦΙΑΣ", "a\u0301\u0301", "unit\x1fsep", "a [PAD] b", "x[UNK]y"])
def test_text_with_a_character_that_fails_its_probes_goes_to_the_library(tokenizer, text):
    ids = WordIds(tokenizer)
    assert ids.tokens(text) is None
    assert np.array_equal(ids([text], 16), library_ids(tokenizer, [text], 16))


def test_each_character_is_probed_once_and_the_verdicts_are_bounded(tokenizer, monkeypatch):
    ids = WordIds(tokenizer)
    ids(["café", "cafés", "😀"], 8)
    assert ids.known == {"é": True, "😀": True}
    monkeypatch.setattr("models.student_tokenizer.MAX_KNOWN_CHARS", 2)
    assert ids.tokens("ça") is None and "ç" not in ids.known  # full: a new character goes to the library


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


unicode_words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=8)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(unicode_words, glue), max_size=10))
def test_any_unicode_text_encodes_as_the_library_encodes_it(tokenizer, parts):
    text = "".join(word + sep for word, sep in parts)
    texts = [text, text.upper(), text.lower()]
    assert np.array_equal(WordIds(tokenizer)(texts, 24), library_ids(tokenizer, texts, 24))
