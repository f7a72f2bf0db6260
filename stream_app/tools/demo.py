"""``tango demo``: the whole cascade on this machine, from nothing to a summary.

Starts the local broker, trains the emotion bundle if none is cached (``tango
train``), starts a stream worker and teacher workers as separate processes, streams
the emotion test split through them, and prints accuracy against the gold labels,
the teacher fraction, throughput and per-tier latency.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson

from stream_app.settings import Settings, add_setting_flags, settings_from_args
from stream_app.tools.runner import LocalRun

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_EMOTION = PROJECT_ROOT.parent / "shared" / "data" / "emotion"


def default_dataset() -> str:
    return str(SHARED_EMOTION) if SHARED_EMOTION.is_dir() else "dair-ai/emotion"


def load_split(dataset: str, split: str, limit: int) -> tuple[list[str], list[int], list[str]]:
    from models.training.data import (
        load_dataset,  # the models side owns dataset loading
    )

    data = load_dataset(dataset)
    chosen = data.split(split)
    texts, labels = list(chosen.texts), list(chosen.labels)
    if limit:
        texts, labels = texts[:limit], labels[:limit]
    return texts, labels, list(data.labels)


@contextmanager
def local_broker(settings: Settings, external: bool, keep: bool) -> Iterator[None]:
    """Start the local broker on the port of ``bootstrap_servers`` unless one runs or ``external``."""
    if external:
        yield
        return
    from stream_app.tools.local_broker import LocalKafka

    port = int(settings.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
    kafka = LocalKafka(port=port)
    ours = not kafka.status()["running"]
    print(f"[tango] local Kafka at {kafka.up(wait_s=120)}", flush=True)
    try:
        yield
    finally:
        if ours and not keep:
            kafka.down()


def ensure_bundle(bundle: Path, dataset: str) -> None:
    if not (bundle / "manifest.json").is_file():
        print(f"[demo] no bundle at {bundle}: training one from {dataset} (first run only)", flush=True)
        subprocess.run([sys.executable, "-m", "stream_app.tools.cli", "train", "--data", dataset, "--out", str(bundle)], check=True)


def run_demo(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    dataset = args.data or default_dataset()
    bundle = Path(settings.bundle)
    with local_broker(settings, external=args.external_kafka, keep=args.keep_kafka):
        ensure_bundle(bundle, dataset)
        texts, labels, names = load_split(dataset, args.split, args.limit)
        run = LocalRun(settings, bundle, Path(tempfile.mkdtemp(prefix="tango-demo-")), tag="demo")
        try:
            run.start("stream", "stream")
            for i in range(args.teachers):
                run.start(f"teacher-{i + 1}", "teacher")
            run.wait_teachers(args.teachers)
            print(f"[demo] stream worker and {args.teachers} teacher worker(s) running; logs in {run.logs}", flush=True)
            consumer = run.consumer()
            items = [(f"{args.split}-{i}", text) for i, text in enumerate(texts)]
            gold = {tweet_id: label for (tweet_id, _), label in zip(items, labels)}
            started = run.send(items)
            print(f"[demo] produced {len(items)} tweets of {dataset} ({args.split})", flush=True)
            collected = run.collect(consumer, set(gold), timeout=args.timeout)
            consumer.close()
        finally:
            run.stop()
    summary = collected.summary(gold, started)
    summary.update(dataset=dataset, split=args.split, labels=names, bundle=str(bundle), teachers=args.teachers)
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    return 0


def add_cli(commands) -> None:
    demo = commands.add_parser("demo", help="run the whole cascade locally on the emotion test split and print a summary")
    demo.add_argument("--data", default="", help="dataset folder or hub id (default: ../shared/data/emotion, else dair-ai/emotion)")
    demo.add_argument("--split", default="test", help="split to stream (default: test)")
    demo.add_argument("--limit", type=int, default=0, help="stream only the first N records")
    demo.add_argument("--teachers", type=int, default=1, help="teacher worker processes")
    demo.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    demo.add_argument("--external-kafka", action="store_true", help="use the broker at --bootstrap-servers, start none")
    demo.add_argument("--keep-kafka", action="store_true", help="leave the local broker running afterwards")
    add_setting_flags(demo)
    demo.set_defaults(func=run_demo)
