"""RecentIds: bounded, per-partition memory of result ids for the merge's de-duplication."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.merge import RecentIds


def test_first_time_then_repeat():
    recent = RecentIds(10)
    assert recent.first_time(0, b"a") is True
    assert recent.first_time(0, b"a") is False
    assert recent.first_time(0, b"a") is False
    assert recent.first_time(0, b"b") is True
    assert len(recent) == 2


def test_partitions_are_independent():
    recent = RecentIds(10)
    assert recent.first_time(0, b"a") is True
    assert recent.first_time(1, b"a") is True  # same id, other partition
    assert recent.first_time(0, b"a") is False
    assert recent.first_time(1, b"a") is False
    assert len(recent) == 2


def test_oldest_forgotten_after_window_plus_one():
    window = 5
    recent = RecentIds(window)
    ids = [f"id{i}".encode() for i in range(window + 1)]
    for key in ids:
        assert recent.first_time(0, key) is True
    assert len(recent) == window
    # the oldest was evicted by the (window+1)-th id; the others are still remembered
    for key in ids[1:]:
        assert recent.first_time(0, key) is False
    assert recent.first_time(0, ids[0]) is True


def test_window_of_exactly_window_ids_remembers_all():
    recent = RecentIds(3)
    for key in (b"a", b"b", b"c"):
        recent.first_time(0, key)
    assert [recent.first_time(0, k) for k in (b"a", b"b", b"c")] == [False, False, False]


def test_eviction_in_one_partition_does_not_touch_another():
    recent = RecentIds(2)
    recent.first_time(1, b"keep")
    for i in range(10):
        recent.first_time(0, str(i).encode())
    assert recent.first_time(1, b"keep") is False


def test_len_bounded_by_partitions_times_window():
    window, partitions = 7, 4
    recent = RecentIds(window)
    for i in range(1000):
        recent.first_time(i % partitions, f"k{i}".encode())
        assert len(recent) <= partitions * window
    assert len(recent) == partitions * window


@pytest.mark.parametrize("window", [0, -1, -100])
def test_window_below_one_rejected(window):
    with pytest.raises(ValueError):
        RecentIds(window)


def test_window_of_one():
    recent = RecentIds(1)
    assert recent.first_time(0, b"a") is True
    assert recent.first_time(0, b"a") is False
    assert recent.first_time(0, b"b") is True
    assert recent.first_time(0, b"a") is True
    assert len(recent) == 1


@given(
    st.integers(1, 6),
    st.lists(st.tuples(st.integers(0, 3), st.sampled_from([b"a", b"b", b"c", b"d", b"e", b"f", b"g", b"h"])), max_size=80),
)
def test_matches_reference_model(window, events):
    """Against a simple list model: an id is new unless it is among the partition's last
    ``window`` distinct first deliveries (a repeat does not refresh it)."""
    recent = RecentIds(window)
    model: dict[int, list[bytes]] = {}
    for partition, key in events:
        seen = model.setdefault(partition, [])
        expected = key not in seen
        if expected:
            seen.append(key)
            del seen[:-window]
        assert recent.first_time(partition, key) is expected
        assert len(recent) == sum(len(s) for s in model.values())
        assert len(recent) <= 4 * window


def test_a_repeat_does_not_extend_an_ids_stay():
    recent = RecentIds(2)
    recent.first_time(0, b"a")
    recent.first_time(0, b"b")
    assert recent.first_time(0, b"a") is False  # still within the window: not refreshed by this repeat
    recent.first_time(0, b"c")  # the third distinct id evicts the first one delivered
    assert recent.first_time(0, b"a") is True


def test_remember_then_first_time_sees_the_restored_ids():
    recent = RecentIds(3)
    recent.remember(0, [b"old", b"x", b"y", b"z"])  # only the last 3 fit
    assert [recent.first_time(0, k) for k in (b"x", b"y", b"z")] == [False, False, False]
    assert recent.first_time(0, b"old") is True
    recent.forget(0)
    assert recent.partitions() == set() and len(recent) == 0
