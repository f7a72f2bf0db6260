"""The dead-letter tool's Kafka I/O: read the dead-letter topic, send replays to the input topic.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from stream_app.settings import Settings
from stream_app.tools.dlq.letters import DeadLetter, from_message
from stream_app.tools.dlq.replay import Replay


class TopicMissing(RuntimeError):
    pass


def read_dead_letters(
    settings: Settings,
    *,
    start: int | Mapping[int, int] = 0,
    stop: Mapping[int, int] | None = None,
    idle_timeout_s: float = 30.0,
) -> Iterator[DeadLetter]:
    """The dead-letter topic from ``start`` (one offset for every partition, or per
    partition: partitions not in the mapping are not read) up to the end offsets at start
    (or ``stop``, exclusive, if smaller). No consumer group, nothing committed,
    ``read_committed``. Raises ``TopicMissing`` when the topic does not exist."""
    from kafka import KafkaConsumer, TopicPartition

    from stream_app.kafka_io.clients import kafka_python_config

    consumer = KafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        allow_auto_create_topics=False,
        auto_offset_reset="earliest",
        **kafka_python_config(settings),
    )
    try:
        topic = settings.dlq_topic
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise TopicMissing(f"dead-letter topic {topic!r} does not exist at {settings.bootstrap_servers}")
        if isinstance(start, Mapping):
            partitions = {p for p in partitions if p in start}
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return
        consumer.assign(tps)
        beginning = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
        remaining: dict[Any, int] = {}
        for tp in tps:
            first = start.get(tp.partition, 0) if isinstance(start, Mapping) else start
            first = max(first, beginning[tp])
            last = end[tp] if stop is None or tp.partition not in stop else min(end[tp], stop[tp.partition])
            if first < last:
                consumer.seek(tp, first)
                remaining[tp] = last
        if not remaining:
            return
        consumer.pause(*(tp for tp in tps if tp not in remaining))
        progress_at = time.monotonic()
        while remaining:
            batches = consumer.poll(timeout_ms=500)
            if batches:
                progress_at = time.monotonic()
            for tp, messages in sorted(batches.items(), key=lambda kv: kv[0].partition):
                last = remaining.get(tp)
                if last is None:
                    continue
                for message in messages:
                    if message.offset >= last:
                        break
                    yield from_message(message)
            for tp in list(remaining):
                if consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
                    consumer.pause(tp)  # stop fetching what is done
            if remaining and time.monotonic() - progress_at > idle_timeout_s:
                behind = ", ".join(f"{tp.partition}:{consumer.position(tp)}<{last}" for tp, last in remaining.items())
                raise TimeoutError(f"no progress reading {topic} for {idle_timeout_s:.0f} s ({behind})")
    finally:
        consumer.close()


def send_replays(settings: Settings, replays: Sequence[Replay]) -> None:
    """Send ``replays`` to the input topic, each acknowledged (acks=all) or its error raised.

    Raises ``TopicMissing`` if the input topic does not exist (it is never auto-created here).
    """
    from kafka import KafkaConsumer, KafkaProducer

    from stream_app.kafka_io.clients import compression, kafka_python_config

    probe = KafkaConsumer(allow_auto_create_topics=False, **kafka_python_config(settings))
    try:
        if not probe.partitions_for_topic(settings.input_topic):
            raise TopicMissing(f"input topic {settings.input_topic!r} does not exist at {settings.bootstrap_servers}")
    finally:
        probe.close()
    producer = KafkaProducer(acks="all", linger_ms=10, compression_type=compression(settings), **kafka_python_config(settings))
    try:
        futures = [producer.send(settings.input_topic, key=r.key, value=r.value, headers=list(r.headers)) for r in replays]
        producer.flush()
        for future in futures:
            future.get(timeout=60)  # raises the send's error, if any
    finally:
        producer.close()


def move_group_offset(settings: Settings, group: str, topic: str, partition: int, offset: int) -> int | None:
    """Commit ``offset`` for ``group`` on ``topic``:``partition``; returns the offset committed before.

    The broker accepts this only while the group has no members: stop its workers first.
    """
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    from stream_app.kafka_io.clients import kafka_python_config

    consumer = KafkaConsumer(group_id=group, enable_auto_commit=False, **kafka_python_config(settings))
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions or partition not in partitions:
            raise TopicMissing(f"{topic}:{partition} does not exist at {settings.bootstrap_servers}")
        tp = TopicPartition(topic, partition)
        before = consumer.committed(tp)
        consumer.commit({tp: OffsetAndMetadata(offset, "skipped by tango dlq skip", -1)})
        return before
    finally:
        consumer.close()
