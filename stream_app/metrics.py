"""Prometheus metrics of one process (``prometheus-client``), one registry per process.

Names follow the Prometheus conventions: counters end in ``_total``, times are seconds,
sizes are records. ``StageMeter`` counts one stage's batches into both the summary log
line (``Counters``) and these metrics, so the two never disagree.
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics_core import HistogramMetricFamily
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString

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
    "tango_shadow_by_version_total", "tango_student_process_cpu_seconds_total",
    "tango_student_process_resident_memory_bytes",
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


class BatchHistogram:
    """A histogram with one label, observed a batch of values at a time: one bucket count (numpy) per
    batch instead of ``Histogram.observe``'s locked bucket search per value. It exports what a
    ``prometheus_client`` histogram does (``_bucket`` with ``le``, ``_count``, ``_sum``).

    >>> h = BatchHistogram("latency_seconds", "Latency.", "tier", (0.1, 1.0), CollectorRegistry())
    >>> h.observe("student", [0.05, 0.1, 0.5, 3.0])
    >>> [(s.name, s.labels.get("le"), s.value) for s in next(h.collect()).samples][:4]
    [('latency_seconds_bucket', '0.1', 2.0), ('latency_seconds_bucket', '1.0', 3.0), ('latency_seconds_bucket', '+Inf', 4.0), ('latency_seconds_count', None, 4.0)]
    """

    def __init__(self, name: str, documentation: str, label: str, buckets: Sequence[float], registry: CollectorRegistry):
        self.name, self.documentation, self.label = name, documentation, label
        self.bounds = np.array([*buckets, float("inf")])
        self._counts: dict[str, np.ndarray] = {}
        self._sums: dict[str, float] = {}
        self._lock = threading.Lock()  # observed on the event loop, collected on the metrics server's thread
        registry.register(self)

    def observe(self, label_value: str, seconds: Sequence[float]) -> None:
        """Count ``seconds`` into the buckets of ``label_value`` (a value equal to a bound falls in its bucket)."""
        values = np.asarray(seconds, dtype=np.float64)
        counts = np.bincount(np.searchsorted(self.bounds, values, side="left"), minlength=len(self.bounds))
        with self._lock:
            self._counts[label_value] = self._counts.get(label_value, 0) + counts
            self._sums[label_value] = self._sums.get(label_value, 0.0) + float(values.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        with self._lock:
            for label_value, counts in self._counts.items():
                cumulative = np.cumsum(counts).tolist()
                family.add_metric([label_value], [(floatToGoString(b), float(c)) for b, c in zip(self.bounds, cumulative)],
                                  self._sums[label_value])
        yield family

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=[self.label])]


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
        # observed a merge batch at a time (one result per record: a per-value observe was 5% of the loop)
        self.latency = BatchHistogram("tango_end_to_end_latency_seconds",
                                      "Input record timestamp to the result written to the output, per tier.", "tier",
                                      SECONDS_BUCKETS, registry=r)
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

    def watch_student_process(self, pid: Callable[[], int]) -> None:
        """Export the student's child process (``student_process``) as ``tango_student_process_*``: its CPU
        seconds and resident memory, which ``process_*`` (this process alone) leave out. ``pid`` is asked at
        every scrape, so a child started anew (a reload, a restart) is the one measured."""
        ProcessCollector(namespace="tango_student", pid=pid, registry=self.registry)  # tango_student_process_*

    def serving(self, bundle: str, student_version: str, teacher_version: str = "") -> None:
        self.bundle.info({"bundle": bundle, "student_version": student_version, "teacher_version": teacher_version})

    def set_lag(self, group: str, lags: Mapping[tuple[str, int], int]) -> None:
        for (topic, partition), lag in lags.items():
            self.lag.labels(group, topic, str(partition)).set(lag)


_topic = attrgetter("topic")


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
        for topic, n in Tally(map(_topic, result.outputs)).items():  # counted in C: a batch has one output per record
            kind = m.kinds.get(topic, "other")
            kinds[kind] = kinds.get(kind, 0) + n
        for kind, n in kinds.items():
            m.records_out.labels(self.stage, kind).inc(n)
        if self.stage in ("student", "teacher") and kinds.get("result"):
            m.decided.labels(self.stage).inc(kinds["result"])
        for reason in dead:
            m.dead_letters.labels(self.stage, reason).inc()
        if result.duplicates:
            m.duplicates.inc(result.duplicates)
        by_tier: dict[str, list[float]] = {}
        for tier, seconds in result.latencies:
            by_tier.setdefault(tier, []).append(seconds)
        for tier, seconds in by_tier.items():
            m.output_records.labels(tier).inc(len(seconds))
            m.latency.observe(tier, seconds)
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
