"""The three stages (student, teacher, merge) as pure functions over a tiny random bundle."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import orjson
import pytest

from models.bundle import load_bundle
from models.cascade import calibrated_probs
from models.teacher import TeacherClassifier
from models.testing import make_tiny_bundle
from stream_app.merge import MergeStage, RecentIds
from stream_app.records import Incoming, Output, Source
from stream_app.settings import Settings
from stream_app.student import StudentStage, build_student_stage
from workers.teacher_stage import TeacherStage

WORDS = ("happy sad great awful table monday love hate the day i feel so really was it and my "
         "@someone http://x.co/a #mood 😀 🎉 terrible wonderful paper train").split()

S = Settings(
    student_results_topic="r.student", teacher_results_topic="r.teacher", teacher_topic="t.req",
    dlq_topic="dlq", output_topic="out", max_text_chars=200,
)


def make_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 10))) for _ in range(n)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = make_tiny_bundle(tmp_path_factory.mktemp("bundle"), make_texts(100, seed=1))
    return load_bundle(path)


@pytest.fixture(scope="module")
def student(bundle) -> StudentStage:
    return build_student_stage(S, bundle)


@pytest.fixture(scope="module")
def teacher_model(bundle) -> TeacherClassifier:
    return TeacherClassifier.load(bundle.teacher_path, max_length=bundle.manifest.max_length)


@pytest.fixture(scope="module")
def teacher(bundle, teacher_model) -> TeacherStage:
    return TeacherStage(
        logits=teacher_model.logits, labels=bundle.manifest.labels, teacher_version=bundle.manifest.teacher.version,
        results_topic=S.teacher_results_topic, dlq_topic=S.dlq_topic,
    )


def records(values, topic="tweets", partition=0, keys=None, headers=()):
    return [
        Incoming(Source(topic, partition, offset), None if keys is None else keys[offset], value, 100.0 + offset, headers)
        for offset, value in enumerate(values)
    ]


def as_incoming(outputs: list[Output], partition=0) -> list[Incoming]:
    return [Incoming(Source(o.topic, partition, i), o.key, o.value, 0.0, tuple(o.headers)) for i, o in enumerate(outputs)]


def tweet_values(texts, with_ids=True):
    return [
        orjson.dumps({"text": t, "id": f"id-{i}", "meta": {"n": i, "tag": "ü🎉"}} if with_ids else {"text": t, "n": i})
        for i, t in enumerate(texts)
    ]


BAD = {
    b"\xff\xfe": "not_utf8",
    b"not json": "not_json",
    b"  {\"text\": \"cut\"\n": "not_json",  # whitespace and newline must survive too
    b"[1]": "not_object",
    b'{"id": "x"}': "missing_text",
    b'{"text": 3}': "wrong_type",
    b'{"text": "   "}': "empty_text",
    orjson.dumps({"text": "x" * 201}): "text_too_long",
}


# --- build_student_stage --------------------------------------------------------------------


def test_build_student_stage_uses_bundle_and_settings(bundle, student):
    m = bundle.manifest
    assert student.threshold == m.threshold  # negative setting: the bundle's threshold
    assert student.temperature == m.temperature
    assert tuple(student.labels) == m.labels
    assert student.student_version == m.student.version
    assert (student.results_topic, student.teacher_topic, student.dlq_topic) == ("r.student", "t.req", "dlq")
    assert student.max_text_chars == 200
    assert student.worker.startswith("stream@")


def test_threshold_setting_overrides_bundle(bundle):
    assert build_student_stage(S.replace(threshold=0.42), bundle).threshold == 0.42
    assert build_student_stage(S.replace(threshold=0.0), bundle).threshold == 0.0


# --- StudentStage ---------------------------------------------------------------------------


def test_each_valid_input_yields_exactly_one_output(student):
    texts = make_texts(60, seed=7)
    result = student(records(tweet_values(texts)))
    assert len(result.outputs) == len(texts)
    assert [o.key for o in result.outputs] == [f"id-{i}".encode() for i in range(len(texts))]
    assert {o.topic for o in result.outputs} <= {"r.student", "t.req"}
    assert result.to_teacher == sum(o.topic == "t.req" for o in result.outputs)
    assert result.dead_letters == []


def test_tier_split_agrees_with_confidence_and_threshold(bundle, student):
    texts = make_texts(100, seed=11)
    result = student(records(tweet_values(texts)))
    probs = calibrated_probs(student.logits(texts), bundle.manifest.temperature)
    confidences = probs.max(axis=1)
    expected_teacher = confidences < student.threshold
    assert 0 < expected_teacher.sum() < len(texts), "the tiny bundle should send traffic to both tiers"
    labels = bundle.manifest.labels
    for i, out in enumerate(result.outputs):
        record = orjson.loads(out.value)
        if expected_teacher[i]:
            assert out.topic == "t.req"
            assert record["id"] == f"id-{i}" and record["text"] == texts[i]
            assert record["student"]["label_id"] == int(probs[i].argmax())
            assert record["student"]["confidence"] == pytest.approx(confidences[i])
            assert record["student"]["probs"] == pytest.approx(probs[i].tolist())
            assert sum(record["student"]["probs"]) == pytest.approx(1.0)
            assert record["student"]["version"] == bundle.manifest.student.version
            assert record["extra"] == {"meta": {"n": i, "tag": "ü🎉"}}
            assert record["produced_at"] == 100.0 + i
        else:
            assert out.topic == "r.student"
            assert record["tier"] == "student"
            assert record["label_id"] == int(probs[i].argmax())
            assert record["label"] == labels[record["label_id"]]
            assert record["confidence"] == pytest.approx(confidences[i])
            assert record["confidence"] >= student.threshold
            assert record["student_label"] == record["label"]
            assert record["student_confidence"] == record["confidence"]
            assert record["models"] == {"student": bundle.manifest.student.version}
            assert record["extra"] == {"meta": {"n": i, "tag": "ü🎉"}}
            assert record["produced_at"] == 100.0 + i
            assert record["ingested_at"] <= record["decided_at"]
    assert result.to_teacher == int(expected_teacher.sum())


def test_threshold_zero_and_one(bundle):
    texts = make_texts(40, seed=3)
    none = build_student_stage(S.replace(threshold=0.0), bundle)(records(tweet_values(texts)))
    assert {o.topic for o in none.outputs} == {"r.student"} and none.to_teacher == 0
    everything = build_student_stage(S.replace(threshold=1.0), bundle)(records(tweet_values(texts)))
    assert {o.topic for o in everything.outputs} == {"t.req"} and everything.to_teacher == len(texts)


def test_missing_ids_derived_from_source(student):
    texts = make_texts(5, seed=5)
    result = student(records(tweet_values(texts, with_ids=False), topic="tweets", partition=2))
    assert [o.key for o in result.outputs] == [f"tweets:2:{i}".encode() for i in range(5)]
    for i, o in enumerate(result.outputs):
        assert orjson.loads(o.value)["id"] == f"tweets:2:{i}"


def test_malformed_inputs_dead_lettered_with_original_bytes(student):
    good = tweet_values(make_texts(6, seed=9))
    bad = list(BAD) + [None]
    values = [v for pair in zip(good, bad) for v in pair] + bad[len(good):]
    hdrs = (("trace", b"abc"),)
    result = student(records(values, partition=1, headers=hdrs))
    assert len(result.outputs) == len(values)
    dlq = [o for o in result.outputs if o.topic == "dlq"]
    assert len(dlq) == len(bad)
    assert sorted(result.dead_letters) == sorted(list(BAD.values()) + ["tombstone"])
    by_offset = {int(dict(o.headers)["__connect.errors.offset"]): o for o in dlq}
    for offset, value in enumerate(values):
        if value in good:
            continue
        out = by_offset[offset]
        assert out.value == (value if value is not None else b"")  # unchanged bytes
        assert out.key == f"tweets:1:{offset}".encode()
        headers = dict(out.headers)
        assert out.headers[0] == ("trace", b"abc")  # original headers kept, first
        assert headers["tango.dlq.reason"].decode() == (BAD.get(value, "tombstone"))
        assert headers["__connect.errors.topic"] == b"tweets"
        assert headers["__connect.errors.partition"] == b"1"
        assert headers["__connect.errors.stage"] == b"student"
    valid = [o for o in result.outputs if o.topic != "dlq"]
    assert [o.key for o in valid] == [f"id-{i}".encode() for i in range(len(good))]


def test_dead_letter_keeps_record_key(student):
    result = student(records([b"nope"], keys=[b"my-key"]))
    assert result.outputs[0].key == b"my-key"


def test_all_bad_batch_never_calls_the_model():
    def boom(texts):
        raise AssertionError("model called")

    stage = StudentStage(boom, ("a", "b"), 0.5, 1.0, "v", 10, "r", "t", "d")
    result = stage(records([None, b"x", b"[]"]))
    assert [o.topic for o in result.outputs] == ["d", "d", "d"]
    assert stage([]).outputs == []


def test_student_stage_calls_model_once_per_batch():
    calls = []

    def logits(texts):
        calls.append(list(texts))
        return np.tile([[3.0, 0.0]], (len(texts), 1))

    stage = StudentStage(logits, ("a", "b"), 0.5, 1.0, "v", 50, "r", "t", "d")
    stage(records(tweet_values(["one", "two", "three"]) + [b"bad"]))
    assert calls == [["one", "two", "three"]]


def test_deeply_nested_extra_does_not_crash_the_batch(student):
    deep = b'{"text": "hello", "id": "deep", "x": ' + b"[" * 300 + b"]" * 300 + b"}"
    values = [orjson.dumps({"text": "fine", "id": "ok"}), deep]
    result = student(records(values))  # must not raise: dead-letter it or carry it through
    assert len(result.outputs) == 2
    assert result.outputs[0].key == b"ok" and result.outputs[0].topic in ("r.student", "t.req")


# --- TeacherStage ---------------------------------------------------------------------------


def teacher_requests(student, n=30, seed=21):
    texts = make_texts(n, seed=seed)
    always = StudentStage(student.logits, student.labels, 1.0, student.temperature, student.student_version,
                          200, "r.student", "t.req", "dlq")
    outs = always(records(tweet_values(texts))).outputs
    assert all(o.topic == "t.req" for o in outs)
    return texts, outs


def test_teacher_turns_each_request_into_one_teacher_result(bundle, student, teacher, teacher_model):
    texts, requests = teacher_requests(student)
    result = teacher(as_incoming(requests, partition=5))
    assert result.dead_letters == []
    assert len(result.outputs) == len(requests)
    expected = calibrated_probs(teacher_model.logits(texts), 1.0)
    labels = bundle.manifest.labels
    for i, (req, out) in enumerate(zip(requests, result.outputs)):
        sent = orjson.loads(req.value)
        record = orjson.loads(out.value)
        assert out.topic == "r.teacher"
        assert out.key == req.key == f"id-{i}".encode()
        assert record["id"] == f"id-{i}"
        assert record["tier"] == "teacher"
        assert record["label_id"] == int(expected[i].argmax())
        assert record["label"] == labels[record["label_id"]]
        assert record["confidence"] == pytest.approx(float(expected[i].max()), rel=1e-5)
        assert record["student_label"] == labels[sent["student"]["label_id"]]
        assert record["student_confidence"] == sent["student"]["confidence"]
        assert record["models"] == {"student": bundle.manifest.student.version, "teacher": bundle.manifest.teacher.version}
        assert record["ingested_at"] == sent["ingested_at"]
        assert record["produced_at"] == sent["produced_at"]
        assert record["extra"] == sent["extra"]
        assert record["worker"] == "teacher"
        assert record["teacher_probs"] == [round(float(p), 3) for p in expected[i]]


def test_the_teacher_keeps_what_it_said_on_the_knowledge_topic(bundle, student, teacher):
    texts, requests = teacher_requests(student)
    shadow = orjson.loads(requests[0].value) | {"shadow": True}
    requests = [*requests[1:], Output("teacher.shadow", requests[0].key, orjson.dumps(shadow))]
    keeping = dataclasses.replace(teacher, knowledge_topic="k", probs_digits=2)
    result = keeping(as_incoming(requests))
    kept = [orjson.loads(o.value) for o in result.outputs if o.topic == "k"]
    answers = {orjson.loads(o.value)["id"]: orjson.loads(o.value) for o in result.outputs if o.topic != "k"}
    assert len(kept) == len(requests) == len(answers)
    by_id = {k["id"]: k for k in kept}
    assert by_id[shadow["id"]]["source"] == "shadow" and by_id[shadow["id"]]["text"] == shadow["text"]
    assert sorted(k["source"] for k in kept).count("routed") == len(requests) - 1
    for tweet_id, k in by_id.items():
        assert k["probs"] == answers[tweet_id]["teacher_probs"] and all(round(p, 2) == p for p in k["probs"])
        assert sum(k["probs"]) == pytest.approx(1.0, abs=0.02) and k["models"]["teacher"] == bundle.manifest.teacher.version
    assert all(o.origin is not None for o in result.outputs)  # kept with its request's offset: committed together


GARBAGE = [
    None,
    b"",
    b"not json",
    b"[1, 2]",
    b'"a string"',
    b'{"id": "x"}',
    b'{"id": 5, "text": "t", "ingested_at": 1.0, "student": {"label_id": 0, "confidence": 0.5}}',
    b'{"id": "x", "text": "t", "ingested_at": 1.0}',
    b'{"id": "x", "text": "t", "student": {"label_id": 0, "confidence": 0.5}}',
    b'{"id": "x", "text": "t", "ingested_at": 1.0, "student": {"confidence": 0.5}}',
    b'{"id": "x", "text": "t", "ingested_at": 1.0, "student": {"label_id": "zero", "confidence": 0.5}}',
    b'{"id": "x", "text": "t", "ingested_at": 1.0, "student": {"label_id": 0, "confidence": "sure"}}',
    b'{"id": "x", "text": "t", "ingested_at": "later", "student": {"label_id": 0, "confidence": 0.5}}',
    b'{"id": "x", "text": "t", "ingested_at": 1.0, "student": [0, 0.5]}',
]


@pytest.mark.parametrize("value", GARBAGE)
def test_garbage_teacher_request_dead_lettered(student, teacher, value):
    _, requests = teacher_requests(student, n=2)
    incoming = as_incoming(requests, partition=3)
    bad = Incoming(Source("t.req", 3, 99), b"k", value, 0.0, (("h", b"v"),))
    result = teacher([incoming[0], bad, incoming[1]])
    assert result.dead_letters == ["bad_teacher_request"]
    dlq = [o for o in result.outputs if o.topic == "dlq"]
    assert len(dlq) == 1
    assert dlq[0].value == (value or b"")
    assert dlq[0].key == b"k"
    assert dlq[0].headers[0] == ("h", b"v")
    headers = dict(dlq[0].headers)
    assert headers["tango.dlq.reason"] == b"bad_teacher_request"
    assert headers["__connect.errors.stage"] == b"teacher"
    assert headers["__connect.errors.offset"] == b"99"
    assert [o.key for o in result.outputs if o.topic == "r.teacher"] == [b"id-0", b"id-1"]


@pytest.mark.parametrize("label_id", [7, "1", 1.5])
def test_teacher_request_with_invalid_student_label_dead_lettered(teacher, label_id):
    value = orjson.dumps({"id": "x", "text": "hello", "ingested_at": 1.0,
                          "student": {"label_id": label_id, "confidence": 0.4}})
    result = teacher([Incoming(Source("t.req", 0, 0), b"x", value)])
    assert result.dead_letters == ["bad_teacher_request"]
    assert result.outputs[0].topic == "dlq" and result.outputs[0].value == value


def test_teacher_all_garbage_never_calls_model():
    def boom(texts):
        raise AssertionError("model called")

    stage = TeacherStage(boom, ("a", "b"), "tv", "r", "d")
    result = stage([Incoming(Source("t", 0, 0), None, b"x")])
    assert [o.topic for o in result.outputs] == ["d"]
    assert result.outputs[0].key == b"t:0:0"


# --- MergeStage -----------------------------------------------------------------------------


def merge_stage(window=100):
    return MergeStage(RecentIds(window), "out", "dlq")


def result_in(key, value, partition=0, offset=0, topic="r.student"):
    return Incoming(Source(topic, partition, offset), key, value)


def test_merge_forwards_first_occurrence_only():
    merge = merge_stage()
    batch = [
        result_in(b"a", b'{"v": "a1"}', offset=0),
        result_in(b"b", b'{"v": "b1"}', offset=1),
        result_in(b"a", b'{"v": "a2"}', offset=2, topic="r.teacher"),
        result_in(b"a", b'{"v": "a3"}', offset=3),
    ]
    result = merge(batch)
    assert [(o.topic, o.key, o.value) for o in result.outputs] == [("out", b"a", b'{"v": "a1"}'), ("out", b"b", b'{"v": "b1"}')]
    assert result.duplicates == 2
    assert result.dead_letters == []
    # remembered across batches
    again = merge([result_in(b"b", b'{"v": "b2"}', offset=4), result_in(b"c", b"{}", offset=5)])
    assert [o.key for o in again.outputs] == [b"c"]
    assert again.duplicates == 1


def test_merge_passes_bytes_through_unchanged():
    value = b'{"weird":  "spacing", "x": [1,2]}'
    out = merge_stage()([result_in(b"k", value)]).outputs[0]
    assert out.value == value and out.key == b"k" and tuple(out.headers) == ()


def test_merge_dedup_is_per_partition():
    merge = merge_stage()
    result = merge([result_in(b"a", b"1", partition=0), result_in(b"a", b"2", partition=1)])
    assert len(result.outputs) == 2 and result.duplicates == 0


@pytest.mark.parametrize("key,value", [(None, b'{"id": "x"}'), (b"x", None), (None, None)])
def test_merge_dead_letters_keyless_or_valueless(key, value):
    merge = merge_stage()
    bad = Incoming(Source("r.teacher", 2, 17), key, value, 0.0, (("h", b"1"),))
    result = merge([bad, result_in(b"ok", b"{}")])
    assert result.dead_letters == ["bad_result"]
    dlq = result.outputs[0]
    assert dlq.topic == "dlq"
    assert dlq.value == (value or b"")
    assert dlq.key == (key if key is not None else b"r.teacher:2:17")
    headers = dict(dlq.headers)
    assert headers["tango.dlq.reason"] == b"bad_result"
    assert headers["__connect.errors.stage"] == b"merge"
    assert dlq.headers[0] == ("h", b"1")
    assert [o.key for o in result.outputs[1:]] == [b"ok"]
    assert result.duplicates == 0


def test_merge_of_student_and_teacher_outputs_gives_one_result_per_id(student, teacher):
    texts = make_texts(50, seed=33)
    first = student(records(tweet_values(texts)))
    teacher_out = teacher(as_incoming([o for o in first.outputs if o.topic == "t.req"])).outputs
    results = [o for o in first.outputs if o.topic == "r.student"] + teacher_out
    merge = merge_stage()
    # a redelivery of everything (as after a crash) is dropped
    merged = merge(as_incoming(results)).outputs + merge(as_incoming(results)).outputs
    assert sorted(o.key for o in merged) == sorted(f"id-{i}".encode() for i in range(len(texts)))


# --- size and id bounds ---------------------------------------------------------------------


def test_a_record_over_the_size_bound_is_dead_lettered_with_a_prefix(bundle):
    from stream_app.records import H_ORIGINAL_BYTES, H_REASON, TOO_LARGE_PREFIX_BYTES

    stage = build_student_stage(S.replace(max_record_bytes=50_000), bundle)
    big = b'{"id": "big", "text": "hi", "pad": "' + b"x" * 60_000 + b'"}'
    just_under = b'{"id": "ok", "text": "hi", "pad": "' + b"x" * (50_000 - 60) + b'"}'
    out = stage(records([big, just_under], keys=[b"kb", b"ko"], headers=[("trace", b"1")]))
    assert out.dead_letters == ["record_too_large"]
    letter = next(o for o in out.outputs if o.topic == "dlq")
    headers = dict(letter.headers)
    assert letter.key == b"kb" and headers["trace"] == b"1" and headers[H_REASON] == b"record_too_large"
    assert letter.value == big[:TOO_LARGE_PREFIX_BYTES] and int(headers[H_ORIGINAL_BYTES]) == len(big)
    assert [o.key for o in out.outputs if o.topic != "dlq"] == [b"ok"]


def test_an_id_over_the_bound_is_dead_lettered(bundle):
    stage = build_student_stage(S.replace(max_id_chars=8), bundle)
    out = stage(records([b'{"id": "123456789", "text": "hi"}', b'{"id": "12345678", "text": "hi"}']))
    assert out.dead_letters == ["id_too_long"]


def test_a_header_name_read_leniently_is_escaped_in_its_dead_letter(student):
    odd = b"tr\xffce".decode("utf-8", "surrogateescape")
    out = student(records([b"not json"], headers=[(odd, b"v")]))
    assert ("tr\\xffce", b"v") in out.outputs[0].headers


def test_outputs_name_the_input_they_were_made_for(student):
    recs = records(tweet_values(["so happy", "so sad"]))
    out = student(recs)
    assert [o.origin for o in out.outputs] == recs
