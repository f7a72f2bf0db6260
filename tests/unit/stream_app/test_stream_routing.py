"""calibrated_probs (temperature-scaled softmax) and route (the cascade's threshold rule)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from models.cascade import calibrated_probs, route

logit_arrays = hnp.arrays(
    np.float64,
    shape=st.tuples(st.integers(1, 8), st.integers(2, 6)),
    elements=st.floats(-50.0, 50.0, allow_nan=False, allow_infinity=False),
)


def test_rows_sum_to_one_and_match_softmax():
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [-4.0, 10.0, 2.5]])
    probs = calibrated_probs(logits, 1.0)
    assert probs.shape == logits.shape
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-12)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probs, expected, rtol=1e-12)
    np.testing.assert_allclose(probs[1], [1 / 3] * 3)


def test_temperature_divides_logits():
    logits = np.array([[1.0, 2.0, 4.0]])
    np.testing.assert_allclose(calibrated_probs(logits, 2.0), calibrated_probs(logits / 2.0, 1.0), rtol=1e-12)


@given(logit_arrays)
def test_rows_sum_to_one_property(logits):
    for temperature in (0.5, 1.0, 3.0):
        probs = calibrated_probs(logits, temperature)
        assert np.all(probs >= 0) and np.all(probs <= 1)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-9)


def test_temperature_above_one_flattens():
    logits = np.array([[2.0, 0.5, -1.0], [5.0, 1.0, 0.0]])
    base = calibrated_probs(logits, 1.0).max(axis=1)
    warm = calibrated_probs(logits, 2.0).max(axis=1)
    hot = calibrated_probs(logits, 10.0).max(axis=1)
    assert np.all(warm < base)
    assert np.all(hot < warm)
    assert np.all(calibrated_probs(logits, 0.5).max(axis=1) > base)  # below one sharpens
    # the argmax (the label) never changes with temperature
    assert (calibrated_probs(logits, 10.0).argmax(axis=1) == logits.argmax(axis=1)).all()


@given(logit_arrays, st.floats(1.01, 20.0))
def test_temperature_above_one_never_sharpens(logits, temperature):
    base = calibrated_probs(logits, 1.0).max(axis=1)
    flat = calibrated_probs(logits, temperature).max(axis=1)
    assert np.all(flat <= base + 1e-12)


@given(logit_arrays, st.lists(st.floats(-1e3, 1e3), min_size=8, max_size=8))
def test_invariant_to_constant_per_row(logits, shifts):
    shift = np.array(shifts[: logits.shape[0]])[:, None]
    np.testing.assert_allclose(calibrated_probs(logits + shift, 1.3), calibrated_probs(logits, 1.3), atol=1e-9)


@pytest.mark.parametrize("scale", [1e3, 1e6, 1e30, 1e300])
def test_stable_for_huge_logits(scale):
    logits = np.array([[scale, 0.0, -scale], [scale, scale, 0.0], [-scale, -scale, -scale]])
    probs = calibrated_probs(logits, 1.0)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs[0], [1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(probs[1], [0.5, 0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(probs[2], [1 / 3] * 3, atol=1e-12)


def test_stable_for_float32_extremes_and_low_temperature():
    big = np.finfo(np.float32).max
    logits = np.array([[big, 0.0, -big]], dtype=np.float32)
    probs = calibrated_probs(logits, 0.1)
    assert np.isfinite(probs).all()
    np.testing.assert_allclose(probs[0], [1.0, 0.0, 0.0])


def test_does_not_modify_input():
    logits = np.array([[3.0, 1.0, 0.0]])
    copy = logits.copy()
    calibrated_probs(logits, 2.0)
    np.testing.assert_array_equal(logits, copy)


# --- route ---------------------------------------------------------------------------------


def test_route_labels_and_confidences():
    probs = np.array([[0.2, 0.7, 0.1], [0.5, 0.2, 0.3], [0.1, 0.1, 0.8]])
    r = route(probs, 0.6)
    assert r.label_ids.tolist() == [1, 0, 2]
    np.testing.assert_allclose(r.confidences, [0.7, 0.5, 0.8])
    assert r.to_teacher.tolist() == [False, True, False]
    assert r.teacher_count == 1
    assert isinstance(r.teacher_count, int)


def test_confidence_exactly_at_threshold_stays_with_student():
    probs = np.array([[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]])
    r = route(probs, 0.5)
    assert r.to_teacher.tolist() == [False, False]
    assert r.teacher_count == 0


def test_confidence_just_below_threshold_goes_to_teacher():
    below = np.nextafter(0.5, 0.0)
    probs = np.array([[below, (1 - below) / 2, (1 - below) / 2]])
    r = route(probs, 0.5)
    assert r.confidences[0] == below
    assert r.to_teacher.tolist() == [True]


def test_threshold_one_sends_everything_uncertain_to_teacher():
    probs = np.array([[1.0, 0.0, 0.0], [0.999999, 1e-6, 0.0], [0.4, 0.3, 0.3], [0.0, 0.0, 1.0]])
    r = route(probs, 1.0)
    assert r.to_teacher.tolist() == [False, True, True, False]
    assert r.teacher_count == 2


def test_threshold_zero_sends_nothing_to_teacher():
    probs = calibrated_probs(np.random.default_rng(0).normal(size=(200, 5)), 1.0)
    r = route(probs, 0.0)
    assert r.teacher_count == 0
    assert not r.to_teacher.any()


def test_negative_threshold_sends_nothing_to_teacher():
    probs = np.full((3, 4), 0.25)
    assert route(probs, -1.0).teacher_count == 0


@given(logit_arrays, st.floats(0.0, 1.0))
def test_route_agrees_with_threshold_rule(logits, threshold):
    probs = calibrated_probs(logits, 1.0)
    r = route(probs, threshold)
    assert r.label_ids.tolist() == probs.argmax(axis=1).tolist()
    np.testing.assert_array_equal(r.confidences, probs.max(axis=1))
    np.testing.assert_array_equal(r.to_teacher, probs.max(axis=1) < threshold)
    assert r.teacher_count == int((probs.max(axis=1) < threshold).sum())


def test_route_empty_batch():
    r = route(np.zeros((0, 3)), 0.5)
    assert r.label_ids.shape == (0,)
    assert r.teacher_count == 0
