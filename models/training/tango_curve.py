"""The Tango figure from measured costs: accuracy against CPU-seconds per 1,000 records.

Costs come from a timed run on the evaluation split itself (``measured_curves``): the student
over every record in stream-sized batches, and the teacher over every record in
length-bucketed batches, each batch's CPU time shared among its records by token count,
so a routed record costs what its own batch measured. CPU time is the process's
(``time.process_time``: every thread), as ``tango bench`` counts it.

Three curves, as in the Tango post's figure (all pure functions of arrays):

- ``cascade_curve``: the calibrated threshold swept; a record goes to the teacher when the
  student's confidence is below it (``models.cascade``);
- ``random_curve``: the same fractions routed at random, in expectation
  (accuracy ``(1-f)·student + f·teacher``, cost ``student + f·mean teacher cost``);
- ``oracle_curve``: the teacher only where the student is wrong, the records it gets
  right first: the best any router could do with these two models.

``measure_cascade`` then runs the cascade at one threshold for real (student on all,
teacher on the routed records) to check the curve's cost where the bundle serves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from models.cascade import calibrated_probs, cascade_predictions, to_teacher
from models.student import StudentClassifier
from models.teacher import TeacherClassifier, length_buckets
from models.training.calibrate import default_thresholds
from models.training.data import Split
from models.training.evaluate import batched_logits

STREAM_BATCH = 128  # the student's batch in the stream worker (student_batch_size's default)


@dataclass(frozen=True)
class CurvePoint:
    teacher_fraction: float
    accuracy: float
    cpu_s_per_1k: float
    threshold: float | None = None  # None on the baselines

    def to_json(self) -> dict:
        return {k: (None if v is None else round(float(v), 6)) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class RecordCosts:
    student_s: float  # CPU-seconds per record, every record
    teacher_s: np.ndarray  # CPU-seconds of each record through the teacher

    @property
    def teacher_mean_s(self) -> float:
        return float(self.teacher_s.mean()) if len(self.teacher_s) else 0.0


def _cpu_of(fn: Callable[[], object]) -> float:
    started = time.process_time()
    fn()
    return time.process_time() - started


def student_cpu_per_record(logits: Callable[[list[str]], object], texts: Sequence[str], batch_size: int = STREAM_BATCH, repeats: int = 3) -> float:
    """CPU-seconds per record of the student over ``texts`` in batches of ``batch_size``: the best of ``repeats`` passes."""
    texts = list(texts)
    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
    logits(batches[0])  # warm-up
    best = min(_cpu_of(lambda: [logits(b) for b in batches]) for _ in range(repeats))
    return best / len(texts)


def teacher_cpu_per_record(teacher: TeacherClassifier, texts: Sequence[str]) -> np.ndarray:
    """Each record's CPU-seconds through the teacher: its length bucket's measured time, shared by tokens."""
    texts = list(texts)
    lengths = [len(ids) for ids in teacher.tokenizer(texts, truncation=True, max_length=teacher.max_length)["input_ids"]]
    costs = np.zeros(len(texts), dtype=np.float64)
    chunks = length_buckets(lengths, teacher.token_budget)
    teacher.logits([texts[i] for i in chunks[-1]])  # warm-up on the longest bucket
    for chunk in chunks:
        seconds = _cpu_of(lambda: teacher.logits([texts[i] for i in chunk]))
        tokens = np.asarray([lengths[i] for i in chunk], dtype=np.float64)
        costs[chunk] = seconds * tokens / tokens.sum()
    return costs


def _per_1k(student_s: float, routed_teacher_s: float, n: int) -> float:
    return 1000.0 * (student_s + routed_teacher_s / max(n, 1))


def cascade_curve(confidences: np.ndarray, student_pred: np.ndarray, teacher_pred: np.ndarray, labels: np.ndarray,
                  thresholds: Sequence[float], costs: RecordCosts) -> list[CurvePoint]:
    """Accuracy and measured cost of the cascade at each threshold.

    >>> costs = RecordCosts(0.001, np.array([0.01, 0.01]))
    >>> [p.cpu_s_per_1k for p in cascade_curve(np.array([0.9, 0.4]), np.array([1, 1]), np.array([0, 0]), np.array([1, 0]), [0.0, 0.5], costs)]
    [1.0, 6.0]
    """
    labels = np.asarray(labels)
    points = []
    for t in thresholds:
        pred, routed = cascade_predictions(confidences, student_pred, teacher_pred, t)
        points.append(CurvePoint(float(routed.mean()), float((pred == labels).mean()),
                                 _per_1k(costs.student_s, float(costs.teacher_s[routed].sum()), len(labels)), float(t)))
    return points


def random_curve(student_correct: np.ndarray, teacher_correct: np.ndarray, costs: RecordCosts, points: int = 21) -> list[CurvePoint]:
    """Routing a fraction ``f`` of records at random, in expectation, for ``f`` from 0 to 1.

    >>> [p.accuracy for p in random_curve(np.array([1, 0]), np.array([1, 1]), RecordCosts(0.0, np.array([0.0, 0.0])), points=3)]
    [0.5, 0.75, 1.0]
    """
    s_acc, t_acc = float(np.mean(student_correct)), float(np.mean(teacher_correct))
    return [CurvePoint(float(f), float((1 - f) * s_acc + f * t_acc), float(1000.0 * (costs.student_s + f * costs.teacher_mean_s)))
            for f in np.linspace(0.0, 1.0, points)]


def oracle_curve(student_correct: np.ndarray, teacher_correct: np.ndarray, costs: RecordCosts) -> list[CurvePoint]:
    """The teacher on the student's mistakes only: first those it gets right, cheapest first, then the rest.

    >>> [(p.teacher_fraction, p.accuracy) for p in oracle_curve(np.array([1, 0, 0, 1]), np.array([1, 1, 0, 0]), RecordCosts(0.0, np.zeros(4)))]
    [(0.0, 0.5), (0.25, 0.75), (0.5, 0.75)]
    """
    s_ok, t_ok = np.asarray(student_correct, bool), np.asarray(teacher_correct, bool)
    n = len(s_ok)
    wrong = np.flatnonzero(~s_ok)
    order = wrong[np.lexsort((costs.teacher_s[wrong], ~t_ok[wrong]))]
    correct, spent = int(s_ok.sum()), 0.0
    points = [CurvePoint(0.0, correct / n, _per_1k(costs.student_s, 0.0, n))]
    for k, index in enumerate(order, 1):
        correct += int(t_ok[index])
        spent += float(costs.teacher_s[index])
        points.append(CurvePoint(k / n, correct / n, _per_1k(costs.student_s, spent, n)))
    step = max(1, len(points) // 50)  # the curve's shape needs no more than ~50 points
    return points[::step] + ([points[-1]] if (len(points) - 1) % step else [])


def measure_cascade(student_logits: Callable[[list[str]], np.ndarray], probs_of: Callable[[np.ndarray], np.ndarray], teacher: TeacherClassifier,
                    texts: Sequence[str], threshold: float, batch_size: int = STREAM_BATCH) -> dict:
    """Run the cascade at ``threshold`` for real: the student on every batch, the teacher on the routed records.

    Returns the measured CPU-seconds per 1,000 records and the routed fraction.
    """
    texts = list(texts)
    routed_texts: list[str] = []

    def run() -> None:
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            confidences = probs_of(student_logits(batch)).max(axis=1)
            routed_texts.extend(t for t, r in zip(batch, to_teacher(confidences, threshold)) if r)
        if routed_texts:
            teacher.logits(routed_texts)

    seconds = _cpu_of(run)
    return {"threshold": threshold, "teacher_fraction": round(len(routed_texts) / len(texts), 6),
            "cpu_s_per_1k": round(1000.0 * seconds / len(texts), 4), "records": len(texts)}


def measured_curves(split: Split, teacher: TeacherClassifier, t_logits: np.ndarray, students: dict[str, tuple[StudentClassifier, dict]],
                    served: str, log: Callable[[str], None] = print) -> dict:
    """The Tango figure's data on ``split``: per student (its calibration ``entry``: temperature,
    threshold), the cascade, random-routing and oracle curves with measured CPU costs; then the
    ``served`` student's cascade run for real at its threshold."""
    labels = np.asarray(split.labels)
    teacher_costs = teacher_cpu_per_record(teacher, split.texts)
    t_correct = t_logits.argmax(1) == labels
    doc: dict[str, Any] = {"split": split.name, "records": len(labels), "teacher_precision": teacher.precision,
                           "teacher": {"accuracy": float(t_correct.mean()), "cpu_s_per_1k": round(1000 * float(teacher_costs.mean()), 4)},
                           "students": {}}
    for arch, (student, entry) in students.items():
        costs = RecordCosts(student_cpu_per_record(student.logits, split.texts), teacher_costs)
        s_logits = batched_logits(student.logits, split.texts)
        conf = calibrated_probs(s_logits, entry["temperature"]).max(axis=1)
        s_correct = s_logits.argmax(1) == labels
        doc["students"][arch] = {
            "accuracy": float(s_correct.mean()), "cpu_s_per_1k": round(1000 * costs.student_s, 4), "threshold": entry["threshold"],
            "cascade": [p.to_json() for p in cascade_curve(conf, s_logits.argmax(1), t_logits.argmax(1), labels, default_thresholds(conf), costs)],
            "random": [p.to_json() for p in random_curve(s_correct, t_correct, costs)],
            "oracle": [p.to_json() for p in oracle_curve(s_correct, t_correct, costs)],
        }
        log(f"measured on {split.name}: student {arch} {1000 * costs.student_s:.3f}, teacher {1000 * costs.teacher_mean_s:.3f} CPU-s per 1,000 records")
    student, entry = students[served]
    run = measure_cascade(student.logits, lambda x: calibrated_probs(x, entry["temperature"]), teacher, split.texts, entry["threshold"])
    log(f"cascade run at threshold {entry['threshold']:.4f}: {run['cpu_s_per_1k']} CPU-s per 1,000 records, {run['teacher_fraction']:.3f} routed")
    return {**doc, "served": served, "measured_cascade": run}
