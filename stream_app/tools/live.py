"""A live view of a running pipeline: ``tango top`` and the demo's screen.

``PipelineWatch`` reads the output topic as it fills and, each refresh, the end offsets of
the input and dead-letter topics and the teacher group's lag; ``Snapshot`` is what one
refresh saw. On a terminal it is drawn with rich and redrawn in place; elsewhere (a pipe, a
CI log) it prints one plain line per refresh.
"""

from __future__ import annotations

import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from stream_app.settings import Settings
from stream_app.tools.runner import Collected, percentiles_ms

RECENT = 2000  # latencies kept per tier for the live percentiles


@dataclass(frozen=True)
class Snapshot:
    seconds: float  # since the watch started
    input_per_s: float
    output_per_s: float
    outputs: int
    tiers: dict[str, int]
    teacher_lag: int  # teacher requests not yet committed by the teacher group
    dead_letters: int
    latency_ms: dict[str, dict[str, float]]  # per tier, of the recent results
    accuracy: float | None  # running, when gold labels are known
    accuracy_of: int = 0  # results with a gold label

    @property
    def routed_fraction(self) -> float:
        total = sum(self.tiers.values())
        return self.tiers.get("teacher", 0) / total if total else 0.0


@dataclass
class PipelineWatch:
    settings: Settings
    gold: dict[str, int] | None = None
    from_beginning: bool = True
    collected: Collected | None = None  # every result, for a summary at the end (the demo); a long watch keeps none

    def __post_init__(self) -> None:
        from kafka import KafkaConsumer

        from stream_app.kafka_io.clients import kafka_python_config

        config = kafka_python_config(self.settings)
        self._output = KafkaConsumer(
            self.settings.output_topic, auto_offset_reset="earliest" if self.from_beginning else "latest",
            enable_auto_commit=False, isolation_level="read_committed", group_id=None, **config)
        self._offsets = KafkaConsumer(enable_auto_commit=False, group_id=None, **config)
        self._teacher_group = KafkaConsumer(enable_auto_commit=False, group_id=self.settings.teacher_group, **config)
        self._started = time.monotonic()
        self._last = (self._started, self._end(self.settings.input_topic), 0)
        self._tiers: Counter = Counter()
        self._latency: dict[str, deque] = {}
        self._correct = self._judged = self._outputs = 0

    def close(self) -> None:
        for consumer in (self._output, self._offsets, self._teacher_group):
            consumer.close()

    def _partitions(self, topic: str) -> list:
        from kafka import TopicPartition

        return [TopicPartition(topic, p) for p in sorted(self._offsets.partitions_for_topic(topic) or ())]

    def _end(self, topic: str) -> int:
        tps = self._partitions(topic)
        return sum(self._offsets.end_offsets(tps).values()) if tps else 0

    def teacher_lag(self) -> int:
        tps = self._partitions(self.settings.teacher_topic)
        if not tps:
            return 0
        ends = self._offsets.end_offsets(tps)
        return sum(max(0, ends[tp] - (self._teacher_group.committed(tp) or 0)) for tp in tps)

    def _read_output(self) -> None:
        for part in self._output.poll(timeout_ms=200, max_records=50_000).values():
            for record in part:
                result = orjson.loads(record.value)
                written = record.timestamp / 1000.0
                self._outputs += 1
                if self.collected is not None:
                    self.collected.add(result, written)
                tier = result.get("tier", "?")
                self._tiers[tier] += 1
                self._latency.setdefault(tier, deque(maxlen=RECENT)).append(written - result.get("produced_at", written))
                if self.gold is not None and result.get("id") in self.gold:
                    self._judged += 1
                    self._correct += result.get("label_id") == self.gold[result["id"]]

    def poll(self) -> Snapshot:
        self._read_output()
        now, inputs, outputs = time.monotonic(), self._end(self.settings.input_topic), self._outputs
        last_at, last_inputs, last_outputs = self._last
        dt = max(now - last_at, 1e-6)
        self._last = (now, inputs, outputs)
        return Snapshot(
            seconds=now - self._started, input_per_s=(inputs - last_inputs) / dt, output_per_s=(outputs - last_outputs) / dt,
            outputs=outputs, tiers=dict(self._tiers), teacher_lag=self.teacher_lag(),
            dead_letters=self._end(self.settings.dlq_topic),
            latency_ms={tier: percentiles_ms(list(v)) for tier, v in sorted(self._latency.items())},
            accuracy=self._correct / self._judged if self._judged else None, accuracy_of=self._judged,
        )


def plain_line(s: Snapshot) -> str:
    """One refresh as one line, for logs and pipes."""
    latency = " ".join(f"{tier} p50/p95 {v['p50']:.0f}/{v['p95']:.0f} ms" for tier, v in s.latency_ms.items())
    accuracy = f" accuracy {s.accuracy:.1%} of {s.accuracy_of}" if s.accuracy is not None else ""
    return (f"[top] {s.seconds:6.1f}s in {s.input_per_s:7.0f}/s out {s.output_per_s:7.0f}/s results {s.outputs} "
            f"routed {s.routed_fraction:.1%} teacher lag {s.teacher_lag} dead letters {s.dead_letters} {latency}{accuracy}")


def table(s: Snapshot, title: str = "tango top"):
    """One refresh as a rich table."""
    from rich.table import Table

    view = Table(title=f"{title}  ({s.seconds:.0f} s)", show_header=False, min_width=60)
    view.add_column(style="bold")
    view.add_column(justify="right")
    view.add_row("records in / out per s", f"{s.input_per_s:,.0f} / {s.output_per_s:,.0f}")
    view.add_row("results", f"{s.outputs:,}  " + "  ".join(f"{t}: {n:,}" for t, n in sorted(s.tiers.items())))
    view.add_row("routed to the teacher", f"{s.routed_fraction:.1%}")
    view.add_row("teacher lag (requests)", f"{s.teacher_lag:,}")
    for tier, v in s.latency_ms.items():
        view.add_row(f"latency {tier} p50 / p95 / p99", f"{v['p50']:,.0f} / {v['p95']:,.0f} / {v['p99']:,.0f} ms")
    view.add_row("dead letters", f"{s.dead_letters:,}")
    if s.accuracy is not None:
        view.add_row("running accuracy", f"{s.accuracy:.1%} of {s.accuracy_of:,}")
    return view


def watch(watcher: PipelineWatch, done: Callable[[Snapshot], bool], interval: float = 1.0, title: str = "tango top",
          terminal: bool | None = None) -> Snapshot:
    """Refresh until ``done(snapshot)``; a live table on a terminal, plain lines elsewhere."""
    terminal = sys.stdout.isatty() if terminal is None else terminal
    if not terminal:
        while True:
            snapshot = watcher.poll()
            print(plain_line(snapshot), flush=True)
            if done(snapshot):
                return snapshot
            time.sleep(interval)
    from rich.live import Live

    snapshot = watcher.poll()
    with Live(table(snapshot, title), refresh_per_second=4, transient=False) as live:
        while not done(snapshot):
            time.sleep(interval)
            snapshot = watcher.poll()
            live.update(table(snapshot, title))
    return snapshot
