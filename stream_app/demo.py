"""``tango demo``: the whole cascade on this machine, from nothing to a summary.

Starts the local broker, trains the emotion bundle if none is cached (``tango
train``), starts a stream worker and teacher workers as separate processes, streams
the emotion test split through them, and prints accuracy against the gold labels,
the teacher fraction, throughput and per-tier latency.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import orjson

from stream_app.settings import Settings, add_setting_flags, settings_from_args

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_EMOTION = PROJECT_ROOT.parent / "shared" / "data" / "emotion"


def default_dataset() -> str:
    return str(SHARED_EMOTION) if SHARED_EMOTION.is_dir() else "dair-ai/emotion"


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    p50, p95, p99 = np.percentile(np.asarray(values) * 1000.0, [50, 95, 99])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "p99": round(float(p99), 1)}


def load_split(dataset: str, split: str, limit: int) -> tuple[list[str], list[int], list[str]]:
    from models.data import load_dataset  # the models side owns dataset loading

    data = load_dataset(dataset)
    chosen = data.split(split)
    texts, labels = chosen.texts, chosen.labels
    if limit:
        texts, labels = texts[:limit], labels[:limit]
    return list(texts), list(labels), list(data.labels)


def summarise(results: list[dict], gold: dict[str, int], started: float, output_times: list[float]) -> dict:
    tiers = Counter(r["tier"] for r in results)
    correct = sum(r["label_id"] == gold[r["id"]] for r in results)
    latency: dict[str, list[float]] = {}
    for r, seen_at in zip(results, output_times):
        latency.setdefault(r["tier"], []).append(seen_at - r["produced_at"])
    elapsed = max(output_times) - started if output_times else 0.0
    return {
        "records": len(results),
        "accuracy": round(correct / len(results), 4) if results else 0.0,
        "teacher_fraction": round(tiers["teacher"] / len(results), 4) if results else 0.0,
        "throughput": round(len(results) / elapsed, 1) if elapsed else 0.0,
        "seconds": round(elapsed, 1),
        "latency_ms": {tier: percentiles(values) for tier, values in sorted(latency.items())},
    }


def run_demo(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer, KafkaProducer

    from stream_app.kafka_clients import ensure_topics, kafka_python_config
    from stream_app.kafka_local import LocalKafka

    settings: Settings = settings_from_args(args)
    started_broker = None
    if not args.external_kafka:
        port = int(settings.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
        started_broker = LocalKafka(port=port)
        was_running = started_broker.status()["running"]
        print(f"[demo] local Kafka at {started_broker.up(wait_s=120)}", flush=True)
        if was_running:
            started_broker = None  # not ours to stop

    bundle = Path(settings.bundle)
    dataset = args.data or default_dataset()
    if not (bundle / "manifest.json").is_file():
        print(f"[demo] no bundle at {bundle}: training one from {dataset} (first run only)", flush=True)
        subprocess.run([sys.executable, "-m", "stream_app.cli", "train", "--data", dataset, "--out", str(bundle)], check=True)

    texts, labels, names = load_split(dataset, args.split, args.limit)
    run = uuid.uuid4().hex[:6]
    env = {
        **os.environ,
        "TANGO_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "TANGO_BUNDLE": str(bundle),
        "TANGO_INPUT_TOPIC": f"demo-{run}.tweets",
        "TANGO_TEACHER_TOPIC": f"demo-{run}.teacher",
        "TANGO_STUDENT_RESULTS_TOPIC": f"demo-{run}.results.student",
        "TANGO_TEACHER_RESULTS_TOPIC": f"demo-{run}.results.teacher",
        "TANGO_OUTPUT_TOPIC": f"demo-{run}.classified",
        "TANGO_DLQ_TOPIC": f"demo-{run}.dlq",
        "TANGO_APP_ID": f"tango-demo-{run}",
        "TANGO_TEACHER_GROUP": f"tango-demo-teacher-{run}",
        "TANGO_LOG_FORMAT": "json",
    }
    run_settings = Settings.from_env(env)
    ensure_topics(run_settings)
    logs = Path(tempfile.mkdtemp(prefix="tango-demo-"))
    processes = []
    try:
        for name in ["stream"] + ["teacher"] * args.teachers:
            log = open(logs / f"{name}-{len(processes)}.log", "wb")
            processes.append(subprocess.Popen([sys.executable, "-m", "stream_app.cli", name], env=env, stdout=log, stderr=subprocess.STDOUT))
        print(f"[demo] stream worker and {args.teachers} teacher worker(s) started; logs in {logs}", flush=True)
        consumer = KafkaConsumer(
            run_settings.output_topic, auto_offset_reset="earliest", enable_auto_commit=False,
            isolation_level="read_committed", **kafka_python_config(run_settings),
        )
        consumer.poll(timeout_ms=100)
        time.sleep(args.warmup)  # let the workers load their models and join their groups

        producer = KafkaProducer(acks="all", linger_ms=10, **kafka_python_config(run_settings))
        gold = {}
        started = time.time()
        for i, (text, label) in enumerate(zip(texts, labels)):
            tweet_id = f"{args.split}-{i}"
            gold[tweet_id] = label
            producer.send(run_settings.input_topic, key=tweet_id.encode(), value=orjson.dumps({"id": tweet_id, "text": text}))
        producer.flush()
        print(f"[demo] produced {len(texts)} tweets of {dataset} ({args.split})", flush=True)

        results, seen_at, ids = [], [], set()
        deadline = time.monotonic() + args.timeout
        while len(ids) < len(gold) and time.monotonic() < deadline:
            for part in consumer.poll(timeout_ms=500).values():
                for record in part:
                    result = orjson.loads(record.value)
                    if result["id"] in ids:
                        continue
                    ids.add(result["id"])
                    results.append(result)
                    seen_at.append(record.timestamp / 1000.0)
            for p in processes:
                if p.poll() is not None:
                    raise SystemExit(f"tango demo: a worker exited with {p.returncode}; see {logs}")
        consumer.close()
        summary = summarise(results, gold, started, seen_at)
        summary.update(dataset=dataset, split=args.split, labels=names, bundle=str(bundle), teachers=args.teachers)
        print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
        if len(ids) < len(gold):
            print(f"[demo] only {len(ids)} of {len(gold)} results arrived within {args.timeout}s", file=sys.stderr)
            return 1
        return 0
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        if started_broker is not None and not args.keep_kafka:
            started_broker.down()


def add_cli(commands) -> None:
    demo = commands.add_parser("demo", help="run the whole cascade locally on the emotion test split and print a summary")
    demo.add_argument("--data", default="", help="dataset folder or hub id (default: ../shared/data/emotion, else dair-ai/emotion)")
    demo.add_argument("--split", default="test", help="split to stream (default: test)")
    demo.add_argument("--limit", type=int, default=0, help="stream only the first N records")
    demo.add_argument("--teachers", type=int, default=1, help="teacher worker processes")
    demo.add_argument("--warmup", type=float, default=8.0, help="seconds to let workers start before producing")
    demo.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    demo.add_argument("--external-kafka", action="store_true", help="use the broker at --bootstrap-servers, start none")
    demo.add_argument("--keep-kafka", action="store_true", help="leave the local broker running afterwards")
    add_setting_flags(demo)
    demo.set_defaults(func=run_demo)
