"""Integration tests for stream_app.tools.local_broker against a real Kafka broker."""

from __future__ import annotations

import time
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from stream_app.tools.local_broker import LocalKafka
from tests.integration.pipeline_harness import create_topic


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for i, v in enumerate(values):
            producer.send(topic, key=str(i).encode(), value=v)
        producer.flush(timeout=15)
    finally:
        producer.close()


def _consume_all(bootstrap: str, topic: str, expected: int, group_id: str | None = None,
                 timeout_s: float = 30) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=1000)
    try:
        if group_id is None:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            consumer.seek_to_beginning(tp)
        else:
            consumer.subscribe([topic])
        got: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(r.value for r in records)
        return got
    finally:
        consumer.close()


def test_broker_runs_and_round_trips_messages(kafka_local: LocalKafka, kafka_bootstrap: str) -> None:
    status = kafka_local.status()
    assert status["running"] is True
    assert isinstance(status["pid"], int)
    assert status["bootstrap"] == kafka_bootstrap == f"127.0.0.1:{kafka_local.port}"
    assert status["version"] == "4.1.1"

    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic)
    sent = [f"message {i}".encode() for i in range(10)]
    _produce(kafka_bootstrap, topic, sent)
    got = _consume_all(kafka_bootstrap, topic, expected=10, group_id=f"g-{topic}")
    assert got == sent


def test_up_on_running_broker_returns_quickly(kafka_local: LocalKafka) -> None:
    pid = kafka_local.status()["pid"]
    t0 = time.monotonic()
    assert kafka_local.up() == kafka_local.bootstrap
    assert time.monotonic() - t0 < 5
    assert kafka_local.status()["pid"] == pid  # no second JVM


def test_restart_keeps_data(make_kafka) -> None:
    # Own broker on other ports, so the session broker is not disturbed.
    kafka = make_kafka()
    try:
        bootstrap = kafka.up(wait_s=120)
        cluster_id = (kafka.log_dir / "meta.properties").read_text()
        topic = "persisted"
        create_topic(bootstrap, topic)
        sent = [f"keep {i}".encode() for i in range(5)]
        _produce(bootstrap, topic, sent)

        assert kafka.down() is True
        status = kafka.status()
        assert status["running"] is False and status["pid"] is None
        assert not kafka.pid_file.exists()
        assert kafka.down() is False  # safe when not running

        assert kafka.up(wait_s=120) == bootstrap
        assert kafka.status()["running"] is True
        # Storage is formatted once per data dir: same cluster id after restart.
        assert (kafka.log_dir / "meta.properties").read_text() == cluster_id
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            assert topic in admin.list_topics()
        finally:
            admin.close()
        assert _consume_all(bootstrap, topic, expected=5) == sent
    finally:
        kafka.down()
    assert kafka.status()["running"] is False
