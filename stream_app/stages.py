"""The three stages as plain functions of a batch: no Kafka, no event loop.

Each stage takes the records a consumer delivered and returns the records to
produce (``Output``), so the whole cascade can be tested without a broker
(``stream_app.local.run_local``) and the Kafka processes stay thin shells around it.
Stages are called off the event loop (their model call is the slow part).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from stream_app.dedup import RecentIds
from stream_app.records import (
    Reason,
    Rejected,
    Source,
    Tweet,
    dead_letter_headers,
    decode_tweet,
    result_record,
    teacher_request,
)
from stream_app.routing import calibrated_probs, route

Logits = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True, slots=True)
class Incoming:
    """One consumed Kafka record."""

    source: Source
    key: bytes | None
    value: bytes | None
    timestamp: float = 0.0  # epoch seconds
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass
class StageResult:
    outputs: list[Output] = field(default_factory=list)
    to_teacher: int = 0
    dead_letters: list[str] = field(default_factory=list)  # reasons
    duplicates: int = 0

    def reject(self, dlq_topic: str, record: Incoming, reason: Reason, detail: str, stage: str) -> None:
        """Dead-letter ``record``: its original bytes, key and headers, the reason in the headers."""
        rejected = Rejected(reason, detail, record.source, record.value, record.key, tuple(record.headers))
        source = record.source
        key = record.key if record.key is not None else f"{source.topic}:{source.partition}:{source.offset}".encode()
        self.outputs.append(Output(dlq_topic, key, record.value or b"", dead_letter_headers(rejected, stage)))
        self.dead_letters.append(reason.value)


@dataclass(frozen=True)
class StudentStage:
    """Decode → validate → student logits (one call) → calibrate → route."""

    logits: Logits
    labels: Sequence[str]
    threshold: float
    temperature: float
    student_version: str
    max_text_chars: int
    results_topic: str
    teacher_topic: str
    dlq_topic: str
    worker: str = "stream"

    def __call__(self, records: Sequence[Incoming]) -> StageResult:
        out = StageResult()
        tweets: list[Tweet] = []
        sources: list[Incoming] = []
        for record in records:
            decoded = decode_tweet(record.value, record.source, self.max_text_chars, record.timestamp)
            if isinstance(decoded, Rejected):
                out.reject(self.dlq_topic, record, decoded.reason, decoded.detail, "student")
            else:
                tweets.append(decoded)
                sources.append(record)
        if not tweets:
            return out
        ingested_at = time.time()
        probs = calibrated_probs(self.logits([t.text for t in tweets]), self.temperature)
        routing = route(probs, self.threshold)
        decided_at = time.time()
        label_ids, confidences = routing.label_ids.tolist(), routing.confidences.tolist()
        for i, tweet in enumerate(tweets):
            key = tweet.id.encode()
            try:
                if routing.to_teacher[i]:
                    value = teacher_request(tweet, ingested_at, label_ids[i], confidences[i], probs[i].tolist(), self.student_version)
                    out.outputs.append(Output(self.teacher_topic, key, value))
                    out.to_teacher += 1
                else:
                    value = result_record(
                        tweet_id=tweet.id, labels=self.labels, label_id=label_ids[i], confidence=confidences[i],
                        tier="student", student_label_id=label_ids[i], student_confidence=confidences[i],
                        models={"student": self.student_version}, produced_at=tweet.produced_at,
                        ingested_at=ingested_at, decided_at=decided_at, extra=tweet.extra, worker=self.worker,
                    )
                    out.outputs.append(Output(self.results_topic, key, value))
            except orjson.JSONEncodeError as exc:  # JSON the decoder accepts but the encoder cannot nest
                out.reject(self.dlq_topic, sources[i], Reason.TOO_DEEP, f"extra fields cannot be re-encoded: {exc}", "student")
        return out


@dataclass(frozen=True)
class TeacherStage:
    """Parse teacher requests → teacher logits (one call, length-bucketed) → results."""

    logits: Logits
    labels: Sequence[str]
    teacher_version: str
    results_topic: str
    dlq_topic: str
    worker: str = "teacher"

    def __call__(self, records: Sequence[Incoming]) -> StageResult:
        out = StageResult()
        requests: list[dict[str, Any]] = []
        for record in records:
            request = _parse_request(record.value, len(self.labels))
            if isinstance(request, str):
                out.reject(self.dlq_topic, record, Reason.BAD_TEACHER_REQUEST, request, "teacher")
            else:
                requests.append(request)
        if not requests:
            return out
        probs = calibrated_probs(self.logits([r["text"] for r in requests]), 1.0)
        decided_at = time.time()
        label_ids = probs.argmax(axis=1).tolist()
        for request, label_id, row in zip(requests, label_ids, probs):
            student = request["student"]
            value = result_record(
                tweet_id=request["id"], labels=self.labels, label_id=label_id, confidence=float(row[label_id]),
                tier="teacher", student_label_id=student["label_id"], student_confidence=student["confidence"],
                models={"student": student.get("version", ""), "teacher": self.teacher_version},
                produced_at=request.get("produced_at", 0.0), ingested_at=request["ingested_at"],
                decided_at=decided_at, extra=request.get("extra", {}), worker=self.worker,
            )
            out.outputs.append(Output(self.results_topic, request["id"].encode(), value))
        return out


def _parse_request(value: bytes | None, num_labels: int) -> dict[str, Any] | str:
    """A teacher request, or the reason it is not one."""
    try:
        request = orjson.loads(value or b"")
        if not (isinstance(request.get("id"), str) and isinstance(request.get("text"), str)):
            return "request lacks a string id or text"
        student = request["student"]
        label_id = student["label_id"]
        if not (type(label_id) is int and 0 <= label_id < num_labels):
            return f"student.label_id {label_id!r} is not a label index below {num_labels}"
        float(student["confidence"])
        float(request["ingested_at"])
        return request
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        return f"not a teacher request: {exc!r}"


@dataclass(frozen=True)
class MergeStage:
    """Forward each result id once to the output topic; drop redeliveries within the window.

    The result bytes pass through unchanged, keyed by id; the id is read from the key,
    so the merge never parses a result.
    """

    recent: RecentIds
    output_topic: str
    dlq_topic: str

    def __call__(self, records: Sequence[Incoming]) -> StageResult:
        out = StageResult()
        for record in records:
            if record.key is None or record.value is None:
                out.reject(self.dlq_topic, record, Reason.BAD_RESULT, "result without key or value", "merge")
                continue
            if self.recent.first_time(record.source.partition, record.key):
                out.outputs.append(Output(self.output_topic, record.key, record.value))
            else:
                out.duplicates += 1
        return out


@dataclass(frozen=True)
class PassthroughStage:
    """Forward every record unchanged (benchmark ceiling of the transport, no model).

    The input record's timestamp rides along in the ``tango.produced_at`` header so the
    benchmark can measure latency without touching the value.
    """

    output_topic: str

    def __call__(self, records: Sequence[Incoming]) -> StageResult:
        out = StageResult()
        for r in records:
            key = r.key if r.key is not None else f"{r.source.topic}:{r.source.partition}:{r.source.offset}".encode()
            out.outputs.append(Output(self.output_topic, key, r.value or b"", (("tango.produced_at", repr(r.timestamp).encode()),)))
        return out
