import numpy as np
import pytest

from models.cascade import calibrated_probs as softmax
from models.cascade import cascade_predictions
from models.training.calibrate import (
    SweepRow,
    choose_threshold,
    fit_temperature,
    nll,
    speedup,
    sweep,
)


def test_temperature_scaling_lowers_nll_of_overconfident_logits():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3))
    logits[np.arange(400), labels] += 1.0
    logits *= 6.0  # right ~70% of the time but far too sure
    t = fit_temperature(logits, labels)
    assert t > 2.0
    assert nll(logits, labels, t) < nll(logits, labels) - 0.1
    # scaling never changes the argmax
    assert (softmax(logits, t).argmax(1) == logits.argmax(1)).all()


def test_underconfident_logits_get_temperature_below_one():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 300)
    logits = np.zeros((300, 2))
    logits[np.arange(300), labels] = 0.2  # always right, barely sure
    assert fit_temperature(logits, labels) < 1.0


def _case():
    # 10 records; the student is wrong on the 3 least confident, the teacher on record 9 only
    conf = np.array([0.30, 0.40, 0.50, 0.60, 0.70, 0.80, 0.90, 0.95, 0.97, 0.99])
    labels = np.zeros(10, dtype=int)
    student = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    teacher = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    return conf, student, teacher, labels


def test_sweep_on_constructed_case():
    conf, student, teacher, labels = _case()
    rows = sweep(conf, student, teacher, labels, [0.0, 0.45, 0.55, 1.0], student_cost=1.0, teacher_cost=9.0)
    assert [r.teacher_fraction for r in rows] == [0.0, 0.2, 0.3, 1.0]
    assert [r.accuracy for r in rows] == pytest.approx([0.7, 0.9, 1.0, 0.9])
    assert rows[0].speedup == pytest.approx(9.0)  # student only: 9 / 1
    assert rows[2].speedup == pytest.approx(9.0 / (1.0 + 0.3 * 9.0))
    assert rows[3].speedup == pytest.approx(0.9)  # everything twice is slower than teacher-only
    pred, routed = cascade_predictions(conf, student, teacher, 0.5)
    assert routed.tolist() == [True, True] + [False] * 8  # strictly below the threshold
    assert speedup(0.25, 0.01, 1.0) == pytest.approx(1.0 / 0.26)


def test_policy_picks_cheapest_threshold_within_margin():
    conf, student, teacher, labels = _case()
    thresholds = [0.0, 0.35, 0.45, 0.55, 0.65, 1.0]
    rows = sweep(conf, student, teacher, labels, thresholds, 1.0, 9.0)
    # teacher accuracy 0.9: target 0.9 - 0.3 points = 0.897 -> cheapest row with >= 0.897 is 0.45 (acc 0.9, 20%)
    choice = choose_threshold(rows, teacher_accuracy=0.9, margin=0.3)
    assert (choice.row.threshold, choice.row.teacher_fraction, choice.rule) == (0.45, 0.2, "margin")
    # a margin of 10 points accepts accuracy 0.8 -> 0.35 routes 10%
    assert choose_threshold(rows, 0.9, margin=10.0).row.threshold == 0.35
    # a demanding teacher accuracy nobody reaches except 0.55 (1.0)
    assert choose_threshold(rows, 1.0, margin=0.0).row.threshold == 0.55


def test_policy_with_teacher_budget_and_fallbacks():
    conf, student, teacher, labels = _case()
    rows = sweep(conf, student, teacher, labels, [0.0, 0.35, 0.45, 0.55, 1.0], 1.0, 9.0)
    assert choose_threshold(rows, 0.9, teacher_budget=0.25).row.threshold == 0.45  # best within 25%
    assert choose_threshold(rows, 0.9, teacher_budget=0.3).row.threshold == 0.55
    assert choose_threshold(rows, 0.9, teacher_budget=0.0).row.threshold == 0.0
    none_fit = [SweepRow(0.5, 0.5, 0.8, 1.5), SweepRow(0.9, 0.9, 0.85, 1.1)]
    choice = choose_threshold(none_fit, teacher_accuracy=0.99)
    assert choice.row.threshold == 0.9 and choice.rule.startswith("fallback")
    assert choose_threshold(none_fit, 0.99, teacher_budget=0.1).rule.startswith("fallback")
    with pytest.raises(ValueError):
        choose_threshold([], 0.9)
