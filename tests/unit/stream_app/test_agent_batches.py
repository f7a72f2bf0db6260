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


def _agent(stage, send, in_flight: int) -> AgentBatches:
    return AgentBatches(stage, size=2, wait=WAIT_S, meter=StageMeter("student", Metrics(Settings())), send=send,
                        in_flight=in_flight)


def _recording(stage_calls: list[list[int]]):
    passthrough = PassthroughStage("out")

    def stage(records):
        stage_calls.append([r.source.offset for r in records])
        return passthrough(records)

    return stage


def test_the_next_batch_runs_while_the_one_before_waits_for_the_broker_and_acks_stay_in_order():
    """Two batches in flight: batch [2, 3] is processed and produced while batch [0, 1] still waits for
    its acknowledgements, but none of its events is acked before [0, 1] is (commit order)."""
    stage_calls: list[list[int]] = []
    first_acknowledged = asyncio.Event()
    sent: list[list[int]] = []

    async def send(outputs):
        offsets = [o.origin.source.offset for o in outputs]
        sent.append(offsets)
        if offsets == [0, 1]:
            await first_acknowledged.wait()  # the broker is slow to acknowledge the first batch
        return []

    async def scenario():
        stream = FakeAgentStream()
        consume = asyncio.ensure_future(_agent(_recording(stage_calls), send, in_flight=2).consume(stream))
        await stream.deliver([(0.0, 0), (0.0, 1), (0.0, 2), (0.0, 3)])
        while len(sent) < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        acked_while_first_waits = list(stream.acked)
        first_acknowledged.set()
        while len(stream.acked) < 4:
            await asyncio.sleep(0.01)
        consume.cancel()
        return acked_while_first_waits, stream.acked

    acked_while_first_waits, acked = asyncio.run(scenario())
    assert stage_calls == [[0, 1], [2, 3]] and sent == [[0, 1], [2, 3]]
    assert acked_while_first_waits == []  # [2, 3] was produced, but waits for [0, 1]
    assert acked == [0, 1, 2, 3]


def test_a_full_batch_takes_the_events_already_waiting_up_to_its_backlog_size():
    """A backlog (a burst, a restart) drains in larger batches; a batch that is not full takes nothing
    more, and nothing waits for the extra events (below capacity batches keep their size)."""
    stage_calls: list[list[int]] = []

    async def send(outputs):
        return []

    async def scenario():
        stream = FakeAgentStream()
        agent = AgentBatches(_recording(stage_calls), size=2, wait=WAIT_S, meter=StageMeter("student", Metrics(Settings())),
                             send=send, in_flight=1, backlog=4)
        await stream.deliver([(0.0, offset) for offset in range(7)])  # a backlog: all waiting before the agent starts
        consume = asyncio.ensure_future(agent.consume(stream))
        while len(stream.acked) < 7:
            await asyncio.sleep(0.01)
        await stream.deliver([(0.0, 7)])  # alone: its batch closes at the wait, with one event
        while len(stream.acked) < 8:
            await asyncio.sleep(0.01)
        consume.cancel()

    asyncio.run(scenario())
    assert stage_calls == [[0, 1, 2, 3], [4, 5, 6], [7]]


def test_one_batch_in_flight_waits_for_the_broker_before_the_next():
    stage_calls: list[list[int]] = []
    first_acknowledged = asyncio.Event()

    async def send(outputs):
        if outputs[0].origin.source.offset == 0:
            await first_acknowledged.wait()
        return []

    async def scenario():
        stream = FakeAgentStream()
        consume = asyncio.ensure_future(_agent(_recording(stage_calls), send, in_flight=1).consume(stream))
        await stream.deliver([(0.0, 0), (0.0, 1), (0.0, 2), (0.0, 3)])
        await asyncio.sleep(WAIT_S + 0.05)
        calls_while_first_waits = list(stage_calls)
        first_acknowledged.set()
        while len(stream.acked) < 4:
            await asyncio.sleep(0.01)
        consume.cancel()
        return calls_while_first_waits

    assert asyncio.run(scenario()) == [[0, 1]]
    assert stage_calls == [[0, 1], [2, 3]]


def test_a_failed_batch_stops_the_acks_of_every_batch_after_it():
    """Batch [0, 1] fails after [2, 3] was produced: the agent fails and acks nothing, so both
    batches are read again (at least once; the merge drops the repeated results)."""
    release = asyncio.Event()

    async def send(outputs):
        if outputs[0].origin.source.offset == 0:
            await release.wait()
            raise RuntimeError("the broker went away")
        release.set()  # the later batch is produced first
        return []

    async def scenario():
        stream = FakeAgentStream()
        consume = asyncio.ensure_future(_agent(PassthroughStage("out"), send, in_flight=2).consume(stream))
        await stream.deliver([(0.0, 0), (0.0, 1), (0.0, 2), (0.0, 3)])
        try:
            await asyncio.wait_for(consume, 2.0)
        except RuntimeError as exc:
            return str(exc), stream.acked
        return "no error", stream.acked

    assert asyncio.run(scenario()) == ("the broker went away", [])
