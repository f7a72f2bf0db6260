"""Produce a stage's outputs as whole record batches, one per topic partition (at least once).

Faust's ``Topic.send`` costs a future, a pending message and several callbacks per record;
here each output is one ``append`` into the batch of its partition, and the broker's
acknowledgement is one future per batch. An output's partition is its own where the stage set
it, else its key's under Kafka's default partitioner (murmur2, ``kafka_io.partitioning``, the
whole batch hashed at once), as Faust's and the Java client's, so every topic stays
co-partitioned by tweet id. A batch that fails is handed, output by output, to
``produce_checked``, which retries, isolates a refused record and dead-letters its input as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaProducer

from stream_app.kafka_io.clients import aiokafka_config, compression
from stream_app.kafka_io.delivery import produce_checked
from stream_app.kafka_io.partitioning import key_partitions
from stream_app.records import Output
from stream_app.settings import Settings

BATCH_BYTES = 1 << 20  # one batch per partition and stage batch in practice; under the 1 MiB request limit


def batch_producer(settings: Settings) -> Callable[[], AIOKafkaProducer]:
    """The stream worker's producer of its at-least-once outputs: acks=all, batches of up to 1 MiB."""
    return lambda: AIOKafkaProducer(acks="all", linger_ms=5, max_batch_size=BATCH_BYTES,
                                    compression_type=compression(settings), **aiokafka_config(settings))


class BatchSender:
    """Sends outputs partition batch by partition batch; ``send`` waits for every acknowledgement."""

    def __init__(self, new_producer: Callable[[], AIOKafkaProducer], dlq_topic: str):
        self.new_producer = new_producer  # called on the event loop, at the first send
        self.dlq_topic = dlq_topic
        self.producer: AIOKafkaProducer | None = None
        self._partitions: dict[str, list[int]] = {}
        self._started: asyncio.Future | None = None

    async def start(self) -> None:
        """Create and start the producer once, whoever asks first."""
        if self._started is None:
            self.producer = self.new_producer()
            self._started = asyncio.ensure_future(self.producer.start())
        await asyncio.shield(self._started)

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()

    async def _partitions_of(self, topic: str) -> list[int]:
        if topic not in self._partitions:
            self._partitions[topic] = sorted(await self.producer.partitions_for(topic))
        return self._partitions[topic]

    async def send(self, outputs: Sequence[Output]) -> list[str]:
        """Produce ``outputs``; returns the reasons of dead letters sent instead of refused ones."""
        await self.start()
        by_topic: dict[str, list[int]] = {}
        for i, output in enumerate(outputs):  # the hot loops: no await per record
            by_topic.setdefault(output.topic, []).append(i)
        by_partition: dict[tuple[str, int], list[int]] = {}
        for topic, indices in by_topic.items():
            partitions = await self._partitions_of(topic)
            hashed = [i for i in indices if outputs[i].partition is None]
            chosen = dict(zip(hashed, key_partitions([outputs[i].key for i in hashed], len(partitions)))) if hashed else {}
            for i in indices:
                partition = outputs[i].partition
                partition = partitions[chosen[i]] if partition is None else partition
                by_partition.setdefault((topic, partition), []).append(i)
        sent: list[tuple[asyncio.Future, list[int]]] = []
        unbatched: list[int] = []  # larger than a batch: produce_checked sends it alone and finds out why
        for (topic, partition), indices in by_partition.items():
            batch, members = self.producer.create_batch(), []
            for i in indices:
                o = outputs[i]
                headers = list(o.headers)
                if batch.append(key=o.key, value=o.value, timestamp=None, headers=headers) is None:
                    if members:  # full: send it and start the next
                        sent.append((await self._send_batch(batch, topic, partition), members))
                    batch, members = self.producer.create_batch(), []
                    if batch.append(key=o.key, value=o.value, timestamp=None, headers=headers) is None:
                        unbatched.append(i)
                        continue
                members.append(i)
            if members:
                sent.append((await self._send_batch(batch, topic, partition), members))
        results = await asyncio.gather(*(future for future, _ in sent), return_exceptions=True)
        failed = unbatched + [i for (_, members), result in zip(sent, results) if isinstance(result, BaseException)
                              for i in members]
        if not failed:
            return []
        return await produce_checked(self._send_one, [outputs[i] for i in sorted(failed)], self.dlq_topic)

    async def _send_batch(self, batch, topic: str, partition: int) -> asyncio.Future:
        batch.close()  # complete: aiokafka sends a closed batch at once instead of lingering (linger_ms) for more
        return await self.producer.send_batch(batch, topic, partition=partition)

    async def _send_one(self, o: Output) -> asyncio.Future:
        return await self.producer.send(o.topic, key=o.key, value=o.value, headers=list(o.headers) or None, partition=o.partition)
