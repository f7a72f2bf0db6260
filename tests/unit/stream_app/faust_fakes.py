"""A Faust agent's stream as ``kafka_io.channel_events`` reads it, without Faust: the channel queue
the consumer delivers to, the app's flow control and generation, and the consumer's tracking."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace


def event(offset: int, generation: int = 1, topic: str = "tweets") -> SimpleNamespace:
    message = SimpleNamespace(topic=topic, partition=0, offset=offset, key=b"k%d" % offset, value=b"{}",
                              timestamp=time.time(), headers=(), tracked=False, generation_id=generation)
    return SimpleNamespace(message=message)


class FakeAgentStream:
    """``channel.queue`` (what the conductor puts events into), ``app`` and ``ack`` (recorded)."""

    def __init__(self, generation: int = 1, acking_topics: frozenset[str] = frozenset({"tweets"})):
        self.channel = SimpleNamespace(queue=asyncio.Queue())
        self.tracked: list[int] = []
        self.acked: list[int] = []
        self.active = True
        consumer = SimpleNamespace(track_message=lambda message: self.tracked.append(message.offset))
        self.app = SimpleNamespace(flow_control=SimpleNamespace(is_active=lambda: self.active),
                                   consumer_generation_id=generation, consumer=consumer,
                                   topics=SimpleNamespace(acks_enabled_for=acking_topics.__contains__))

    async def deliver(self, arrivals: list[tuple[float, int]]) -> None:
        """Put one event per (seconds after the call, offset) on the channel."""
        start = time.monotonic()
        for delay, offset in arrivals:
            await asyncio.sleep(max(0.0, start + delay - time.monotonic()))
            await self.channel.queue.put(event(offset))

    async def ack(self, event) -> None:
        self.acked.append(event.message.offset)


async def drained(events) -> asyncio.Future:
    """``events.drain()`` (a ``ChannelEvents``) started, and run until it took what the channel held."""
    task = asyncio.ensure_future(events.drain())
    for _ in range(3):
        await asyncio.sleep(0)
    return task
