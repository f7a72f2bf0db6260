"""DigestWindow: the fixed-memory hash table behind the merge's de-duplication window.

Crafted digests put many keys on one home slot and across the table's wrap-around, the
cases where a deletion by backward shift can go wrong.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.digest_window import DigestWindow, digest


def test_digest_is_two_words_and_never_the_empty_marker():
    hi, lo = digest(b"")
    assert 0 <= hi < 2**64 and 0 < lo < 2**64 and lo & 1
    assert digest(b"tweet-1") == digest(b"tweet-1") != digest(b"tweet-2")


@pytest.mark.parametrize("window", [0, -3])
def test_window_below_one_rejected(window):
    with pytest.raises(ValueError):
        DigestWindow(window)


def test_the_table_has_at_least_twice_the_window_in_slots():
    for window in (1, 2, 3, 100, 100_000):
        table = DigestWindow(window)
        assert len(table._hi) >= 2 * window and len(table._hi) & (len(table._hi) - 1) == 0
        assert len(table._ring_hi) == window


# (home, tag): every digest's home slot is `home` (the table masks the first word), its tag tells them apart.
crafted = st.tuples(st.integers(0, 7), st.integers(0, 5)).map(lambda p: (p[0] + 1024 * p[1], 2 * p[1] + 1))


@given(st.integers(1, 5), st.lists(crafted, max_size=120))
def test_matches_a_list_model_with_colliding_and_wrapping_digests(window, keys):
    table = DigestWindow(window)
    model: list[tuple[int, int]] = []
    for key in keys:
        expected = key not in model
        if expected:
            model.append(key)
            del model[:-window]
        assert table.add(key) is expected
        assert len(table) == len(model)
        # every remembered key is still found: no deletion broke a probe sequence
        assert all(table._lo[table._find(*k)] for k in model)


def test_a_full_window_of_real_ids_forgets_exactly_the_oldest():
    table = DigestWindow(1000)
    ids = [digest(f"id-{i}".encode()) for i in range(3000)]
    assert all(table.add(k) for k in ids)
    assert len(table) == 1000
    assert not any(table.add(k) for k in ids[-1000:])
    assert all(table.add(k) for k in ids[:10])
