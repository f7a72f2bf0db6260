"""A merge whose consumer cannot be built or started stops the stream worker through its fatal path."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError

from stream_app import merge_worker
from stream_app.endpoint import Health
from stream_app.merge_worker import MergeWorker
from stream_app.metrics import Metrics
from stream_app.settings import Settings


class UnstartableConsumer:
    stopped = False

    async def start(self):
        raise KafkaConnectionError("no broker at 127.0.0.1:1")

    async def stop(self):
        self.stopped = True


def run_until_fatal(error: type[BaseException]) -> list[BaseException]:
    """Run a merge worker that must fail with ``error``; the errors its fatal path was given."""
    fatal: list[BaseException] = []

    async def on_fatal(exc):
        fatal.append(exc)

    async def sends(outputs):
        return []

    async def scenario():
        settings = Settings()
        worker = MergeWorker(settings, Metrics(settings), Health(30.0), sends, on_fatal)
        with pytest.raises(error):
            await worker.run()
        await asyncio.wait_for(worker.stop(), 1)  # returns at once: the worker knows it stopped

    asyncio.run(scenario())
    return fatal


def test_a_merge_that_cannot_start_reports_it_as_fatal_and_cleans_up(monkeypatch):
    consumer = UnstartableConsumer()
    monkeypatch.setattr(merge_worker, "group_consumer", lambda *args, **kwargs: consumer)
    assert [type(e) for e in run_until_fatal(KafkaConnectionError)] == [KafkaConnectionError]
    assert consumer.stopped


def test_a_merge_whose_consumer_cannot_be_built_reports_it_as_fatal(monkeypatch):
    def refuse(*args, **kwargs):
        raise ValueError("sasl_mechanism PLAIN needs sasl_plain_username")

    monkeypatch.setattr(merge_worker, "group_consumer", refuse)
    assert [str(e) for e in run_until_fatal(ValueError)] == ["sasl_mechanism PLAIN needs sasl_plain_username"]
