"""The at-least-once rebalance gate: a revoked assignment's batch in flight is produced before
the revocation returns, queued events are dropped, and no batch starts until the assignment."""

from __future__ import annotations

import asyncio
import time

from stream_app.kafka_io.channel_events import ChannelEvents
from stream_app.metrics import Metrics, StageMeter
from stream_app.rebalance_gate import RebalanceGate
from stream_app.settings import Settings
from stream_app.stream_worker import AgentBatches
from tests.unit.stream_app.faust_fakes import FakeAgentStream, drained, event


async def agent_with_waiting(offsets) -> AgentBatches:
    """An agent whose events ``offsets`` arrived and wait for a batch."""
    agent = AgentBatches(stage=lambda records: None, size=10, wait=0.1, meter=StageMeter("student", Metrics(Settings())), send=None)
    stream = FakeAgentStream()
    agent._events = ChannelEvents(stream, limit=10, clock=time.monotonic)
    for offset in offsets:
        stream.channel.queue.put_nowait(event(offset))
    (await drained(agent._events)).cancel()
    return agent


def test_revocation_waits_for_the_batch_in_flight_and_drops_the_queue():
    async def scenario():
        gate, agent, trace = RebalanceGate(), await agent_with_waiting([1, 2, 3]), []

        async def in_flight():
            async with gate.batch():
                await asyncio.sleep(0.05)
                trace.append("batch produced")

        batch = asyncio.ensure_future(in_flight())
        await asyncio.sleep(0)
        await gate.revoked([agent], timeout_s=5)
        trace.append("revocation returned")
        await batch
        return trace, await agent._events.fetch(0.01, 10)

    trace, queued = asyncio.run(scenario())
    assert trace == ["batch produced", "revocation returned"]
    assert queued == []


def test_no_batch_starts_between_revocation_and_assignment():
    async def scenario():
        gate, started = RebalanceGate(), []
        await gate.revoked([], timeout_s=1)

        async def next_batch():
            async with gate.batch():
                started.append(True)

        waiting = asyncio.ensure_future(next_batch())
        await asyncio.sleep(0.05)
        before = list(started)
        gate.assigned()
        await waiting
        return before, started

    before, after = asyncio.run(scenario())
    assert before == [] and after == [True]
