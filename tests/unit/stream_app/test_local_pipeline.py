"""run_local: the whole cascade (student → teacher → merge) in memory, on a tiny bundle."""

from __future__ import annotations

import random

import orjson
import pytest

from models.bundle import load_bundle  # noqa: E402
from models.teacher import TeacherClassifier  # noqa: E402
from models.testing import make_tiny_bundle  # noqa: E402
from stream_app.local import run_local  # noqa: E402
from stream_app.merge import MergeStage, RecentIds  # noqa: E402
from stream_app.settings import Settings  # noqa: E402
from stream_app.student import build_student_stage  # noqa: E402
from workers.teacher_stage import TeacherStage  # noqa: E402

WORDS = "happy sad great awful table monday love hate the day i feel so really was it my 😀 #mood @you".split()
S = Settings()


def make_texts(n, seed):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 9))) for _ in range(n)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(make_tiny_bundle(tmp_path_factory.mktemp("bundle"), make_texts(100, seed=2)))


@pytest.fixture(scope="module")
def teacher(bundle):
    model = TeacherClassifier.load(bundle.teacher_path, max_length=bundle.manifest.max_length)
    return TeacherStage(model.logits, bundle.manifest.labels, bundle.manifest.teacher.version,
                        S.teacher_results_topic, S.dlq_topic)


def run(bundle, teacher, values, threshold=-1.0, batch_size=16, **kw):
    student = build_student_stage(S.replace(threshold=threshold), bundle)
    merge = MergeStage(RecentIds(1000), S.output_topic, S.dlq_topic)
    return run_local(values, student, teacher, merge, batch_size=batch_size, **kw)


def tweets(n, seed=5):
    return [orjson.dumps({"text": t, "id": f"tw-{i}", "n": i}) for i, t in enumerate(make_texts(n, seed))]


def test_one_output_per_valid_input(bundle, teacher):
    values = tweets(80)
    topics = run(bundle, teacher, values)
    output = topics[S.output_topic]
    assert sorted(o.key for o in output) == sorted(f"tw-{i}".encode() for i in range(80))
    records = [orjson.loads(o.value) for o in output]
    tiers = [r["tier"] for r in records]
    assert set(tiers) <= {"student", "teacher"}
    requests = topics.get(S.teacher_topic, [])
    assert tiers.count("teacher") == len(requests) == len(topics.get(S.teacher_results_topic, []))
    assert tiers.count("student") == len(topics.get(S.student_results_topic, []))
    assert 0 < len(requests) < 80, "the tiny bundle should route to both tiers"
    for r in records:
        assert r["id"] == f"tw-{r['extra']['n']}"
        assert r["label"] in bundle.manifest.labels
    assert not topics.get(S.dlq_topic)


def test_output_bytes_are_the_tier_results_unchanged(bundle, teacher):
    topics = run(bundle, teacher, tweets(30))
    results = {o.key: o.value for o in topics.get(S.student_results_topic, []) + topics.get(S.teacher_results_topic, [])}
    for o in topics[S.output_topic]:
        assert o.value == results[o.key]


def test_malformed_inputs_dead_lettered(bundle, teacher):
    bad = [None, b"\xff", b"nope", b"[]", b'{"text": 1}', b'{"text": " "}', b'{"id": "x"}']
    good = tweets(10)
    values = good[:5] + bad + good[5:]
    topics = run(bundle, teacher, values)
    assert len(topics[S.output_topic]) == 10
    dlq = topics[S.dlq_topic]
    assert [o.value for o in dlq] == [v or b"" for v in bad]
    assert [dict(o.headers)["__connect.errors.offset"] for o in dlq] == [str(5 + i).encode() for i in range(len(bad))]


def test_duplicate_ids_yield_one_output(bundle, teacher):
    values = tweets(10) + [orjson.dumps({"text": "again and again", "id": "tw-3"}), orjson.dumps({"text": "x", "id": "tw-7"})]
    topics = run(bundle, teacher, values, batch_size=4)
    keys = [o.key for o in topics[S.output_topic]]
    assert sorted(keys) == sorted(f"tw-{i}".encode() for i in range(10))


def test_ids_derived_when_missing(bundle, teacher):
    values = [orjson.dumps({"text": t}) for t in make_texts(6, seed=8)]
    topics = run(bundle, teacher, values, input_topic="raw")
    assert sorted(o.key for o in topics[S.output_topic]) == sorted(f"raw:0:{i}".encode() for i in range(6))


@pytest.mark.parametrize("batch_size", [1, 7, 200])
def test_batch_size_does_not_change_what_is_output(bundle, teacher, batch_size):
    values = tweets(25, seed=9)
    topics = run(bundle, teacher, values, batch_size=batch_size)
    assert sorted(o.key for o in topics[S.output_topic]) == sorted(f"tw-{i}".encode() for i in range(25))


def test_threshold_zero_and_one(bundle, teacher):
    values = tweets(20, seed=4)
    none = run(bundle, teacher, values, threshold=0.0)
    assert not none.get(S.teacher_topic)
    assert {orjson.loads(o.value)["tier"] for o in none[S.output_topic]} == {"student"}
    every = run(bundle, teacher, values, threshold=1.0)
    assert len(every[S.teacher_topic]) == 20
    assert {orjson.loads(o.value)["tier"] for o in every[S.output_topic]} == {"teacher"}
    assert len(every[S.output_topic]) == 20


def test_empty_input(bundle, teacher):
    topics = run(bundle, teacher, [])
    assert not topics.get(S.output_topic)
