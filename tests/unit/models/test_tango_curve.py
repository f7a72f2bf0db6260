"""The Tango figure's curves: measured costs, random routing and the oracle."""

import numpy as np
import pytest

from models.training.tango_curve import (
    RecordCosts,
    cascade_curve,
    oracle_curve,
    random_curve,
)

RNG = np.random.default_rng(3)
N = 400
LABELS = RNG.integers(0, 3, N)
STUDENT_PRED = np.where(RNG.random(N) < 0.8, LABELS, (LABELS + 1) % 3)
TEACHER_PRED = np.where(RNG.random(N) < 0.93, LABELS, (LABELS + 2) % 3)
CONFIDENCE = np.where(STUDENT_PRED == LABELS, RNG.uniform(0.5, 1.0, N), RNG.uniform(0.3, 0.8, N))
COSTS = RecordCosts(student_s=0.0002, teacher_s=RNG.uniform(0.004, 0.012, N))


def test_cascade_curve_runs_from_the_student_to_the_teacher():
    points = cascade_curve(CONFIDENCE, STUDENT_PRED, TEACHER_PRED, LABELS, [0.0, 0.7, 1.01], COSTS)
    assert points[0].teacher_fraction == 0 and points[0].accuracy == pytest.approx((STUDENT_PRED == LABELS).mean())
    assert points[0].cpu_s_per_1k == pytest.approx(0.2)
    assert points[-1].teacher_fraction == 1 and points[-1].accuracy == pytest.approx((TEACHER_PRED == LABELS).mean())
    assert points[-1].cpu_s_per_1k == pytest.approx(1000 * (0.0002 + COSTS.teacher_s.mean()))
    # the routed records' own measured costs, not the mean: records routed at 0.7 are those below it
    routed = CONFIDENCE < 0.7
    assert points[1].cpu_s_per_1k == pytest.approx(1000 * (0.0002 + COSTS.teacher_s[routed].sum() / N))


def test_random_routing_is_the_straight_line_between_student_and_teacher():
    s_ok, t_ok = STUDENT_PRED == LABELS, TEACHER_PRED == LABELS
    points = random_curve(s_ok, t_ok, COSTS, points=11)
    assert points[0].accuracy == pytest.approx(s_ok.mean()) and points[-1].accuracy == pytest.approx(t_ok.mean())
    assert np.allclose(np.diff([p.accuracy for p in points]), (t_ok.mean() - s_ok.mean()) / 10)


def test_the_oracle_bounds_every_router_at_each_fraction():
    s_ok, t_ok = STUDENT_PRED == LABELS, TEACHER_PRED == LABELS
    oracle = oracle_curve(s_ok, t_ok, COSTS)
    assert oracle[-1].teacher_fraction == pytest.approx(1 - s_ok.mean())
    assert oracle[-1].accuracy == pytest.approx((s_ok | t_ok).mean())
    best = max(p.accuracy for p in oracle)
    for point in cascade_curve(CONFIDENCE, STUDENT_PRED, TEACHER_PRED, LABELS, np.linspace(0, 1, 21), COSTS):
        assert point.accuracy <= best + 1e-12
    assert all(b.accuracy >= a.accuracy for a, b in zip(oracle, oracle[1:]))
