"""The teacher worker (``tango teacher``): consume → batch → infer → produce → commit.

Any number of these processes share the teacher topic's partitions (and the shadow
audit's topic) through one consumer group. Commit order (the invariant kept in ``_handle``): offsets are
committed only after every result of the batch is acknowledged by the broker, so a
worker that dies loses nothing; its uncommitted batch is redelivered to another
worker and the merge drops the repeated results.

With ``processing_guarantee=exactly_once`` a batch is cut by partition and each part's
results, dead letters and next offset are committed in one transaction of that
partition's producer (``stream_app.kafka_io.transactions``; ``_handle_transactional``), the input
is read ``read_committed``, and a rebalance listener starts the producers of each new
assignment, fencing the partitions' previous owners, before their offsets are read.

A batch never outlives the poll interval: its size is capped from the measured
per-record cost so one model call takes at most a quarter of ``max_poll_interval_s``,
and the model runs in a thread so the consumer's heartbeats go on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener

from stream_app.audit import AgreementEstimate
from stream_app.batching import collect_batch, safe_batch_size
from stream_app.endpoint import Health
from stream_app.kafka_io.batch_commit import Stamped, transact_batch
from stream_app.kafka_io.clients import aiokafka_config, compression
from stream_app.kafka_io.delivery import produce_checked
from stream_app.kafka_io.group_consumer import (
    Stopped,
    commit_consumed,
    group_consumer,
    stamped_fetch,
    take_assignment,
    written_at,
)
from stream_app.kafka_io.transactions import PartitionTransactions
from stream_app.metrics import Metrics, StageMeter
from stream_app.records import Incoming, StageResult
from stream_app.settings import Settings
from stream_app.shutdown import start_shutdown_watchdog
from workers.teacher_stage import TeacherStage

if TYPE_CHECKING:
    from models.bundle import Bundle

log = structlog.get_logger("tango.teacher")


class TeacherWorker:
    def __init__(self, settings: Settings, stage: TeacherStage, bundle: "Bundle | None" = None):
        self.settings = settings
        self.stage = stage  # replaced between batches by a reload (workers.teacher_operations)
        self.bundle = bundle  # what ``stage`` was built from; None: no reload
        self.metrics = Metrics(settings)
        self.metrics.serving(str(bundle.root) if bundle is not None else "", "", stage.teacher_version)
        self.health = Health(settings.stall_timeout_s)
        self.meter = StageMeter("teacher", self.metrics)
        self.audit = AgreementEstimate(0, 0)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="teacher")
        self.per_record_s = 0.0  # moving average of the model's cost per record
        self._stopping = asyncio.Event()
        # exactly-once: transactional producers per assigned partition; generation counts assignments
        self.transactions = PartitionTransactions(settings, settings.teacher_group) if settings.exactly_once else None
        self._generation = 0
        self._fatal: BaseException | None = None

    def stop(self) -> None:
        """Finish the in-flight batch, commit it, leave the group; bounded by ``shutdown_timeout_s``."""
        if not self._stopping.is_set():
            start_shutdown_watchdog(self.settings.shutdown_timeout_s, "teacher")
        self._stopping.set()

    def _consumer(self) -> AIOKafkaConsumer:
        settings = self.settings
        # the shadow audit's requests share the workers (and their partition count) with the routed ones
        return group_consumer(settings, settings.teacher_group, [settings.teacher_topic, settings.shadow_topic],
                              lambda consumer: _Rebalances(self, consumer))

    async def run(self) -> None:
        """One loop for both delivery modes: consume → batch → infer → produce → commit."""
        try:
            async with contextlib.AsyncExitStack() as clients:
                await self._serve(*await self._start_clients(clients))
        finally:
            self.executor.shutdown(wait=False)
            log.info("teacher worker stopped", worker=self.stage.worker)

    async def _start_clients(self, clients: contextlib.AsyncExitStack) -> tuple[AIOKafkaConsumer, AIOKafkaProducer | None]:
        """The consumer and (at least once) the producer, started; ``clients`` stops each one that was built
        (a client setting that fails the consumer's start no longer leaves the producer running)."""
        # stopped in reverse order on the way out, whatever fails after them: the consumer
        # first (it leaves the group at once, so the others take over), then the producer
        producer = None
        if self.transactions is None:
            producer = AIOKafkaProducer(acks="all", linger_ms=5, enable_idempotence=True,
                                        compression_type=compression(self.settings), **aiokafka_config(self.settings))
            clients.push_async_callback(producer.stop)
            await producer.start()
        else:
            clients.push_async_callback(self.transactions.close)
        consumer = self._consumer()
        clients.push_async_callback(consumer.stop)
        await consumer.start()
        return consumer, producer

    async def _serve(self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer | None) -> None:
        from workers.teacher_operations import operations  # noqa: PLC0415

        summary = asyncio.ensure_future(self._summaries())
        side = asyncio.ensure_future(operations(self))
        log.info("teacher worker started", worker=self.stage.worker, topic=self.settings.teacher_topic,
                 processing_guarantee=self.settings.processing_guarantee)
        try:
            while not self._stopping.is_set():
                batch = await self._next_batch(consumer)
                if self._fatal is not None:
                    raise self._fatal
                if not batch:
                    continue
                if producer is None:
                    await self._commit_transactional(batch)
                else:
                    await self._commit_at_least_once(batch, consumer, producer)
        finally:
            self.health.stopping()
            summary.cancel()
            side.cancel()

    async def _infer(self, parts: list[list[Incoming]]) -> list[StageResult]:
        """The stage on each part, in the model thread; updates the per-record cost."""
        started = time.perf_counter()
        stage = self.stage  # taken once: a reload during the batch applies from the next one
        with self.health.batch():
            results = await asyncio.get_running_loop().run_in_executor(self.executor, lambda: [stage(p) for p in parts])
        cost = (time.perf_counter() - started) / max(1, sum(len(p) for p in parts))
        self.per_record_s = cost if self.per_record_s == 0 else 0.8 * self.per_record_s + 0.2 * cost
        return results

    async def _commit_transactional(self, batch: list[Stamped]) -> None:
        """Each partition's part of the batch: its results and next offset in one transaction."""
        assert self.transactions is not None
        for outcome in await transact_batch(self.transactions, batch, self._infer, wait_for_generation=False):
            if outcome.committed:
                self._count(len(outcome.records), outcome.result, outcome.rerouted)

    async def _commit_at_least_once(self, batch: list[Stamped], consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        records = [record for _, record in batch]
        (result,) = await self._infer([records])
        async def send(o):
            return await producer.send(o.topic, key=o.key, value=o.value, headers=list(o.headers) or None)

        rerouted = await produce_checked(send, result.outputs, self.settings.dlq_topic)  # all acknowledged ...
        await commit_consumed(consumer, records)  # ... before the inputs are committed
        self._count(len(records), result, rerouted)

    def _count(self, records: int, result: StageResult, rerouted) -> None:
        self.meter.batch(records, result, rerouted)
        if result.audits:
            self.audit = AgreementEstimate(self.audit.audited + len(result.audits), self.audit.agreed + sum(result.audits))
            low, high = self.audit.interval
            self.metrics.shadow_agreement.set(self.audit.agreement)
            self.metrics.shadow_low.set(low)
            self.metrics.shadow_high.set(high)

    async def _next_batch(self, consumer: AIOKafkaConsumer) -> list[Stamped]:
        """The next batch of (generation fetched in, record) pairs."""
        size = safe_batch_size(self.per_record_s, self.settings.max_poll_interval_s, self.settings.teacher_batch_size)

        fetch = stamped_fetch(consumer, lambda: self._generation, lambda: self._stopping.is_set() or self._fatal is not None)
        try:
            return await collect_batch(fetch, size, self.settings.teacher_batch_wait, arrived=written_at)
        except Stopped:
            return []

    async def _summaries(self) -> None:
        while True:
            await asyncio.sleep(self.settings.summary_interval_s)
            audit = {"shadow": self.audit.as_log()} if self.audit.audited else {}
            log.info("summary", stage="teacher", worker=self.stage.worker, per_record_ms=round(self.per_record_s * 1000, 2),
                     **self.meter.counters.take(), **audit)


class _Rebalances(ConsumerRebalanceListener):
    """Readiness and the rebalance count; exactly-once: let an in-flight commit finish on
    revocation, and on assignment start the new partitions' transactional producers, then seek
    to the committed offsets.

    Fencing: the transactional ids are per partition (``<teacher_group>-<topic>-<partition>``),
    not per worker, so starting them fences whichever worker owned the partition before -
    a crashed one (its open transaction is aborted at once, not after the transaction
    timeout) or a stalled one that has not noticed yet (its commit fails). A per-worker id
    (hostname and pid) would fence nothing: a restarted or other worker has another id,
    and aiokafka's ``send_offsets_to_transaction`` carries no group generation (no KIP-447),
    so a stalled worker could commit a batch its successor also processed.
    """

    def __init__(self, worker: TeacherWorker, consumer: AIOKafkaConsumer):
        self.worker = worker
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked) -> None:
        if self.worker.transactions is not None:
            await self.worker.transactions.pause(self.worker.settings.shutdown_timeout_s)

    async def on_partitions_assigned(self, assigned) -> None:
        self.worker.metrics.rebalances.inc()
        self.worker.health.assigned()
        if self.worker.transactions is not None:
            await self._start_transactions(assigned)

    async def _start_transactions(self, assigned) -> None:
        worker = self.worker
        assert worker.transactions is not None
        generation = worker._generation + 1
        try:
            await take_assignment(self.consumer, assigned, worker.transactions, generation)
            worker._generation = generation  # records fetched from now on are this assignment's
        except Exception as exc:  # noqa: BLE001 - without producers nothing can be committed: stop
            log.error("cannot start transactional producers", error=repr(exc))
            worker._fatal = exc


def install_signal_handlers(worker: TeacherWorker) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
