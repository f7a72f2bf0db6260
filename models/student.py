"""The student as the pipeline uses it: texts in, logits out, one call per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from models.student_tokenizer import encode_batch


@dataclass(frozen=True)
class StudentClassifier:
    tokenizer: Tokenizer
    net: nn.Module
    max_length: int = 64

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits, shape (len(texts), num_labels); tokenises the whole batch in one call."""
        if not texts:
            return np.zeros((0, self.net.out.out_features), dtype=np.float32)
        ids = torch.from_numpy(encode_batch(self.tokenizer, texts, self.max_length))
        with torch.inference_mode():
            return self.net(ids).float().numpy()
