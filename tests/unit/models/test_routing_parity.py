"""Online routing (the student stage) and offline calibration take the same decisions.

The threshold ``tango train`` chooses is right online only if the stream worker routes the
very records calibration counted as routed: same logits, same temperature, same rule.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from models.cascade import calibrated_probs, cascade_predictions
from models.training.calibrate import choose_threshold, default_thresholds, sweep
from stream_app.records import Incoming, Source
from stream_app.student import StudentStage


def stage_with(logits: np.ndarray, threshold: float, temperature: float) -> StudentStage:
    by_text = {f"t{i}": row for i, row in enumerate(logits)}
    return StudentStage(
        logits=lambda texts: np.stack([by_text[t] for t in texts]), labels=["a", "b", "c"], threshold=threshold,
        temperature=temperature, student_version="s", max_text_chars=100, results_topic="res", teacher_topic="teach",
        dlq_topic="dlq",
    )


def routed_online(logits: np.ndarray, threshold: float, temperature: float) -> np.ndarray:
    records = [Incoming(Source("tweets", 0, i), None, orjson.dumps({"id": f"t{i}", "text": f"t{i}"})) for i in range(len(logits))]
    outputs = stage_with(logits, threshold, temperature)(records).outputs
    teacher_ids = {o.key.decode() for o in outputs if o.topic == "teach"}
    assert len(outputs) == len(logits)
    return np.array([f"t{i}" in teacher_ids for i in range(len(logits))])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("temperature", [0.7, 1.0, 2.3])
def test_every_threshold_routes_the_same_records(seed, temperature):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(300, 3)).astype(np.float32)
    confidences = calibrated_probs(logits, temperature).max(axis=1)
    student = logits.argmax(axis=1)
    for threshold in default_thresholds(confidences, points=21):
        _, offline = cascade_predictions(confidences, student, (student + 1) % 3, threshold)
        assert (routed_online(logits, threshold, temperature) == offline).all(), threshold


def test_the_chosen_threshold_routes_online_the_fraction_calibration_counted():
    rng = np.random.default_rng(7)
    logits = rng.normal(scale=2.0, size=(500, 3))
    gold = rng.integers(0, 3, size=500)
    teacher = np.where(rng.random(500) < 0.9, gold, (gold + 1) % 3)
    confidences = calibrated_probs(logits, 1.3).max(axis=1)
    rows = sweep(confidences, logits.argmax(axis=1), teacher, gold, default_thresholds(confidences), 1.0, 10.0)
    chosen = choose_threshold(rows, teacher_accuracy=float((teacher == gold).mean()), margin=1.0).row
    assert 0 < chosen.teacher_fraction < 1
    assert routed_online(logits, chosen.threshold, 1.3).mean() == pytest.approx(chosen.teacher_fraction)
