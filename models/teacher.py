"""The teacher: a Hugging Face sequence classifier, loaded from a local folder or hub id.

Inference sorts a batch by token length and cuts it into chunks of at most
``token_budget`` padded tokens, so short tweets are never padded to the longest one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

hf_logging.disable_progress_bar()


def length_buckets(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Indices grouped into chunks, shortest first, each with ``len(chunk) * max_len <= budget``.

    A text longer than the budget still gets a chunk of its own.

    >>> length_buckets([5, 1, 30, 2], token_budget=10)
    [[1, 3], [0], [2]]
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    chunks: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # sorted ascending, so the newest index is the chunk's longest text
        if current and (len(current) + 1) * max(lengths[index], 1) > token_budget:
            chunks.append(current)
            current = []
        current.append(index)
    if current:
        chunks.append(current)
    return chunks


@dataclass(frozen=True)
class TeacherClassifier:
    tokenizer: Any
    model: torch.nn.Module
    max_length: int = 64
    token_budget: int = 4096

    @classmethod
    def load(cls, name_or_path: str | Path, *, max_length: int = 64, int8: bool = False, token_budget: int = 4096) -> "TeacherClassifier":
        """Load from a ``save_pretrained`` folder or a hub id; safetensors only, no remote code."""
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(name_or_path), trust_remote_code=False, use_safetensors=True
        )
        model.eval()
        if int8:
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        return cls(tokenizer=tokenizer, model=model, max_length=max_length, token_budget=token_budget)

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Logits in input order, shape (len(texts), num_labels)."""
        out = np.zeros((len(texts), self.num_labels), dtype=np.float32)
        if not texts:
            return out
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        lengths = [len(ids) for ids in encoded]
        with torch.inference_mode():
            for chunk in length_buckets(lengths, self.token_budget):
                batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in chunk]}, return_tensors="pt")
                out[chunk] = self.model(**batch).logits.float().numpy()
        return out
