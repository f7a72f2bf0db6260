"""Checked sends (stream_app.kafka_io.delivery): refused outputs become dead letters of their
input, batch-mates of a refused record are delivered, and what cannot be produced stops."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import errors

from stream_app.kafka_io.delivery import (
    Unproducible,
    is_refusal,
    is_retriable,
    produce_checked,
    reroute,
)
from stream_app.records import H_REASON, Incoming, Output, Source


def origin(i: int) -> Incoming:
    return Incoming(Source("tweets", 0, i), f"k{i}".encode(), f'{{"id": "t{i}", "text": "x"}}'.encode())


def out(i: int, topic: str = "results") -> Output:
    return Output(topic, f"t{i}".encode(), b"result", origin=origin(i))


class FakeBroker:
    """Refuses, per batch of sends, every record when one of them is ``too_big``; fails
    ``transient`` records once with a retriable error."""

    def __init__(self, too_big=(), refused_topics=(), transient=(), other=()):
        self.too_big, self.refused_topics, self.transient, self.other = set(too_big), set(refused_topics), set(transient), set(other)
        self.log: list[tuple[str, bytes]] = []
        self._batch: list[tuple[Output, asyncio.Future]] = []

    async def send(self, o: Output) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._batch.append((o, future))
        asyncio.get_running_loop().call_soon(self._flush)
        return future

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        poisoned = any(o.value in self.too_big for o, _ in batch)
        for o, future in batch:
            if o.topic in self.refused_topics or poisoned:
                future.set_exception(errors.MessageSizeTooLargeError())
            elif o.key in self.transient:
                self.transient.discard(o.key)
                future.set_exception(errors.KafkaTimeoutError())
            elif o.key in self.other:
                future.set_exception(errors.ClusterAuthorizationFailedError())
            else:
                self.log.append((o.topic, o.key))
                future.set_result(None)


def run(broker: FakeBroker, outputs) -> list[str]:
    return asyncio.run(produce_checked(broker.send, outputs, "dlq"))


def test_all_acknowledged():
    broker = FakeBroker()
    assert run(broker, [out(i) for i in range(3)]) == []
    assert broker.log == [("results", b"t0"), ("results", b"t1"), ("results", b"t2")]


def test_a_refused_record_is_dead_lettered_and_its_batch_mates_delivered():
    broker = FakeBroker(too_big={b"huge"})
    outputs = [out(0), Output("results", b"t1", b"huge", origin=origin(1)), out(2)]
    assert run(broker, outputs) == ["output_rejected"]
    assert sorted(broker.log) == [("dlq", b"k1"), ("results", b"t0"), ("results", b"t2")]


def test_retriable_errors_are_retried_not_dead_lettered():
    broker = FakeBroker(transient={b"t1"})
    assert run(broker, [out(0), out(1)]) == []
    assert sorted(broker.log) == [("results", b"t0"), ("results", b"t1")]


def test_a_refused_dead_letter_stops():
    broker = FakeBroker(refused_topics={"results", "dlq"})
    with pytest.raises(Unproducible, match="cannot be dead-lettered"):
        run(broker, [out(0)])


def test_an_error_that_is_not_the_records_stops():
    with pytest.raises(Unproducible, match="not the record's"):
        run(FakeBroker(other={b"t0"}), [out(0)])


def test_reroute_makes_one_dead_letter_per_input():
    refused = {0: errors.MessageSizeTooLargeError(), 1: errors.MessageSizeTooLargeError()}
    same = origin(5)
    letters = reroute([Output("a", b"t5", b"1", origin=same), Output("b", b"t5", b"2", origin=same)], refused, "dlq")
    assert len(letters) == 1 and letters[0].value == same.value and letters[0].key == same.key
    assert dict(letters[0].headers)[H_REASON] == b"output_rejected"


def test_classification():
    assert is_retriable(errors.KafkaTimeoutError()) and not is_refusal(errors.KafkaTimeoutError())
    assert is_refusal(errors.MessageSizeTooLargeError()) and not is_retriable(errors.MessageSizeTooLargeError())
    wrapped = RuntimeError("Error while sending")
    wrapped.__cause__ = errors.TopicAuthorizationFailedError()
    assert is_refusal(wrapped)
