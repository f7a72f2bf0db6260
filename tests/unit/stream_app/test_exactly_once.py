"""Exactly-once mode's wiring, without a broker: which app, which consumer isolation, who commits."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from stream_app.kafka_io.transactions import PartitionTransactions
from stream_app.settings import Settings
from stream_app.stream_worker import StreamApp, TransactionalApp, create_app


def settings(tmp_path, mode: str) -> Settings:
    return Settings(processing_guarantee=mode, bootstrap_servers="127.0.0.1:1", data_dir=str(tmp_path / "faust"))


def test_at_least_once_app_is_unchanged(tmp_path):
    app = create_app(settings(tmp_path, "at_least_once"), None)
    assert type(app) is StreamApp  # faust.App with the fetch settings (test_fetch_settings.py)
    assert app.consumer.in_transaction is False  # read_uncommitted, Faust commits acked offsets


def test_exactly_once_app_reads_committed_and_does_not_commit_itself(tmp_path):
    app = create_app(settings(tmp_path, "exactly_once"), None)
    assert isinstance(app, TransactionalApp)
    assert app.conf.processing_guarantee.value == "at_least_once"  # Faust's own EOS is not used
    consumer = app.consumer
    assert consumer.in_transaction is True  # Faust's consumer thread then uses isolation_level=read_committed
    offsets = {TopicPartition("tweets", 0): 10}
    assert asyncio.run(consumer.transactions.commit(offsets)) is True  # a no-op: the batches' transactions commit


def test_transactional_ids_are_per_consumed_partition(tmp_path):
    transactions = PartitionTransactions(settings(tmp_path, "exactly_once"), "tango-stream")
    assert transactions.transactional_id(TopicPartition("tweets", 3)) == "tango-stream-tweets-3"
    assert transactions.transactional_id(TopicPartition("results.teacher", 0)) == "tango-stream-results.teacher-0"


def test_commit_refuses_a_partition_it_does_not_own(tmp_path):
    async def scenario():
        transactions = PartitionTransactions(settings(tmp_path, "exactly_once"), "g")
        await transactions.assign([], generation=1)  # owns nothing; starts no producer
        return await transactions.commit(TopicPartition("tweets", 0), [], 5, generation=1)

    assert asyncio.run(scenario()) is None


def test_records_already_committed_are_stale(tmp_path):
    transactions = PartitionTransactions(settings(tmp_path, "exactly_once"), "g")
    tp = TopicPartition("tweets", 0)
    assert not transactions.is_stale(tp, 0)
    transactions.next_offsets[tp] = 7
    assert transactions.is_stale(tp, 6) and not transactions.is_stale(tp, 7)
