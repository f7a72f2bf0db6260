"""The teacher stage: parse teacher requests → teacher logits (one call) → results.

A shadow request (the shadow audit) gets a shadow answer on its own topic instead of a
result: the teacher's label next to the student's, never merged into the output.

Both carry the teacher's probabilities (``teacher_probs``, rounded), and, when a knowledge
topic is set, each tweet's text and those probabilities also go there, for re-distilling
the student from the stream (``tango distill --from-stream``). They are produced with the
result in the same batch (the same transaction in exactly-once mode), so what is kept is
what was answered.

Pure like the student stage (the logits are a callable), plus ``build_teacher_stage``,
which loads the teacher a bundle names (or the ``teacher_model`` setting's) on the GPU if
there is one, in the ``teacher_precision`` setting's precision (``auto``: the hardware's
choice), checks it against the bundle's labels, and names the precision in the version
results carry (``<version>-bf16``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from models.cascade import calibrated_probs
from stream_app.records import (
    Incoming,
    Output,
    Reason,
    StageResult,
    compact_probs,
    knowledge_record,
    result_headers,
    result_record,
    shadow_answer,
)
from stream_app.student import Logits
from stream_app.telemetry import worker_name

if TYPE_CHECKING:
    from models.bundle import Bundle
    from stream_app.settings import Settings


@dataclass(frozen=True)
class TeacherStage:
    """Parse teacher requests → teacher logits (one call, length-bucketed) → results."""

    logits: Logits
    labels: Sequence[str]
    teacher_version: str
    results_topic: str
    dlq_topic: str
    worker: str = "teacher"
    shadow_results_topic: str = "results.shadow"
    knowledge_topic: str = ""  # empty: keep nothing
    probs_digits: int = 3

    def __call__(self, records: Sequence[Incoming]) -> StageResult:
        out = StageResult()
        requests: list[dict[str, Any]] = []
        origins: list[Incoming] = []
        for record in records:
            request = _parse_request(record.value, len(self.labels))
            if isinstance(request, str):
                out.reject(self.dlq_topic, record, Reason.BAD_TEACHER_REQUEST, request, "teacher")
            else:
                requests.append(request)
                origins.append(record)
        if not requests:
            return out
        started = time.time()
        probs = calibrated_probs(self.logits([r["text"] for r in requests]), 1.0)
        decided_at = time.time()
        out.model_seconds = decided_at - started
        label_ids = probs.argmax(axis=1).tolist()
        for request, origin, label_id, row in zip(requests, origins, label_ids, probs):
            student = request["student"]
            models = {"student": student.get("version", ""), "teacher": self.teacher_version}
            key = request["id"].encode()
            teacher_probs = compact_probs(row, self.probs_digits)
            if self.knowledge_topic:
                kept = knowledge_record(tweet_id=request["id"], text=request["text"], probs=teacher_probs,
                                        source="shadow" if request.get("shadow") else "routed", models=models,
                                        threshold=request.get("threshold"), decided_at=decided_at)
                out.outputs.append(Output(self.knowledge_topic, key, kept, origin=origin))
            if request.get("shadow"):
                value = shadow_answer(tweet_id=request["id"], labels=self.labels, label_id=label_id,
                                      confidence=float(row[label_id]), student_label_id=student["label_id"], models=models,
                                      threshold=request.get("threshold"), decided_at=decided_at, worker=self.worker,
                                      teacher_probs=teacher_probs)
                out.outputs.append(Output(self.shadow_results_topic, key, value, origin=origin))
                out.audits.append(label_id == student["label_id"])
                out.audit_versions.append(str(student.get("version", "")))
                continue
            produced_at = request.get("produced_at", 0.0)
            value = result_record(
                tweet_id=request["id"], labels=self.labels, label_id=label_id, confidence=float(row[label_id]),
                tier="teacher", student_label_id=student["label_id"], student_confidence=student["confidence"],
                models=models, threshold=request.get("threshold"), produced_at=produced_at,
                ingested_at=request["ingested_at"], decided_at=decided_at, extra=request.get("extra", {}), worker=self.worker,
                teacher_probs=teacher_probs,
            )
            out.outputs.append(Output(self.results_topic, key, value, result_headers("teacher", produced_at), origin=origin))
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


class TeacherMismatch(ValueError):
    """The teacher's label count differs from the bundle's."""


def build_teacher_stage(settings: "Settings", bundle: "Bundle", worker: str | None = None) -> TeacherStage:
    """Load the bundle's teacher (or ``settings.teacher_model``) and wrap it in a stage.

    The device is CUDA when torch sees a GPU, else the CPU; batches stay cut by the token budget
    (``teacher_token_budget``, or by device when it is 0: ``models.teacher.bulk_token_budget``).
    """
    from models.teacher import TeacherClassifier, bound_inference_memory  # noqa: PLC0415 - only where served

    bound_inference_memory()
    source = settings.teacher_model or bundle.teacher_path
    teacher = TeacherClassifier.load(
        source, max_length=bundle.manifest.max_length, precision=settings.teacher_precision, device="auto",
        token_budget=settings.teacher_token_budget,
    )
    if teacher.num_labels != len(bundle.manifest.labels):
        raise TeacherMismatch(f"teacher {source} has {teacher.num_labels} labels, the bundle {len(bundle.manifest.labels)}")
    version = bundle.manifest.teacher.version if not settings.teacher_model else f"teacher-{settings.teacher_model}"
    return TeacherStage(
        logits=teacher.logits, labels=bundle.manifest.labels, teacher_version=f"{version}-{teacher.precision}",
        results_topic=settings.teacher_results_topic, dlq_topic=settings.dlq_topic, worker=worker or worker_name("teacher"),
        shadow_results_topic=settings.shadow_results_topic, knowledge_topic=settings.knowledge_topic,
        probs_digits=settings.teacher_probs_digits,
    )
