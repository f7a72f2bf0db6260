"""The teacher worker (``tango teacher``): consume → batch → infer → produce → commit.

Any number of these processes share the teacher topic's partitions through one
consumer group. Commit order (the invariant kept in ``_handle``): offsets are
committed only after every result of the batch is acknowledged by the broker, so a
worker that dies loses nothing; its uncommitted batch is redelivered to another
worker and the merge drops the repeated results.

A batch never outlives the poll interval: its size is capped from the measured
per-record cost so one model call takes at most a quarter of ``max_poll_interval_s``,
and the model runs in a thread so the consumer's heartbeats go on meanwhile.
"""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, RebalanceInProgressError

from stream_app.batching import collect_batch, safe_batch_size
from stream_app.kafka_clients import aiokafka_config
from stream_app.records import Source
from stream_app.settings import Settings
from stream_app.shutdown import start_shutdown_watchdog
from stream_app.stages import Incoming, StageResult, TeacherStage
from stream_app.telemetry import Counters

log = structlog.get_logger("tango.teacher")


class TeacherWorker:
    def __init__(self, settings: Settings, stage: TeacherStage):
        self.settings = settings
        self.stage = stage
        self.counters = Counters()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="teacher")
        self.per_record_s = 0.0  # moving average of the model's cost per record
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """Finish the in-flight batch, commit it, leave the group; bounded by ``shutdown_timeout_s``."""
        if not self._stopping.is_set():
            start_shutdown_watchdog(self.settings.shutdown_timeout_s, "teacher")
        self._stopping.set()

    async def run(self) -> None:
        config = aiokafka_config(self.settings)
        consumer = AIOKafkaConsumer(
            self.settings.teacher_topic,
            group_id=self.settings.teacher_group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=int(self.settings.max_poll_interval_s * 1000),
            session_timeout_ms=int(self.settings.session_timeout_s * 1000),
            heartbeat_interval_ms=int(max(self.settings.session_timeout_s / 4, 0.5) * 1000),
            key_deserializer=None,
            value_deserializer=None,
            **config,
        )
        producer = AIOKafkaProducer(acks="all", linger_ms=5, enable_idempotence=True, **config)
        await producer.start()
        await consumer.start()
        summary = asyncio.ensure_future(self._summaries())
        log.info("teacher worker started", worker=self.stage.worker, topic=self.settings.teacher_topic)
        try:
            while not self._stopping.is_set():
                batch = await self._next_batch(consumer)
                if batch:
                    await self._handle(batch, consumer, producer)
        finally:
            summary.cancel()
            await consumer.stop()  # leaves the group at once, so the others take over
            await producer.stop()
            self.executor.shutdown(wait=False)
            log.info("teacher worker stopped", worker=self.stage.worker)

    async def _next_batch(self, consumer: AIOKafkaConsumer) -> list:
        size = safe_batch_size(self.per_record_s, self.settings.max_poll_interval_s, self.settings.teacher_batch_size)

        async def fetch(timeout: float | None, max_records: int) -> list:
            # wait in short slices for the first record so a stop request is seen promptly
            wait_ms = 500 if timeout is None else int(timeout * 1000)
            fetched = await consumer.getmany(timeout_ms=wait_ms, max_records=max_records)
            records = [r for part in fetched.values() for r in part]
            if not records and timeout is None and self._stopping.is_set():
                raise _Stopped
            return records

        try:
            return await collect_batch(fetch, size, self.settings.teacher_batch_wait)
        except _Stopped:
            return []

    async def _handle(self, batch: list, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        records = [
            Incoming(Source(r.topic, r.partition, r.offset), r.key, r.value, r.timestamp / 1000.0, tuple(r.headers or ()))
            for r in batch
        ]
        started = time.perf_counter()
        result: StageResult = await asyncio.get_running_loop().run_in_executor(self.executor, self.stage, records)
        elapsed = time.perf_counter() - started
        cost = elapsed / len(records)
        self.per_record_s = cost if self.per_record_s == 0 else 0.8 * self.per_record_s + 0.2 * cost
        futures = [
            await producer.send(o.topic, key=o.key, value=o.value, headers=list(o.headers) or None) for o in result.outputs
        ]
        await asyncio.gather(*futures)  # all results acknowledged ...
        offsets: dict[TopicPartition, int] = {}
        for r in batch:
            tp = TopicPartition(r.topic, r.partition)
            offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        assigned = consumer.assignment()
        moved = [tp for tp in offsets if tp not in assigned]
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if moved:
            log.info("partitions moved during the batch; their new owner redelivers it", partitions=[tp.partition for tp in moved])
        try:
            if offsets:
                await consumer.commit(offsets)  # ... before the inputs are committed
        except (CommitFailedError, RebalanceInProgressError, IllegalStateError) as exc:
            # The partitions moved on during the batch: the new owner redelivers it and the
            # merge drops the results produced twice.
            log.warning("commit failed after rebalance; batch will be redelivered", error=str(exc))
        self.counters.add_batch(len(records))
        for reason in result.dead_letters:
            self.counters.add_dead_letter(reason)

    async def _summaries(self) -> None:
        while True:
            await asyncio.sleep(self.settings.summary_interval_s)
            log.info("summary", stage="teacher", worker=self.stage.worker, per_record_ms=round(self.per_record_s * 1000, 2), **self.counters.take())


class _Stopped(Exception):
    pass


def install_signal_handlers(worker: TeacherWorker) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
