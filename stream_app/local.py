"""Run the cascade's stages in memory, without a broker: for tests and notebooks.

``run_local`` feeds raw input values through the student, teacher and merge stages
exactly as the Kafka processes would (same stages, same records, in batches), with
in-memory lists standing in for topics. It shows what a pipeline produces; it says
nothing about delivery, which the integration tests check on a real broker.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Protocol

from stream_app.merge import MergeStage
from stream_app.records import Incoming, Output, Source, StageResult
from stream_app.student import StudentStage


class ResultStage(Protocol):
    """A stage that writes results to ``results_topic``: ``workers.teacher_stage.TeacherStage``."""

    results_topic: str

    def __call__(self, records: Sequence[Incoming]) -> StageResult: ...


def _partition(key: bytes, partitions: int) -> int:
    return zlib.crc32(key) % partitions


def _as_incoming(outputs: Sequence[Output], partitions: int) -> list[Incoming]:
    offsets: dict[int, int] = defaultdict(int)
    records = []
    for o in outputs:
        partition = _partition(o.key, partitions)
        records.append(Incoming(Source(o.topic, partition, offsets[partition]), o.key, o.value, 0.0, tuple(o.headers)))
        offsets[partition] += 1
    return records


def _in_batches(stage, records: Sequence[Incoming], size: int) -> list[Output]:
    produced: list[Output] = []
    for start in range(0, len(records), size):
        produced.extend(stage(records[start : start + size]).outputs)
    return produced


def run_local(
    values: Sequence[bytes | None],
    student: StudentStage,
    teacher: ResultStage,
    merge: MergeStage,
    batch_size: int = 64,
    input_topic: str = "tweets",
    partitions: int = 4,
) -> dict[str, list[Output]]:
    """Every record each topic would hold after ``values`` went through the cascade."""
    inputs = [Incoming(Source(input_topic, 0, offset), None, value, 0.0) for offset, value in enumerate(values)]
    topics: dict[str, list[Output]] = defaultdict(list)
    for o in _in_batches(student, inputs, batch_size):
        topics[o.topic].append(o)
    for o in _in_batches(teacher, _as_incoming(topics[student.teacher_topic], partitions), batch_size):
        topics[o.topic].append(o)
    results = topics[student.results_topic] + topics[teacher.results_topic]
    for o in _in_batches(merge, _as_incoming(results, partitions), batch_size):
        topics[o.topic].append(o)
    return dict(topics)
