"""What the batch loops on an aiokafka consumer group share: the teacher workers and the merge.

Both consume → batch → run a stage → produce → commit, with ``getmany`` (no per-record
event objects). Shared here: the consumer's settings, the records as ``Incoming``, the
at-least-once commit after the sends, and the assignment step that makes a new generation's
records safe to commit (pause, fence the previous owners in exactly-once mode, seek to the
committed offsets, resume).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    RebalanceInProgressError,
)

from stream_app.kafka_io.clients import aiokafka_config, fetch_config
from stream_app.kafka_io.idle_fetch import fetch_lightly_when_idle
from stream_app.kafka_io.transactions import PartitionTransactions
from stream_app.records import Incoming, Source
from stream_app.settings import Settings

log = structlog.get_logger("tango.consumer")

StartOf = Callable[[list[TopicPartition]], Awaitable[dict[TopicPartition, int]]]


def group_consumer(
    settings: Settings,
    group_id: str,
    topics: Sequence[str],
    listener: Callable[[AIOKafkaConsumer], ConsumerRebalanceListener],
    *,
    co_partitioned: bool = False,
    fetch_min_bytes: int | None = None,
    fetch_max_wait_s: float = 0.0,
) -> AIOKafkaConsumer:
    """A subscribed, not yet started consumer of ``topics`` in ``group_id``.

    ``co_partitioned``: partition i of every topic goes to the same member (range assignor),
    for a stage that must meet one key from several topics; otherwise round robin.
    ``fetch_min_bytes``, ``fetch_max_wait_s``: this consumer's own, instead of the settings' (a wait of 0: the setting's).
    """
    consumer = AIOKafkaConsumer(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # exactly once: never read a record whose transaction was aborted
        isolation_level="read_committed" if settings.exactly_once else "read_uncommitted",
        max_poll_interval_ms=int(settings.max_poll_interval_s * 1000),
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        heartbeat_interval_ms=int(max(settings.session_timeout_s / 4, 0.5) * 1000),
        partition_assignment_strategy=(RangePartitionAssignor,) if co_partitioned else (RoundRobinPartitionAssignor,),
        key_deserializer=None,
        value_deserializer=None,
        **fetch_config(settings, fetch_min_bytes, fetch_max_wait_s),
        **aiokafka_config(settings),
    )
    consumer.subscribe(list(topics), listener=listener(consumer))
    if settings.fetch_max_wait_s:  # else Kafka's own fetches: one byte, half a second
        fetch_lightly_when_idle(consumer)
    return consumer


def incoming(record) -> Incoming:
    """An aiokafka ``ConsumerRecord`` as the stages' ``Incoming``."""
    return Incoming(Source(record.topic, record.partition, record.offset), record.key, record.value,
                    record.timestamp / 1000.0, tuple(record.headers or ()))


async def commit_consumed(consumer: AIOKafkaConsumer, records: Sequence[Incoming]) -> None:
    """At least once: commit the offsets after ``records``, once everything they produced was acknowledged.

    Partitions that moved to another member during the batch are left uncommitted: their new
    owner redelivers the batch, and the merge drops what is produced twice.
    """
    offsets: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.source.topic, r.source.partition)
        offsets[tp] = max(offsets.get(tp, 0), r.source.offset + 1)
    assigned = consumer.assignment()
    moved = [tp for tp in offsets if tp not in assigned]
    offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
    if moved:
        log.info("partitions moved during the batch; their new owner redelivers it", partitions=[tp.partition for tp in moved])
    try:
        if offsets:
            await consumer.commit(offsets)
    except (CommitFailedError, RebalanceInProgressError, IllegalStateError) as exc:
        log.warning("commit failed after rebalance; batch will be redelivered", error=str(exc))


async def take_assignment(consumer: AIOKafkaConsumer, assigned, transactions: PartitionTransactions | None, generation: int,
                          start_of_uncommitted: StartOf | None = None) -> None:
    """Make ``assigned`` this member's, as ``generation``, before any of its records is returned.

    No record may be returned while this runs: one fetched from a position read before the
    fencing must not be committed, and one fetched after the seek below must not be taken
    for such a record and dropped (nothing would fetch it again). Records returned before
    this point keep the old generation's stamp and come again from the seek. Exactly once,
    the partitions' transactional producers start first (``PartitionTransactions.assign``),
    fencing the previous owners, and the committed offsets are read after that. A partition
    the group never committed starts where ``start_of_uncommitted`` says, else at its beginning.
    """
    consumer.pause(*assigned)
    try:
        if transactions is not None:
            await transactions.assign(assigned, generation)
        if assigned:
            # aiokafka fetched the committed offsets concurrently with the fencing above:
            # read them again now that no previous owner can commit any more
            committed = await consumer.seek_to_committed(*assigned)
            never = [tp for tp, offset in committed.items() if not offset]
            found = await start_of_uncommitted(never) if never and start_of_uncommitted is not None else {}
            for tp, offset in found.items():
                consumer.seek(tp, offset)
            if len(found) < len(never):
                await consumer.seek_to_beginning(*(tp for tp in never if tp not in found))
    finally:
        consumer.resume(*assigned)


def written_at(stamped: tuple[int, Incoming]) -> float:
    """When a fetched record was written, on the event loop's clock: ``collect_batch``'s
    ``arrived`` for topics the workers write themselves (results, teacher requests), whose
    timestamps are their producers' send times. Never later than now: a producer clock ahead of
    this one counts as now, one behind only closes a batch sooner."""
    age = max(0.0, time.time() - stamped[1].timestamp)
    return asyncio.get_running_loop().time() - age


class Stopped(Exception):
    """The loop is stopping and no record is waiting: its batch ends empty."""


def stamped_fetch(consumer: AIOKafkaConsumer, generation: Callable[[], int], stopping: Callable[[], bool]):
    """A ``collect_batch`` fetch of (generation fetched in, record) pairs from ``consumer``.

    It waits for a batch's first record in slices of 0.5 s, so a stop request is seen
    promptly (``Stopped``). No await follows ``getmany``, so every record it returns is
    stamped with the generation it was fetched in.
    """

    async def fetch(timeout: float | None, max_records: int) -> list[tuple[int, Incoming]]:
        wait_ms = 500 if timeout is None else int(timeout * 1000)
        fetched = await consumer.getmany(timeout_ms=wait_ms, max_records=max_records)
        records = [(generation(), incoming(r)) for part in fetched.values() for r in part]
        if not records and timeout is None and stopping():
            raise Stopped
        return records

    return fetch
