"""Calibration of the cascade: student temperature, threshold sweep and the routing policy.

The pipeline computes ``confidence = max softmax(student_logits / temperature)`` and sends
a record to the teacher when ``confidence < threshold``; everything here uses exactly
that rule (``models.cascade``, shared with the stream worker). ``sweep`` and ``choose_threshold`` are pure functions of arrays.

Speed-up over running the teacher on everything, from measured per-record costs:
``teacher_cost / (student_cost + fraction * teacher_cost)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from models.cascade import cascade_predictions


def nll(logits: np.ndarray, labels: Sequence[int], temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    logp = F.log_softmax(torch.as_tensor(np.asarray(logits), dtype=torch.float64) / temperature, dim=1)
    return float(F.nll_loss(logp, torch.as_tensor(np.asarray(labels), dtype=torch.long)))


def fit_temperature(logits: np.ndarray, labels: Sequence[int], max_iter: int = 100) -> float:
    """Temperature scaling (Guo et al. 2017): the T > 0 minimising validation NLL, by LBFGS on log T."""
    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    t = float(log_t.detach().exp().clamp(0.05, 20.0))
    return t if nll(logits, labels, t) <= nll(logits, labels, 1.0) else 1.0


def speedup(fraction: float, student_cost: float, teacher_cost: float) -> float:
    return teacher_cost / (student_cost + fraction * teacher_cost)


@dataclass(frozen=True)
class SweepRow:
    threshold: float
    teacher_fraction: float
    accuracy: float
    speedup: float

    def to_json(self) -> dict:
        return {k: round(v, 6) for k, v in asdict(self).items()}


def default_thresholds(confidences: np.ndarray, points: int = 101) -> list[float]:
    """Candidate thresholds: 0 (nothing routed), quantiles of the confidences, and a grid."""
    conf = np.asarray(confidences, dtype=np.float64)
    grid = set(np.round(np.linspace(0.0, 1.0, points), 6).tolist())
    if len(conf):
        grid |= set(np.round(np.quantile(conf, np.linspace(0.0, 1.0, points)), 6).tolist())
    return sorted(t for t in grid if 0.0 <= t <= 1.0)


def sweep(
    confidences: np.ndarray,
    student_pred: np.ndarray,
    teacher_pred: np.ndarray,
    labels: np.ndarray,
    thresholds: Sequence[float],
    student_cost: float,
    teacher_cost: float,
) -> list[SweepRow]:
    """For each threshold: fraction routed to the teacher, cascade accuracy, expected speed-up."""
    labels = np.asarray(labels)
    rows = []
    for t in thresholds:
        pred, routed = cascade_predictions(confidences, student_pred, teacher_pred, t)
        fraction = float(routed.mean()) if len(labels) else 0.0
        acc = float((pred == labels).mean()) if len(labels) else 0.0
        rows.append(SweepRow(float(t), fraction, acc, speedup(fraction, student_cost, teacher_cost)))
    return rows


@dataclass(frozen=True)
class Choice:
    row: SweepRow
    rule: str  # "margin", "budget" or "fallback: ..." when no threshold met the rule


def choose_threshold(rows: Sequence[SweepRow], teacher_accuracy: float, margin: float = 0.3, teacher_budget: float | None = None) -> Choice:
    """The routing policy.

    * Without a budget: the cheapest threshold (lowest teacher fraction; then the lowest
      threshold) whose accuracy is at least ``teacher_accuracy - margin / 100``
      (``margin`` in accuracy points, accuracies as fractions). If none qualifies, the
      most accurate threshold.
    * With ``teacher_budget`` (the largest fraction that may go to the teacher): the most
      accurate threshold within the budget (ties: the cheapest). If none fits, the cheapest.

    >>> rows = [SweepRow(0.0, 0.0, 0.90, 9.0), SweepRow(0.6, 0.1, 0.93, 5.0), SweepRow(0.9, 0.5, 0.94, 2.0)]
    >>> choose_threshold(rows, teacher_accuracy=0.94, margin=1.0).row.threshold  # within 1 point, cheapest
    0.6
    >>> choose_threshold(rows, teacher_accuracy=0.94, teacher_budget=0.05).row.threshold
    0.0
    """
    if not rows:
        raise ValueError("empty sweep")
    cheapest_first = sorted(rows, key=lambda r: (r.teacher_fraction, r.threshold))
    if teacher_budget is not None:
        within = [r for r in cheapest_first if r.teacher_fraction <= teacher_budget + 1e-12]
        if not within:
            return Choice(cheapest_first[0], "fallback: no threshold within the teacher budget; cheapest")
        best = max(within, key=lambda r: (r.accuracy, -r.teacher_fraction, -r.threshold))
        return Choice(best, "budget")
    target = teacher_accuracy - margin / 100.0
    for row in cheapest_first:
        if row.accuracy >= target - 1e-12:
            return Choice(row, "margin")
    best = max(rows, key=lambda r: (r.accuracy, -r.teacher_fraction))
    return Choice(best, "fallback: no threshold within the margin; most accurate")


def time_per_record(fn: Callable[[list[str]], object], texts: Sequence[str], batch_size: int = 64, repeats: int = 5) -> float:
    """Seconds per record of ``fn`` on ``texts`` in batches: the best of ``repeats`` passes after
    a warm-up, so that other work on the machine inflates it as little as possible."""
    texts = list(texts)
    if not texts:
        return 0.0
    fn(texts[:batch_size])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, len(texts), batch_size):
            fn(texts[start : start + batch_size])
        best = min(best, time.perf_counter() - started)
    return best / len(texts)
