"""Run the pipeline's processes locally, as a user would, for the demo and the benchmark.

``LocalRun`` gives one run its own topics and consumer groups (so runs never see each
other's records), starts ``tango stream`` / ``tango teacher`` as subprocesses, sends
labelled texts, and collects the merged results with the time each was written.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from array import array
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson

from stream_app.settings import Settings, changed_env


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0}
    p50, p95, p99 = np.percentile(np.asarray(seconds) * 1000.0, [50, 95, 99])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1), "p99": round(float(p99), 1)}


@dataclass
class Collected:
    """Results read back from the output topic, first copy of each id.

    What the summary needs is kept in columns (id, tier, label, latency, write time): a few
    dozen bytes a result, so a 30-minute soak's two million results fit. The decoded results
    themselves are kept too only with ``keep_results`` (the demo's and the experiments' callers
    read their fields).
    """

    keep_results: bool = True
    results: list[dict] = field(default_factory=list)  # with keep_results only
    ids: list[str] = field(default_factory=list)
    tiers: list[str] = field(default_factory=list)
    label_ids: array = field(default_factory=lambda: array("i"))
    latency_s: array = field(default_factory=lambda: array("d"))  # output write time - produced_at
    written_at: array = field(default_factory=lambda: array("d"))  # output record timestamps, epoch s

    def add(self, result: dict, written: float) -> None:
        """One result, written at ``written`` (epoch s). An output without a tier is the input itself,
        as the passthrough benchmark writes it: tier ``passthrough``, no label."""
        self.ids.append(result["id"])
        self.tiers.append(sys.intern(str(result.get("tier", "passthrough"))))
        self.label_ids.append(int(result.get("label_id", -1)))
        self.latency_s.append(written - float(result.get("produced_at", written)))
        self.written_at.append(written)
        if self.keep_results:
            self.results.append(result)

    def __len__(self) -> int:
        return len(self.ids)

    def summary(self, gold: dict[str, int], started: float) -> dict:
        """Accuracy against ``gold``, teacher fraction, throughput and latency per tier."""
        chosen = [i for i, tweet_id in enumerate(self.ids) if tweet_id in gold]
        tiers = Counter(self.tiers[i] for i in chosen)
        latency: dict[str, list[float]] = {}
        for i in chosen:
            latency.setdefault(self.tiers[i], []).append(self.latency_s[i])
        elapsed = (max(self.written_at[i] for i in chosen) - started) if chosen else 0.0
        n = len(chosen)
        correct = sum(self.label_ids[i] == gold[self.ids[i]] for i in chosen)
        return {
            "records": n,
            "accuracy": round(correct / n, 4) if n else 0.0,
            "teacher_fraction": round(tiers["teacher"] / n, 4) if n else 0.0,
            "throughput": round(n / elapsed, 1) if elapsed > 0 else 0.0,
            "seconds": round(elapsed, 2),
            "latency_ms": {tier: percentiles_ms(v) for tier, v in sorted(latency.items())},
        }


class Replayed(Sequence):
    """``count`` (id, text) pairs that replay ``texts`` in turn, ids ``prefix0``, ``prefix1``, ...,
    made when asked for: a soak's millions of records are never all in memory at once.

    >>> items = Replayed(["a", "b"], 3, prefix="s")
    >>> list(items), len(items), items.gold([0, 1])["s2"], "s3" in items.gold([0, 1])
    ([('s0', 'a'), ('s1', 'b'), ('s2', 'a')], 3, 0, False)
    """

    def __init__(self, texts: Sequence[str], count: int, prefix: str):
        self.texts, self.count, self.prefix = texts, count, prefix

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i):  # an index only; slices are not needed here
        if not 0 <= i < self.count:
            raise IndexError(i)
        return f"{self.prefix}{i}", self.texts[i % len(self.texts)]

    def gold(self, labels: Sequence[int]) -> "ReplayedGold":
        """Each id's gold label, ``labels`` being the texts' own."""
        return ReplayedGold(self, labels)


class ReplayedGold(Mapping):
    """The gold labels of a ``Replayed``'s ids, read off the id itself."""

    def __init__(self, items: Replayed, labels: Sequence[int]):
        self.items, self.labels = items, labels

    def _index(self, tweet_id: object) -> int:
        prefix = self.items.prefix
        if isinstance(tweet_id, str) and tweet_id.startswith(prefix) and tweet_id[len(prefix):].isdigit():
            if (i := int(tweet_id[len(prefix):])) < len(self.items):
                return i
        raise KeyError(tweet_id)

    def __getitem__(self, tweet_id: str) -> int:
        return self.labels[self._index(tweet_id) % len(self.labels)]

    def __iter__(self) -> Iterator[str]:
        return (tweet_id for tweet_id, _ in self.items)

    def __len__(self) -> int:
        return len(self.items)


class LocalRun:
    def __init__(self, settings: Settings, bundle: str | Path, logs: Path, tag: str = "run", overrides: dict[str, str] | None = None):
        self.id = f"{tag}-{uuid.uuid4().hex[:6]}"
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            # what the command line set reaches the workers (one metrics port cannot serve them all);
            # the run's own topics and groups follow
            **{k: v for k, v in changed_env(settings).items() if k != "TANGO_METRICS_PORT"},
            "TANGO_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "TANGO_SECURITY_PROTOCOL": settings.security_protocol,
            "TANGO_SASL_MECHANISM": settings.sasl_mechanism,
            "TANGO_SASL_USERNAME": settings.sasl_username,
            "TANGO_SASL_PASSWORD": settings.sasl_password,
            "TANGO_BUNDLE": str(bundle),
            "TANGO_INPUT_TOPIC": f"{self.id}.tweets",
            "TANGO_TEACHER_TOPIC": f"{self.id}.teacher",
            "TANGO_STUDENT_RESULTS_TOPIC": f"{self.id}.results.student",
            "TANGO_TEACHER_RESULTS_TOPIC": f"{self.id}.results.teacher",
            "TANGO_OUTPUT_TOPIC": f"{self.id}.classified",
            "TANGO_DLQ_TOPIC": f"{self.id}.dlq",
            "TANGO_SHADOW_TOPIC": f"{self.id}.teacher.shadow",
            "TANGO_SHADOW_RESULTS_TOPIC": f"{self.id}.results.shadow",
            "TANGO_KNOWLEDGE_TOPIC": f"{self.id}.teacher.knowledge",
            "TANGO_APP_ID": f"tango-{self.id}",
            "TANGO_TEACHER_GROUP": f"tango-{self.id}-teacher",
            "TANGO_DATA_DIR": str(logs / f"{self.id}-faust"),
            "TANGO_LOG_FORMAT": "json",
            **(overrides or {}),
        }
        self.settings = Settings.from_env(self.env)
        self.processes: dict[str, subprocess.Popen] = {}
        from stream_app.kafka_io.topics import ensure_topics

        ensure_topics(self.settings)  # before any client of this run subscribes

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.logs / f"{self.id}-{name}.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "stream_app.tools.cli", *args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes[name] = process
        return process

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}; log: {self.logs / f'{self.id}-{name}.log'}")

    def stop(self, timeout: float = 20) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def send(self, items: Sequence[tuple[str, str]], rate: float = 0.0) -> float:
        """Send (id, text) pairs to the input topic as fast as the client can, or at ``rate`` per
        second; returns when the first was sent.

        aiokafka rather than kafka-python: the benchmark's producer must not be its bottleneck. As
        fast as it can, every record is encoded first; at a rate, each one when it is due, so that a
        soak's records are not all held at once.
        """
        import asyncio

        from aiokafka import AIOKafkaProducer

        from stream_app.kafka_io.clients import aiokafka_config

        encoded = ((tweet_id.encode(), orjson.dumps({"id": tweet_id, "text": text})) for tweet_id, text in items)
        values = encoded if rate > 0 else list(encoded)

        async def produce() -> float:
            producer = AIOKafkaProducer(acks="all", linger_ms=10, max_batch_size=256 * 1024, **aiokafka_config(self.settings))
            await producer.start()
            try:
                started = time.time()
                for i, (key, value) in enumerate(values):
                    await producer.send(self.settings.input_topic, value=value, key=key)
                    if rate > 0 and (ahead := started + (i + 1) / rate - time.time()) > 0:
                        await asyncio.sleep(ahead)
                await producer.flush()
                return started
            finally:
                await producer.stop()

        return asyncio.run(produce())

    def consumer(self):
        """A consumer positioned at the start of the output topic (create it before sending)."""
        from kafka import KafkaConsumer

        from stream_app.kafka_io.clients import kafka_python_config

        consumer = KafkaConsumer(
            self.settings.output_topic, auto_offset_reset="earliest", enable_auto_commit=False,
            isolation_level="read_committed", fetch_max_bytes=64 * 1024 * 1024, **kafka_python_config(self.settings),
        )
        consumer.poll(timeout_ms=100)
        return consumer

    def collect(self, consumer, ids: Collection[str], timeout: float, into: Collected | None = None) -> Collected:
        """Read the output until every id in ``ids`` arrived (or ``timeout``)."""
        collected = into if into is not None else Collected()
        seen = set(collected.ids)
        arrived = sum(1 for tweet_id in seen if tweet_id in ids)  # of ids: counted, not a copy of them
        deadline = time.monotonic() + timeout
        while arrived < len(ids) and time.monotonic() < deadline:
            for part in consumer.poll(timeout_ms=500, max_records=50_000).values():
                for record in part:
                    result = orjson.loads(record.value)
                    for name, value in record.headers or ():
                        if name == "tango.produced_at":  # passthrough: the value is the input itself
                            result.setdefault("produced_at", float(value))
                    if result["id"] in seen:
                        continue
                    seen.add(result["id"])
                    arrived += result["id"] in ids
                    collected.add(result, record.timestamp / 1000.0)
            self.check_alive()
        if arrived < len(ids):
            raise TimeoutError(f"{len(ids) - arrived} of {len(ids)} results missing after {timeout}s")
        return collected

    def group_members(self, group: str) -> int:
        from kafka.admin import KafkaAdminClient
        from kafka.errors import KafkaError

        from stream_app.kafka_io.clients import kafka_python_config

        admin = KafkaAdminClient(**kafka_python_config(self.settings))
        try:
            described = admin.describe_groups([group]).get(group) or {}
            if described.get("group_state") != "Stable":
                return 0  # a rebalance is under way: members may not have their partitions yet
            return len(described.get("members") or [])
        except KafkaError:
            return 0
        finally:
            admin.close()

    def wait_teachers(self, n: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.group_members(self.settings.teacher_group) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} teacher workers did not join within {timeout}s")
            self.check_alive()
            time.sleep(0.5)


# --- what the demo and the benchmarks share: the local broker and the dataset -------------

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # stream_app/tools/runner.py -> the repository
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
def local_broker(settings: Settings, external: bool, keep: bool) -> Iterator[int | None]:
    """Start the local broker on the port of ``bootstrap_servers`` unless one runs or ``external``;
    yields the broker's pid (None for an external one)."""
    if external:
        yield None
        return
    from stream_app.tools.local_broker import LocalKafka

    port = int(settings.bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
    kafka = LocalKafka(port=port)
    ours = not kafka.status()["running"]
    print(f"[tango] local Kafka at {kafka.up(wait_s=120)}", flush=True)
    try:
        yield int(kafka.pid_file.read_text())  # the broker's pid, for the benchmark's CPU accounting
    finally:
        if ours and not keep:
            kafka.down()
