"""Faust's per-record delivery without tasks: the same outcome as mode's ``wait_first`` in every case
the fetch loop meets (the callback finishes at once, later, never, or raises)."""

from __future__ import annotations

import asyncio

import pytest
from mode import Service

from stream_app.kafka_io.eager_delivery import install_eager_delivery


class FakeConsumer(Service):
    """What the fetch loop's call needs of Faust's consumer: a mode Service with ``suspend_flow``."""

    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


def eager_consumer() -> FakeConsumer:
    consumer = FakeConsumer()
    install_eager_delivery(consumer)
    return consumer


def deliver(consumer: FakeConsumer, callback):
    """The fetch loop's call, as Faust's ``Consumer._drain_messages`` makes it."""
    return consumer.wait_first(callback, consumer.suspend_flow.wait())


def run(scenario):
    return asyncio.run(scenario())


def test_a_callback_that_does_not_suspend_makes_no_task():
    async def scenario():
        consumer = eager_consumer()
        delivered = []

        async def callback():
            delivered.append("event")
            return 7

        before = len(asyncio.all_tasks())
        results = await deliver(consumer, callback())
        return delivered, results, len(asyncio.all_tasks()) - before

    delivered, results, new_tasks = run(scenario)
    assert delivered == ["event"] and results.results == [7] and not results.stopped
    assert new_tasks == 0


def test_a_callback_that_suspends_finishes_as_before():
    async def scenario():
        consumer = eager_consumer()
        steps = []

        async def callback():
            steps.append("before")
            await asyncio.sleep(0.01)
            await asyncio.sleep(0)  # a bare yield, too
            steps.append("after")
            return "done"

        results = await deliver(consumer, callback())
        return steps, results

    steps, results = run(scenario)
    assert steps == ["before", "after"] and results.results == ["done"]


def test_a_suspended_callback_is_cancelled_when_the_flow_is_suspended():
    async def scenario():
        consumer = eager_consumer()
        cancelled = asyncio.Event()
        never = asyncio.get_running_loop().create_future()

        async def callback():
            try:
                await never  # a stream queue that never drains
            except asyncio.CancelledError:
                cancelled.set()
                raise

        asyncio.get_running_loop().call_later(0.02, consumer.suspend_flow.set)
        await asyncio.wait_for(deliver(consumer, callback()), 1.0)
        await asyncio.wait_for(cancelled.wait(), 1.0)
        return never.cancelled()

    assert run(scenario)  # the future it waited on is cancelled too, as a task's cancel does


@pytest.mark.parametrize("suspends_first", [False, True])
def test_a_callback_error_reaches_the_fetch_loop(suspends_first):
    async def scenario():
        consumer = eager_consumer()

        async def callback():
            if suspends_first:
                await asyncio.sleep(0.01)
            raise ValueError("undecodable")

        await deliver(consumer, callback())

    with pytest.raises(ValueError, match="undecodable"):
        run(scenario)


def test_other_calls_and_a_stopped_consumer_go_to_mode():
    async def scenario():
        consumer = eager_consumer()
        with_timeout = await consumer.wait_first(asyncio.sleep(10), timeout=0.01)  # times out: nothing won
        consumer._stopped.set()

        async def callback():
            return 1

        stopped = await deliver(consumer, callback())
        return with_timeout, stopped

    with_timeout, stopped = run(scenario)
    assert with_timeout.results == [] and stopped.stopped  # mode's own answers
