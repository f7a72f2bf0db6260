"""The at-least-once rebalance gate: a revoked assignment's batch in flight is produced before
the revocation returns, queued events are dropped, and no batch starts until the assignment."""

from __future__ import annotations

import asyncio

from stream_app.metrics import Metrics, StageMeter
from stream_app.rebalance_gate import RebalanceGate
from stream_app.settings import Settings
from stream_app.stream_worker import AgentBatches


def agent_with_queue(items) -> AgentBatches:
    agent = AgentBatches(stage=lambda records: None, size=10, wait=0.1, meter=StageMeter("student", Metrics(Settings())), send=None)
    agent._queue = asyncio.Queue()
    for item in items:
        agent._queue.put_nowait(item)
    return agent


def test_revocation_waits_for_the_batch_in_flight_and_drops_the_queue():
    async def scenario():
        gate, agent, trace = RebalanceGate(), agent_with_queue([1, 2, 3]), []

        async def in_flight():
            async with gate.batch():
                await asyncio.sleep(0.05)
                trace.append("batch produced")

        batch = asyncio.ensure_future(in_flight())
        await asyncio.sleep(0)
        await gate.revoked([agent], timeout_s=5)
        trace.append("revocation returned")
        await batch
        return trace, agent._queue.qsize()

    trace, queued = asyncio.run(scenario())
    assert trace == ["batch produced", "revocation returned"]
    assert queued == 0


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
