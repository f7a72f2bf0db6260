"""Consumer-group lag: end offsets minus a group's committed offsets, per partition.

This is the lag KEDA's Kafka scaler and Faust's Prometheus sensor report. In exactly-once
mode end offsets count transaction markers too, so a topic written transactionally shows
about one record of lag per partition and batch while the group is caught up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream_app.kafka_io.clients import aiokafka_config
from stream_app.settings import Settings


@dataclass(frozen=True)
class GroupLag:
    group: str
    lag: dict[tuple[str, int], int]  # (topic, partition) → records not committed
    committed_total: int  # committed offsets summed over the partitions

    @property
    def total(self) -> int:
        return sum(self.lag.values())


class LagReader:
    """Reads groups' lag with one admin client and one group-less consumer."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._admin = AIOKafkaAdminClient(client_id="tango-lag", **aiokafka_config(settings))
        self._offsets = AIOKafkaConsumer(group_id=None, enable_auto_commit=False, **aiokafka_config(settings))
        self._partitions: dict[str, list[TopicPartition]] = {}

    async def start(self) -> None:
        await self._admin.start()
        await self._offsets.start()

    async def stop(self) -> None:
        await self._offsets.stop()
        await self._admin.close()

    async def _topic_partitions(self, topic: str) -> list[TopicPartition]:
        if not self._partitions.get(topic):
            described = await self._admin.describe_topics([topic])
            found = [d for d in described if d.get("topic") == topic and not d.get("error_code")]
            self._partitions[topic] = sorted(TopicPartition(topic, p["partition"]) for d in found for p in d["partitions"])
        return self._partitions[topic]

    async def read(self, group: str, topics: Sequence[str]) -> GroupLag:
        tps = [tp for topic in topics for tp in await self._topic_partitions(topic)]
        if not tps:
            return GroupLag(group, {}, 0)
        ends = await self._offsets.end_offsets(tps)
        committed = await self._admin.list_consumer_group_offsets(group, partitions=tps)
        lag, total = {}, 0
        for tp in tps:
            done = committed.get(tp)
            offset = done.offset if done is not None and done.offset >= 0 else 0
            total += offset
            lag[(tp.topic, tp.partition)] = max(0, ends[tp] - offset)
        return GroupLag(group, lag, total)


async def committed_offsets(settings: Settings, group: str, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
    """``group``'s committed offsets of ``tps`` (those it committed), read with a short-lived admin client."""
    admin = AIOKafkaAdminClient(client_id="tango-offsets", **aiokafka_config(settings))
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=list(tps))
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in committed.items() if meta is not None and meta.offset >= 0}
