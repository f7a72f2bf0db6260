"""The stream worker (``tango stream``): one Faust app with the student and merge agents.

Commit order (the invariant this module keeps): an agent acks a consumed event only
after every record its batch produced has been acknowledged by the broker
(``acks=all``), and Faust commits only acked offsets. A crash therefore never loses a
record; at worst it redelivers a batch, whose repeated results the merge drops.

With ``processing_guarantee=exactly_once`` the agents commit instead: each batch is cut
by consumed partition, and each part's outputs and next offset go in one transaction of
that partition's producer (``stream_app.transactions``). Faust's own
``processing_guarantee="exactly_once"`` is not used: it routes a send to the
transactional producer of the *destination* partition's number in the *source* topic
group, so sends to topics the app does not consume (teacher requests, output, dead
letters) go out outside any transaction, and a send's transaction commits with the
offsets of an unrelated partition. Faust still consumes (read_committed) and acks the
events, but its offset commits are turned off: the transactions are the one committer.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import faust
import structlog
from aiokafka import TopicPartition
from mode import Service

from models.bundle import Bundle
from stream_app.batching import collect_batch, queue_fetch
from stream_app.dedup import RecentIds
from stream_app.kafka_clients import faust_credentials
from stream_app.merge_recovery import recent_output_keys
from stream_app.records import Source
from stream_app.settings import Settings
from stream_app.shutdown import start_shutdown_watchdog
from stream_app.stages import Incoming, MergeStage, Output, PassthroughStage, StageResult, StudentStage
from stream_app.telemetry import Counters
from stream_app.transactions import PartitionTransactions, TransactionFenced

log = structlog.get_logger("tango.stream")


def worker_name(role: str) -> str:
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


def build_student_stage(settings: Settings, bundle: Bundle) -> StudentStage:
    manifest = bundle.manifest
    student = bundle.load_student()
    return StudentStage(
        logits=student.logits,
        labels=manifest.labels,
        threshold=settings.threshold if settings.threshold >= 0 else manifest.threshold,
        temperature=manifest.temperature,
        student_version=manifest.student.version,
        max_text_chars=settings.max_text_chars,
        results_topic=settings.student_results_topic,
        teacher_topic=settings.teacher_topic,
        dlq_topic=settings.dlq_topic,
        worker=worker_name("stream"),
    )


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


class TransactionalApp(faust.App):
    """The exactly-once mode's app: Faust consumes with ``read_committed`` (its consumer's
    ``in_transaction`` flag selects that isolation level and last-stable-offset high-waters)
    and hands its offset commits to ``_BatchesCommitOffsets``. Faust's producer and
    ``processing_guarantee`` stay at-least-once; the agents' transactions do the rest."""

    def _new_consumer(self):  # Faust's factory of its consumer
        consumer = super()._new_consumer()
        consumer.in_transaction = True
        consumer.transactions = _BatchesCommitOffsets(loop=consumer.loop, beacon=consumer.beacon)
        return consumer


def create_app(settings: Settings, student: StudentStage | None) -> faust.App:
    """The stream worker's Faust app; ``student=None`` builds the passthrough benchmark app."""
    app = (TransactionalApp if settings.exactly_once else faust.App)(
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
    )
    topic = lambda name, partitions: app.topic(  # noqa: E731
        name, partitions=partitions, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    outputs = {
        settings.student_results_topic: topic(settings.student_results_topic, settings.result_partitions),
        settings.teacher_topic: topic(settings.teacher_topic, settings.teacher_partitions),
        settings.dlq_topic: topic(settings.dlq_topic, 1),
        settings.output_topic: topic(settings.output_topic, settings.result_partitions),
    }
    input_topic = topic(settings.input_topic, settings.input_partitions)
    # Both result topics in one subscription: same partition count (checked at start-up), so
    # one id meets the same agent instance from either tier.
    results_topic = app.topic(
        settings.student_results_topic, settings.teacher_results_topic,
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
    )
    executor = ThreadPoolExecutor(1, thread_name_prefix="student")
    student_counters, merge_counters = Counters(), Counters()
    merge = MergeStage(RecentIds(settings.dedup_window), settings.output_topic, settings.dlq_topic)

    async def send_all(produced: Sequence[Output]) -> None:
        # force=True: publish now rather than as a Faust "attachment" at commit time.
        futures = [
            await outputs[o.topic].send(key=o.key, value=o.value, headers=list(o.headers), force=True) for o in produced
        ]
        await asyncio.gather(*futures)  # every record acknowledged before any input is acked

    async def run_batched(
        stream: faust.StreamT, size: int, wait: float, stage, counters: Counters, off_loop: bool, prepare=None,
        on_uncommitted=None,
    ) -> None:
        """Feed the agent's events through a deadline batcher into ``stage``."""
        stream = stream.noack()
        queue: asyncio.Queue = asyncio.Queue(maxsize=size)  # bounded: Faust pauses fetching when full
        fetch = queue_fetch(queue)

        async def process() -> None:
            loop = asyncio.get_running_loop()
            while True:
                events = await collect_batch(fetch, size, wait)
                if transactions is not None:
                    await process_transactional(events, stage, counters, off_loop, prepare, on_uncommitted)
                    for event in events:
                        await stream.ack(event)  # bookkeeping only: Faust's commits are off
                    continue
                records = [incoming(e) for e in events]
                if prepare is not None:
                    await prepare(records)
                if off_loop:
                    result: StageResult = await loop.run_in_executor(executor, stage, records)
                else:
                    result = stage(records)
                await send_all(result.outputs)
                for event in events:
                    await stream.ack(event)
                counters.add_batch(len(records), result.to_teacher, result.duplicates, result.dead_letters)

        processor = asyncio.ensure_future(process())
        try:
            async for event in stream.events():
                if processor.done():
                    processor.result()  # re-raise the batch loop's error in the agent
                await queue.put(event)
        finally:
            processor.cancel()

    transactions = PartitionTransactions(settings, settings.app_id) if settings.exactly_once else None

    async def process_transactional(events, stage, counters: Counters, off_loop: bool, prepare, on_uncommitted) -> None:
        """One transaction per consumed partition of the batch: its outputs and next offset."""
        assert transactions is not None
        # An event is committed only in the generation it was fetched in, by the producers
        # started for that generation; older ones are re-read by Faust after the rebalance.
        try:
            transactions.check_fenced()
        except TransactionFenced as exc:
            await fatal(exc)
            raise
        newest = max(e.message.generation_id for e in events)
        await transactions.ready.wait()
        while transactions.generation < newest:  # the new assignment's producers are starting
            await asyncio.sleep(0.05)
            await transactions.ready.wait()
        generation = transactions.generation
        parts: dict[TopicPartition, list[Incoming]] = {}
        stale = 0
        for e in events:
            tp = TopicPartition(e.message.topic, e.message.partition)
            part = parts.setdefault(tp, [])
            if (e.message.generation_id != generation or transactions.is_stale(tp, e.message.offset)
                    or (part and e.message.offset <= part[-1].source.offset)):  # a copy re-read in the batch
                stale += 1
                continue
            part.append(incoming(e))
        parts = {tp: part for tp, part in parts.items() if part}
        if stale:
            log.info("skipped events of an earlier assignment or already committed", events=stale)
        if not parts:
            return
        records = [r for part in parts.values() for r in part]
        if prepare is not None:
            await prepare(records)

        def run_parts() -> list[StageResult]:
            return [stage(part) for part in parts.values()]

        if off_loop:
            results = await asyncio.get_running_loop().run_in_executor(executor, run_parts)
        else:
            results = run_parts()
        committed = await asyncio.gather(*(
            transactions.commit(tp, result.outputs, part[-1].source.offset + 1, generation)
            for (tp, part), result in zip(parts.items(), results)
        ))
        for (tp, part), result, ok in zip(parts.items(), results, committed):
            if not ok:
                if on_uncommitted is not None:
                    on_uncommitted(tp)
                continue
            counters.add_batch(len(part), result.to_teacher, result.duplicates, result.dead_letters)

    async def fatal(exc: BaseException) -> None:
        log.error("exactly-once processing cannot go on; exiting so the worker restarts", error=str(exc))
        start_shutdown_watchdog(settings.shutdown_timeout_s, "stream")
        await app.crash(exc)

    if student is None:

        @app.agent(input_topic, name="passthrough")
        async def passthrough_agent(stream: faust.StreamT) -> None:
            stage = PassthroughStage(settings.output_topic)
            await run_batched(stream, settings.student_batch_size, settings.student_batch_wait, stage, student_counters, off_loop=False)

        return app

    @app.agent(input_topic, name="student")
    async def student_agent(stream: faust.StreamT) -> None:
        await run_batched(stream, settings.student_batch_size, settings.student_batch_wait, student, student_counters, off_loop=True)

    @app.agent(results_topic, name="merge")
    async def merge_agent(stream: faust.StreamT) -> None:
        await run_batched(stream, settings.merge_batch_size, settings.merge_batch_wait, merge, merge_counters, off_loop=False,
                          prepare=restore_dedup, on_uncommitted=forget_uncommitted)

    @app.timer(settings.summary_interval_s)
    async def summary() -> None:
        log.info("summary", stage="student", **student_counters.take())
        log.info("summary", stage="merge", **merge_counters.take(), dedup_ids=len(merge.recent))

    restored: set[int] = set()  # partitions whose window was read back from the output

    async def restore_dedup(records: Sequence[Incoming]) -> None:
        # Before the first result of a partition is merged, read back what previous owners
        # of that partition emitted, so their results are not emitted twice.
        new = {r.source.partition for r in records} - restored
        if new:
            for partition, keys in (await recent_output_keys(settings, new, settings.dedup_window)).items():
                merge.recent.forget(partition)
                merge.recent.remember(partition, keys)
            restored.update(new)

    def forget_uncommitted(tp: TopicPartition) -> None:
        # exactly-once: a merge batch part whose transaction did not commit was remembered
        # by the window; forget the partition and read it back from the output first
        merge.recent.forget(tp.partition)
        restored.discard(tp.partition)

    @app.on_partitions_revoked.connect
    async def drop_revoked(app_: faust.App, revoked: set, **_: object) -> None:
        # a revoked partition's next owner may emit more; re-read it if it comes back
        for tp in revoked:
            if tp.topic in (settings.student_results_topic, settings.teacher_results_topic):
                restored.discard(tp.partition)
        if transactions is not None:
            await transactions.pause(settings.shutdown_timeout_s)

    consumed = {settings.input_topic, settings.student_results_topic, settings.teacher_results_topic}

    if transactions is not None:
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

    app.tango_executor = executor  # type: ignore[attr-defined]
    return app
