"""Prometheus metrics of one process (``prometheus-client``), one registry per process.

Names follow the Prometheus conventions: counters end in ``_total``, times are seconds,
sizes are records. ``StageMeter`` counts one stage's batches into both the summary log
line (``Counters``) and these metrics, so the two never disagree.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.process_collector import ProcessCollector

from stream_app.records import StageResult
from stream_app.settings import Settings
from stream_app.telemetry import Counters

METRIC_NAMES = (
    "tango_records_in_total", "tango_records_out_total", "tango_decided_total", "tango_output_records_total",
    "tango_dead_letters_total", "tango_duplicates_dropped_total", "tango_batch_records", "tango_model_seconds",
    "tango_end_to_end_latency_seconds", "tango_routed_fraction", "tango_threshold", "tango_bundle_threshold",
    "tango_consumer_lag_records", "tango_rebalances_total", "tango_bundle_info", "tango_reloads_total",
    "tango_shadow_audited_total", "tango_shadow_agreed_total", "tango_shadow_agreement",
    "tango_shadow_agreement_low", "tango_shadow_agreement_high", "tango_routed_by_version_total",
    "tango_shadow_by_version_total",
)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ROUTED_WINDOW = 20  # student batches the routed-fraction gauge averages over


def output_kinds(settings: Settings) -> dict[str, str]:
    """Topic → the ``kind`` label of ``tango_records_out_total``."""
    return {
        settings.student_results_topic: "result",
        settings.teacher_results_topic: "result",
        settings.teacher_topic: "teacher_request",
        settings.output_topic: "output",
        settings.shadow_topic: "shadow_request",
        settings.shadow_results_topic: "shadow_result",
        settings.dlq_topic: "dead_letter",
        **({settings.knowledge_topic: "knowledge"} if settings.knowledge_topic else {}),
    }


class Metrics:
    """Every metric a tango process exports; a process creates one."""

    def __init__(self, settings: Settings, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.kinds = output_kinds(settings)
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
        self.records_in = Counter("tango_records_in_total", "Records consumed, per stage.", ["stage"], registry=r)
        self.records_out = Counter("tango_records_out_total", "Records produced, per stage and kind of record.",
                                   ["stage", "kind"], registry=r)
        self.decided = Counter("tango_decided_total", "Results decided, per tier.", ["tier"], registry=r)
        self.output_records = Counter("tango_output_records_total", "Results the merge wrote to the output, per tier.",
                                      ["tier"], registry=r)
        self.dead_letters = Counter("tango_dead_letters_total", "Dead letters, per stage and reason.", ["stage", "reason"], registry=r)
        self.duplicates = Counter("tango_duplicates_dropped_total", "Redelivered results the merge dropped.", registry=r)
        self.batch_records = Histogram("tango_batch_records", "Records per batch, per stage.", ["stage"],
                                       buckets=BATCH_BUCKETS, registry=r)
        self.model_seconds = Histogram("tango_model_seconds", "Model time per batch, per stage.", ["stage"],
                                       buckets=SECONDS_BUCKETS, registry=r)
        self.latency = Histogram("tango_end_to_end_latency_seconds",
                                 "Input record timestamp to the result written to the output, per tier.", ["tier"],
                                 buckets=SECONDS_BUCKETS, registry=r)
        self.routed_fraction = Gauge("tango_routed_fraction", f"Share of valid tweets sent to the teacher, last {ROUTED_WINDOW} batches.",
                                     registry=r)
        self.threshold = Gauge("tango_threshold", "The routing threshold in effect.", registry=r)
        self.bundle_threshold = Gauge("tango_bundle_threshold", "The threshold the bundle (or the threshold setting) asks for.", registry=r)
        self.lag = Gauge("tango_consumer_lag_records", "Records a consumer group has not committed, per partition.",
                         ["group", "topic", "partition"], registry=r)
        self.rebalances = Counter("tango_rebalances_total", "Partition assignments this process received.", registry=r)
        self.bundle = Info("tango_bundle", "The bundle and model versions being served.", registry=r)
        self.reloads = Counter("tango_reloads_total", "Bundle reloads, per outcome (ok, refused).", ["outcome"], registry=r)
        self.shadow_audited = Counter("tango_shadow_audited_total", "Student-decided tweets the teacher audited.", registry=r)
        self.shadow_agreed = Counter("tango_shadow_agreed_total", "Audited tweets where the teacher agreed with the student.", registry=r)
        self.shadow_agreement = Gauge("tango_shadow_agreement", "Estimated student accuracy on the tweets it keeps (teacher agreement).", registry=r)
        self.routed_by_version = Counter(
            "tango_routed_by_version_total", "Valid tweets per student version, routed to the teacher (yes) or decided by the student (no).",
            ["student_version", "routed"], registry=r)
        self.shadow_by_version = Counter(
            "tango_shadow_by_version_total", "Shadow-audited tweets per student version, the teacher agreeing (yes) or not (no).",
            ["student_version", "agreed"], registry=r)
        self.shadow_low = Gauge("tango_shadow_agreement_low", "Lower end of the agreement's 95% Wilson interval.", registry=r)
        self.shadow_high = Gauge("tango_shadow_agreement_high", "Upper end of the agreement's 95% Wilson interval.", registry=r)
        for unknown in (self.shadow_agreement, self.shadow_low, self.shadow_high):
            unknown.set(float("nan"))  # until a teacher worker audits: not 0, which would read as "never agrees"

    def serving(self, bundle: str, student_version: str, teacher_version: str = "") -> None:
        self.bundle.info({"bundle": bundle, "student_version": student_version, "teacher_version": teacher_version})

    def set_lag(self, group: str, lags: Mapping[tuple[str, int], int]) -> None:
        for (topic, partition), lag in lags.items():
            self.lag.labels(group, topic, str(partition)).set(lag)


@dataclass
class StageMeter:
    """Counts one stage's batches into its summary line (``counters``) and the metrics."""

    stage: str  # student, merge, teacher
    metrics: Metrics
    counters: Counters = field(default_factory=Counters)
    _routed: deque = field(default_factory=lambda: deque(maxlen=ROUTED_WINDOW))

    def batch(self, records: int, result: StageResult, rerouted: Sequence[str] = ()) -> None:
        """One committed batch: ``records`` consumed, what the stage made of them, dead letters rerouted at send."""
        m = self.metrics
        dead = [*result.dead_letters, *rerouted]
        self.counters.add_batch(records, result.to_teacher, result.duplicates, dead)
        m.records_in.labels(self.stage).inc(records)
        m.batch_records.labels(self.stage).observe(records)
        if result.model_seconds:
            m.model_seconds.labels(self.stage).observe(result.model_seconds)
        kinds: dict[str, int] = {}
        for output in result.outputs:
            kind = m.kinds.get(output.topic, "other")
            kinds[kind] = kinds.get(kind, 0) + 1
        for kind, n in kinds.items():
            m.records_out.labels(self.stage, kind).inc(n)
        if self.stage in ("student", "teacher") and kinds.get("result"):
            m.decided.labels(self.stage).inc(kinds["result"])
        for reason in dead:
            m.dead_letters.labels(self.stage, reason).inc()
        if result.duplicates:
            m.duplicates.inc(result.duplicates)
        for tier, seconds in result.latencies:
            m.output_records.labels(tier).inc()
            m.latency.labels(tier).observe(seconds)
        if self.stage == "student":
            valid = kinds.get("result", 0) + result.to_teacher
            self._routed.append((result.to_teacher, valid))
            total = sum(v for _, v in self._routed)
            m.routed_fraction.set(sum(t for t, _ in self._routed) / total if total else 0.0)
            if result.student_version:  # per version: a reload's effect on routing, in PromQL rate ratios
                m.routed_by_version.labels(result.student_version, "yes").inc(result.to_teacher)
                m.routed_by_version.labels(result.student_version, "no").inc(valid - result.to_teacher)
        if result.audits:
            agreed = sum(result.audits)
            m.shadow_audited.inc(len(result.audits))
            m.shadow_agreed.inc(agreed)
            for ok, version in zip(result.audits, result.audit_versions):
                m.shadow_by_version.labels(version, "yes" if ok else "no").inc()
