"""The batched sender without a broker: one batch per partition, murmur2 partitions, full
batches split, a failed batch handed record by record to the checked sends."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter

from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder, MessageBatch
from aiokafka.structs import TopicPartition

from stream_app.kafka_io.batch_send import BatchSender
from stream_app.records import Incoming, Output, Source


class FakeBatch:
    def __init__(self, capacity: int):
        self.records, self.capacity, self.closed = [], capacity, False

    def close(self):
        self.closed = True

    def append(self, *, key, value, timestamp, headers):
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value, tuple(headers)))
        return object()


class FakeProducer:
    """Batches of ``capacity`` records; the batches of ``refuse_partition`` fail as too large."""

    def __init__(self, capacity: int = 3, refuse_partition: int | None = None, refuse_key: bytes | None = None):
        self.capacity, self.refuse_partition, self.refuse_key = capacity, refuse_partition, refuse_key
        self.batches: list[tuple[str, int, list]] = []
        self.singles: list[tuple[str, bytes]] = []
        self.single_partitions: list[int | None] = []

    async def start(self):
        pass

    async def partitions_for(self, topic):
        return {0, 1, 2, 3}

    def create_batch(self):
        return FakeBatch(self.capacity)

    async def send_batch(self, batch, topic, *, partition):
        assert batch.closed, "a batch is complete when it is sent: closed, so aiokafka does not linger for more"
        self.batches.append((topic, partition, batch.records))
        return acknowledged(refused=partition == self.refuse_partition)

    async def send(self, topic, key, value, headers, partition=None):
        self.singles.append((topic, key))
        self.single_partitions.append(partition)
        return acknowledged(refused=key == self.refuse_key)


def acknowledged(refused: bool) -> asyncio.Future:
    """The broker's answer: acknowledged, or refused as too large."""
    future = asyncio.get_running_loop().create_future()
    if refused:
        future.set_exception(MessageSizeTooLargeError())
    else:
        future.set_result(None)
    return future


def outputs(n: int, topic: str = "out") -> list[Output]:
    return [Output(topic, f"id-{i}".encode(), b"{}", (("h", b"v"),), origin=Incoming(Source("in", 0, i), None, b"{}"))
            for i in range(n)]


def test_outputs_go_out_as_batches_per_partition_in_order():
    producer = FakeProducer(capacity=3)
    sent = outputs(20)
    rerouted = asyncio.run(BatchSender(lambda: producer, "dlq").send(sent))
    assert rerouted == [] and producer.singles == []
    partitioner = DefaultPartitioner()
    by_partition: dict[int, list[bytes]] = {}
    for o in sent:
        by_partition.setdefault(partitioner(o.key, [0, 1, 2, 3], [0, 1, 2, 3]), []).append(o.key)
    got: dict[int, list[bytes]] = {}
    for topic, partition, records in producer.batches:
        assert topic == "out" and 1 <= len(records) <= 3
        got.setdefault(partition, []).extend(key for key, _, _ in records)
    assert got == by_partition  # murmur2 like the Java client, and each partition's order kept


def test_a_refused_batch_is_retried_record_by_record_and_only_the_guilty_input_is_dead_lettered():
    partitioner = DefaultPartitioner()
    sent = outputs(12)
    guilty = sent[5]
    producer = FakeProducer(capacity=100, refuse_partition=partitioner(guilty.key, [0, 1, 2, 3], [0, 1, 2, 3]),
                            refuse_key=guilty.key)
    rerouted = asyncio.run(BatchSender(lambda: producer, "dlq").send(sent))
    assert rerouted == ["output_rejected"]
    alone = Counter(key for topic, key in producer.singles if topic == "out")
    # the refused batch's records go again one by one; the guilty one once more, alone, to be sure
    assert alone.pop(guilty.key) == 2 and set(alone.values()) <= {1}
    assert [topic for topic, _ in producer.singles].count("dlq") == 1  # the guilty one's dead letter


def test_an_output_with_its_own_partition_goes_there_and_the_others_by_their_keys():
    producer = FakeProducer(capacity=100)
    partitioner = DefaultPartitioner()
    sent = [dataclasses.replace(o, partition=3) if i % 2 else o for i, o in enumerate(outputs(40))]
    asyncio.run(BatchSender(lambda: producer, "dlq").send(sent))
    placed = {key: partition for _, partition, records in producer.batches for key, _, _ in records}
    assert placed == {o.key: 3 if o.partition == 3 else partitioner(o.key, [0, 1, 2, 3], [0, 1, 2, 3]) for o in sent}
    # sent one by one after a refusal, it keeps its partition
    refused = FakeProducer(capacity=100, refuse_partition=3)
    asyncio.run(BatchSender(lambda: refused, "dlq").send(sent[1:2]))
    assert refused.single_partitions == [3]


def test_aiokafka_sends_a_closed_batch_at_once_and_lets_an_open_one_linger():
    # what BatchSender relies on: its batches are closed before send_batch, so the producer's
    # linger_ms (kept for produce_checked's record-by-record retries) never delays them
    async def waiting(closed: bool) -> float | None:  # a MessageBatch makes its futures on the running loop
        builder = BatchBuilder(1 << 16, 0)
        builder.append(key=b"k", value=b"v", timestamp=None)
        if closed:
            builder.close()
        return MessageBatch(TopicPartition("out", 0), builder, ttl=30, linger_time=60.0).remaining_linger()

    assert asyncio.run(waiting(closed=True)) is None
    assert asyncio.run(waiting(closed=False)) > 59
