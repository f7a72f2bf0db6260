"""The cascade end to end on the real local broker, with its processes started as a user would."""

from __future__ import annotations

import json
import time
from collections import Counter

import orjson
import pytest

from models.bundle import load_bundle
from models.testing import make_tiny_bundle
from tests.integration.pipeline_harness import Pipeline, running, summaries, tweet_texts

TWEETS = 5000

# 50 malformed records: 10 of each kind, with the reason each must be dead-lettered for.
MALFORMED: list[tuple[bytes, str]] = (
    [(b"not json at all %d" % i, "not_json") for i in range(10)]
    + [(b"\xff\xfe\x00bad" + bytes([i]), "not_utf8") for i in range(10)]
    + [(orjson.dumps({"id": f"bad-missing-{i}", "txt": "no text"}), "missing_text") for i in range(10)]
    + [(orjson.dumps({"id": f"bad-empty-{i}", "text": "   "}), "empty_text") for i in range(5)]
    + [(orjson.dumps({"id": f"bad-type-{i}", "text": ["a", i]}), "wrong_type") for i in range(5)]
    + [(orjson.dumps({"id": f"bad-long-{i}", "text": "x" * 3000}), "text_too_long") for i in range(10)]
)


def cascade_input() -> list[bytes]:
    """TWEETS good tweets (ids t0…, an extra field ``n``) with the MALFORMED ones spread through."""
    values = [orjson.dumps({"id": f"t{i}", "text": text, "n": i}) for i, text in enumerate(tweet_texts(TWEETS, seed=2))]
    for i, (bad, _) in enumerate(MALFORMED):
        values.insert(100 * i + 50, bad)
    return values


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), tweet_texts(400, seed=1), teacher_fraction=0.3)


def test_cascade_end_to_end(kafka_local, bundle, tmp_path, capsys):
    manifest = load_bundle(bundle).manifest
    pipeline = Pipeline(kafka_local.bootstrap, bundle, tmp_path)
    values = cascade_input()

    with running(pipeline):
        pipeline.start("teacher-1", "teacher")
        pipeline.start("teacher-2", "teacher")
        pipeline.start("stream", "stream")
        pipeline.wait_teachers(2)
        started = time.monotonic()
        pipeline.produce(values)
        output = pipeline.read("output", until=TWEETS, timeout=240)
        elapsed = time.monotonic() - started
        dead = pipeline.read("dlq", until=len(MALFORMED), timeout=30, settle=1.0)
        stream_log = pipeline.log("stream")

    results = [orjson.loads(r.value) for r in output]
    ids = Counter(r["id"] for r in results)
    assert len(ids) == TWEETS and set(ids) == {f"t{i}" for i in range(TWEETS)}
    assert max(ids.values()) == 1, f"duplicates in the output: {[k for k, v in ids.items() if v > 1][:10]}"
    assert all(r.key == orjson.loads(r.value)["id"].encode() for r in output)  # keyed by id

    for r in results:
        if r["tier"] == "student":
            assert r["student_confidence"] >= manifest.threshold
            assert r["confidence"] == r["student_confidence"]
        else:
            assert r["tier"] == "teacher"
            assert r["student_confidence"] < manifest.threshold
            assert "teacher" in r["models"]
        assert r["label"] == manifest.labels[r["label_id"]]
        assert r["extra"] == {"n": int(r["id"][1:])}  # other fields carried through untouched
    tiers = Counter(r["tier"] for r in results)
    assert tiers["student"] > 0 and tiers["teacher"] > 0
    teacher_workers = Counter(r["worker"] for r in results if r["tier"] == "teacher")
    assert len(teacher_workers) == 2, f"both teacher workers must produce results: {teacher_workers}"

    expected = {bad: reason for bad, reason in MALFORMED}
    assert len(dead) == len(MALFORMED)
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        assert record.value in expected, "dead letters carry the original bytes unchanged"
        assert headers["tango.dlq.reason"] == expected[record.value]
        assert headers["__connect.errors.topic"] == pipeline.topic("input")
        assert int(headers["__connect.errors.offset"]) >= 0 and int(headers["__connect.errors.partition"]) >= 0

    student = summaries(stream_log, "student")
    records, batches = sum(s["records"] for s in student), sum(s["batches"] for s in student)
    assert records == TWEETS + len(MALFORMED)
    dead_logged = Counter()
    for s in student:
        dead_logged.update(s["dead_letter_reasons"])
    assert dead_logged == Counter(reason for _, reason in MALFORMED)  # counts are logged
    report = {
        "tweets": TWEETS, "seconds": round(elapsed, 1), "tiers": dict(tiers), "teacher_workers": dict(teacher_workers),
        "student_batches": batches, "mean_student_batch": round(records / batches, 1),
    }
    with capsys.disabled():
        print(f"\n[integration] {json.dumps(report)}")

