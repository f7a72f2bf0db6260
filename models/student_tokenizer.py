"""The student's tokenizer: a word-level ``tokenizers`` model that understands tweets.

Normalisation maps what carries little signal to shared placeholders (URLs to
``<url>``, mentions to ``<user>``), splits hashtags into ``#`` and the word, keeps each
emoji as its own token, and lower-cases. The whole vocabulary lives in one
``tokenizer.json`` (plain JSON, never a pickle).

Serving encodes with ``WordIds``: the same ids, computed with Python's regular expressions and a
dict, at about a tenth of the CPU the library takes for this pipeline (9 against 92 µs a tweet in
batches of 256; the library runs its regex normalisers on two threads): plain-ASCII texts, and
others whose characters were each checked once against the library (after its own NFKC step).
The rest still go through the library.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

PAD_TOKEN = "[PAD]"
UNK_TOKEN = "[UNK]"
PAD_ID = 0  # the MLP's mean-pooling and the BiLSTM's packing rely on padding being id 0

_URL = r"(?:https?://|www\.)\S+"
_MENTION = r"@\w+"
# One token per word (keeping inner apostrophes), per placeholder, or per other
# non-space character, so that each emoji and punctuation mark stands alone.
_TOKEN = r"<url>|<user>|\w+(?:'\w+)*|[^\w\s]"


def _blank_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK_TOKEN))
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.NFKC(),
            normalizers.Replace(Regex(_URL), " <url> "),
            normalizers.Replace(Regex(_MENTION), " <user> "),
            normalizers.Lowercase(),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(_TOKEN), behavior="isolated")]
    )
    return tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int = 5000, min_frequency: int = 2) -> Tokenizer:
    """Learn a word-level vocabulary of at most ``vocab_size`` entries from ``texts``."""
    tokenizer = _blank_tokenizer()
    trainer = trainers.WordLevelTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD_TOKEN, UNK_TOKEN]
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def load_tokenizer(path: str | Path) -> Tokenizer:
    return Tokenizer.from_file(str(path))


def encode_batch(tokenizer: Tokenizer, texts: Sequence[str], max_length: int) -> np.ndarray:
    """Token ids of a batch, right-padded with ``PAD_ID`` to the longest text (see ``WordIds``)."""
    return WordIds(tokenizer)(texts, max_length)


# Texts of printable ASCII, tab, newline and carriage return: there NFKC changes nothing, Python's
# \w, \s and \S mean what the library's Oniguruma and Rust's whitespace split mean, and lower-casing
# is ASCII's. Any other text goes to the library.
_PLAIN = re.compile(r"[\t\n\r\x20-\x7e]*")
_PLAIN_CHARS = re.compile(r"[\t\n\r\x20-\x7e]+")
_URL_RE, _MENTION_RE, _TOKEN_RE = re.compile(_URL), re.compile(_MENTION), re.compile(_TOKEN)


def _library_words(tokenizer: Tokenizer, text: str) -> list[str]:
    """The words the library's normaliser and pre-tokenizer make of ``text`` (before the vocabulary)."""
    return [word for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(text))]


def _probes(char: str) -> str:
    """One text that puts ``char`` everywhere the pipeline looks at a character's class: inside, before and
    after a word, alone, twice, in a mention, a URL and around an apostrophe."""
    c = char
    return f"a{c}a a{c} {c}a {c} {c}{c} @a{c}a @{c} http://a{c}a www.{c} x'{c} {c}'x A{c}A"


_NFKC = normalizers.NFKC()
_MISSING = -1  # a word that is not in the vocabulary (ids are never negative)
_CONTEXT_CASED = frozenset("\u03a3")  # capital sigma: lower-cased by its neighbours (final sigma), so never probed alone

MAX_KNOWN_CHARS = 65_536
"""Non-ASCII characters whose verdict ``WordIds`` keeps; once full, texts with a new one go to the library."""

MAX_MISSING_WORDS = 65_536
"""Words missing from the vocabulary whose ids ``WordIds`` keeps; once full, new ones are split each time."""


def _words(text: str) -> list[str]:
    """``text``'s whitespace-separated words once URLs and mentions are placeholders, lower-cased (the
    URL and mention patterns run only on texts that could hold one)."""
    if "http" in text or "www." in text:
        text = _URL_RE.sub(" <url> ", text)
    if "@" in text:
        text = _MENTION_RE.sub(" <user> ", text)
    return text.lower().split()


def _word_tokens(word: str) -> list[str]:
    """The tokens of one word: itself if it is letters and digits (the common case: ASCII letters and
    digits are ``\\w``), else its matches of ``_TOKEN``."""
    return [word] if word.isalnum() else _TOKEN_RE.findall(word)


class WordIds:
    """The ids ``tokenizer`` gives each text, one batch at a time.

    For a tokenizer of this module's own pipeline (``_blank_tokenizer``: checked on its normalizer
    and pre-tokenizer), a text is normalised and split here, in the library's order: URLs to
    ``<url>``, mentions to ``<user>``, lower case, then one token per match of ``_TOKEN``, if

    - it is plain ASCII (there NFKC changes nothing, and Python's ``\\w``, ``\\s`` and lower case
      are the library's), or
    - after the library's own NFKC step (``normalizers.NFKC``, one short call), each of its non-ASCII
      characters was checked once against the library: ``_probes(c)`` split by the library's whole
      normaliser and pre-tokenizer gives the words this class gives. After NFKC the pipeline looks
      at characters one at a time (their class for ``\\w``, ``\\s`` and ``\\S``, their lower case), so
      a character that passes its probes is split and lower-cased as the library does; the one
      character lower-cased by its neighbours, capital sigma, always goes to the library. Emoji,
      accented letters and most scripts pass; characters the two Unicode tables disagree on (a
      variation selector or another mark, which Python's ``\\w`` leaves out) do not, and their texts
      go to the library.

    Other texts, texts holding an added token (``[PAD]``, ``[UNK]``: the library matches those before
    it normalises) and every text of another pipeline go through the library in one call.

    >>> ids = WordIds(train_tokenizer(["so happy today", "so sad"], min_frequency=1))
    >>> ids.tokens("So HAPPY @bob http://x.io")
    ['so', 'happy', '<user>', '<url>']
    >>> ids(["so happy", "today", "   "], max_length=8).tolist()
    [[2, 3], [5, 0], [1, 0]]
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.unk = tokenizer.token_to_id(UNK_TOKEN)
        added = list(tokenizer.get_added_tokens_decoder().values())
        # the library matches its added tokens ([PAD], [UNK]) in the raw text before it normalises; a text
        # holding one goes to it (tokens matched after normalisation would need more: those pipelines go whole).
        # One regex search per text, in C, rather than a Python loop over the tokens on the hot path.
        self.added = re.compile("|".join(re.escape(token.content) for token in added)) if added else None
        fits = _same_pipeline(tokenizer) and not any(token.normalized for token in added)
        self.vocab: dict[str, int] | None = tokenizer.get_vocab() if fits else None
        self.known: dict[str, bool] = {}  # non-ASCII character -> split here as the library splits it (probed once)
        self.missing: dict[str, list[int]] = {}  # word not in the vocabulary -> its ids (never changed once kept)

    def tokens(self, text: str) -> list[str] | None:
        """The words the pipeline splits ``text`` into (before the vocabulary), or ``None`` where the
        library must split it."""
        text = self._here(text)
        return None if text is None else self._split(text)

    def ids(self, text: str, max_length: int) -> list[int] | None:
        """``text``'s ids, at most ``max_length``, or ``None`` where the library must split it.

        The ids of ``tokens(text)``, found with one dict lookup for most words: a word that is itself
        in the vocabulary is one token (each entry is one match of ``_TOKEN``, and a match alone
        matches whole again); only the other words are split (``_word_tokens``)."""
        text = self._here(text)
        if text is None:
            return None
        words = _words(text)
        id_of, not_found = self.vocab.get, _MISSING  # locals: looked up once, not once a word
        found = [id_of(word, not_found) for word in words]
        if not_found in found:
            found = self._split_missing(words, found)
        return found[:max_length]

    def _split_missing(self, words: list[str], found: list[int]) -> list[int]:
        """``found`` with each word missing from the vocabulary replaced by its ids (kept for the next
        time, up to ``MAX_MISSING_WORDS`` words): ``[UNK]`` for letters and digits, else its tokens'."""
        missing = self.missing
        for at in reversed([at for at, id_ in enumerate(found) if id_ == _MISSING]):  # from the end: splices keep earlier places
            word = words[at]
            ids = missing.get(word)
            if ids is None:
                ids = [self.vocab.get(token, self.unk) for token in _word_tokens(word)]
                if len(missing) < MAX_MISSING_WORDS:
                    missing[word] = ids
            found[at:at + 1] = ids
        return found

    def _here(self, text: str) -> str | None:
        """``text`` as this class splits it (NFKC-normalised where it is not plain ASCII), or ``None``
        where the library must split it."""
        if self.vocab is None or (self.added is not None and self.added.search(text)):
            return None
        if _PLAIN.fullmatch(text) is None:
            return self._normal(text)
        return text

    def _normal(self, text: str) -> str | None:
        """A text that is not plain ASCII, NFKC-normalised by the library, if each of its non-ASCII
        characters passed its probes (checked once per character); else ``None``."""
        normal = _NFKC.normalize_str(text)
        known = self.known
        for char in set(_PLAIN_CHARS.sub("", normal)):
            verdict = known.get(char)
            if verdict is None:
                if len(known) >= MAX_KNOWN_CHARS or char in _CONTEXT_CASED:
                    return None
                probe = _probes(char)
                verdict = known[char] = self._split(probe) == _library_words(self.tokenizer, probe)
            if not verdict:
                return None
        return normal

    @staticmethod
    def _split(text: str) -> list[str]:
        return [token for word in _words(text) for token in _word_tokens(word)]

    def __call__(self, texts: Sequence[str], max_length: int) -> np.ndarray:
        """Token ids, right-padded with ``PAD_ID``, each row cut at ``max_length``; whitespace-only and
        empty texts become a single ``[UNK]``, so every row has a token."""
        rows = [self.ids(text, max_length) for text in texts]
        rest = [i for i, row in enumerate(rows) if row is None]
        if rest:
            for i, encoding in zip(rest, self.tokenizer.encode_batch([texts[i] for i in rest], add_special_tokens=False)):
                rows[i] = encoding.ids[:max_length]
        unk = self.unk
        flat: list[int] = []
        lengths: list[int] = []
        for ids in rows:
            flat.extend(ids or (unk,))
            lengths.append(len(ids) or 1)
        counts = np.array(lengths, dtype=np.int64)
        out = np.full((len(lengths), int(counts.max(initial=1))), PAD_ID, dtype=np.int64)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        out[np.repeat(np.arange(len(lengths)), counts), np.arange(len(flat)) - starts] = flat  # one scatter per batch
        return out


def _same_pipeline(tokenizer: Tokenizer) -> bool:
    """True if ``tokenizer`` normalises and splits as ``_blank_tokenizer`` (word level), whatever its vocabulary."""
    def steps(t: Tokenizer) -> tuple:
        spec = json.loads(t.to_str())
        return spec["normalizer"], spec["pre_tokenizer"], spec["model"]["type"], spec["model"]["unk_token"]

    return steps(tokenizer) == steps(_blank_tokenizer())


def tokens(tokenizer: Tokenizer, text: str) -> list[str]:
    """The tokens of one text, for inspection and tests."""
    return tokenizer.encode(text, add_special_tokens=False).tokens
