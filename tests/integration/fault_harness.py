"""A paced run of the pipeline into which a test injects faults, and the checks after it."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from tests.integration.pipeline_harness import Pipeline, summaries, tweet_texts

FAULT_TWEETS = int(os.environ.get("TANGO_FAULT_TWEETS", "5000"))
# The processing guarantee the scenarios run in (TANGO_PROCESSING_GUARANTEE of every process).
FAULT_GUARANTEE = os.environ.get("TANGO_FAULT_GUARANTEE", "at_least_once")
# In exactly_once mode the merge's de-duplication window is cut to one id, so that it cannot
# hide a duplicate: zero duplicates must come from the transactions alone.
EXACTLY_ONCE_ENV = {"TANGO_DEDUP_WINDOW": "1"}


def fault_pipeline(bootstrap: str, bundle, workdir, guarantee: str = FAULT_GUARANTEE) -> Pipeline:
    """A Pipeline for a scenario in ``guarantee`` mode."""
    extra = EXACTLY_ONCE_ENV if guarantee == "exactly_once" else {}
    return Pipeline(bootstrap, bundle, workdir, guarantee=guarantee, extra_env=dict(extra))


def merge_dropped(pipeline: Pipeline, names) -> int:
    """Results the merge dropped as repeats, from the summaries of the stream processes ``names``
    (a process killed with -9 loses its last interval's line)."""
    return sum(s.get("duplicates_dropped", 0) for name in names for s in summaries(pipeline.log(name), "merge"))


@dataclass
class FaultRun:
    pipeline: Pipeline
    count: int = FAULT_TWEETS
    produce_seconds: float = 12.0
    prefix: str = "f"
    events: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._producer_thread: threading.Thread | None = None
        self._offsets = KafkaConsumer(bootstrap_servers=self.pipeline.bootstrap)

    def mark(self, what: str) -> None:
        self.events.append((what, time.monotonic()))

    def start_producing(self) -> None:
        """Send ``count`` tweets spread over ``produce_seconds``, in the background."""
        values = [orjson.dumps({"id": f"{self.prefix}{i}", "text": t}) for i, t in enumerate(tweet_texts(self.count, seed=7))]

        def produce() -> None:
            producer = KafkaProducer(bootstrap_servers=self.pipeline.bootstrap, acks="all", linger_ms=20, retries=50,
                                     reconnect_backoff_max_ms=2000, request_timeout_ms=60_000)
            chunks = 50
            per_chunk = max(1, len(values) // chunks)
            for start in range(0, len(values), per_chunk):
                for value in values[start : start + per_chunk]:
                    producer.send(self.pipeline.topic("input"), value=value)
                time.sleep(self.produce_seconds / chunks)
            producer.flush()
            producer.close()

        self._producer_thread = threading.Thread(target=produce, daemon=True)
        self._producer_thread.start()
        self.mark("producing")

    def output_count(self) -> int:
        topic = self.pipeline.topic("output")
        try:
            partitions = self._offsets.partitions_for_topic(topic) or set()
            return sum(self._offsets.end_offsets([TopicPartition(topic, p) for p in partitions]).values())
        except Exception:  # the broker may be down in a scenario
            return -1

    def wait_output(self, at_least: int, timeout: float = 180.0) -> float:
        """Block until the output holds ``at_least`` records; returns when it did."""
        deadline = time.monotonic() + timeout
        while self.output_count() < at_least:
            assert time.monotonic() < deadline, f"output stuck below {at_least} (at {self.output_count()})"
            self.pipeline.check_alive()
            time.sleep(0.1)
        return time.monotonic()

    def recovery_after(self, fault_at: float, timeout: float = 180.0, before: int | None = None) -> float:
        """Seconds from ``fault_at`` until the output grows again (beyond ``before``, by default
        its size now; pass the size at the fault when the pipeline may catch up before this is called)."""
        before = self.output_count() if before is None else before
        reached = self.wait_output(before + 1, timeout)
        return round(reached - fault_at, 2)

    def committed_input(self) -> dict[int, int]:
        """The stream group's committed offset per input partition (-1 where none yet)."""
        topic = self.pipeline.topic("input")
        group = KafkaConsumer(bootstrap_servers=self.pipeline.bootstrap, group_id=self.pipeline.env["TANGO_APP_ID"],
                              enable_auto_commit=False)
        try:
            partitions = sorted(group.partitions_for_topic(topic) or ())
            return {p: (group.committed(TopicPartition(topic, p)) or -1) for p in partitions}
        finally:
            group.close()

    def every_partition_resumed_after(self, fault_at: float, timeout: float = 120.0) -> float:
        """Seconds from ``fault_at`` until every input partition's committed offset moved past
        where it stood at the fault (or reached the partition's end): the slowest partition's
        recovery, e.g. those of a killed worker, which wait for the session timeout."""
        topic = self.pipeline.topic("input")
        at_fault = self.committed_input()
        deadline = time.monotonic() + timeout
        while True:
            now = self.committed_input()
            ends = self._offsets.end_offsets([TopicPartition(topic, p) for p in now])
            if all(now[p] > at_fault.get(p, -1) or now[p] >= ends[TopicPartition(topic, p)] for p in now):
                return round(time.monotonic() - fault_at, 2)
            assert time.monotonic() < deadline, f"input partitions stuck: {now} (at the fault {at_fault})"
            self.pipeline.check_alive()
            time.sleep(0.2)

    def finish(self, timeout: float = 300.0) -> dict:
        """Wait for every id, then check: each exactly once; returns counts for the report."""
        if self._producer_thread is not None:
            self._producer_thread.join(timeout)
        records = self.pipeline.read("output", until=self.count, timeout=timeout, settle=5.0)
        self._offsets.close()
        ids = Counter(orjson.loads(r.value)["id"] for r in records)
        expected = {f"{self.prefix}{i}" for i in range(self.count)}
        lost = len(expected - set(ids))
        duplicates = sum(n - 1 for n in ids.values())
        return {"tweets": self.count, "outputs": len(records), "lost": lost, "duplicates": duplicates,
                "unexpected": len(set(ids) - expected)}
