"""The student's tokenizer: a word-level ``tokenizers`` model that understands tweets.

Normalisation maps what carries little signal to shared placeholders (URLs to
``<url>``, mentions to ``<user>``), splits hashtags into ``#`` and the word, keeps each
emoji as its own token, and lower-cases. The whole vocabulary lives in one
``tokenizer.json`` (plain JSON, never a pickle).
"""

from __future__ import annotations

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
    """Token ids of a batch, one Rust call, right-padded with ``PAD_ID`` to the longest text.

    Whitespace-only and empty texts become a single ``[UNK]`` so every row has a token.
    """
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    lengths = [min(len(e.ids), max_length) or 1 for e in encodings]
    ids = np.full((len(encodings), max(lengths, default=1)), PAD_ID, dtype=np.int64)
    unk = tokenizer.token_to_id(UNK_TOKEN)
    for row, (encoding, length) in enumerate(zip(encodings, lengths)):
        ids[row, :length] = encoding.ids[:length] or [unk]
    return ids


def tokens(tokenizer: Tokenizer, text: str) -> list[str]:
    """The tokens of one text, for inspection and tests."""
    return tokenizer.encode(text, add_special_tokens=False).tokens
