"""The student tier's end-to-end latency split into its two hops, at a fixed rate, through Kafka.

    .venv/bin/python scripts/bench_latency_hops.py [--bundle DIR] [--rate 700] [--seconds 60]

One stream worker (student only: threshold 0) on a local broker, the emotion test tweets sent
at ``--rate`` per second for ``--seconds``. For every tweet it reads three timestamps: the input
record's (the producer's send), the student result's on the results topic (the stream worker's
send), and the output record's (the merge's send). It prints p50 / p95 / p99 ms of each hop and
of the whole path. Settings come from ``TANGO_*`` variables, e.g. ``TANGO_FETCH_MAX_WAIT_S=0``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from kafka import KafkaConsumer

from stream_app.kafka_io.clients import kafka_python_config
from stream_app.settings import CACHE_DIR, Settings
from stream_app.tools.runner import LocalRun, default_dataset, load_split, local_broker


def percentiles(seconds: list[float]) -> str:
    p50, p95, p99 = np.percentile(np.asarray(seconds) * 1000.0, [50, 95, 99])
    return f"{p50:.0f} / {p95:.0f} / {p99:.0f}"


def results_written(settings: Settings) -> dict[str, float]:
    """Each id's student result timestamp (epoch s), from the results topic."""
    consumer = KafkaConsumer(settings.student_results_topic, auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=3000, **kafka_python_config(settings))
    try:
        return {record.key.decode(): record.timestamp / 1000.0 for record in consumer}
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(CACHE_DIR / "bundles" / "emotion-mpnet"))
    parser.add_argument("--rate", type=float, default=700.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    settings = Settings.from_env(bundle=args.bundle)
    texts, _, _ = load_split(default_dataset(), "test", 0)
    with local_broker(settings, external=False, keep=False):
        run = LocalRun(settings, args.bundle, Path(tempfile.mkdtemp(prefix="tango-hops-")), tag="hops",
                       overrides={"TANGO_THRESHOLD": "0.0"})
        try:
            run.start("stream", "stream")
            consumer = run.consumer()
            warm = [(f"warm-{i}", texts[i % len(texts)]) for i in range(500)]
            run.send(warm)
            run.collect(consumer, {tweet_id for tweet_id, _ in warm}, timeout=120)
            items = [(f"s{i}", texts[i % len(texts)]) for i in range(int(args.rate * args.seconds))]
            run.send(items, rate=args.rate)
            collected = run.collect(consumer, {tweet_id for tweet_id, _ in items}, timeout=120)
            consumer.close()
            middle = results_written(run.settings)
        finally:
            run.stop()
    hops: dict[str, list[float]] = {"input -> student result": [], "student result -> output": [], "whole path": []}
    for result, output_at in zip(collected.results, collected.written_at):
        if result["id"].startswith("s") and result["id"] in middle:
            hops["input -> student result"].append(middle[result["id"]] - result["produced_at"])
            hops["student result -> output"].append(output_at - middle[result["id"]])
            hops["whole path"].append(output_at - result["produced_at"])
    print(f"{len(hops['whole path'])} tweets at {args.rate:.0f}/s; p50 / p95 / p99 ms")
    for name, seconds in hops.items():
        print(f"  {name:26s} {percentiles(seconds)}")


if __name__ == "__main__":
    main()
