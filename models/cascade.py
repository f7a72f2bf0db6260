"""The cascade's rule, once, for serving and for calibration (pure: numpy only).

A record's confidence is the top probability of ``softmax(student_logits / temperature)``;
it goes to the teacher when that confidence is below the threshold. The stream worker
(``stream_app.student``) routes with ``route``; calibration and evaluation
(``models.training``) choose and measure thresholds with ``cascade_predictions``. Both
call ``to_teacher``, so a threshold chosen offline routes the same records online.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def calibrated_probs(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of ``logits / temperature`` per row (temperature scaling), in float64.

    >>> calibrated_probs(np.array([[0.0, 0.0], [2.0, 0.0]]), 1.0).round(3).tolist()
    [[0.5, 0.5], [0.881, 0.119]]
    """
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def to_teacher(confidences: np.ndarray, threshold: float) -> np.ndarray:
    """True where the student is not sure enough: confidence strictly below ``threshold``.

    >>> to_teacher(np.array([0.4, 0.9, 0.5]), 0.5).tolist()
    [True, False, False]
    """
    return np.asarray(confidences) < threshold


@dataclass(frozen=True)
class Routing:
    label_ids: np.ndarray  # int, per record
    confidences: np.ndarray  # top calibrated probability, per record
    to_teacher: np.ndarray  # bool: confidence < threshold

    @property
    def teacher_count(self) -> int:
        return int(self.to_teacher.sum())


def route(probs: np.ndarray, threshold: float) -> Routing:
    """Records at or above ``threshold`` are decided by the student, the rest go to the teacher.

    >>> r = route(np.array([[0.9, 0.1], [0.45, 0.55]]), threshold=0.6)
    >>> r.label_ids.tolist(), r.to_teacher.tolist(), r.teacher_count
    ([0, 1], [False, True], 1)
    """
    label_ids = probs.argmax(axis=1)
    confidences = probs[np.arange(len(probs)), label_ids]
    return Routing(label_ids=label_ids, confidences=confidences, to_teacher=to_teacher(confidences, threshold))


def cascade_predictions(
    confidences: np.ndarray, student_pred: np.ndarray, teacher_pred: np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """The cascade's label per record and which records it routed, for precomputed predictions.

    >>> pred, routed = cascade_predictions(np.array([0.9, 0.4]), np.array([1, 1]), np.array([0, 0]), 0.5)
    >>> pred.tolist(), routed.tolist()
    ([1, 0], [False, True])
    """
    routed = to_teacher(confidences, threshold)
    return np.where(routed, np.asarray(teacher_pred), np.asarray(student_pred)), routed
