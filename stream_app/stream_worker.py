"""The stream worker (``tango stream``): one Faust app with the student and merge agents.

Commit order (the invariant this module keeps): an agent acks a consumed event only
after every record its batch produced has been acknowledged by the broker
(``acks=all``), and Faust commits only acked offsets. A crash therefore never loses a
record; at worst it redelivers a batch, whose repeated results the merge drops.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import faust
import structlog

from models.bundle import Bundle
from stream_app.batching import collect_batch, queue_fetch
from stream_app.dedup import RecentIds
from stream_app.kafka_clients import faust_credentials
from stream_app.merge_recovery import recent_output_keys
from stream_app.records import Source
from stream_app.settings import Settings
from stream_app.stages import Incoming, MergeStage, Output, PassthroughStage, StageResult, StudentStage
from stream_app.telemetry import Counters

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


def create_app(settings: Settings, student: StudentStage | None) -> faust.App:
    """The stream worker's Faust app; ``student=None`` builds the passthrough benchmark app."""
    app = faust.App(
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
        stream: faust.StreamT, size: int, wait: float, stage, counters: Counters, off_loop: bool, prepare=None
    ) -> None:
        """Feed the agent's events through a deadline batcher into ``stage``."""
        stream = stream.noack()
        queue: asyncio.Queue = asyncio.Queue(maxsize=size)  # bounded: Faust pauses fetching when full
        fetch = queue_fetch(queue)

        async def process() -> None:
            loop = asyncio.get_running_loop()
            while True:
                events = await collect_batch(fetch, size, wait)
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
                counters.add_batch(len(records), result.to_teacher)
                counters.duplicates += result.duplicates
                for reason in result.dead_letters:
                    counters.add_dead_letter(reason)

        processor = asyncio.ensure_future(process())
        try:
            async for event in stream.events():
                if processor.done():
                    processor.result()  # re-raise the batch loop's error in the agent
                await queue.put(event)
        finally:
            processor.cancel()

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
        await run_batched(stream, settings.merge_batch_size, settings.merge_batch_wait, merge, merge_counters, off_loop=False, prepare=restore_dedup)

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

    @app.on_partitions_revoked.connect
    async def drop_revoked(app_: faust.App, revoked: set, **_: object) -> None:
        # a revoked partition's next owner may emit more; re-read it if it comes back
        for tp in revoked:
            if tp.topic in (settings.student_results_topic, settings.teacher_results_topic):
                restored.discard(tp.partition)

    app.tango_executor = executor  # type: ignore[attr-defined]
    return app
