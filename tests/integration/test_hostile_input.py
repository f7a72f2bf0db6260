"""Hostile input on the real broker: one malformed record in every ten, tombstones, odd keys
and headers. The agent never stops, every good id comes out once, every bad record is a
dead letter with its reason, and the stream keeps its pace (printed, compared to a clean run)."""

from __future__ import annotations

import json
import time
from collections import Counter

import orjson
import pytest
from kafka import KafkaProducer

from models.testing import make_tiny_bundle
from tests.integration.pipeline_harness import Pipeline, running, tweet_texts

RECORDS = 3000

# (value, key, headers, expected dead-letter reason or None for a good record)
ODD_BAD = [
    (None, b"tomb", [], "tombstone"),
    (b"\x00\x01\x02", b"\xff\xfe", [("bin", b"\x00\xff")], "not_json"),
    (b"\xc3\x28", None, [], "not_utf8"),
    (b"[1, 2, 3]", b"", [("", b"empty header name")], "not_object"),
    (b'{"id": 7, "text": "hi"}', None, [], "wrong_type"),
    (b'{"id": "x", "text": null}', None, [("dup", b"1"), ("dup", b"2")], "wrong_type"),
    (b'{"text": "' + b"a" * 5000 + b'"}', b"k" * 10_000, [], "text_too_long"),
    (b'{"id": "deep", "text": "hi", "x": ' + b"[" * 300 + b"]" * 300 + b"}", None, [], "too_deep"),
    (b"{}", None, [], "missing_text"),
    (b'{"text": "\\u0000   "}', None, [], None),  # a NUL and spaces is still text: classified, not rejected
]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), tweet_texts(400, seed=1))


def _run(pipeline: Pipeline, records: list, expect_outputs: int) -> tuple[list, list, float]:
    pipeline.workdir.mkdir(parents=True, exist_ok=True)
    producer = KafkaProducer(bootstrap_servers=pipeline.bootstrap, acks="all", linger_ms=20)
    with running(pipeline):
        pipeline.start("stream", "stream")
        pipeline.start("teacher", "teacher")
        time.sleep(8)
        started = time.monotonic()
        for value, key, headers in records:
            producer.send(pipeline.topic("input"), value=value, key=key, headers=headers)
        producer.flush()
        producer.close()
        output = pipeline.read("output", until=expect_outputs, timeout=240, settle=3.0)
        elapsed = time.monotonic() - started - 3.0
        dead = pipeline.read("dlq", until=0, timeout=20, settle=2.0)
    return output, dead, elapsed


def test_one_in_ten_malformed_never_stops_the_agent(kafka_local, bundle, tmp_path, capsys):
    texts = tweet_texts(RECORDS, seed=9)
    clean = [(orjson.dumps({"id": f"c{i}", "text": t}), f"c{i}".encode(), []) for i, t in enumerate(texts)]
    _, _, clean_s = _run(Pipeline(kafka_local.bootstrap, bundle, tmp_path / "clean"), clean, RECORDS)

    dirty, expected_dead, good_ids = [], Counter(), set()
    for i, t in enumerate(texts):
        if i % 10 == 9:
            value, key, headers, reason = ODD_BAD[(i // 10) % len(ODD_BAD)]
            if reason is None:
                value = orjson.dumps({"id": f"odd{i}", "text": "\x00   "})
                good_ids.add(f"odd{i}")
            else:
                expected_dead[reason] += 1
            dirty.append((value, key, headers))
        else:
            dirty.append((orjson.dumps({"id": f"d{i}", "text": t, "meta": {"i": i}}), f"d{i}".encode(), [("trace", b"\x00\x01")]))
            good_ids.add(f"d{i}")
    output, dead, dirty_s = _run(Pipeline(kafka_local.bootstrap, bundle, tmp_path / "dirty"), dirty, len(good_ids))

    ids = Counter(orjson.loads(r.value)["id"] for r in output)
    assert set(ids) == good_ids and max(ids.values()) == 1
    reasons = Counter(dict(r.headers)["tango.dlq.reason"].decode() for r in dead)
    assert reasons == expected_dead
    for record in dead:  # original bytes and original headers kept
        headers = dict(record.headers)
        if headers["tango.dlq.reason"] == b"tombstone":
            assert record.value in (None, b"")
        assert int(headers["__connect.errors.offset"]) >= 0
    with capsys.disabled():
        print(f"\n[hostile] {json.dumps({'records': RECORDS, 'malformed': sum(expected_dead.values()), 'clean_records_per_s': round(RECORDS / clean_s, 1), 'dirty_records_per_s': round(RECORDS / dirty_s, 1)})}")
