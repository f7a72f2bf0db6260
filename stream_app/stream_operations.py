"""What the stream worker does beside its agents: the metrics and health endpoint, the
consumer-lag loop with lag-aware routing, and hot reload of the bundle.

The effective threshold and the served student are one thing here: the student agent's
stage is replaced (between batches) by a copy with the new threshold, or by the new
bundle's stage, and every result names the threshold and the versions that decided it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import time
from typing import TYPE_CHECKING, Any

import structlog

from stream_app.endpoint import Health, start_endpoint, tick_forever
from stream_app.lag_routing import DrainRate, LagPolicy, next_threshold
from stream_app.memory_trim import trim_periodically
from stream_app.metrics import Metrics
from stream_app.settings import Settings
from stream_app.shutdown import log_reload_requests
from stream_app.student_process import StudentProcess

if TYPE_CHECKING:
    import faust

    from models.bundle import Bundle
    from stream_app.student import StudentStage

log = structlog.get_logger("tango.stream")


class StreamOperations:
    def __init__(self, settings: Settings, metrics: Metrics, health: Health, students: Any = None,
                 bundle: "Bundle | None" = None):
        self.settings = settings
        self.metrics = metrics
        self.health = health
        self.students = students  # the student agent's AgentBatches (None: the passthrough app)
        self.bundle = bundle
        self.target = students.stage.threshold if students is not None else 0.0
        if students is not None:
            self._serving(students.stage)
            if isinstance(students.stage.logits, StudentProcess):  # its CPU and memory are not this process's
                metrics.watch_student_process(lambda: self.students.stage.logits.pid)

    # --- the threshold and the student in use ---------------------------------------------
    def _serving(self, stage: "StudentStage") -> None:
        teacher = self.bundle.manifest.teacher.version if self.bundle is not None else ""
        self.metrics.serving(str(self.bundle.root) if self.bundle else "", stage.student_version, teacher)
        self.metrics.threshold.set(stage.threshold)
        self.metrics.bundle_threshold.set(self.target)

    def set_threshold(self, threshold: float) -> None:
        self.students.stage = dataclasses.replace(self.students.stage, threshold=threshold)
        self.metrics.threshold.set(threshold)

    def use_student(self, stage: "StudentStage", bundle: "Bundle") -> None:
        """Serve a reloaded bundle's student: its threshold, or the lower throttled one."""
        current = self.students.stage.threshold
        self.target, self.bundle = stage.threshold, bundle
        throttled = self.settings.lag_routing and current < self.target
        self.students.stage = dataclasses.replace(stage, threshold=current) if throttled else stage
        self._serving(self.students.stage)

    def policy(self) -> LagPolicy:
        s = self.settings
        return LagPolicy(self.target, s.threshold_floor, s.threshold_step, s.teacher_lag_budget_records, s.teacher_lag_budget_s)

    # --- tasks --------------------------------------------------------------------------------
    def attach(self, app: "faust.App") -> None:
        settings = self.settings

        @app.on_partitions_assigned.connect
        async def ready(app_: "faust.App", assigned: set, **_: object) -> None:
            self.metrics.rebalances.inc()
            self.health.assigned()

        @app.on_before_shutdown.connect
        async def stopping(app_: "faust.App", **_: object) -> None:
            self.health.stopping()

        @app.task
        async def operations() -> None:
            tasks = [tick_forever(self.health), trim_periodically(settings.memory_trim_interval_s, "stream")]
            if settings.metrics_port:
                await start_endpoint(settings.metrics_port, self.metrics, self.health)
            if settings.metrics_port or (settings.lag_routing and self.students is not None):
                tasks.append(self.watch_lag())
            if self.bundle is not None and self.students is not None:
                tasks.append(self.watch_bundle())
            else:
                log_reload_requests(log, "passthrough: no bundle")
            await asyncio.gather(*tasks)

    async def watch_lag(self) -> None:
        """Every ``lag_check_interval_s``: read the lags, export them, move the threshold."""
        from stream_app.kafka_io.lag import LagReader  # noqa: PLC0415

        settings = self.settings
        reader = LagReader(settings)
        await reader.start()
        drain = DrainRate()
        try:
            while True:
                try:
                    own = await reader.read(settings.app_id, [settings.input_topic])
                    merges = await reader.read(settings.merge_group, settings.result_topics)
                    teachers = await reader.read(settings.teacher_group, [settings.teacher_topic])
                except Exception as exc:  # noqa: BLE001 - a failed read is retried at the next check
                    log.warning("cannot read consumer lag", error=repr(exc))
                else:
                    self.metrics.set_lag(settings.app_id, own.lag)
                    self.metrics.set_lag(merges.group, merges.lag)
                    self.metrics.set_lag(settings.teacher_group, teachers.lag)
                    rate = drain.update(time.monotonic(), teachers.committed_total)
                    if settings.lag_routing and self.students is not None:
                        self._follow_lag(teachers.total, rate)
                await asyncio.sleep(settings.lag_check_interval_s)
        finally:
            await reader.stop()

    def _follow_lag(self, lag: int, drain_per_s: float) -> None:
        current = self.students.stage.threshold
        new = next_threshold(current, lag, drain_per_s, self.policy())
        if new != current:
            self.set_threshold(new)
            log.info("threshold changed", threshold=new, previous=current, target=self.target,
                     teacher_lag=lag, teacher_drain_per_s=round(drain_per_s, 1), at=round(time.time(), 3))

    async def watch_bundle(self) -> None:
        from stream_app.reload import BundleWatch, check_predictions  # noqa: PLC0415 - a worker with a student only
        from stream_app.student import build_student_stage  # noqa: PLC0415

        worker = self.students.stage.worker

        def build(bundle: "Bundle") -> "StudentStage":
            stage = build_student_stage(self.settings, bundle, worker=worker)
            check_predictions(stage.logits, len(bundle.manifest.labels))
            return stage

        def identity(bundle: "Bundle") -> tuple:
            m = bundle.manifest
            return m.student.version, m.threshold, m.temperature

        assert self.bundle is not None
        watch = BundleWatch(self.bundle.root, self.bundle, identity, build, self.use_student,
                            lambda outcome: self.metrics.reloads.labels(outcome).inc())
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, watch.wake.set)
        await watch.run(self.settings.reload_check_s)
