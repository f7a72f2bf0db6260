"""Student results merged in the stream worker (no second hop), for the output partitions whose window it holds."""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition

from stream_app.endpoint import Health
from stream_app.kafka_io.partitioning import key_partitions
from stream_app.merge import MergeStage, RecentIds
from stream_app.merge_worker import MergeWorker
from stream_app.metrics import Metrics
from stream_app.records import H_PRODUCED_AT, H_TIER, Incoming, Output, Source, result_headers
from stream_app.settings import Settings

PARTITIONS = 4
KEYS = [f"id-{i}".encode() for i in range(40)]
PARTITION_OF = dict(zip(KEYS, key_partitions(KEYS, PARTITIONS)))


def student_batch(keys=KEYS) -> list[Output]:
    """A student batch: a result per key, plus a teacher request and a dead letter the merge never touches."""
    origin = Incoming(Source("tweets", 0, 0), b"k", b"{}", timestamp=1.0)  # the stage's headers carry its timestamp
    results = [Output("r.student", key, b'{"id": "%s"}' % key, result_headers("student", 1.0), origin=origin) for key in keys]
    return [*results, Output("t.req", b"routed", b"{}", origin=origin), Output("dlq", b"bad", b"x")]


def stage() -> MergeStage:
    return MergeStage(RecentIds(1000), "out", "dlq")


def test_results_for_held_partitions_go_straight_to_their_output_partition():
    merge, held = stage(), {0, 2}
    sending, merged = merge.merge_student_results(student_batch(), "r.student", PARTITIONS, held)
    direct = [o for o in sending if o.topic == "out"]
    assert [o.key for o in direct] == [k for k in KEYS if PARTITION_OF[k] in held]
    assert all(o.partition == PARTITION_OF[o.key] for o in direct)  # the co-partitioned output's own number
    assert sorted(o.key for o in sending if o.topic == "r.student") == sorted(k for k in KEYS if PARTITION_OF[k] not in held)
    assert [o.topic for o in sending[-2:]] == ["t.req", "dlq"]  # left as they were
    assert merged.outputs == direct and merged.duplicates == 0
    assert [tier for tier, _ in merged.latencies] == ["student"] * len(direct)
    assert all(abs(latency - (time.time() - 1.0)) < 60 for _, latency in merged.latencies)  # now - the input's timestamp
    first = next(o for o in student_batch() if o.key == direct[0].key)
    assert (direct[0].value, direct[0].headers, direct[0].origin) == (first.value, first.headers, first.origin)
    assert dict(direct[0].headers).keys() >= {H_TIER, H_PRODUCED_AT}


def test_a_redelivered_result_is_dropped_by_the_window_the_merge_uses():
    merge, held = stage(), {0, 1, 2, 3}
    merge.merge_student_results(student_batch(), "r.student", PARTITIONS, held)
    again, merged = merge.merge_student_results(student_batch(), "r.student", PARTITIONS, held)
    assert [o.topic for o in again] == ["t.req", "dlq"] and merged.duplicates == len(KEYS)
    # and a teacher result for one of those ids, arriving through the topic, is dropped by the merge too
    key = KEYS[3]
    late = merge([Incoming(Source("r.teacher", PARTITION_OF[key], 9), key, b"{}", 0.0, result_headers("teacher", 1.0))])
    assert late.outputs == [] and late.duplicates == 1


def test_nothing_held_changes_nothing():
    batch = student_batch()
    sending, merged = stage().merge_student_results(batch, "r.student", PARTITIONS, set())
    assert sending == batch and merged.outputs == [] and merged.duplicates == 0


class AssignedConsumer:
    """What ``send_student_batch`` asks of the merge's consumer: its assignment and the topic's partitions."""

    def __init__(self, partitions: set[int]):
        self.partitions = partitions

    def assignment(self):
        return {TopicPartition("r.student", p) for p in self.partitions} | {TopicPartition("r.teacher", p) for p in self.partitions}

    def partitions_for_topic(self, topic):
        return set(range(PARTITIONS))


def worker_sending(sent: list[list[Output]]) -> MergeWorker:
    async def send(outputs):
        sent.append(list(outputs))
        return []

    settings = Settings(student_results_topic="r.student", teacher_results_topic="r.teacher", output_topic="out", dlq_topic="dlq")
    return MergeWorker(settings, Metrics(settings), Health(30.0), send, on_fatal=None)


def test_the_worker_merges_only_partitions_it_is_assigned_and_has_read_back():
    sent: list[list[Output]] = []
    worker = worker_sending(sent)
    worker.consumer = AssignedConsumer({0, 1, 2})
    worker.window.restored = {1, 2, 3}  # 3 read back once but no longer assigned; 0 assigned, not read back yet

    asyncio.run(worker.send_student_batch(student_batch()))
    (batch,) = sent
    assert sorted(o.key for o in batch if o.topic == "out") == sorted(k for k in KEYS if PARTITION_OF[k] in {1, 2})
    assert sorted(o.key for o in batch if o.topic == "r.student") == sorted(k for k in KEYS if PARTITION_OF[k] in {0, 3})


def test_during_a_rebalance_or_before_the_merge_starts_every_result_takes_the_topic():
    sent: list[list[Output]] = []
    worker = worker_sending(sent)
    asyncio.run(worker.send_student_batch(student_batch()))  # no consumer yet
    worker.consumer, worker.window.restored = AssignedConsumer({0, 1, 2, 3}), {0, 1, 2, 3}

    async def mid_rebalance():
        worker.gate._open.clear()  # what a revocation does until the new assignment is taken
        await worker.send_student_batch(student_batch())

    asyncio.run(mid_rebalance())
    assert sent == [student_batch(), student_batch()]


def test_a_revocation_waits_for_a_student_batch_merged_here():
    events: list[str] = []
    release = None

    async def scenario():
        nonlocal release
        release = asyncio.Event()

        async def slow_send(outputs):
            events.append("send started")
            await release.wait()
            events.append("send acknowledged")
            return []

        settings = Settings(student_results_topic="r.student", output_topic="out")
        worker = MergeWorker(settings, Metrics(settings), Health(30.0), slow_send, on_fatal=None)
        worker.consumer, worker.window.restored = AssignedConsumer({0, 1, 2, 3}), {0, 1, 2, 3}
        sending = asyncio.ensure_future(worker.send_student_batch(student_batch()))
        await asyncio.sleep(0)
        revoking = asyncio.ensure_future(worker.gate.revoked([], 5.0))
        await asyncio.sleep(0.01)
        events.append("revocation waiting" if not revoking.done() else "revocation done early")
        release.set()
        await asyncio.gather(sending, revoking)
        events.append("revoked")

    asyncio.run(scenario())
    assert events == ["send started", "revocation waiting", "send acknowledged", "revoked"]


def test_a_partition_revoked_while_its_window_is_read_back_does_not_count_as_held(monkeypatch):
    from stream_app import merge_worker

    worker = worker_sending([])

    async def read_back(settings, partitions, window):
        worker.window.revoked({1})  # a rebalance while the output is read
        return {p: [] for p in partitions}

    monkeypatch.setattr(merge_worker, "recent_output_keys", read_back)
    asyncio.run(worker.window.restore([Incoming(Source("r.student", 1, 0), b"a", b"{}")]))
    assert worker.window.restored == set()
