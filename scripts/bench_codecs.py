"""Which ``compression_type`` the workers should produce with: CPU, speed and bytes on disk.

For each codec, one stream worker (student path: threshold 0, no teacher) classifies the same
emotion tweets on a fresh local broker; the script prints, per codec, the stream worker's
CPU-seconds per 1,000 records, records/s end to end, and the bytes the run's topics take in the
broker's log (results, output). The input is always produced uncompressed, so only what the
workers produce differs. The student is a tiny untrained bundle, so the codec's share of the
cost shows (a real student adds the same model time to every codec).

    .venv/bin/python scripts/bench_codecs.py --records 20000 --out docs/bench/codecs.json
"""

from __future__ import annotations

import argparse
import json
import socket
import tempfile
import time
from pathlib import Path

from models.testing import make_tiny_bundle
from stream_app.settings import Settings
from stream_app.tools.bench import _proc_cpu_s
from stream_app.tools.local_broker import LocalKafka
from stream_app.tools.runner import LocalRun, load_split

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def topic_bytes(log_dir: Path, topic: str) -> int:
    return sum(f.stat().st_size for d in log_dir.glob(f"{topic}-*") for f in d.glob("*.log"))


def run_codec(codec: str, kafka: LocalKafka, bundle: Path, texts: list[str], records: int, logs: Path) -> dict:
    settings = Settings(bootstrap_servers=kafka.bootstrap, bundle=str(bundle))
    run = LocalRun(settings, bundle, logs, tag=f"codec-{codec}", overrides={
        "TANGO_COMPRESSION_TYPE": codec, "TANGO_THRESHOLD": "0.0"})
    try:
        stream = run.start("stream", "stream")
        consumer = run.consumer()
        warm = [(f"warm-{i}", texts[i % len(texts)]) for i in range(500)]
        run.send(warm)
        collected = run.collect(consumer, {w[0] for w in warm}, timeout=120)
        cpu_before = _proc_cpu_s(stream.pid)
        items = [(f"r{i}", texts[i % len(texts)]) for i in range(records)]
        started = run.send(items)
        run.collect(consumer, {i for i, _ in items}, timeout=600, into=collected)
        elapsed = time.time() - started
        cpu = _proc_cpu_s(stream.pid) - cpu_before
        consumer.close()
        time.sleep(2)  # let the log segments reach the disk
        total = records + len(warm)
        sizes = {role: topic_bytes(kafka.log_dir, getattr(run.settings, f"{role}_topic"))
                 for role in ("student_results", "output")}
        return {"codec": codec, "records": records, "cpu_s_per_1k": round(cpu / records * 1000, 3),
                "records_per_s": round(records / elapsed, 1),
                "bytes_per_record": {role: round(size / total, 1) for role, size in sizes.items()}}
    finally:
        run.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--data", default="../shared/data/emotion")
    parser.add_argument("--codecs", default=",".join(CODECS))
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    texts, _, _ = load_split(args.data, "train", 0)
    with tempfile.TemporaryDirectory(prefix="tango-codecs-") as tmp:
        work = Path(tmp)
        bundle = make_tiny_bundle(work / "bundle", texts[:2000])
        kafka = LocalKafka(port=free_port(), controller_port=free_port(), data_dir=work / "kafka")
        kafka.up(wait_s=120)
        try:
            rows = [run_codec(codec, kafka, bundle, texts, args.records, work / "logs") for codec in args.codecs.split(",")]
        finally:
            kafka.down()
    for row in rows:
        print(json.dumps(row))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
