"""Rebuild the merge's de-duplication window from the output topic itself.

The output topic is the record of what the merge emitted, so a merge worker that
(re)gains an output partition reads back that partition's last ``window`` keys before
it merges anything for it. This closes the window of a merge that died between
producing a result and committing its input: the redelivered result's id is already
in the output, so it is dropped. Result, output and de-duplication partitions are the
same numbers because the three topics are co-partitioned (checked at start-up).
"""

from __future__ import annotations

import time

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.kafka_io.clients import aiokafka_config
from stream_app.settings import Settings

log = structlog.get_logger("tango.merge")


async def recent_output_keys(settings: Settings, partitions: set[int], window: int) -> dict[int, list[bytes]]:
    """The keys of the last ``window`` records of each output partition, oldest first."""
    if not partitions:
        return {}
    started = time.monotonic()
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, isolation_level="read_committed", fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024, **aiokafka_config(settings),
    )
    await consumer.start()
    keys: dict[int, list[bytes]] = {p: [] for p in partitions}
    try:
        tps = [TopicPartition(settings.output_topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        pending = {tp for tp in tps if ends[tp] > begins[tp]}
        for tp in pending:
            consumer.seek(tp, max(begins[tp], ends[tp] - window))
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000, max_records=50_000)
            for tp, records in batch.items():
                keys[tp.partition].extend(r.key for r in records if r.key is not None)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    log.info(
        "dedup window restored from output", partitions=sorted(partitions),
        ids=sum(map(len, keys.values())), seconds=round(time.monotonic() - started, 2),
    )
    return keys
