"""Start the pipeline's processes as a user would, and read topics back, for integration tests."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError

WORDS = (
    "i feel so happy today love this wonderful day great fun sad lonely miss you angry hate "
    "this awful traffic scared nervous about the exam surprised wow did not expect that"
).split()


def create_topic(bootstrap: str, name: str, partitions: int = 1, **config: str) -> None:
    """Create ``name`` (replication 1, topic ``config`` such as ``max.message.bytes``) and wait until it exists."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, topic_configs=config)])
        admin.wait_for_topics([name], timeout_ms=15000)
        assert name in admin.list_topics()
    finally:
        admin.close()


def tweet_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(3, 14))) for _ in range(n)]


@dataclass
class Pipeline:
    """Unique topic names and groups for one test, and the processes it started."""

    bootstrap: str
    bundle: Path
    workdir: Path
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    guarantee: str = "at_least_once"  # TANGO_PROCESSING_GUARANTEE of every process started
    extra_env: dict[str, str] = field(default_factory=dict)  # more TANGO_* settings for every process

    @property
    def env(self) -> dict[str, str]:
        s = self.suffix
        return {
            **os.environ,
            "TANGO_BOOTSTRAP_SERVERS": self.bootstrap,
            "TANGO_BUNDLE": str(self.bundle),
            "TANGO_INPUT_TOPIC": f"tweets-{s}",
            "TANGO_TEACHER_TOPIC": f"teacher-{s}",
            "TANGO_STUDENT_RESULTS_TOPIC": f"results-student-{s}",
            "TANGO_TEACHER_RESULTS_TOPIC": f"results-teacher-{s}",
            "TANGO_OUTPUT_TOPIC": f"classified-{s}",
            "TANGO_DLQ_TOPIC": f"dlq-{s}",
            "TANGO_SHADOW_TOPIC": f"shadow-{s}",
            "TANGO_SHADOW_RESULTS_TOPIC": f"results-shadow-{s}",
            "TANGO_KNOWLEDGE_TOPIC": f"knowledge-{s}",
            "TANGO_APP_ID": f"tango-{s}",
            "TANGO_TEACHER_GROUP": f"teacher-{s}",
            "TANGO_DATA_DIR": str(self.workdir / "faust"),
            "TANGO_LOG_FORMAT": "json",
            "TANGO_SUMMARY_INTERVAL_S": "1",
            "TANGO_TORCH_THREADS": "1",
            "TANGO_PROCESSING_GUARANTEE": self.guarantee,
            **self.extra_env,
        }

    def topic(self, role: str) -> str:
        return self.env[f"TANGO_{role.upper()}_TOPIC"]

    def start(self, name: str, *args: str, script: str = "", env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``tango ARGS`` (or a Python ``script``) as process ``name``, logging to NAME.log."""
        log = open(self.workdir / f"{name}.log", "ab")
        command = [sys.executable, script] if script else [sys.executable, "-m", "stream_app.tools.cli", *args]
        process = subprocess.Popen(
            command, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def stop_all(self, timeout: float = 20) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for name, process in self.processes.items():
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def produce(self, values: list[bytes]) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=20)
        for value in values:
            producer.send(self.topic("input"), value=value)
        producer.flush()
        producer.close()

    def group_members(self, group: str) -> int:
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            described = admin.describe_groups([group]).get(group) or {}
            if described.get("group_state") != "Stable":
                return 0  # a rebalance is under way: members may not have their partitions yet
            return len(described.get("members") or [])
        except KafkaError:  # the group coordinator is still starting
            return 0
        finally:
            admin.close()

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.log(name)[-3000:]}")

    def stop(self, name: str, sig: int = 15, timeout: float = 30) -> float:
        """Signal process ``name`` and wait for it; returns how long it took to exit."""
        process = self.processes.pop(name)
        started = time.monotonic()
        process.send_signal(sig)
        process.wait(timeout)
        return time.monotonic() - started

    def wait_log(self, name: str, event: str, count: int = 1, timeout: float = 30.0) -> None:
        """Block until process ``name`` has logged ``event`` ``count`` times (JSON log lines)."""
        deadline = time.monotonic() + timeout
        while self.log(name).count(f'"event": "{event}"') < count:
            assert time.monotonic() < deadline, f"{name} never logged {event!r}:\n{self.log(name)[-2000:]}"
            self.check_alive()
            time.sleep(0.2)

    def wait_teachers(self, n: int, timeout: float = 90) -> None:
        """Block until the teacher group is stable with exactly ``n`` members."""
        deadline = time.monotonic() + timeout
        while self.group_members(self.env["TANGO_TEACHER_GROUP"]) != n:
            assert time.monotonic() < deadline, f"teacher group never reached {n} members"
            time.sleep(0.5)

    def read(self, role: str, until: int, timeout: float, settle: float = 3.0) -> list:
        """Records of a topic: read until ``until`` arrived and ``settle`` s pass with nothing new."""
        consumer = KafkaConsumer(
            self.topic(role),
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        records: list = []
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        try:
            while time.monotonic() < deadline:
                for part in consumer.poll(timeout_ms=500).values():
                    records.extend(part)
                    last_new = time.monotonic()
                if len(records) >= until and time.monotonic() - last_new > settle:
                    break
                self.check_alive()
        finally:
            consumer.close()
        return records


def summaries(log_text: str, stage: str) -> list[dict]:
    rows = []
    for line in log_text.splitlines():
        if line.startswith("{"):
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if row.get("event") == "summary" and row.get("stage") == stage:
                rows.append(row)
    return rows


@contextmanager
def running(pipeline: Pipeline) -> Iterator[Pipeline]:
    try:
        yield pipeline
    finally:
        pipeline.stop_all()
