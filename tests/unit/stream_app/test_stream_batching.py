"""collect_batch / safe_batch_size: the deadline batcher of every stage.

The fake-clock tests drive ``collect_batch`` with a scripted source whose records
arrive at given (virtual) times, so the deadline arithmetic is checked exactly; the
queue tests run ``queue_fetch`` (a fetch over an ``asyncio.Queue``) with small real
sleeps (tolerance ~50 ms).
"""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_app.batching import Fetch, collect_batch, remaining, safe_batch_size

TOL = 0.05  # seconds of scheduling slack allowed in the real-time tests


class ScriptedSource:
    """A fake ``Fetch`` over records that arrive at fixed virtual times, with a fake clock.

    ``fetch(timeout, n)`` returns up to ``n`` records that have already arrived; if none
    has, it advances the clock to the next arrival (if within ``timeout``) or by
    ``timeout`` (returning ``[]``). ``None`` waits as long as it takes.
    """

    def __init__(self, arrivals: list[tuple[float, object]], start: float = 0.0):
        self.pending = sorted(arrivals, key=lambda a: a[0])
        self.now = start
        self.calls: list[tuple[float | None, int]] = []

    def clock(self) -> float:
        return self.now

    async def fetch(self, timeout: float | None, max_records: int) -> list:
        self.calls.append((timeout, max_records))
        ready = [item for t, item in self.pending if t <= self.now]
        if not ready:
            if not self.pending:
                if timeout is None:
                    raise AssertionError("fetch(None) with nothing left would block forever")
                self.now += timeout
                return []
            next_t = self.pending[0][0]
            if timeout is not None and next_t > self.now + timeout:
                self.now += timeout
                return []
            self.now = next_t
        taken = [(t, item) for t, item in self.pending if t <= self.now][:max_records]
        for entry in taken:
            self.pending.remove(entry)
        return [item for _, item in taken]


def run(coro):
    return asyncio.run(coro)


# --- fake clock ---------------------------------------------------------------------------


def test_deadline_counts_from_first_record_after_long_idle():
    # Idle for 1000 s, then a record; the batch must still wait max_wait after *it*.
    src = ScriptedSource([(1000.0, "a"), (1000.09, "b"), (1000.11, "c")])
    batch = run(collect_batch(src.fetch, max_size=10, max_wait=0.1, clock=src.clock))
    assert batch == ["a", "b"]
    assert src.now == pytest.approx(1000.1)
    # the first wait has no deadline; the next one is exactly max_wait after the first record
    assert src.calls[0] == (None, 10)
    assert src.calls[1][0] == pytest.approx(0.1)
    assert src.pending == [(1000.11, "c")]  # left for the next batch


def test_with_arrival_times_the_deadline_counts_from_the_first_arrival():
    # the batcher was busy until t=10.0; "a" arrived at 9.95 and has already waited 50 ms of its 100
    src = ScriptedSource([(9.95, (9.95, "a")), (9.99, (9.99, "b")), (10.04, (10.04, "c")), (10.06, (10.06, "d"))], start=10.0)
    batch = run(collect_batch(src.fetch, max_size=10, max_wait=0.1, clock=src.clock, arrived=lambda item: item[0]))
    assert [item for _, item in batch] == ["a", "b", "c"]
    assert src.now == pytest.approx(10.05)  # closed 100 ms after "a" arrived, not 100 ms after it was taken
    assert src.calls[1][0] == pytest.approx(0.05)


def test_a_first_item_older_than_the_wait_closes_the_batch_with_what_is_there():
    src = ScriptedSource([(1.0, (1.0, "a")), (1.5, (1.5, "b")), (2.05, (2.05, "c"))], start=2.0)
    batch = run(collect_batch(src.fetch, max_size=10, max_wait=0.1, clock=src.clock, arrived=lambda item: item[0]))
    assert [item for _, item in batch] == ["a", "b"]
    assert len(src.calls) == 1 and src.now == 2.0  # no waiting at all


def test_later_fetches_only_get_the_time_left():
    src = ScriptedSource([(5.0, 1), (5.03, 2), (5.07, 3)])
    batch = run(collect_batch(src.fetch, max_size=10, max_wait=0.1, clock=src.clock))
    assert batch == [1, 2, 3]
    timeouts = [t for t, _ in src.calls[1:]]
    assert timeouts[:3] == pytest.approx([0.1, 0.07, 0.03])
    assert all(t > 0 for t in timeouts)  # never asks with a zero/negative timeout
    assert src.now == pytest.approx(5.1)


def test_returns_immediately_when_full():
    src = ScriptedSource([(0.0, i) for i in range(5)])
    batch = run(collect_batch(src.fetch, max_size=3, max_wait=10.0, clock=src.clock))
    assert batch == [0, 1, 2]
    assert len(src.calls) == 1  # full after the first fetch: no waiting for the deadline
    assert src.now == 0.0


def test_fills_up_across_fetches_and_stops_when_full():
    src = ScriptedSource([(0.0, "a"), (0.01, "b"), (0.02, "c"), (0.03, "d")])
    batch = run(collect_batch(src.fetch, max_size=3, max_wait=10.0, clock=src.clock))
    assert batch == ["a", "b", "c"]
    assert src.now == pytest.approx(0.02)  # returned on filling, long before the deadline
    # each fetch asks only for the room left in the batch
    assert [n for _, n in src.calls] == [3, 2, 1]


@pytest.mark.parametrize("max_size", [1, 2, 7])
def test_never_more_than_max_size(max_size):
    src = ScriptedSource([(0.001 * i, i) for i in range(50)])
    batch = run(collect_batch(src.fetch, max_size=max_size, max_wait=1.0, clock=src.clock))
    assert len(batch) == max_size
    assert batch == list(range(max_size))


def test_first_fetch_retried_until_something_arrives():
    calls = []

    async def fetch(timeout, n):
        calls.append(timeout)
        return [] if len(calls) < 3 else ["x"]  # spurious empty returns while waiting

    t = [0.0]
    batch = run(collect_batch(fetch, max_size=1, max_wait=0.5, clock=lambda: t[0]))
    assert batch == ["x"]
    assert calls == [None, None, None]


@pytest.mark.parametrize("max_wait", [0, 0.0, -0.1, -5])
def test_rejects_non_positive_wait(max_wait):
    async def fetch(timeout, n):  # pragma: no cover - must not be called
        raise AssertionError("fetch called")

    with pytest.raises(ValueError):
        run(collect_batch(fetch, max_size=5, max_wait=max_wait))


@pytest.mark.parametrize("max_size", [0, -1])
def test_rejects_max_size_below_one(max_size):
    async def fetch(timeout, n):  # pragma: no cover - must not be called
        raise AssertionError("fetch called")

    with pytest.raises(ValueError):
        run(collect_batch(fetch, max_size=max_size, max_wait=0.1))


def test_remaining_never_negative():
    assert remaining(10.0, 9.5) == 0.5
    assert remaining(10.0, 10.0) == 0.0
    assert remaining(10.0, 11.0) == 0.0


# --- real asyncio.Queue -------------------------------------------------------------------


def queue_fetch(queue: asyncio.Queue) -> Fetch:
    """A ``Fetch`` over an asyncio queue: ``collect_batch`` against real time."""

    async def fetch(timeout: float | None, max_records: int) -> list:
        try:
            first = await (queue.get() if timeout is None else asyncio.wait_for(queue.get(), timeout))
        except asyncio.TimeoutError:
            return []
        items = [first]
        while len(items) < max_records and not queue.empty():
            items.append(queue.get_nowait())
        return items

    return fetch


def test_queue_deadline_counts_from_first_record_real_time():
    # 200 ms idle before the first record; a timer started at the call (Faust's take())
    # would close the batch at 300 ms with one record. Ours closes 300 ms after the first
    # record, so the second (at +100 ms) is included.
    wait = 0.3

    async def main():
        q: asyncio.Queue = asyncio.Queue()
        marks = {}

        async def producer():
            await asyncio.sleep(0.2)
            marks["first"] = time.monotonic()
            await q.put("a")
            await asyncio.sleep(0.1)
            await q.put("b")

        task = asyncio.ensure_future(producer())
        started = time.monotonic()
        batch = await collect_batch(queue_fetch(q), max_size=100, max_wait=wait)
        done = time.monotonic()
        await task
        return batch, started, marks["first"], done

    batch, started, first, done = run(main())
    assert batch == ["a", "b"]
    assert done - first == pytest.approx(wait, abs=TOL)
    assert done - started >= 0.2 + wait - 0.01


def test_queue_record_after_deadline_waits_for_next_batch():
    async def main():
        q: asyncio.Queue = asyncio.Queue()

        async def producer():
            await q.put("a")
            await asyncio.sleep(0.25)
            await q.put("late")

        task = asyncio.ensure_future(producer())
        started = time.monotonic()
        first = await collect_batch(queue_fetch(q), max_size=100, max_wait=0.1)
        elapsed = time.monotonic() - started
        second = await collect_batch(queue_fetch(q), max_size=100, max_wait=0.05)
        await task
        return first, elapsed, second

    first, elapsed, second = run(main())
    assert first == ["a"]
    assert elapsed == pytest.approx(0.1, abs=TOL)
    assert second == ["late"]  # nothing lost at the deadline


def test_queue_returns_immediately_when_full():
    async def main():
        q: asyncio.Queue = asyncio.Queue()
        for i in range(8):
            q.put_nowait(i)
        started = time.monotonic()
        batch = await collect_batch(queue_fetch(q), max_size=5, max_wait=5.0)
        return batch, time.monotonic() - started, q.qsize()

    batch, elapsed, left = run(main())
    assert batch == [0, 1, 2, 3, 4]
    assert elapsed < TOL
    assert left == 3


def test_queue_fills_during_wait_and_returns_on_full():
    async def main():
        q: asyncio.Queue = asyncio.Queue()

        async def producer():
            for i in range(4):
                await q.put(i)
                await asyncio.sleep(0.02)

        task = asyncio.ensure_future(producer())
        started = time.monotonic()
        batch = await collect_batch(queue_fetch(q), max_size=4, max_wait=5.0)
        elapsed = time.monotonic() - started
        await task
        return batch, elapsed

    batch, elapsed = run(main())
    assert batch == [0, 1, 2, 3]
    assert elapsed < 0.06 + TOL  # long before the 5 s deadline


# --- safe_batch_size ----------------------------------------------------------------------


def test_safe_batch_size_unknown_cost_uses_ceiling():
    assert safe_batch_size(0.0, 300.0, 64) == 64
    assert safe_batch_size(-1.0, 300.0, 64) == 64


def test_safe_batch_size_caps_by_ceiling():
    assert safe_batch_size(0.001, 300.0, 64) == 64  # 75_000 would fit


def test_safe_batch_size_caps_by_share_of_poll_interval():
    # a quarter of 300 s is 75 s; at 2 s per record that is 37 records
    assert safe_batch_size(2.0, 300.0, 64) == 37
    assert safe_batch_size(2.0, 300.0, 64, share=0.5) == 64  # 75 fit, the ceiling wins
    assert safe_batch_size(2.0, 300.0, 1000, share=0.5) == 75


def test_safe_batch_size_never_below_one():
    assert safe_batch_size(1000.0, 300.0, 64) == 1
    assert safe_batch_size(1e9, 1.0, 64) == 1


@given(
    per_record=st.floats(min_value=1e-6, max_value=1e4),
    poll=st.floats(min_value=0.1, max_value=3600.0),
    ceiling=st.integers(min_value=1, max_value=10_000),
    share=st.floats(min_value=0.01, max_value=1.0),
)
def test_safe_batch_size_bounds(per_record, poll, ceiling, share):
    size = safe_batch_size(per_record, poll, ceiling, share)
    assert isinstance(size, int)
    assert 1 <= size <= ceiling
    if size > 1:  # a batch of more than one record fits its share of the poll interval
        assert size * per_record <= share * poll * (1 + 1e-9)
