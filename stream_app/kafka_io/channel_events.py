"""A Faust agent's events taken off its stream's channel in bulk, each stamped with its arrival.

Faust's stream iterator hands an agent one event per step: per event it yields to the event loop
(``await asyncio.sleep(0)``, one turn of the loop with its ``epoll_wait``), awaits the channel,
calls the stream sensors and passes the event up two async generators. At a few thousand tweets a
second that was the largest per-record cost left in the stream worker's own code. ``ChannelEvents``
instead reads the queue the consumer delivers the agent's records to (``stream.channel.queue``):
when it wakes, it takes every event waiting there, stamps them with one clock reading, and does
for each what the iterator does before it hands an event over:

- an event of an earlier consumer generation, or one that arrived while Faust's flow control was
  suspended (a rebalance), is dropped unacked, as the iterator drops it: the partition's owner
  reads it again;
- an event of a topic with acks enabled is tracked as unacked (``Consumer.track_message``), so the
  offsets Faust commits stay below it until the agent acks it (``Stream.ack``).

Bound (backpressure): at most ``limit`` events wait here; beyond that the drainer stops taking
from the channel, whose own bounded queue then pauses Faust's delivery as before. The internals
used are listed in ``kafka_io.internals.INTERNALS``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

Stamped = tuple[float, Any]  # (arrival on the loop's clock, Faust event)


class ChannelEvents:
    """The events of ``stream`` (a Faust agent's stream, not iterated), for ``batching.collect_batch``."""

    def __init__(self, stream: Any, limit: int, clock: Callable[[], float]):
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self._queue = stream.channel.queue  # mode ThrowableQueue: the conductor puts, errors are thrown here
        self._app, self._limit, self._clock = stream.app, limit, clock
        self._waiting: deque[Stamped] = deque()
        self._arrived = asyncio.Event()  # set while _waiting is not empty (and once the channel failed)
        self._room = asyncio.Event()  # set while _waiting holds fewer than limit
        self._settle()
        self._failed: Exception | None = None  # what the channel threw: fetch raises it once nothing waits

    async def drain(self) -> None:
        """Move arriving events here until cancelled (run as a task beside the batches). What the
        channel throws ends it and is raised by ``fetch`` once the events before it are taken: a
        consumer error, or ``StopAsyncIteration``, Faust's end of the stream (the agent returns)."""
        try:
            await self._drain()
        except Exception as exc:  # noqa: BLE001 - handed to the batch loop, which raises it
            self._failed = exc
            self._arrived.set()  # wakes a waiting fetch

    async def _drain(self) -> None:
        queue, waiting = self._queue, self._waiting
        while True:
            await self._room.wait()
            first = await queue.get()  # raises what the channel was thrown (a consumer error)
            events = [first]
            while len(waiting) + len(events) < self._limit and not queue.empty():
                events.append(queue.get_nowait())
            now = self._clock()
            waiting.extend((now, event) for event in self._admitted(events))
            self._settle()

    def _admitted(self, events: list) -> list:
        """The events Faust's stream iterator would hand over, tracked for acks (see the module docstring)."""
        app = self._app
        if not app.flow_control.is_active():
            return []
        generation, consumer, acks_enabled_for = app.consumer_generation_id, app.consumer, app.topics.acks_enabled_for
        admitted = []
        for event in events:
            message = event.message
            if message.generation_id != generation:
                continue
            if not message.tracked and acks_enabled_for(message.topic):
                message.tracked = True
                consumer.track_message(message)
            admitted.append(event)
        return admitted

    async def fetch(self, timeout_s: float | None, max_records: int) -> list[Stamped]:
        """A ``batching.Fetch``: up to ``max_records`` stamped events, waiting at most ``timeout_s``
        for the first (``None``: as long as it takes); ``[]`` on timeout."""
        if not self._waiting and self._failed is None:
            try:
                await (self._arrived.wait() if timeout_s is None else asyncio.wait_for(self._arrived.wait(), timeout_s))
            except asyncio.TimeoutError:
                return []
        waiting = self._waiting
        if not waiting and self._failed is not None:
            raise self._failed
        taken = [waiting.popleft() for _ in range(min(max_records, len(waiting)))]
        self._settle()
        return taken

    def drop(self) -> int:
        """Drop the events waiting here (a revocation); returns how many."""
        dropped = len(self._waiting)
        self._waiting.clear()
        self._settle()
        return dropped

    def _settle(self) -> None:
        """The two events follow what waits: ``_arrived`` while something does, ``_room`` while fewer than the limit."""
        waiting = len(self._waiting)
        (self._arrived.set if waiting else self._arrived.clear)()
        (self._room.set if waiting < self._limit else self._room.clear)()
