"""The merge's batch loop, in the stream worker's process: both result topics → de-duplicate → output.

Every result crosses the broker twice (a result topic, then the output), so the merge reads
them with its own aiokafka consumer group, ``<app_id>-merge`` (``Settings.merge_group``), a batch per
``getmany``, not through Faust's per-record events: as a Faust agent it cost about as much
CPU as the whole passthrough app (docs/benchmarks.md). The range assignor gives one member
partition i of both result topics, so an id meets the same window from either tier (the two
topics and the output are co-partitioned, checked at start-up).

Commit order (the invariant): at least once, a batch's result offsets are committed only
after every output it produced was acknowledged by the broker; exactly once, each result
partition's outputs and next offset go in one transaction of that partition's producer
(``transact_batch``), fenced per partition like the teacher workers'.

De-duplication (the invariant): before a partition's first batch its window is read back
from its output partition (``MergeWindow``). At least once, a revocation waits for the batch
in flight, and records fetched before a rebalance are dropped (their partitions are read
again from the committed offsets), so a revoked partition's outputs are all in the log
before its next owner reads them back, and none follow.

The second hop saved (at least once, ``direct_student_results``): this worker's student
batches are merged here for the output partitions whose window it holds, and sent straight to
the output (``MergeWorker.send_student_batch``), inside the same gate, so the invariant above
covers them; results for the other partitions cross the student-results topic to the merge
member that holds theirs. One stream worker holds every window; N hold about 1/N each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from stream_app.batching import collect_batch
from stream_app.endpoint import Health
from stream_app.kafka_io.batch_commit import Stamped, transact_batch
from stream_app.kafka_io.group_consumer import (
    Stopped,
    commit_consumed,
    group_consumer,
    stamped_fetch,
    take_assignment,
    written_at,
)
from stream_app.kafka_io.lag import committed_offsets
from stream_app.kafka_io.merge_window import recent_output_keys
from stream_app.kafka_io.transactions import PartitionTransactions
from stream_app.merge import MergeStage, RecentIds
from stream_app.metrics import Metrics, StageMeter
from stream_app.rebalance_gate import RebalanceGate
from stream_app.records import Incoming, Output, StageResult
from stream_app.settings import Settings

log = structlog.get_logger("tango.merge")


class MergeWindow:
    """The merge's de-duplication window, kept whole across restarts and rebalances.

    Before the first result of a partition is merged, what previous owners of that
    partition emitted is read back from the output topic, so their results are not
    emitted twice; a revoked partition is read again if it comes back.
    """

    def __init__(self, settings: Settings, merge: MergeStage):
        self.settings = settings
        self.merge = merge
        self.restored: set[int] = set()  # partitions whose window was read back from the output
        self.revocations = 0

    async def restore(self, records: Sequence[Incoming]) -> None:
        new = {r.source.partition for r in records} - self.restored
        if new:
            revocations = self.revocations
            for partition, keys in (await recent_output_keys(self.settings, new, self.settings.dedup_window)).items():
                self.merge.recent.forget(partition)
                # off the loop: hashing a full window takes about 0.4 s, which would stall the student agent;
                # the merge loop awaits this restore, and no student batch merges into a partition before
                # it counts as restored, so nothing else touches the window meanwhile
                await asyncio.to_thread(self.merge.recent.remember, partition, keys)
            if revocations == self.revocations:  # a partition revoked meanwhile is read back again if it returns
                self.restored.update(new)

    def forget(self, tp: TopicPartition) -> None:
        # exactly once: a merge part whose transaction did not commit was remembered by the
        # window; forget the partition and read it back from the output first
        self.merge.recent.forget(tp.partition)
        self.restored.discard(tp.partition)

    def revoked(self, partitions: set[int]) -> None:
        self.restored.difference_update(partitions)
        self.revocations += 1


class MergeWorker:
    """consume results → batch → merge → produce → commit, until ``stop``."""

    def __init__(self, settings: Settings, metrics: Metrics, health: Health,
                 send: Callable[[Sequence[Output]], Awaitable[list[str]]],
                 on_fatal: Callable[[BaseException], Awaitable[None]]):
        self.settings = settings
        self.stage = MergeStage(RecentIds(settings.dedup_window), settings.output_topic, settings.dlq_topic)
        self.window = MergeWindow(settings, self.stage)
        self.meter = StageMeter("merge", metrics)
        self.metrics, self.health = metrics, health
        self.send = send  # at least once: the stream worker's batch sender (produce_checked underneath)
        self.on_fatal = on_fatal
        self.transactions = PartitionTransactions(settings, settings.merge_group) if settings.exactly_once else None
        self.gate = RebalanceGate() if self.transactions is None else None
        self.generation = 0  # counts this member's assignments; records carry the one they were fetched in
        self.consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._fatal: BaseException | None = None

    async def stop(self) -> None:
        """Finish the batch in flight, commit it and leave the group (at most ``shutdown_timeout_s``)."""
        self._stopping.set()
        try:
            await asyncio.wait_for(self._stopped.wait(), self.settings.shutdown_timeout_s)
        except asyncio.TimeoutError:
            log.warning("the merge did not stop in time", timeout_s=self.settings.shutdown_timeout_s)

    async def run(self) -> None:
        s = self.settings
        consumer: AIOKafkaConsumer | None = None
        try:  # a merge that cannot build or start its consumer stops the worker like one that cannot go on
            consumer = group_consumer(s, s.merge_group, s.result_topics,
                                      lambda c: _MergeRebalances(self, c), co_partitioned=True,
                                      fetch_min_bytes=s.merge_fetch_min_bytes, fetch_max_wait_s=s.merge_fetch_max_wait_s)
            fetch = stamped_fetch(consumer, lambda: self.generation, lambda: self._stopping.is_set() or self._fatal is not None)
            await consumer.start()
            self.consumer = consumer
            while not self._stopping.is_set():
                try:
                    batch = await collect_batch(fetch, s.merge_batch_size, s.merge_batch_wait, arrived=written_at)
                except Stopped:
                    batch = []
                if self._fatal is not None:
                    raise self._fatal
                if batch:
                    with self.health.batch():
                        await (self._transactional(batch) if self.transactions is not None else self._at_least_once(batch, consumer))
        except Exception as exc:  # noqa: BLE001 - the merge cannot start or go on (a send refused for good, fenced): stop the worker
            await self.on_fatal(exc)
            raise
        finally:
            if self.gate is not None:  # student batches merged here are in the log before the group hears we left
                await self.gate.revoked([], self.settings.shutdown_timeout_s)
            if consumer is not None:
                await consumer.stop()  # leaves the group at once, so another stream worker takes over
            if self.transactions is not None:
                await self.transactions.close()
            self._stopped.set()

    async def where_the_agent_left(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Result partitions this group never committed start where the stream workers' own group
        (``app_id``) left them: the merge was a Faust agent in that group before it had its own, so
        an upgraded deployment goes on from there instead of re-reading the retained results."""
        offsets = await committed_offsets(self.settings, self.settings.app_id, tps)
        if offsets:
            log.info("result partitions start where the app group left them", partitions={f"{tp.topic}:{tp.partition}": o for tp, o in offsets.items()})
        return offsets

    async def send_student_batch(self, outputs: Sequence[Output]) -> list[str]:
        """At least once: send a student batch's outputs, its results merged here where this worker holds
        the output partition's window (``MergeStage.merge_student_results``), so they skip the results
        topic and the second broker hop; returns the reasons of rerouted dead letters, as ``send``.

        The de-duplication invariant holds as for the merge's own batches: a partition counts as held
        once this member is assigned it and has read its window back (``MergeWindow.restore``, run by the
        merge at the partition's first result through the topic), and the send runs inside the merge's
        rebalance gate, so a revocation or a stop waits for it before the window's next owner reads the
        output back. During a rebalance, or without such partitions, every result takes the topic.
        """
        gate, consumer, topic = self.gate, self.consumer, self.settings.student_results_topic
        if gate is None or consumer is None or not gate.is_open() or self._stopping.is_set():
            return await self.send(outputs)
        merged = None
        async with gate.batch():  # open: enters at once
            here = self.window.restored & {tp.partition for tp in consumer.assignment() if tp.topic == topic}
            partitions = consumer.partitions_for_topic(topic) if here else None
            if partitions:
                outputs, merged = self.stage.merge_student_results(outputs, topic, len(partitions), here)
            rerouted = await self.send(outputs)
        if merged is not None and (merged.outputs or merged.duplicates):
            self.meter.batch(len(merged.outputs) + merged.duplicates, merged)
        return rerouted

    async def _merge(self, parts: list[list[Incoming]]) -> list[StageResult]:
        await self.window.restore([r for part in parts for r in part])
        return [self.stage(part) for part in parts]  # on the loop: no model, a digest and a table probe per record

    async def _at_least_once(self, batch: list[Stamped], consumer: AIOKafkaConsumer) -> None:
        assert self.gate is not None
        async with self.gate.batch():
            # fetched before the last rebalance: their partitions are read again from the committed offsets
            records = [record for generation, record in batch if generation == self.generation]
            if not records:
                return
            (result,) = await self._merge([records])
            rerouted = await self.send(result.outputs)  # every output acknowledged ...
            await commit_consumed(consumer, records)  # ... before the results' offsets are committed
        self.meter.batch(len(records), result, rerouted)

    async def _transactional(self, batch: list[Stamped]) -> None:
        assert self.transactions is not None
        for outcome in await transact_batch(self.transactions, batch, self._merge, wait_for_generation=False):
            if outcome.committed:
                self.meter.batch(len(outcome.records), outcome.result, outcome.rerouted)
            else:
                self.window.forget(outcome.tp)


class _MergeRebalances(ConsumerRebalanceListener):
    """On revocation: let the batch (or transaction) in flight finish, and re-read the windows of
    partitions that come back; on assignment: fence (exactly once), seek to the committed
    offsets, then count the new generation (``take_assignment``)."""

    def __init__(self, worker: MergeWorker, consumer: AIOKafkaConsumer):
        self.worker = worker
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked) -> None:
        worker = self.worker
        worker.window.revoked({tp.partition for tp in revoked})
        if worker.transactions is not None:
            await worker.transactions.pause(worker.settings.shutdown_timeout_s)
        if worker.gate is not None:
            await worker.gate.revoked([], worker.settings.shutdown_timeout_s)

    async def on_partitions_assigned(self, assigned) -> None:
        worker = self.worker
        worker.metrics.rebalances.inc()
        generation = worker.generation + 1
        try:
            await take_assignment(self.consumer, assigned, worker.transactions, generation, worker.where_the_agent_left)
            worker.generation = generation  # records fetched from now on are this assignment's
        except Exception as exc:  # noqa: BLE001 - without producers or offsets nothing can be committed: stop
            log.error("cannot take the merge's assignment", error=repr(exc))
            worker._fatal = exc
        finally:
            if worker.gate is not None:
                worker.gate.assigned()
