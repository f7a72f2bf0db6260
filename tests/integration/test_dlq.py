"""``tango dlq list`` and ``tango dlq replay`` as subprocesses against the session's real broker."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from stream_app.records import Reason, Rejected, Source, dead_letter_headers

ROOT = Path(__file__).resolve().parents[2]
LONG_A = b'{"id":"a","text":"' + b"x" * 120 + b'"}'
LONG_C = '{"text":"caf\u00e9 ' .encode() + b"y" * 100 + b'"}'


class Topics:
    def __init__(self, bootstrap: str) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.bootstrap = bootstrap
        self.input = f"tweets-{suffix}"
        self.dlq = f"dlq-{suffix}"
        self.teacher = f"teacher-{suffix}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "TANGO_BOOTSTRAP_SERVERS": self.bootstrap,
            "TANGO_INPUT_TOPIC": self.input,
            "TANGO_DLQ_TOPIC": self.dlq,
        }

    def tango(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "stream_app.tools.cli", "dlq", *args],
            env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        )

    def input_end(self) -> int:
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap)
        try:
            tp = TopicPartition(self.input, 0)
            return consumer.end_offsets([tp])[tp]
        finally:
            consumer.close()

    def read_input(self, start: int) -> list:
        """The input topic's records from ``start`` to its current end."""
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        tp = TopicPartition(self.input, 0)
        try:
            consumer.assign([tp])
            end = consumer.end_offsets([tp])[tp]
            consumer.seek(tp, start)
            records: list = []
            deadline = time.monotonic() + 30
            while consumer.position(tp) < end and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(batch)
            return records
        finally:
            consumer.close()


def dead_letter(topics: Topics, reason: Reason, detail: str, offset: int, value: bytes, key: bytes | None,
                headers: tuple = (), source_topic: str | None = None, stage: str = "student") -> tuple:
    """(key, value, headers) as ``stages.dead_letter`` writes them."""
    source = Source(source_topic or topics.input, 0, offset)
    rejected = Rejected(reason, detail, source, value, key, headers)
    dlq_key = key if key is not None else f"{source.topic}:{source.partition}:{source.offset}".encode()
    return dlq_key, value, dead_letter_headers(rejected, stage)


@pytest.fixture(scope="module")
def topics(kafka_local) -> Topics:
    topics = Topics(kafka_local.bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=topics.bootstrap)
    try:
        admin.create_topics([NewTopic(topics.input, 1, 1), NewTopic(topics.dlq, 1, 1)], wait_for_metadata=True)
    finally:
        admin.close()
    letters = [
        dead_letter(topics, Reason.TEXT_TOO_LONG, "`text` has 120 characters, the limit is 100", 10, LONG_A, b"a",
                    headers=(("trace", b"t-a"),)),
        dead_letter(topics, Reason.NOT_JSON, "value is not JSON: unexpected end of data", 11, b'{"id":"b","text":"oops"', b"b"),
        dead_letter(topics, Reason.TEXT_TOO_LONG, "`text` has 105 characters, the limit is 100", 12, LONG_C, None),
        dead_letter(topics, Reason.BAD_TEACHER_REQUEST, "not a teacher request", 4, b"garbage", b"d",
                    source_topic=topics.teacher, stage="teacher"),
        dead_letter(topics, Reason.NOT_UTF8, "value is not UTF-8: invalid start byte at byte 0", 13, b"\xff\xfe", b"e"),
    ]
    producer = KafkaProducer(bootstrap_servers=topics.bootstrap, acks="all")
    try:
        for key, value, headers in letters:
            producer.send(topics.dlq, key=key, value=value, headers=headers).get(timeout=30)
    finally:
        producer.close()
    return topics


def test_list_json_and_text(topics: Topics):
    done = topics.tango("list", "--json")
    assert done.returncode == 0, done.stderr
    rows = [orjson.loads(line) for line in done.stdout.splitlines()]
    assert [(r["dlq_partition"], r["dlq_offset"], r["reason"]) for r in rows] == [
        (0, 0, "text_too_long"), (0, 1, "not_json"), (0, 2, "text_too_long"), (0, 3, "bad_teacher_request"), (0, 4, "not_utf8"),
    ]
    first = rows[0]
    assert (first["source_topic"], first["source_partition"], first["source_offset"], first["stage"]) == (topics.input, 0, 10, "student")
    assert first["message"] == "`text` has 120 characters, the limit is 100"
    assert first["key"] == "a" and first["value"] == LONG_A.decode()
    assert first["headers"] == [["trace", base64.b64encode(b"t-a").decode()]]
    assert base64.b64decode(rows[2]["value_base64"]) == LONG_C and rows[2]["value"] == LONG_C.decode()
    assert rows[3]["source_topic"] == topics.teacher and rows[3]["stage"] == "teacher"
    assert rows[4]["value"] is None and base64.b64decode(rows[4]["value_base64"]) == b"\xff\xfe"
    assert "5 dead letters: text_too_long 2, bad_teacher_request 1, not_json 1, not_utf8 1" in done.stderr

    done = topics.tango("list", "--reason", "text_too_long", "not_utf8", "--since-offset", "1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split("\t")[:4] for line in lines] == [
        ["0:2", "text_too_long", f"{topics.input}:0:12", "student"], ["0:4", "not_utf8", f"{topics.input}:0:13", "student"],
    ]
    preview = lines[0].split("\t")[5]
    assert preview.startswith('{"text":"café yyy') and preview.endswith("…") and len(preview) == 80
    assert lines[1].split("\t")[5] == "\\xff\\xfe"
    assert "2 dead letters" in done.stderr

    done = topics.tango("list", "--max", "1")
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 1


def test_dry_run_sends_nothing(topics: Topics):
    before = topics.input_end()
    done = topics.tango("replay", "--all", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert f"dry run: would replay 4 records to {topics.input}" in done.stdout
    assert "skipping 0:3 (bad_teacher_request)" in done.stderr
    assert topics.input_end() == before


def test_replay_by_reason_sends_the_original_bytes(topics: Topics):
    before = topics.input_end()
    done = topics.tango("replay", "--reason", "text_too_long")
    assert done.returncode == 0, done.stderr
    assert f"replayed 2 records to {topics.input}" in done.stdout
    assert "dead-lettered again" in done.stderr  # unchanged data errors are warned about
    records = topics.read_input(before)
    assert [(r.key, r.value, list(r.headers)) for r in records] == [
        (b"a", LONG_A, [("trace", b"t-a"), ("tango.replayed.from", f"{topics.dlq}:0:0".encode())]),
        (None, LONG_C, [("tango.replayed.from", f"{topics.dlq}:0:2".encode())]),  # the dead letter's stand-in key is dropped
    ]


def test_replay_with_a_fix_file(topics: Topics, tmp_path: Path):
    fixes = tmp_path / "fixes.jsonl"
    fixes.write_text('{"dlq_partition": 0, "dlq_offset": 1, "value": {"id": "b", "text": "fixed"}}\n')
    before = topics.input_end()
    done = topics.tango("replay", "--offsets", "0:1", "--fix-file", str(fixes))
    assert done.returncode == 0, done.stderr
    assert f"replayed 1 records to {topics.input} (1 with fixed values)" in done.stdout
    assert "dead-lettered again" not in done.stderr
    (record,) = topics.read_input(before)
    assert (record.key, record.value, list(record.headers)) == (
        b"b", b'{"id":"b","text":"fixed"}', [("tango.replayed.from", f"{topics.dlq}:0:1".encode())],
    )


def test_replay_errors(topics: Topics, tmp_path: Path):
    before = topics.input_end()
    done = topics.tango("replay", "--offsets", "0:1,0:99")
    assert done.returncode == 2 and f"not in dead-letter topic {topics.dlq}: 0:99" in done.stderr
    fixes = tmp_path / "fixes.jsonl"
    fixes.write_text('{"dlq_partition": 0, "dlq_offset": 1, "value": "x"}\n{"dlq_partition": 0, "dlq_offset": 42, "value": "y"}\n')
    done = topics.tango("replay", "--offsets", "0:1", "--fix-file", str(fixes))
    assert done.returncode == 2 and f"{fixes}:2: unknown offset 0:42" in done.stderr
    done = topics.tango("replay")
    assert done.returncode == 2 and "say which dead letters to replay" in done.stderr
    assert topics.input_end() == before


def test_skip_moves_the_group_past_a_batch(topics: Topics):
    group = f"g-{uuid.uuid4().hex[:6]}"
    before = topics.tango("skip", "--partition", "0", "--offset", "3", "--group", group)
    assert before.returncode == 0, before.stderr
    assert f"{topics.input}:0 at offset 3" in before.stdout
    consumer = KafkaConsumer(bootstrap_servers=topics.bootstrap, group_id=group, enable_auto_commit=False)
    try:
        assert consumer.committed(TopicPartition(topics.input, 0)) == 3
    finally:
        consumer.close()
    missing = topics.tango("skip", "--topic", "no-such-topic", "--partition", "0", "--offset", "1", "--group", group)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
