"""Records from producers nobody on this project wrote, on the real broker: every codec from
librdkafka, records at and over the size limits, odd header names and keys, and outputs the
broker refuses. Nothing is lost, nothing is stuck, and what cannot go on stops plainly."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections import Counter

import orjson
import pytest
from confluent_kafka import Producer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from models.testing import make_tiny_bundle
from stream_app.records import H_ORIGINAL_BYTES, H_REASON, TOO_LARGE_PREFIX_BYTES
from tests.integration.pipeline_harness import Pipeline, create_topic, running, tweet_texts
from tests.odd_records import RawName

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
BOTH_MODES = pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), tweet_texts(400, seed=1), teacher_fraction=0.3)


def librdkafka(bootstrap: str, codec: str, **config) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "enable.idempotence": True,
                     "linger.ms": 5, **config})


def delivered(producer: Producer) -> None:
    assert producer.flush(60) == 0, "librdkafka did not deliver every record"


def ids_of(records) -> Counter:
    return Counter(orjson.loads(r.value)["id"] for r in records)


def reasons_of(records) -> Counter:
    return Counter(dict(r.headers)[H_REASON].decode() for r in records)


def start(pipeline: Pipeline, teachers: int = 1) -> None:
    pipeline.workdir.mkdir(parents=True, exist_ok=True)
    pipeline.start("stream", "stream")
    for i in range(teachers):
        pipeline.start(f"teacher-{i}", "teacher")
    time.sleep(8)


def test_librdkafka_every_codec_headers_and_keys(kafka_local, bundle, tmp_path, capsys):
    """Five librdkafka producers, one per codec, with and without keys and headers; the workers
    themselves produce zstd. Every id comes out once."""
    pipeline = Pipeline(kafka_local.bootstrap, bundle, tmp_path, extra_env={"TANGO_COMPRESSION_TYPE": "zstd"})
    texts = tweet_texts(250, seed=3)
    expected = set()
    with running(pipeline):
        start(pipeline)
        for codec in CODECS:
            producer = librdkafka(kafka_local.bootstrap, codec)
            for i, text in enumerate(texts):
                tweet_id = f"{codec}-{i}"
                expected.add(tweet_id)
                key = [None, b"", tweet_id.encode(), b"\x00\xff\xfe"][i % 4]
                headers = [("source", codec.encode()), ("bin", b"\xff\x00"), ("dup", b"1"), ("dup", b"2")] if i % 2 else None
                producer.produce(pipeline.topic("input"), value=orjson.dumps({"id": tweet_id, "text": text}),
                                 key=key, headers=headers)
            delivered(producer)
        output = pipeline.read("output", until=len(expected), timeout=180)
        top = subprocess.run([sys.executable, "-m", "stream_app.tools.cli", "top", "--once", "--plain", "--from-beginning"],
                             env=pipeline.env, capture_output=True, text=True, timeout=60)
    ids = ids_of(output)
    assert top.returncode == 0, top.stderr
    assert f"results {len(expected)} routed" in top.stdout and "teacher lag" in top.stdout  # tango top, off a terminal
    with capsys.disabled():
        print(f"\n[codecs] {json.dumps({'codecs': CODECS, 'sent': len(expected), 'outputs': len(output)})}")
    assert set(ids) == expected
    assert max(ids.values()) == 1


@BOTH_MODES
def test_sizes_ids_and_odd_header_names(kafka_local, bundle, tmp_path, guarantee):
    """At the broker's limit, over ours, just under ours; an over-long id; header names that are
    not UTF-8 (a poison pill for aiokafka's parser) on good and bad records."""
    limit = 900_000
    pipeline = Pipeline(kafka_local.bootstrap, bundle, tmp_path, guarantee=guarantee,
                        extra_env={"TANGO_MAX_RECORD_BYTES": str(limit), "TANGO_MAX_ID_CHARS": "64"})

    def padded(tweet_id: str, size: int) -> bytes:
        head = orjson.dumps({"id": tweet_id, "text": "so happy today", "pad": ""})
        return head[:-2] + b"x" * (size - len(head)) + b'"}'

    big = librdkafka(kafka_local.bootstrap, "none", **{"message.max.bytes": 2_000_000})  # uncompressed: the real size
    odd = KafkaProducer(bootstrap_servers=kafka_local.bootstrap, acks="all")
    with running(pipeline):
        start(pipeline)
        topic = pipeline.topic("input")
        big.produce(topic, value=padded("under", limit - 200), key=b"under")  # classified, extra kept whole
        big.produce(topic, value=padded("over", limit + 1), key=b"over", headers=[("h", b"v")])
        big.produce(topic, value=padded("at-broker-limit", 1_048_000), key=b"atlimit")
        big.produce(topic, value=orjson.dumps({"id": "i" * 65, "text": "hello"}))
        delivered(big)
        odd.send(topic, value=orjson.dumps({"id": "odd-name", "text": "a good tweet"}),
                 headers=[(RawName(b"tr\xffce"), b"1"), ("ok", b"\xff")])
        odd.send(topic, value=b"not json", headers=[(RawName(b"\xc3\x28"), b"x")])
        for i in range(20):  # the stream goes on after them
            odd.send(topic, value=orjson.dumps({"id": f"after-{i}", "text": "and then some more"}))
        odd.flush()
        output = pipeline.read("output", until=22, timeout=180)
        dead = pipeline.read("dlq", until=4, timeout=60)
    ids = ids_of(output)
    assert set(ids) == {"under", "odd-name", *(f"after-{i}" for i in range(20))} and max(ids.values()) == 1
    under = next(orjson.loads(r.value) for r in output if r.key == b"under")
    assert len(under["extra"]["pad"]) > limit - 400
    assert reasons_of(dead) == Counter({"record_too_large": 2, "id_too_long": 1, "not_json": 1})
    for letter in dead:
        headers = dict(letter.headers)
        if headers[H_REASON] == b"record_too_large":
            assert len(letter.value) == TOO_LARGE_PREFIX_BYTES and int(headers[H_ORIGINAL_BYTES]) > limit
            assert letter.key in (b"over", b"atlimit")
        if headers[H_REASON] == b"not_json":
            assert headers["\\xc3("] == b"x"  # the name that is not UTF-8, escaped; its value untouched
            assert letter.value == b"not json"


def incompressible(chars: int) -> str:
    """Text no codec shrinks much: the size limits are checked on compressed batches."""
    return secrets.token_urlsafe(chars)[:chars]


def committed(bootstrap: str, group: str, topic: str) -> int:
    """The group's committed offset of partition 0 of ``topic`` (0 if none)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(TopicPartition(topic, 0)) or 0
    finally:
        consumer.close()


@BOTH_MODES
def test_refused_outputs_are_dead_lettered_or_stop_the_worker(kafka_local, bundle, tmp_path, guarantee):
    """The student-results topic refuses batches over 3 KB: a tweet whose result is that large is
    dead-lettered (output_rejected) and the rest flows. Then the dead-letter topic refuses it too:
    the worker stops with its offset uncommitted, and nothing after it is committed either."""
    pipeline = Pipeline(kafka_local.bootstrap, bundle, tmp_path, guarantee=guarantee,
                        extra_env={"TANGO_THRESHOLD": "0.0", "TANGO_INPUT_PARTITIONS": "1"})
    create_topic(kafka_local.bootstrap, pipeline.topic("student_results"), 4, **{"max.message.bytes": "3000"})
    create_topic(kafka_local.bootstrap, pipeline.topic("input"), 1)
    producer = KafkaProducer(bootstrap_servers=kafka_local.bootstrap, acks="all")
    topic = pipeline.topic("input")
    with running(pipeline):
        start(pipeline, teachers=0)
        for i in range(30):
            extra = {"pad": incompressible(6000)} if i == 10 else {}
            producer.send(topic, value=orjson.dumps({"id": f"r{i}", "text": "what a day", **extra}))
        producer.flush()
        output = pipeline.read("output", until=29, timeout=120)
        dead = pipeline.read("dlq", until=1, timeout=60)
        assert set(ids_of(output)) == {f"r{i}" for i in range(30)} - {"r10"}
        assert reasons_of(dead) == Counter({"output_rejected": 1})
        assert orjson.loads(dead[0].value)["id"] == "r10"
        assert pipeline.processes["stream"].poll() is None

    # The same refusal with a dead-letter topic that refuses it as well: the worker must stop.
    pipeline2 = Pipeline(kafka_local.bootstrap, bundle, tmp_path / "2", guarantee=guarantee,
                         extra_env={"TANGO_THRESHOLD": "0.0", "TANGO_INPUT_PARTITIONS": "1"})
    for role in ("student_results", "dlq"):
        create_topic(kafka_local.bootstrap, pipeline2.topic(role), 4 if role != "dlq" else 1, **{"max.message.bytes": "3000"})
    create_topic(kafka_local.bootstrap, pipeline2.topic("input"), 1)
    with running(pipeline2):
        start(pipeline2, teachers=0)
        for i in range(5):
            producer.send(pipeline2.topic("input"), value=orjson.dumps({"id": f"s{i}", "text": "what a day"}))
        producer.flush()
        pipeline2.read("output", until=5, timeout=120)
        producer.send(pipeline2.topic("input"), value=orjson.dumps({"id": "s5", "text": "what a day", "pad": incompressible(6000)}))
        producer.flush()
        stream = pipeline2.processes.pop("stream")
        assert stream.wait(90) != 0, "the worker must stop when a record can be neither produced nor dead-lettered"
        log = pipeline2.log("stream")
        assert "cannot be dead-lettered" in log
        # at most the five good records are committed: never past the refused one at offset 5
        assert committed(kafka_local.bootstrap, pipeline2.env["TANGO_APP_ID"], pipeline2.topic("input")) <= 5
    producer.close()


def test_an_undecodable_batch_stops_the_worker_with_one_clear_line(kafka_local, bundle, tmp_path):
    """A stream worker without the zstd codec (cramjam hidden from it) meets zstd input: it must
    stop, naming topic, partition and offsets, and not process anything past the batch."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "cramjam.py").write_text("raise ImportError('hidden by the test')\n")
    pipeline = Pipeline(kafka_local.bootstrap, bundle, tmp_path, extra_env={"TANGO_INPUT_PARTITIONS": "1",
                                                                           "TANGO_COMPRESSION_TYPE": "gzip"})
    create_topic(kafka_local.bootstrap, pipeline.topic("input"), 1)
    producer = librdkafka(kafka_local.bootstrap, "zstd")
    for i in range(10):
        producer.produce(pipeline.topic("input"), value=orjson.dumps({"id": f"z{i}", "text": "hello there"}))
    delivered(producer)
    with running(pipeline):
        pipeline.workdir.mkdir(parents=True, exist_ok=True)
        stream = pipeline.start("stream", "stream", env={"PYTHONPATH": str(hide)})
        code = stream.wait(120)
        pipeline.processes.pop("stream")
    log = pipeline.log("stream")
    assert code != 0
    assert f"cannot decode the record batch at {pipeline.topic('input')}:0 offsets 0-9" in log
    assert f"tango dlq skip --topic {pipeline.topic('input')} --partition 0 --offset 10" in log
    assert committed(kafka_local.bootstrap, pipeline.env["TANGO_APP_ID"], pipeline.topic("input")) == 0
