"""Read a topic from its start to the end it had when reading began (for offline jobs).

Committed records only (``read_committed``: an aborted exactly-once transaction's records
are skipped), no consumer group (nothing is committed, so reading twice reads the same),
values parsed as JSON objects; a value that is not one is counted, not returned.
"""

from __future__ import annotations

import time

import orjson

from stream_app.kafka_io.clients import kafka_python_config
from stream_app.settings import Settings


def read_json_topic(settings: Settings, topic: str, timeout_s: float = 60.0) -> tuple[list[dict], int]:
    """``(records, unparsable)``: every JSON-object value of ``topic`` up to its end offsets at the start."""
    from kafka import KafkaConsumer, TopicPartition  # noqa: PLC0415

    consumer = KafkaConsumer(enable_auto_commit=False, group_id=None, isolation_level="read_committed",
                             client_id="tango-read-back", **kafka_python_config(settings))
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"topic {topic!r} does not exist or has no partitions")
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        end = consumer.end_offsets(assigned)
        records: list[dict] = []
        unparsable = 0
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in assigned):
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} took over {timeout_s:g} s")
            for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                for message in batch:
                    if message.offset >= end[TopicPartition(message.topic, message.partition)]:
                        continue
                    try:
                        value = orjson.loads(message.value or b"")
                    except orjson.JSONDecodeError:
                        value = None
                    if isinstance(value, dict):
                        records.append(value)
                    else:
                        unparsable += 1
        return records, unparsable
    finally:
        consumer.close()
