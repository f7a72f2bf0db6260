"""The batch partitioner hashes as Kafka's default partitioner (aiokafka's murmur2, the Java client's)."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner, murmur2
from hypothesis import given
from hypothesis import strategies as st

from stream_app.kafka_io.partitioning import key_partitions, murmur2_many
from stream_app.merge import MergeStage, RecentIds
from stream_app.records import Incoming, Source


@given(st.lists(st.binary(max_size=70), max_size=40), st.integers(1, 64))
def test_every_key_hashes_and_partitions_as_the_default_partitioner(keys, count):
    assert murmur2_many(keys).tolist() == [murmur2(k) for k in keys]
    partitions = list(range(count))
    assert key_partitions(keys, count) == [DefaultPartitioner()(k, partitions, partitions) for k in keys]


def test_the_java_clients_reference_values():
    # org.apache.kafka.common.utils.UtilsTest.testMurmur2, as unsigned ints
    assert murmur2_many([b"21", b"foobar", b"a-little-bit-long-string", b""]).tolist() == \
        [-973932308 % 2**32, -790332482 % 2**32, -985981536 % 2**32, 275646681]


def test_the_merge_writes_each_result_to_its_own_partition_number():
    records = [Incoming(Source("results.student", p, o), f"id-{p}-{o}".encode(), b"{}") for p in (0, 3) for o in range(3)]
    out = MergeStage(RecentIds(10), "out", "dlq")(records)
    assert [o.partition for o in out.outputs] == [0, 0, 0, 3, 3, 3]
