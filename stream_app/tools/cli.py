"""The ``tango`` console script.

Subcommands: ``kafka`` (a local broker), ``stream`` (student + merge), ``teacher``
(a teacher worker), ``produce`` (JSONL to the input topic), ``tail`` (print a topic),
``settings`` (every setting with its variable and default), and the model commands
``train``, ``evaluate``, ``wos`` and ``base-models``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from collections.abc import Sequence

import structlog

from stream_app.kafka_io.clients import KafkaConnectionError
from stream_app.kafka_io.delivery import Unproducible
from stream_app.kafka_io.internals import (
    InternalsMoved,
    UndecodableBatch,
    install_fetch_workarounds,
)
from stream_app.kafka_io.probe import check_connection
from stream_app.settings import (
    Settings,
    add_setting_flags,
    env_name,
    settings_from_args,
)


def _settings(args: argparse.Namespace) -> Settings:
    from stream_app.telemetry import configure_logging

    settings = settings_from_args(args)
    configure_logging(settings)
    return settings


def _load_bundle(settings: Settings):
    from models.bundle import BundleError, load_bundle

    try:
        return load_bundle(settings.bundle)
    except BundleError as exc:
        raise SystemExit(f"tango: cannot use bundle: {exc}") from None


def cmd_stream(args: argparse.Namespace) -> int:
    from faust.worker import Worker

    from stream_app.kafka_io.topics import ensure_topics
    from stream_app.shutdown import start_shutdown_watchdog
    from stream_app.startup_heap import freeze_startup_heap
    from stream_app.stream_worker import create_app
    from stream_app.student import build_student_stage
    from stream_app.telemetry import stdlib_logging_config

    settings = _settings(args)
    install_fetch_workarounds()  # checks the library internals first: a moved one stops us here, plainly
    check_connection(settings)  # fail fast, with a plain message, on a bad broker address or credentials
    if not (args.passthrough or settings.student_process):  # else torch stays out of this process: the child runs the model
        import torch

        torch.set_num_threads(settings.torch_threads)
    ensure_topics(settings)
    log = structlog.get_logger("tango.stream")
    if args.passthrough:
        app = create_app(settings, None)
        log.info("passthrough worker starting (no model)", input_topic=settings.input_topic, output_topic=settings.output_topic)
    else:
        bundle = _load_bundle(settings)
        student = build_student_stage(settings, bundle)
        app = create_app(settings, student, bundle)
        log.info(
            "stream worker starting", bundle=str(bundle.root), student=student.student_version,
            threshold=student.threshold, temperature=student.temperature, input_topic=settings.input_topic,
        )

    class StreamWorker(Worker):
        def _schedule_shutdown(self, signum) -> None:  # SIGTERM/SIGINT: shut down within the bound
            if not self._signal_stop_time:
                start_shutdown_watchdog(settings.shutdown_timeout_s, "stream")
            super()._schedule_shutdown(signum)

    worker = StreamWorker(app, loglevel=settings.log_level.upper(), logging_config=stdlib_logging_config(settings), quiet=True, redirect_stdouts=False)
    log.info("startup heap frozen", objects=freeze_startup_heap())  # out of every later full collection
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT; exits the process
    return 0


def cmd_teacher(args: argparse.Namespace) -> int:
    import torch

    from stream_app.kafka_io.topics import ensure_topics
    from stream_app.startup_heap import freeze_startup_heap
    from workers.teacher_stage import TeacherMismatch, build_teacher_stage
    from workers.teacher_worker import TeacherWorker, install_signal_handlers

    settings = _settings(args)
    install_fetch_workarounds()
    check_connection(settings)  # fail fast, with a plain message, on a bad broker address or credentials
    torch.set_num_threads(settings.torch_threads)
    bundle = _load_bundle(settings)
    try:
        stage = build_teacher_stage(settings, bundle)
    except TeacherMismatch as exc:
        raise SystemExit(f"tango: {exc}") from None
    source = settings.teacher_model or bundle.teacher_path
    ensure_topics(settings)
    structlog.get_logger("tango.teacher").info("teacher loaded", source=str(source), version=stage.teacher_version,
                                               precision_setting=settings.teacher_precision)

    async def main() -> None:
        # a teacher_model setting pins the teacher: the bundle folder is not watched for another
        worker = TeacherWorker(settings, stage, bundle=None if settings.teacher_model else bundle)
        install_signal_handlers(worker)
        await worker.run()

    structlog.get_logger("tango.teacher").info("startup heap frozen", objects=freeze_startup_heap())
    try:
        asyncio.run(main())
    except (UndecodableBatch, Unproducible) as exc:
        structlog.get_logger("tango.teacher").error("the teacher worker stops; its input stays uncommitted", error=str(exc))
        return 4
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    import orjson
    from kafka import KafkaProducer

    from stream_app.kafka_io.clients import compression, kafka_python_config
    from stream_app.kafka_io.topics import ensure_topics

    settings = _settings(args)
    check_connection(settings)  # fail fast, with a plain message, on a bad broker address or credentials
    ensure_topics(settings)
    producer = KafkaProducer(acks="all", linger_ms=10, batch_size=256 * 1024, compression_type=compression(settings),
                             **kafka_python_config(settings))
    source = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
    sent = 0
    with source:
        for line in source:
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            try:
                record_id = orjson.loads(line).get("id")
            except (orjson.JSONDecodeError, AttributeError):
                record_id = None  # sent as it is: the stream dead-letters what it cannot read
            key = record_id.encode() if isinstance(record_id, str) and record_id else None
            producer.send(args.topic or settings.input_topic, key=key, value=line)
            sent += 1
    producer.flush()
    producer.close()
    print(f"produced {sent} records to {args.topic or settings.input_topic}", file=sys.stderr)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer

    from stream_app.kafka_io.clients import kafka_python_config

    settings = _settings(args)
    check_connection(settings)  # fail fast, with a plain message, on a bad broker address or credentials
    consumer = KafkaConsumer(
        args.topic or settings.output_topic,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        enable_auto_commit=False,
        group_id=None,
        isolation_level="read_committed",
        consumer_timeout_ms=int(args.timeout * 1000) if args.timeout else float("inf"),
        **kafka_python_config(settings),
    )
    shown = 0
    out = sys.stdout.buffer
    try:
        for message in consumer:
            if args.headers:
                headers = {k: v.decode(errors="replace") for k, v in message.headers or []}
                out.write(repr(headers).encode() + b"\t")
            out.write((message.value or b"") + b"\n")
            out.flush()
            shown += 1
            if args.max and shown >= args.max:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    import orjson

    from stream_app.tools.live import PipelineWatch, watch

    settings = _settings(args)
    check_connection(settings)
    gold = None
    if args.gold:
        with open(args.gold, "rb") as f:  # JSONL lines {"id": ..., "label": <int>}
            gold = {row["id"]: int(row["label"]) for row in map(orjson.loads, f) if "id" in row}
    watcher = PipelineWatch(settings, gold=gold, from_beginning=args.from_beginning)
    until = time.monotonic() + args.duration if args.duration else float("inf")
    try:
        watch(watcher, done=lambda s: args.once or time.monotonic() >= until, interval=args.interval,
              terminal=False if args.plain else None)
    except KeyboardInterrupt:
        pass
    finally:
        watcher.close()
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    for f in dataclasses.fields(Settings):
        print(f"{env_name(f.name)} (--{f.name.replace('_', '-')}) = {f.default!r}\n    {f.metadata['doc']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tango", description="A Tango cascade streaming classifier on Kafka.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    from stream_app.tools import local_broker

    local_broker.add_cli(commands)

    stream = commands.add_parser("stream", help="run a stream worker: the student agent and the merge")
    stream.add_argument("--passthrough", action="store_true",
                        help="benchmark only: forward input records unchanged to the output topic, no model")
    add_setting_flags(stream)
    stream.set_defaults(func=cmd_stream)

    teacher = commands.add_parser("teacher", help="run a teacher worker (start as many as the teacher topic has partitions)")
    add_setting_flags(teacher)
    teacher.set_defaults(func=cmd_teacher)

    produce = commands.add_parser("produce", help="send a JSONL file (or - for stdin) to the input topic, one record a line")
    produce.add_argument("file", help="JSONL file, or - for standard input")
    produce.add_argument("--topic", default="", help="topic to send to (default: the input topic)")
    add_setting_flags(produce)
    produce.set_defaults(func=cmd_produce)

    tail = commands.add_parser("tail", help="print the output topic (or another), one JSON value a line")
    tail.add_argument("--topic", default="", help="topic to read (default: the output topic)")
    tail.add_argument("--from-beginning", action="store_true", help="start at the earliest offset")
    tail.add_argument("--max", type=int, default=0, help="stop after this many records")
    tail.add_argument("--timeout", type=float, default=0.0, help="stop after this many idle seconds")
    tail.add_argument("--headers", action="store_true", help="print each record's headers before its value")
    add_setting_flags(tail)
    tail.set_defaults(func=cmd_tail)

    from stream_app.tools import bench, demo

    demo.add_cli(commands)
    bench.add_cli(commands)

    from stream_app.tools import dlq

    dlq.add_cli(commands)

    top = commands.add_parser("top", help="a live view of a running pipeline: rates, routed fraction, teacher lag, latency")
    top.add_argument("--from-beginning", action="store_true", help="count the output topic from its start, not from now")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    top.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")
    top.add_argument("--once", action="store_true", help="print one refresh and exit")
    top.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    top.add_argument("--gold", default="", help='JSONL of {"id": ..., "label": <int>} for a running accuracy')
    add_setting_flags(top)
    top.set_defaults(func=cmd_top)

    show = commands.add_parser("settings", help="list every setting with its environment variable and default")
    show.set_defaults(func=cmd_settings)

    from stream_app.tools import train_cli

    train_cli.add_cli(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KafkaConnectionError as exc:
        print(f"tango: {exc}", file=sys.stderr)
        return 3
    except InternalsMoved as exc:
        print(f"tango: {exc}", file=sys.stderr)
        return 5
    except ValueError as exc:
        if str(exc).startswith("invalid settings") or "TANGO_" in str(exc):
            print(f"tango: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
