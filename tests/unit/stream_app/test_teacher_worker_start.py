"""A teacher worker whose consumer cannot start stops the producer it had started, and says why."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiokafka.errors import KafkaConnectionError

from stream_app.settings import Settings
from workers import teacher_worker
from workers.teacher_stage import TeacherStage
from workers.teacher_worker import TeacherWorker


class Client:
    """A client that records its start and stop; ``fails`` makes its start raise."""

    def __init__(self, fails: bool = False, **config):
        self.fails, self.started, self.stopped = fails, False, False

    async def start(self):
        if self.fails:
            raise KafkaConnectionError("no broker at 127.0.0.1:1")
        self.started = True

    async def stop(self):
        self.stopped = True


def test_a_consumer_that_cannot_start_leaves_no_producer_running(monkeypatch):
    producers: list[Client] = []
    consumer = Client(fails=True)
    monkeypatch.setattr(teacher_worker, "AIOKafkaProducer", lambda **config: producers.append(Client(**config)) or producers[-1])
    monkeypatch.setattr(teacher_worker, "group_consumer", lambda *args, **kwargs: consumer)
    stage = TeacherStage(lambda texts: np.zeros((len(texts), 2)), ("a", "b"), "tv", "r", "d")
    worker = TeacherWorker(Settings(), stage)
    with pytest.raises(KafkaConnectionError):
        asyncio.run(worker.run())
    assert [(p.started, p.stopped) for p in producers] == [(True, True)]
    assert consumer.stopped
    assert worker.executor._shutdown


def test_a_producer_that_cannot_start_is_stopped_and_no_consumer_is_built(monkeypatch):
    producers: list[Client] = []
    monkeypatch.setattr(teacher_worker, "AIOKafkaProducer", lambda **config: producers.append(Client(fails=True)) or producers[-1])
    monkeypatch.setattr(teacher_worker, "group_consumer", lambda *args, **kwargs: pytest.fail("no consumer without a producer"))
    stage = TeacherStage(lambda texts: np.zeros((len(texts), 2)), ("a", "b"), "tv", "r", "d")
    with pytest.raises(KafkaConnectionError):
        asyncio.run(TeacherWorker(Settings(), stage).run())
    assert [p.stopped for p in producers] == [True]
