"""The stream worker (``tango stream``): one Faust app with the student agent, and the merge.

The Faust agent consumes the input topic; the merge (``stream_app.merge_worker``) runs in the
same process and event loop on its own consumer group of the two result topics.

Commit order (the invariant this module keeps): the agent acks a consumed event only
after every record its batch produced has been acknowledged by the broker
(``acks=all``) and every earlier batch's events were acked, and Faust commits only acked
offsets. A crash therefore never loses a record; at worst it redelivers the batches in
flight (``student_batches_in_flight``), whose repeated results the merge drops.

With ``processing_guarantee=exactly_once`` the agent commits instead: each batch is cut
by consumed partition, and each part's outputs and next offset go in one transaction of
that partition's producer (``stream_app.kafka_io.transactions``). Faust's own
``processing_guarantee="exactly_once"`` is not used: it routes a send to the
transactional producer of the *destination* partition's number in the *source* topic
group, so sends to topics the app does not consume (teacher requests, output, dead
letters) go out outside any transaction, and a send's transaction commits with the
offsets of an unrelated partition. Faust still consumes (read_committed) and acks the
events, but its offset commits are turned off: the transactions are the one committer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

import faust
import structlog
from mode import Service

from stream_app.batching import collect_batch
from stream_app.endpoint import Health
from stream_app.kafka_io.batch_commit import transact_batch
from stream_app.kafka_io.batch_send import BatchSender, batch_producer
from stream_app.kafka_io.channel_events import ChannelEvents
from stream_app.kafka_io.clients import compression, faust_credentials, fetch_config
from stream_app.kafka_io.delivery import Unproducible
from stream_app.kafka_io.eager_delivery import install_eager_delivery
from stream_app.kafka_io.internals import tune_faust_fetch
from stream_app.kafka_io.resume_fetch import wake_fetch_on_resume
from stream_app.kafka_io.transactions import PartitionTransactions, TransactionFenced
from stream_app.merge_worker import MergeWorker
from stream_app.metrics import Metrics, StageMeter
from stream_app.passthrough import PassthroughStage
from stream_app.rebalance_gate import RebalanceGate
from stream_app.records import Incoming, Output, Source, StageResult
from stream_app.settings import Settings
from stream_app.shutdown import start_shutdown_watchdog
from stream_app.stream_operations import StreamOperations
from stream_app.student import StudentStage

if TYPE_CHECKING:
    from models.bundle import Bundle

log = structlog.get_logger("tango.stream")

Stage = Callable[[Sequence[Incoming]], StageResult]
# A full student batch grows to four times student_batch_size with records already waiting: a backlog
# drains in batches of 1,024 (each time step of the BiLSTM's loop and each round trip to the student
# process shared by more tweets). Measured in bursts: 11% more student records/s than twice; eight times, no more.
BACKLOG_BATCH_FACTOR = 4


def incoming(event: faust.EventT) -> Incoming:
    message = event.message
    return Incoming(
        source=Source(message.topic, message.partition, message.offset),
        key=message.key,
        value=message.value,
        timestamp=(message.timestamp or 0.0),
        headers=tuple((k, bytes(v or b"")) for k, v in (message.headers or ())),
    )


class _BatchesCommitOffsets(Service):
    """Stands in for Faust's transaction manager in exactly-once mode: Faust's periodic,
    rebalance and shutdown offset commits become no-ops, because each batch's transaction
    commits its offsets (one committer)."""

    async def commit(self, offsets: object, start_new_transaction: bool = True) -> bool:
        return True


class StreamApp(faust.App):
    """The stream worker's app: Faust's consumer fetches with ``fetch_max_wait_s`` and
    ``fetch_min_bytes`` (``kafka_io.internals.tune_faust_fetch``) and hands each record to its
    stream without a task per record (``kafka_io.eager_delivery``), and reads a partition again as
    soon as it resumes it (``kafka_io.resume_fetch``)."""

    fetch: Mapping[str, int] = MappingProxyType({})  # each app's own is set by new_app (clients.fetch_config)

    def _new_consumer(self):  # Faust's factory of its consumer
        consumer = super()._new_consumer()
        tune_faust_fetch(consumer, self.fetch)
        install_eager_delivery(consumer)
        wake_fetch_on_resume(consumer)
        return consumer


class TransactionalApp(StreamApp):
    """The exactly-once mode's app: Faust consumes with ``read_committed`` (its consumer's
    ``in_transaction`` flag selects that isolation level and last-stable-offset high-waters)
    and hands its offset commits to ``_BatchesCommitOffsets``. Faust's producer and
    ``processing_guarantee`` stay at-least-once; the agents' transactions do the rest."""

    def _new_consumer(self):  # Faust's factory of its consumer
        consumer = super()._new_consumer()
        consumer.in_transaction = True
        consumer.transactions = _BatchesCommitOffsets(loop=consumer.loop, beacon=consumer.beacon)
        return consumer


def new_app(settings: Settings) -> faust.App:
    """The Faust app with raw keys and values, acks=all, our batching and no web server."""
    app = (TransactionalApp if settings.exactly_once else StreamApp)(
        settings.app_id,
        broker=[f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",") if server.strip()],
        broker_credentials=faust_credentials(settings),
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        datadir=settings.data_dir,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(settings.session_timeout_s / 4, 0.5),
        stream_wait_empty=False,
        producer_linger_ms=5,
        producer_compression_type=compression(settings),
    )
    app.fetch = fetch_config(settings)
    return app


def raw_topic(app: faust.App, *names: str, partitions: int | None = None) -> faust.TopicT:
    return app.topic(*names, partitions=partitions, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")


@dataclass
class AgentBatches:
    """Feeds one agent's events through a deadline batcher into its stage, and commits.

    Commit order (the invariant): at least once, an event is acked only after every record
    its batch produced was acknowledged by the broker; exactly once, a batch's partitions
    are committed by ``transact_batch`` and the acks are bookkeeping only.
    """

    stage: Stage  # replaced between batches by a reload or lag-aware routing; a batch uses the one it started with
    size: int
    wait: float
    meter: StageMeter
    send: Callable[[Sequence[Output]], Awaitable[list[str]]]  # produce_checked: reasons of rerouted dead letters
    executor: ThreadPoolExecutor | None = None  # run the stage here (off the event loop)
    transactions: PartitionTransactions | None = None
    on_fatal: Callable[[BaseException], Awaitable[None]] | None = None  # the worker cannot go on: stop it
    gate: RebalanceGate | None = None  # at least once: no batch of a revoked assignment after the rebalance
    generation: Callable[[], int] | None = None  # the consumer's current generation
    health: Health | None = None  # liveness: a batch in flight too long is a stall
    in_flight: int = 1  # batches processed at once (at least once; exactly once awaits each batch)
    backlog: int = 0  # a full batch also takes the events already waiting, up to this many in all (0: size)
    _events: ChannelEvents | None = None

    async def consume(self, stream: faust.StreamT) -> None:
        """The agent: Faust's stream is not iterated; its channel's events are taken in bulk
        (``kafka_io.channel_events``), stamped with their arrival, and batched from there.

        Up to ``in_flight`` batches at once: the next batch is collected and its stage started
        while the earlier ones wait for the broker. Commit order holds across them: each
        batch's events are acked only after its own records were acknowledged and after the
        batch before it was acked (``_ack_in_order``), so a failed batch stops every later ack.
        """
        events = ChannelEvents(stream, max(self.size, self.backlog), asyncio.get_running_loop().time)  # bounded: Faust pauses fetching when full
        self._events = events
        drainer = asyncio.ensure_future(events.drain())
        acks: deque[asyncio.Future] = deque()  # each batch's acks, oldest first
        try:
            while True:  # events.fetch raises what the channel threw (a consumer error)
                try:
                    stamped = await collect_batch(events.fetch, self.size, self.wait, arrived=_arrival, backlog_size=self.backlog)
                except StopAsyncIteration:
                    # Faust ends an actor's stream this way (its stop, or an isolated partition's
                    # revocation) and its iterator ends quietly; so does this agent. A batch cut
                    # short here was not acked: its records are read again by the next owner.
                    while acks:
                        await acks.popleft()
                    return
                batch = asyncio.ensure_future(self._checked_batch([event for _, event in stamped]))
                if self.transactions is not None:  # one transaction at a time
                    await batch
                acks.append(asyncio.ensure_future(self._ack_in_order(stream, acks[-1] if acks else None, batch)))
                while len(acks) >= self.in_flight:
                    await acks.popleft()
        finally:
            drainer.cancel()
            for pending in acks:  # after a failure or a cancellation: the later batches are not acked
                if pending.done() and not pending.cancelled():
                    pending.exception()  # retrieved: the earliest failure is the one raised
                pending.cancel()

    async def _checked_batch(self, events: list) -> list:
        with self.health.batch() if self.health is not None else contextlib.nullcontext():
            return await self._batch(events)

    @staticmethod
    async def _ack_in_order(stream: faust.StreamT, before: asyncio.Future | None, batch: asyncio.Future) -> None:
        acked = await batch
        if before is not None:
            await before  # the batch before is acked first; if it failed, this one is never acked
        for event in acked:
            await stream.ack(event)  # exactly once: bookkeeping only, Faust's commits are off

    async def _batch(self, events: list) -> list:
        """Process one batch; returns the events to ack."""
        if self.transactions is not None:
            await self._transactional(events)
        elif self.gate is None:
            await self._at_least_once(events)
        else:
            async with self.gate.batch():
                current = self.generation() if self.generation is not None else None
                # fetched before the last rebalance: not acked, the partition's owner reads them again
                events = [e for e in events if current is None or e.message.generation_id == current]
                if events:
                    await self._at_least_once(events)
        return events

    def drop_queued(self) -> int:
        """Drop the events waiting for a batch (a revocation); returns how many."""
        return self._events.drop() if self._events is not None else 0

    async def _run(self, parts: list[list[Incoming]]) -> list[StageResult]:
        stage = self.stage  # taken once: a reload during the batch applies from the next one
        if self.executor is None:
            return [stage(part) for part in parts]
        return await asyncio.get_running_loop().run_in_executor(self.executor, lambda: [stage(p) for p in parts])

    async def _at_least_once(self, events: list) -> None:
        records = [incoming(e) for e in events]
        (result,) = await self._run([records])
        try:
            rerouted = await self.send(result.outputs)  # every record acknowledged before any input is acked
        except Unproducible as exc:
            await self._stop(exc)
            raise
        self.meter.batch(len(records), result, rerouted)

    async def _stop(self, exc: BaseException) -> None:
        if self.on_fatal is not None:
            await self.on_fatal(exc)

    async def _transactional(self, events: list) -> None:
        assert self.transactions is not None
        stamped = [(e.message.generation_id, incoming(e)) for e in events]
        try:
            outcomes = await transact_batch(self.transactions, stamped, self._run, wait_for_generation=True)
        except (TransactionFenced, Unproducible) as exc:
            await self._stop(exc)
            raise
        for outcome in outcomes:
            if outcome.committed:
                self.meter.batch(len(outcome.records), outcome.result, outcome.rerouted)


def _arrival(stamped: tuple[float, faust.EventT]) -> float:
    return stamped[0]


def create_app(settings: Settings, student: StudentStage | None, bundle: "Bundle | None" = None) -> faust.App:
    """The stream worker's Faust app; ``student=None`` builds the passthrough benchmark app.

    With ``bundle`` (the one ``student`` was built from) the worker reloads a new bundle put
    in its folder (``stream_app.reload``).
    """
    app = new_app(settings)
    input_topic = raw_topic(app, settings.input_topic, partitions=settings.input_partitions)
    metrics, health = Metrics(settings), Health(settings.stall_timeout_s)
    # at least once, outputs go out as one record batch per partition (exactly once: through
    # the partitions' transactional producers instead); the topics exist (ensure_topics)
    # the exit closes its producer: every send was awaited before its input was acked
    send_all = BatchSender(batch_producer(settings), settings.dlq_topic).send
    backlog = BACKLOG_BATCH_FACTOR * settings.student_batch_size  # the most a full batch grows to with records waiting

    async def fatal(exc: BaseException) -> None:
        log.error("the stream worker cannot go on; exiting with its input uncommitted", error=str(exc))
        start_shutdown_watchdog(settings.shutdown_timeout_s, "stream")
        await app.crash(exc)

    if student is None:
        passthrough = AgentBatches(PassthroughStage(settings.output_topic), settings.student_batch_size,
                                   settings.student_batch_wait, StageMeter("passthrough", metrics), send_all,
                                   on_fatal=fatal, health=health, in_flight=settings.student_batches_in_flight,
                                   backlog=backlog)
        app.agent(input_topic, name="passthrough")(passthrough.consume)
        StreamOperations(settings, metrics, health).attach(app)
        return app

    transactions = PartitionTransactions(settings, settings.app_id) if settings.exactly_once else None
    executor = ThreadPoolExecutor(1, thread_name_prefix="student")
    gate = RebalanceGate() if transactions is None else None
    # the merge reads both result topics with its own consumer group, in batches (merge_worker); at
    # least once, student results for the output partitions whose window it holds skip the topic
    merger = MergeWorker(settings, metrics, health, send_all, fatal)
    send_students = merger.send_student_batch if transactions is None and settings.direct_student_results else send_all
    students = AgentBatches(student, settings.student_batch_size, settings.student_batch_wait, StageMeter("student", metrics),
                            send_students, executor=executor, transactions=transactions, on_fatal=fatal, gate=gate,
                            generation=lambda: app.consumer_generation_id, health=health,
                            in_flight=settings.student_batches_in_flight, backlog=backlog)
    app.agent(input_topic, name="student")(students.consume)
    app.task(merger.run)
    StreamOperations(settings, metrics, health, students, bundle).attach(app)

    @app.on_before_shutdown.connect
    async def stop_merge(app_: faust.App, **_: object) -> None:
        await merger.stop()  # its last batch is produced and committed before the sender closes

    @app.timer(settings.summary_interval_s)
    async def summary() -> None:
        log.info("summary", stage="student", threshold=students.stage.threshold, **students.meter.counters.take())
        log.info("summary", stage="merge", **merger.meter.counters.take(), dedup_ids=len(merger.stage.recent))

    @app.on_partitions_revoked.connect
    async def drop_revoked(app_: faust.App, revoked: set, **_: object) -> None:
        if transactions is not None:
            await transactions.pause(settings.shutdown_timeout_s)
        if gate is not None:
            await gate.revoked([students], settings.shutdown_timeout_s)

    if gate is not None:
        @app.on_partitions_assigned.connect
        async def open_gate(app_: faust.App, assigned: set, **_: object) -> None:
            gate.assigned()

    if transactions is not None:
        _connect_transactions(app, settings, transactions, fatal)
    return app


def _connect_transactions(app: faust.App, settings: Settings, transactions: PartitionTransactions, fatal) -> None:
    consumed = {settings.input_topic}

    @app.on_rebalance_complete.connect
    async def start_transactions(app_: faust.App, **_: object) -> None:
        # Faust sends this after an assignment and before it seeks the assigned
        # partitions to their committed offsets: the fencing happens first.
        assigned = [tp for tp in app.consumer.assignment() if tp.topic in consumed]
        try:
            await transactions.assign(assigned, app.consumer_generation_id)
        except Exception as exc:  # noqa: BLE001 - without producers nothing can be committed
            await fatal(exc)

    @app.on_before_shutdown.connect
    async def stop_transactions(app_: faust.App, **_: object) -> None:
        await transactions.close()
