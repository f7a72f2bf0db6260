"""``ChannelEvents``: a Faust agent's events taken off its channel in bulk, as the stream iterator
would hand them over (stale generations and events during a suspended flow dropped, acking topics
tracked), bounded, and stamped with one clock reading per wake."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from stream_app.kafka_io.channel_events import ChannelEvents
from tests.unit.stream_app.faust_fakes import FakeAgentStream, drained, event


def offsets(stamped) -> list[int]:
    return [e.message.offset for _, e in stamped]


def test_every_waiting_event_is_taken_in_one_wake_and_stamped_with_its_arrival():
    async def scenario():
        stream, ticks = FakeAgentStream(), itertools.count(100)
        events = ChannelEvents(stream, limit=10, clock=lambda: next(ticks))
        for offset in range(4):
            stream.channel.queue.put_nowait(event(offset))
        task = await drained(events)
        first, rest = await events.fetch(None, 3), await events.fetch(None, 3)
        task.cancel()
        return first, rest, stream.tracked

    first, rest, tracked = asyncio.run(scenario())
    assert offsets(first) == [0, 1, 2] and offsets(rest) == [3]
    assert {stamp for stamp, _ in first + rest} == {100}  # one clock reading for the whole wake
    assert tracked == [0, 1, 2, 3]


def test_stale_generations_and_suspended_flow_are_dropped_and_only_acking_topics_tracked():
    async def scenario():
        stream = FakeAgentStream(generation=2)
        events = ChannelEvents(stream, limit=10, clock=lambda: 0.0)
        already = event(3, generation=2)
        already.message.tracked = True
        for e in (event(0, generation=1), event(1, generation=2), event(2, generation=2, topic="other"), already):
            stream.channel.queue.put_nowait(e)
        task = await drained(events)
        taken = await events.fetch(None, 10)
        stream.active = False  # a rebalance: Faust's flow control is suspended
        stream.channel.queue.put_nowait(event(4, generation=2))
        await asyncio.sleep(0)
        during = await events.fetch(0.02, 10)
        task.cancel()
        return taken, during, stream.tracked

    taken, during, tracked = asyncio.run(scenario())
    assert offsets(taken) == [1, 2, 3]  # offset 0: an earlier generation, never handed over
    assert during == []
    assert tracked == [1]  # 2: a topic without acks; 3: tracked before


def test_at_most_limit_events_wait_and_the_rest_stay_on_the_channel():
    async def scenario():
        stream = FakeAgentStream()
        events = ChannelEvents(stream, limit=3, clock=lambda: 0.0)
        for offset in range(5):
            stream.channel.queue.put_nowait(event(offset))
        task = await drained(events)
        left_on_channel = stream.channel.queue.qsize()
        first = await events.fetch(None, 10)
        for _ in range(3):
            await asyncio.sleep(0)
        second = await events.fetch(None, 10)
        task.cancel()
        return left_on_channel, first, second

    left_on_channel, first, second = asyncio.run(scenario())
    assert left_on_channel == 2  # backpressure: the channel's own bounded queue holds them
    assert offsets(first) == [0, 1, 2] and offsets(second) == [3, 4]


def test_fetch_times_out_empty_and_drop_empties_the_wait():
    async def scenario():
        stream = FakeAgentStream()
        events = ChannelEvents(stream, limit=10, clock=lambda: 0.0)
        nothing = await events.fetch(0.02, 10)
        stream.channel.queue.put_nowait(event(0))
        stream.channel.queue.put_nowait(event(1))
        task = await drained(events)
        dropped = events.drop()
        after = await events.fetch(0.02, 10)
        task.cancel()
        return nothing, dropped, after

    assert asyncio.run(scenario()) == ([], 2, [])


def test_an_error_thrown_into_the_channel_reaches_the_waiting_batch():
    async def scenario():
        stream = FakeAgentStream()

        async def thrown():
            await asyncio.sleep(0.01)
            raise RuntimeError("the consumer failed")

        stream.channel.queue.get = thrown
        events = ChannelEvents(stream, limit=10, clock=lambda: 0.0)
        task = asyncio.ensure_future(events.drain())
        with pytest.raises(RuntimeError, match="the consumer failed"):
            await events.fetch(None, 10)
        assert task.done()
        with pytest.raises(RuntimeError, match="the consumer failed"):  # and to every later one
            await events.fetch(None, 10)

    asyncio.run(scenario())
