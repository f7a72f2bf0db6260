"""The merge stage and its de-duplication window (pure: no Kafka).

Both result topics feed the merge; it forwards each id once to the output topic and drops
redeliveries that are still in its bounded window (``RecentIds``). A stream worker's own student
results for the output partitions whose window it holds are merged before they are sent
(``MergeStage.merge_student_results``), without crossing the results topic.
"""

from __future__ import annotations

import time
from collections.abc import Container, Sequence
from dataclasses import dataclass

from stream_app.digest_window import DigestWindow, digest
from stream_app.kafka_io.partitioning import key_partitions
from stream_app.records import (
    H_PRODUCED_AT,
    H_TIER,
    Incoming,
    Output,
    Reason,
    StageResult,
)


class RecentIds:
    """Remembers the last ``window`` ids first seen on each partition, in fixed memory.

    Bound (the invariant): each partition holds at most ``window`` ids, evicting the
    oldest first, so memory is O(partitions × window) whatever the input volume. A
    redelivered id is recognised if fewer than ``window`` newer ids reached its
    partition since its first delivery; redeliveries come from uncommitted offsets,
    so ``window`` must exceed the records a stage can have in flight between commits.

    Each partition's window is a ``DigestWindow`` (``stream_app.digest_window``): 128-bit
    digests in memory allocated in full when the partition is first seen, so a filling
    window does not grow the process.
    """

    def __init__(self, window: int):
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        self._seen: dict[int, DigestWindow] = {}

    def first_time(self, partition: int, key: bytes) -> bool:
        """True the first time ``key`` is seen on ``partition`` within the window."""
        return self._partition(partition).add(digest(key))

    def remember(self, partition: int, keys: list[bytes]) -> None:
        """Load ids already emitted on ``partition`` (oldest first), e.g. read back from the output topic."""
        seen = self._partition(partition)
        for key in keys[-self.window :]:
            seen.add(digest(key))

    def _partition(self, partition: int) -> DigestWindow:
        seen = self._seen.get(partition)
        if seen is None:
            seen = self._seen[partition] = DigestWindow(self.window)
        return seen

    def forget(self, partition: int) -> None:
        """Drop a partition's ids once it is revoked: its next owner reads them back."""
        self._seen.pop(partition, None)

    def partitions(self) -> set[int]:
        return set(self._seen)

    def __len__(self) -> int:
        return sum(len(s) for s in self._seen.values())


@dataclass(frozen=True)
class MergeStage:
    """Forward each result id once to the output topic; drop redeliveries within the window.

    The result bytes and headers pass through unchanged, keyed by id; the id is read from
    the key and the tier and input timestamp from the headers, so the merge never parses a
    result. Each forwarded result's latency (input timestamp → now) goes to the metrics.
    """

    recent: RecentIds
    output_topic: str
    dlq_topic: str

    def __call__(self, records: Sequence[Incoming]) -> StageResult:
        out = StageResult()
        now = time.time()
        for record in records:
            if record.key is None or record.value is None:
                out.reject(self.dlq_topic, record, Reason.BAD_RESULT, "result without key or value", "merge")
                continue
            if self.recent.first_time(record.source.partition, record.key):
                # the same partition number: result and output topics are co-partitioned (checked at start-up),
                # so it is the key's partition, without hashing the key again
                self._forward(out, Output(self.output_topic, record.key, record.value, record.headers, origin=record,
                                          partition=record.source.partition), now, *_tier_and_time(record.headers))
            else:
                out.duplicates += 1
        return out

    def merge_student_results(self, outputs: Sequence[Output], results_topic: str, partitions: int,
                              here: Container[int]) -> tuple[list[Output], StageResult]:
        """A student batch's outputs with its results for the output partitions in ``here`` merged on the spot.

        A result bound for ``results_topic`` whose id falls in a partition in ``here`` (of ``partitions``,
        the count of the results topic and of the output: co-partitioned) goes straight to that output
        partition if its id is new to the window, and is dropped if it is not, as the merge would have
        done one hop later; every other output is left as it is. Returns the outputs to send and what was
        merged (for the merge's meter).
        """
        merged = StageResult()
        results = [i for i, o in enumerate(outputs) if o.topic == results_topic]
        if not results:
            return list(outputs), merged
        sending: list[Output | None] = list(outputs)
        now = time.time()
        for i, partition in zip(results, key_partitions([outputs[i].key for i in results], partitions)):
            if partition not in here:
                continue
            result = outputs[i]
            if self.recent.first_time(partition, result.key):
                # the student's own result: its tier is the student's and its input timestamp is its origin's
                # (what its headers say, without reading them back)
                produced_at = result.origin.timestamp if result.origin is not None else 0.0
                sending[i] = self._forward(merged, Output(self.output_topic, result.key, result.value, result.headers,
                                                          origin=result.origin, partition=partition), now, "student", produced_at)
            else:
                sending[i] = None
                merged.duplicates += 1
        return [o for o in sending if o is not None], merged

    @staticmethod
    def _forward(out: StageResult, output: Output, now: float, tier: str, produced_at: float) -> Output:
        """Count ``output`` as merged into ``out``, with its latency (input timestamp → now) where its tier
        and input timestamp are known (``tier`` not empty, ``produced_at`` > 0)."""
        out.outputs.append(output)
        if tier and produced_at > 0:
            out.latencies.append((tier, now - produced_at))
        return output


def _tier_and_time(headers: Sequence[tuple[str, bytes]]) -> tuple[str, float]:
    """The ``tango.tier`` and ``tango.produced_at`` headers of a result ("" if absent or unreadable)."""
    tier, produced_at = "", 0.0
    for name, value in headers:
        if name == H_TIER:
            tier = value.decode("utf-8", "replace")
        elif name == H_PRODUCED_AT:
            try:
                produced_at = float(value)
            except ValueError:
                return "", 0.0
    return (tier, produced_at) if produced_at > 0 else ("", 0.0)
