"""Taking an assignment: nothing is returned meanwhile, committed partitions resume where they were,
never-committed ones where ``start_of_uncommitted`` says (the merge: where the app group left them)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from stream_app.kafka_io.group_consumer import take_assignment

A, B, C = (TopicPartition("results.student", p) for p in range(3))


class FakeConsumer:
    def __init__(self, committed: dict[TopicPartition, int | None]):
        self.committed, self.trace = committed, []

    def pause(self, *tps):
        self.trace.append(("pause", set(tps)))

    def resume(self, *tps):
        self.trace.append(("resume", set(tps)))

    async def seek_to_committed(self, *tps):
        self.trace.append(("seek_to_committed", set(tps)))
        return {tp: self.committed.get(tp) for tp in tps}

    def seek(self, tp, offset):
        self.trace.append(("seek", tp, offset))

    async def seek_to_beginning(self, *tps):
        self.trace.append(("seek_to_beginning", set(tps)))


def test_never_committed_partitions_start_where_the_fallback_says_else_at_the_beginning():
    consumer = FakeConsumer({A: 40, B: None, C: None})
    asked = []

    async def app_group_left(tps):
        asked.append(set(tps))
        return {B: 17}

    asyncio.run(take_assignment(consumer, {A, B, C}, None, 1, app_group_left))
    assert asked == [{B, C}]
    assert consumer.trace == [("pause", {A, B, C}), ("seek_to_committed", {A, B, C}), ("seek", B, 17),
                              ("seek_to_beginning", {C}), ("resume", {A, B, C})]


def test_without_a_fallback_never_committed_partitions_start_at_the_beginning_and_resume_even_on_error():
    consumer = FakeConsumer({A: None})
    asyncio.run(take_assignment(consumer, {A}, None, 1))
    assert consumer.trace[-2:] == [("seek_to_beginning", {A}), ("resume", {A})]

    async def broken(tps):
        raise RuntimeError("no broker")

    failing = FakeConsumer({A: None})
    with pytest.raises(RuntimeError, match="no broker"):
        asyncio.run(take_assignment(failing, {A}, None, 1, broken))
    assert failing.trace[-1] == ("resume", {A})


def test_written_at_is_the_records_age_on_the_loop_clock_and_never_in_the_future():
    import time

    from stream_app.kafka_io.group_consumer import written_at
    from stream_app.records import Incoming, Source

    def stamped(timestamp: float):
        return (1, Incoming(Source("results.student", 0, 0), b"k", b"v", timestamp, ()))

    async def scenario():
        now = asyncio.get_running_loop().time()
        return now, written_at(stamped(time.time() - 0.3)), written_at(stamped(time.time() + 60.0))

    now, old, ahead = asyncio.run(scenario())
    assert now - 0.3 - 0.05 < old <= now - 0.3 + 0.05  # written 300 ms ago
    assert ahead == pytest.approx(now, abs=0.05)  # a producer clock ahead of ours counts as now
