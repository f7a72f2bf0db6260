"""The student as the pipeline uses it: texts in, logits out, one call per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from models.student_nets import count_parameters
from models.student_tokenizer import WordIds


@dataclass(frozen=True)
class StudentClassifier:
    tokenizer: Tokenizer
    net: nn.Module
    max_length: int = 64
    trained_parameters: int | None = None  # where ``net`` is a served form (a cnn's table is buffers, not parameters)

    @property
    def parameters(self) -> int:
        """The trained network's parameter count, whatever form ``net`` is served in."""
        return count_parameters(self.net) if self.trained_parameters is None else self.trained_parameters

    @cached_property
    def word_ids(self) -> WordIds:
        """The tokenizer's ids, built once (its vocabulary as a dict, its pipeline checked)."""
        return WordIds(self.tokenizer)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits, shape (len(texts), num_labels); tokenises the whole batch in one call."""
        if not texts:
            return np.zeros((0, self.net.out.out_features), dtype=np.float32)
        ids = torch.from_numpy(self.word_ids(texts, self.max_length))
        with torch.inference_mode():
            return self.net(ids).float().numpy()
