"""Micro-batching with a deadline that counts from the batch's first record.

Faust's ``Stream.take(max_, within)`` starts its timer when it starts waiting, not
when the first record arrives: a record that arrives just before the timer fires is
flushed alone, and an idle stream restarts the timer on every wait. ``collect_batch``
instead blocks (without a deadline) for the first record, and then gives the batch at
most ``max_wait`` seconds more, counted from that record's arrival where it is known, so
every batch is either full or exactly as old as the wait allows. The same function batches
the student (over the Faust agent's channel, ``kafka_io.channel_events``), the merge and the teacher workers
(over ``AIOKafkaConsumer.getmany``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# fetch(timeout_s, max_records) returns up to max_records items, waiting at most
# timeout_s for the first one (None: wait as long as it takes); [] on timeout.
Fetch = Callable[[float | None, int], Awaitable[list[T]]]


def remaining(deadline: float, now: float) -> float:
    return max(0.0, deadline - now)


async def collect_batch(fetch: Fetch, max_size: int, max_wait: float, clock: Callable[[], float] | None = None,
                        arrived: Callable[[T], float] | None = None, backlog_size: int = 0) -> list[T]:
    """One batch: at most ``max_size`` items, closed ``max_wait`` s after its first item.

    The wait counts from when the first item was fetched, or, with ``arrived`` (an item's
    arrival time on ``clock``), from when it arrived: an item that queued while the previous
    batch was being processed has already waited that long, and its batch closes sooner.

    With ``backlog_size`` above ``max_size``, a full batch also takes the items already waiting
    (fetched without a wait), up to ``backlog_size`` in all: a backlog drains in larger batches,
    while below capacity, where nothing more waits, batches stay at ``max_size``. No item waits
    for this: each one taken would otherwise open the next batch.

    >>> async def fetch(timeout, max_records):  # three items ready, then nothing more
    ...     global ready
    ...     items, ready = ready[:max_records], ready[max_records:]
    ...     return items
    >>> ready = [1, 2, 3]
    >>> asyncio.run(collect_batch(fetch, max_size=2, max_wait=0.01))
    [1, 2]
    >>> asyncio.run(collect_batch(fetch, max_size=2, max_wait=0.01))  # closed by the deadline
    [3]
    >>> ready = [1, 2, 3, 4, 5]
    >>> asyncio.run(collect_batch(fetch, max_size=2, max_wait=0.01, backlog_size=4))  # a backlog: what waits, up to 4
    [1, 2, 3, 4]
    """
    if max_size < 1 or not max_wait > 0:  # also rejects NaN
        raise ValueError("max_size must be >= 1 and max_wait > 0")
    clock = clock or asyncio.get_running_loop().time
    batch: list[T] = []
    while not batch:  # the deadline starts at the first record, not at the call
        batch.extend(await fetch(None, max_size))
    deadline = (arrived(batch[0]) if arrived is not None else clock()) + max_wait
    while len(batch) < max_size:
        left = remaining(deadline, clock())
        if left == 0.0:
            break
        batch.extend(await fetch(left, max_size - len(batch)))
    if len(batch) >= max_size and backlog_size > len(batch):
        batch.extend(await fetch(0.0, backlog_size - len(batch)))  # only what already waits
    return batch


def safe_batch_size(per_record_s: float, poll_interval_s: float, ceiling: int, share: float = 0.25) -> int:
    """Largest batch whose expected model time stays within ``share`` of the poll interval."""
    if per_record_s <= 0:
        return ceiling
    return max(1, min(ceiling, int(share * poll_interval_s / per_record_s)))
