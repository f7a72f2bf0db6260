"""The student stage (pure: no Kafka, no torch, no event loop).

Decode → validate → student logits (one call per batch) → calibrate → route: each
confident record becomes a student result, each unsure one a teacher request, each bad
one a dead letter; with the shadow audit on, a sample of the confident ones is also sent
to the teacher on the shadow topic. The stage takes the logits as a callable, so tests pass any function
and ``stream_app.local.run_local`` runs the cascade without a broker; the stream worker
calls it off the event loop (the model call is the slow part).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import orjson
import structlog

from models.cascade import calibrated_probs, route
from models.precision import choose_student_precision
from stream_app.audit import in_shadow_sample
from stream_app.records import (
    TOO_LARGE_PREFIX_BYTES,
    Incoming,
    Output,
    Reason,
    Rejected,
    StageResult,
    Tweet,
    decode_tweet,
    record_bytes,
    result_headers,
    result_record,
    teacher_request,
)
from stream_app.telemetry import worker_name

if TYPE_CHECKING:
    from models.bundle import Bundle
    from stream_app.settings import Settings

log = structlog.get_logger("tango.stream")

Logits = Callable[[Sequence[str]], np.ndarray]


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
    max_record_bytes: int = 900_000  # key + value + headers; larger records are dead-lettered with a prefix
    max_id_chars: int = 256
    shadow_fraction: float = 0.0  # of the student-decided tweets, also sent to shadow_topic
    shadow_topic: str = "teacher.shadow"

    def __call__(self, records: Sequence[Incoming]) -> StageResult:
        out = StageResult()
        tweets: list[Tweet] = []
        sources: list[Incoming] = []
        for record in records:
            size = record_bytes(record.key, record.value, record.headers)
            if size > self.max_record_bytes:
                out.reject(self.dlq_topic, record, Reason.RECORD_TOO_LARGE,
                           f"the record has {size} bytes, the limit is {self.max_record_bytes}", "student",
                           keep_bytes=TOO_LARGE_PREFIX_BYTES)
                continue
            decoded = decode_tweet(record.value, record.source, self.max_text_chars, record.timestamp, self.max_id_chars)
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
        out.model_seconds = decided_at - ingested_at
        out.student_version = self.student_version
        label_ids, confidences = routing.label_ids.tolist(), routing.confidences.tolist()
        for i, tweet in enumerate(tweets):
            key = tweet.id.encode()
            try:
                if routing.to_teacher[i]:
                    value = teacher_request(tweet, ingested_at, label_ids[i], confidences[i], probs[i].tolist(),
                                            self.student_version, self.threshold)
                    out.outputs.append(Output(self.teacher_topic, key, value, origin=sources[i]))
                    out.to_teacher += 1
                else:
                    value = result_record(
                        tweet_id=tweet.id, labels=self.labels, label_id=label_ids[i], confidence=confidences[i],
                        tier="student", student_label_id=label_ids[i], student_confidence=confidences[i],
                        models={"student": self.student_version}, threshold=self.threshold, produced_at=tweet.produced_at,
                        ingested_at=ingested_at, decided_at=decided_at, extra=tweet.extra, worker=self.worker,
                    )
                    out.outputs.append(Output(self.results_topic, key, value, result_headers("student", tweet.produced_at),
                                              origin=sources[i]))
                    if in_shadow_sample(tweet.id, self.shadow_fraction):
                        shadow = teacher_request(tweet, ingested_at, label_ids[i], confidences[i], probs[i].tolist(),
                                                 self.student_version, self.threshold, shadow=True)
                        out.outputs.append(Output(self.shadow_topic, key, shadow, origin=sources[i]))
            except orjson.JSONEncodeError as exc:  # JSON the decoder accepts but the encoder cannot nest
                out.reject(self.dlq_topic, sources[i], Reason.TOO_DEEP, f"extra fields cannot be re-encoded: {exc}", "student")
        return out


def build_student_stage(settings: "Settings", bundle: "Bundle", worker: str | None = None) -> StudentStage:
    """The student stage a bundle and the settings describe (the threshold: the setting's, or the bundle's)."""
    manifest = bundle.manifest
    precision = choose_student_precision(settings.student_precision, manifest.student.arch, manifest.student.config.get("layers", 1))
    if settings.student_process:
        from stream_app.student_process import StudentProcess  # noqa: PLC0415

        logits: Logits = StudentProcess(bundle.root, precision, settings.torch_threads)
    else:
        logits = bundle.load_student(precision).logits
    log.info("student loaded", arch=manifest.student.arch, version=manifest.student.version, precision=precision,
             own_process=settings.student_process)
    return StudentStage(
        logits=logits,
        labels=manifest.labels,
        threshold=settings.threshold if settings.threshold >= 0 else manifest.threshold,
        temperature=manifest.temperature,
        student_version=manifest.student.version,
        max_text_chars=settings.max_text_chars,
        results_topic=settings.student_results_topic,
        teacher_topic=settings.teacher_topic,
        dlq_topic=settings.dlq_topic,
        worker=worker or worker_name("stream"),
        max_record_bytes=settings.max_record_bytes,
        max_id_chars=settings.max_id_chars,
        shadow_fraction=settings.shadow_fraction,
        shadow_topic=settings.shadow_topic,
    )
