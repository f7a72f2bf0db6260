"""The student agent's batches, driven by a fake Faust agent stream (``faust_fakes``) on a real
event loop: a record that queued while the previous batch was being processed has already waited,
so its batch closes ``wait`` after it *arrived*, not ``wait`` after the batcher took it."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from stream_app.metrics import Metrics, StageMeter
from stream_app.passthrough import PassthroughStage
from stream_app.settings import Settings
from stream_app.stream_worker import AgentBatches
from tests.unit.stream_app.faust_fakes import FakeAgentStream, event

PROCESSING_S, WAIT_S = 0.3, 0.1


def test_a_record_that_queued_during_a_batch_is_not_made_to_wait_again():
    started: list[tuple[float, list[int]]] = []
    passthrough = PassthroughStage("out")

    def slow_stage(records):  # the model: 300 ms per batch, off the loop
        started.append((time.monotonic(), [r.source.offset for r in records]))
        time.sleep(PROCESSING_S)
        return passthrough(records)

    async def send(outputs):
        return []

    async def scenario():
        stream = FakeAgentStream()
        agent = AgentBatches(slow_stage, size=10, wait=WAIT_S, meter=StageMeter("student", Metrics(Settings())),
                             send=send, executor=ThreadPoolExecutor(1))
        t0 = time.monotonic()
        consume = asyncio.ensure_future(agent.consume(stream))
        delivery = asyncio.ensure_future(stream.deliver([(0.0, 0), (0.15, 1)]))  # 1 arrives while batch [0] is processed
        while stream.acked != [0, 1]:
            await asyncio.sleep(0.01)
        consume.cancel()
        delivery.cancel()
        return t0

    t0 = asyncio.run(scenario())
    (first_at, first), (second_at, second) = started
    assert (first, second) == ([0], [1])
    # batch [1] starts as soon as batch [0] is done (its record arrived 0.15 + wait 0.1 = 0.25 s
    # in, before that), not a further wait later (0.4 + 0.1 s)
    assert second_at - first_at < PROCESSING_S + 0.05
    assert first_at - t0 < WAIT_S + 0.05


def test_the_stream_ending_ends_the_agent_quietly():
    """Faust stops an actor by throwing ``StopAsyncIteration`` into its channel: its stream iterator
    then ends without an error, and so must the agent (before, it crashed at every worker stop)."""
    async def send(outputs):
        return []

    async def scenario():
        stream = FakeAgentStream()
        ended = asyncio.Event()

        async def get():
            await ended.wait()
            raise StopAsyncIteration

        agent = AgentBatches(PassthroughStage("out"), size=10, wait=WAIT_S, meter=StageMeter("student", Metrics(Settings())),
                             send=send)
        consume = asyncio.ensure_future(agent.consume(stream))
        await asyncio.sleep(0.02)
        stream.channel.queue.get = get
        await stream.channel.queue.put(event(0))  # taken before the end: processed and acked
        await asyncio.sleep(WAIT_S + 0.05)
        ended.set()
        await asyncio.wait_for(consume, 1.0)  # returns, raises nothing
        return stream.acked

    assert asyncio.run(scenario()) == [0]
