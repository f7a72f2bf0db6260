"""Confidence and routing, vectorised over a batch (pure: no Kafka, no model)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def calibrated_probs(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of ``logits / temperature`` per row (temperature scaling)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Routing:
    label_ids: np.ndarray  # int, per record
    confidences: np.ndarray  # top calibrated probability, per record
    to_teacher: np.ndarray  # bool: confidence < threshold

    @property
    def teacher_count(self) -> int:
        return int(self.to_teacher.sum())


def route(probs: np.ndarray, threshold: float) -> Routing:
    """Records at or above ``threshold`` are decided by the student, the rest go to the teacher."""
    label_ids = probs.argmax(axis=1)
    confidences = probs[np.arange(len(probs)), label_ids]
    return Routing(label_ids=label_ids, confidences=confidences, to_teacher=confidences < threshold)
