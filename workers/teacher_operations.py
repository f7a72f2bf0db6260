"""What a teacher worker does beside its loop: the metrics and health endpoint, the teacher
group's lag, and hot reload of the teacher (``stream_app.reload``)."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING

import structlog

from stream_app.endpoint import start_endpoint, tick_forever
from stream_app.memory_trim import trim_periodically
from stream_app.shutdown import log_reload_requests

if TYPE_CHECKING:
    from models.bundle import Bundle
    from workers.teacher_stage import TeacherStage
    from workers.teacher_worker import TeacherWorker

log = structlog.get_logger("tango.teacher")


async def operations(worker: "TeacherWorker") -> None:
    settings = worker.settings
    tasks = [tick_forever(worker.health), trim_periodically(settings.memory_trim_interval_s, worker.stage.worker)]
    runner = await start_endpoint(settings.metrics_port, worker.metrics, worker.health) if settings.metrics_port else None
    if settings.metrics_port:
        tasks.append(watch_lag(worker))
    if worker.bundle is not None:
        tasks.append(watch_bundle(worker))
    else:
        log_reload_requests(log, "no bundle to watch")
    try:
        await asyncio.gather(*tasks)
    finally:
        if runner is not None:
            await runner.cleanup()


async def watch_lag(worker: "TeacherWorker") -> None:
    from stream_app.kafka_io.lag import LagReader  # noqa: PLC0415

    settings = worker.settings
    reader = LagReader(settings)
    await reader.start()
    try:
        while True:
            try:
                lag = await reader.read(settings.teacher_group, [settings.teacher_topic, settings.shadow_topic])
                worker.metrics.set_lag(settings.teacher_group, lag.lag)
            except Exception as exc:  # noqa: BLE001 - retried at the next check
                log.warning("cannot read consumer lag", error=repr(exc))
            await asyncio.sleep(settings.lag_check_interval_s)
    finally:
        await reader.stop()


async def watch_bundle(worker: "TeacherWorker") -> None:
    from stream_app.reload import BundleWatch, check_predictions  # noqa: PLC0415 - imports torch
    from workers.teacher_stage import build_teacher_stage  # noqa: PLC0415

    name = worker.stage.worker

    def build(bundle: "Bundle") -> "TeacherStage":
        stage = build_teacher_stage(worker.settings, bundle, worker=name)
        check_predictions(stage.logits, len(bundle.manifest.labels))
        return stage

    def apply(stage: "TeacherStage", bundle: "Bundle") -> None:
        worker.stage, worker.bundle = stage, bundle
        worker.metrics.serving(str(bundle.root), "", stage.teacher_version)

    def identity(bundle: "Bundle") -> str:
        return bundle.manifest.teacher.version

    watch = BundleWatch(worker.bundle.root, worker.bundle, identity, build, apply,
                        lambda outcome: worker.metrics.reloads.labels(outcome).inc())
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, watch.wake.set)
    await watch.run(worker.settings.reload_check_s)
