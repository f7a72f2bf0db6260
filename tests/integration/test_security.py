"""SASL/SCRAM end to end: a local broker with a SCRAM listener on loopback, the pipeline's
processes started as a user would with only the settings (TANGO_SECURITY_PROTOCOL,
TANGO_SASL_*) pointing them at it; and a wrong password failing fast with a plain message."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

import orjson
import pytest

from models.testing import make_tiny_bundle
from stream_app.kafka_io.clients import kafka_python_config
from stream_app.settings import Settings
from stream_app.tools.local_broker import KafkaLocalError, LocalKafka
from tests.integration.pipeline_harness import Pipeline, running, tweet_texts

USER, PASSWORD = "tango-app", "s3cret-\"quoted\"=pw"  # quotes and '=' survive StorageTool's parser
TWEETS = 200
REPO = Path(__file__).resolve().parents[2]


def free_ports(n: int) -> list[int]:
    """n distinct currently-free TCP ports on 127.0.0.1."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:  # all held open at once, so the OS hands out distinct ports
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture(scope="module")
def scram_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A broker of its own: PLAINTEXT (admin) plus SASL_PLAINTEXT with SCRAM users, on free ports."""
    port, controller, sasl = free_ports(3)
    kafka = LocalKafka(port=port, controller_port=controller, sasl_port=sasl, scram_users=((USER, PASSWORD), ("other", "pw")),
                       data_dir=tmp_path_factory.mktemp("kafka-scram"))
    if shutil.which("java") is None:
        pytest.skip("java is not installed; the local Kafka broker needs Java 17+")
    if not kafka.jars_ready() and shutil.which("mvn") is None:
        pytest.skip("Kafka jars are not cached and mvn is not installed to fetch them")
    try:
        kafka.up(wait_s=180)
        yield kafka
    finally:
        kafka.down()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), tweet_texts(400, seed=1), teacher_fraction=0.3)


def sasl_env(kafka: LocalKafka, password: str = PASSWORD) -> dict[str, str]:
    return {
        "TANGO_BOOTSTRAP_SERVERS": kafka.sasl_bootstrap,
        "TANGO_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "TANGO_SASL_MECHANISM": "SCRAM-SHA-512",
        "TANGO_SASL_USERNAME": USER,
        "TANGO_SASL_PASSWORD": password,
    }


class SaslPipeline(Pipeline):
    """The harness's pipeline, with every process and every check going through SASL."""

    password: str = PASSWORD
    kafka: LocalKafka

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, **sasl_env(self.kafka, self.password)}

    def settings(self) -> Settings:
        return Settings.from_env(self.env)

    def cli(self, *args: str, stdin: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "stream_app.tools.cli", *args], env=self.env, input=stdin,
                              capture_output=True, timeout=timeout, cwd=REPO)

    def group_members(self, group: str) -> int:
        from kafka.admin import KafkaAdminClient
        from kafka.errors import KafkaError

        admin = KafkaAdminClient(**kafka_python_config(self.settings()))
        try:
            described = admin.describe_groups([group]).get(group) or {}
            return len(described.get("members") or [])
        except KafkaError:
            return 0
        finally:
            admin.close()

    def output_count(self) -> int:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(**kafka_python_config(self.settings()))
        try:
            topic = self.topic("output")
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
            return sum(consumer.end_offsets(tps).values()) if tps else 0
        finally:
            consumer.close()


# --- LocalKafka's SCRAM option ------------------------------------------------------------------


def test_local_kafka_scram_options_are_checked(tmp_path):
    with pytest.raises(KafkaLocalError, match="go together"):
        LocalKafka(port=1, sasl_port=3, data_dir=tmp_path)
    with pytest.raises(KafkaLocalError, match="go together"):
        LocalKafka(port=1, scram_users=(("a", "b"),), data_dir=tmp_path)
    with pytest.raises(KafkaLocalError, match="no comma"):
        LocalKafka(port=1, sasl_port=3, scram_users=(("a", "b,c"),), data_dir=tmp_path)
    with pytest.raises(KafkaLocalError, match="must differ"):
        LocalKafka(port=1, sasl_port=2, scram_users=(("a", "b"),), data_dir=tmp_path)
    kafka = LocalKafka(port=1, sasl_port=3, scram_users=(("a", "hidden-pw"),), data_dir=tmp_path)
    assert "hidden-pw" not in repr(kafka)
    with pytest.raises(KafkaLocalError, match="no SASL listener"):
        LocalKafka(port=1, data_dir=tmp_path).sasl_bootstrap


def test_scram_broker_status_and_users_fixed_at_format(scram_kafka):
    status = scram_kafka.status()
    assert status["running"] and status["sasl_bootstrap"] == f"127.0.0.1:{scram_kafka.sasl_port}"
    assert PASSWORD not in (scram_kafka.data_dir / "scram-users.sha256").read_text()
    # The same data dir with other users: refused, since SCRAM users are only created at format time.
    other = LocalKafka(port=scram_kafka.port, controller_port=scram_kafka.controller_port, sasl_port=scram_kafka.sasl_port,
                       scram_users=((USER, "another-password"),), data_dir=scram_kafka.data_dir)
    with pytest.raises(KafkaLocalError, match="formatted with other SCRAM users"):
        other.up()
    assert scram_kafka.status()["running"]  # refused before touching the running broker


# --- the pipeline over SCRAM ---------------------------------------------------------------------


def test_pipeline_end_to_end_over_scram(scram_kafka, bundle, tmp_path, capsys):
    pipeline = SaslPipeline(scram_kafka.sasl_bootstrap, bundle, tmp_path)
    pipeline.kafka = scram_kafka
    lines = b"".join(orjson.dumps({"id": f"s{i}", "text": t}) + b"\n" for i, t in enumerate(tweet_texts(TWEETS, seed=5)))

    with running(pipeline):
        pipeline.start("teacher", "teacher")
        pipeline.start("stream", "stream")
        deadline = time.monotonic() + 180
        while pipeline.group_members(pipeline.env["TANGO_TEACHER_GROUP"]) < 1:
            for name, process in pipeline.processes.items():
                assert process.poll() is None, f"{name} exited with {process.returncode}:\n{pipeline.log(name)[-3000:]}"
            assert time.monotonic() < deadline, "the teacher worker did not join its group over SASL"
            time.sleep(0.5)
        started = time.monotonic()
        produced = pipeline.cli("produce", "-", stdin=lines)  # kafka-python over SASL
        assert produced.returncode == 0, produced.stderr.decode(errors="replace")
        tail = pipeline.cli("tail", "--from-beginning", "--max", str(TWEETS), "--timeout", "120", timeout=300)
        elapsed = time.monotonic() - started
        assert tail.returncode == 0, tail.stderr.decode(errors="replace")
        time.sleep(3)  # anything more (a duplicate) would have arrived by now
        total = pipeline.output_count()
        for name, process in pipeline.processes.items():
            assert process.poll() is None, f"{name} exited with {process.returncode}:\n{pipeline.log(name)[-3000:]}"
        logs = {name: pipeline.log(name) for name in pipeline.processes}

    results = [orjson.loads(line) for line in tail.stdout.splitlines() if line.strip()]
    ids = Counter(r["id"] for r in results)
    assert set(ids) == {f"s{i}" for i in range(TWEETS)}, f"missing: {TWEETS - len(ids)}\n{logs['stream'][-2000:]}"
    assert max(ids.values()) == 1 and total == TWEETS, f"{total} records in the output for {TWEETS} tweets"
    tiers = Counter(r["tier"] for r in results)
    assert tiers["student"] > 0 and tiers["teacher"] > 0, tiers  # Faust and aiokafka both went through SASL
    with capsys.disabled():
        print(f"\n[integration] SCRAM pipeline: {TWEETS} tweets in {elapsed:.1f}s, tiers {dict(tiers)}")


def test_wrong_password_fails_fast_with_a_plain_message(scram_kafka, bundle, tmp_path, capsys):
    pipeline = SaslPipeline(scram_kafka.sasl_bootstrap, bundle, tmp_path)
    pipeline.kafka = scram_kafka
    pipeline.password = "not-the-password"
    commands = {"stream": ["stream"], "teacher": ["teacher"], "produce": ["produce", "-"],
                "tail": ["tail", "--from-beginning", "--timeout", "5"]}
    started = time.monotonic()
    processes = {
        name: subprocess.Popen([sys.executable, "-m", "stream_app.tools.cli", *args], env=pipeline.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        for name, args in commands.items()
    }
    took: dict[str, float] = {}
    outputs: dict[str, str] = {}
    try:
        for name, process in processes.items():
            _, err = process.communicate(timeout=max(1.0, 90 - (time.monotonic() - started)))
            took[name] = round(time.monotonic() - started, 1)
            outputs[name] = err.decode(errors="replace")
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    expected = (f"tango: authentication failed for user '{USER}' with mechanism SCRAM-SHA-512 "
                f"at {scram_kafka.sasl_bootstrap}")
    for name, process in processes.items():
        assert process.returncode == 3, f"{name} exited with {process.returncode}:\n{outputs[name][-3000:]}"
        assert expected in outputs[name], outputs[name][-3000:]
        assert "Traceback" not in outputs[name]
        assert "not-the-password" not in outputs[name]
    # ~20 s is the goal on an idle machine; four Python processes importing torch at once on a
    # busy two-core one take longer, so the bound here is generous.
    assert max(took.values()) < 60, took
    with capsys.disabled():
        print(f"\n[integration] wrong SCRAM password: exit 3 after {took} s; {outputs['stream'].strip().splitlines()[-1]}")
