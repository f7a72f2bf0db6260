"""Input decoding/validation, dead-letter headers and the record contracts of the topics."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.records import (
    Reason,
    Rejected,
    Source,
    Tweet,
    dead_letter_headers,
    decode_tweet,
    result_record,
    teacher_request,
)

SRC = Source("tweets", 3, 1234)
MAX = 20


def decode(value, max_chars=MAX, produced_at=0.0):
    return decode_tweet(value, SRC, max_chars, produced_at)


def rejected(value, reason, max_chars=MAX):
    out = decode(value, max_chars)
    assert isinstance(out, Rejected), out
    assert out.reason is reason, out
    assert out.value == value  # the original bytes, for the DLQ
    assert out.source == SRC
    assert out.detail  # a human-readable detail
    return out


# --- every Reason -------------------------------------------------------------------------


def test_tombstone():
    rejected(None, Reason.TOMBSTONE)


@pytest.mark.parametrize("value", [b"\xff\xfe", b'{"text": "\xff"}', b"\x80abc"])
def test_not_utf8(value):
    rejected(value, Reason.NOT_UTF8)


@pytest.mark.parametrize("value", [b"", b"hello", b"{", b'{"text": "a",}', b"NaN", b"{'text': 'a'}", b'"\\ud800"'])
def test_not_json(value):
    rejected(value, Reason.NOT_JSON)


@pytest.mark.parametrize("value", [b"[1]", b"5", b'"text"', b"null", b"true", b"[]", b'[{"text": "a"}]', b"1.5"])
def test_not_object(value):
    rejected(value, Reason.NOT_OBJECT)


@pytest.mark.parametrize("value", [b"{}", b'{"id": "x"}', b'{"Text": "hi"}', b'{"extra": {"text": "hi"}}'])
def test_missing_text(value):
    rejected(value, Reason.MISSING_TEXT)


@pytest.mark.parametrize(
    "value",
    [
        b'{"text": 5}',
        b'{"text": null}',
        b'{"text": ["hi"]}',
        b'{"text": {"a": 1}}',
        b'{"text": true}',
        b'{"text": "hi", "id": 5}',
        b'{"text": "hi", "id": ""}',
        b'{"text": "hi", "id": null}',
        b'{"text": "hi", "id": ["a"]}',
    ],
)
def test_wrong_type(value):
    rejected(value, Reason.WRONG_TYPE)


@pytest.mark.parametrize("text", ["", " ", "   \t\n ", "\u3000", "\u00a0\u2003"])
def test_empty_text(text):
    rejected(orjson.dumps({"text": text}), Reason.EMPTY_TEXT)


def test_text_too_long_boundary():
    exact = "x" * MAX
    ok = decode(orjson.dumps({"text": exact}))
    assert isinstance(ok, Tweet) and ok.text == exact
    rejected(orjson.dumps({"text": exact + "y"}), Reason.TEXT_TOO_LONG)


def test_text_length_counts_characters_not_bytes():
    emoji = "😀" * MAX  # 4 UTF-8 bytes each
    ok = decode(orjson.dumps({"text": emoji}))
    assert isinstance(ok, Tweet) and ok.text == emoji
    rejected(orjson.dumps({"text": emoji + "😀"}), Reason.TEXT_TOO_LONG)


def test_reason_values_are_the_dlq_contract():
    assert {r.value for r in Reason} == {
        "tombstone", "not_utf8", "not_json", "not_object", "missing_text", "wrong_type",
        "empty_text", "text_too_long", "too_deep", "bad_teacher_request", "bad_result",
        "id_too_long", "record_too_large", "output_rejected",
    }


# --- accepted tweets ----------------------------------------------------------------------


def test_id_from_record_when_present():
    t = decode(b'{"text": "hello", "id": "abc-1"}', produced_at=17.5)
    assert t == Tweet("abc-1", "hello", {}, 17.5)


def test_id_derived_from_topic_partition_offset():
    t = decode(b'{"text": "hello"}')
    assert isinstance(t, Tweet)
    assert t.id == "tweets:3:1234"
    # stable across redeliveries of the same record
    assert decode(b'{"text": "hello"}').id == t.id
    assert decode_tweet(b'{"text": "hello"}', Source("other", 0, 7), MAX).id == "other:0:7"


def test_text_kept_verbatim():
    text = "  Hi @bob 😀 #mood\n"
    t = decode(orjson.dumps({"text": text}))
    assert t.text == text  # not stripped or normalised


def test_extra_fields_carried_untouched():
    extra = {
        "user": {"name": "Zoë", "followers": 12, "tags": ["a", {"deep": [1, 2.5, None, True]}]},
        "lang": "日本語",
        "emoji": "🎉👍🏽",
        "count": 0,
        "ratio": -1.25,
        "flag": False,
        "nothing": None,
        "big": 2**63 - 1,
        "list": [],
        "obj": {},
    }
    raw = orjson.dumps({**extra, "text": "hi", "id": "t1"})
    t = decode(raw)
    assert isinstance(t, Tweet)
    assert t.extra == extra
    assert "text" not in t.extra and "id" not in t.extra
    # and they serialise back to the same JSON
    assert orjson.loads(orjson.dumps(t.extra)) == extra


# --- dead-letter headers -------------------------------------------------------------------


def test_dead_letter_headers():
    rej = Rejected(Reason.NOT_JSON, "value is not JSON: boom", SRC, b"oops", b"key", (("trace", b"t-1"), ("x", b"")))
    headers = dead_letter_headers(rej, "student")
    assert headers[:2] == [("trace", b"t-1"), ("x", b"")]  # original headers first, in order
    named = dict(headers[2:])
    assert named["__connect.errors.topic"] == b"tweets"
    assert named["__connect.errors.partition"] == b"3"
    assert named["__connect.errors.offset"] == b"1234"
    assert named["__connect.errors.stage"] == b"student"
    assert named["__connect.errors.exception.message"] == b"value is not JSON: boom"
    assert named["tango.dlq.reason"] == b"not_json"
    assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in headers)


def test_dead_letter_headers_without_original_headers():
    rej = decode(None)
    headers = dead_letter_headers(rej, "merge")
    assert headers[0] == ("__connect.errors.topic", b"tweets")
    assert dict(headers)["tango.dlq.reason"] == b"tombstone"


# --- record contracts -----------------------------------------------------------------------

RESULT_KEYS = {"id", "label", "label_id", "confidence", "tier", "student_label", "student_confidence", "models",
               "threshold", "ingested_at", "decided_at"}


def test_result_record_has_required_keys():
    value = result_record(
        tweet_id="t1", labels=("neg", "neu", "pos"), label_id=2, confidence=0.9, tier="teacher",
        student_label_id=0, student_confidence=0.4, models={"student": "s1", "teacher": "t1"}, threshold=0.7,
        produced_at=1.0, ingested_at=2.0, decided_at=3.0, extra={"k": "ü"}, worker="w",
    )
    record = orjson.loads(value)
    assert RESULT_KEYS <= set(record)
    assert record["id"] == "t1"
    assert record["label"] == "pos" and record["label_id"] == 2
    assert record["student_label"] == "neg" and record["student_confidence"] == 0.4
    assert record["confidence"] == 0.9 and record["tier"] == "teacher"
    assert record["models"] == {"student": "s1", "teacher": "t1"} and record["threshold"] == 0.7
    assert (record["produced_at"], record["ingested_at"], record["decided_at"]) == (1.0, 2.0, 3.0)
    assert record["extra"] == {"k": "ü"} and record["worker"] == "w"


def test_teacher_request_shape():
    tweet = Tweet("t9", "so so", {"a": [1]}, 5.0)
    req = orjson.loads(teacher_request(tweet, 6.0, 1, 0.41, [0.3, 0.41, 0.29], "mlp-abc", 0.6))
    assert req == {
        "id": "t9", "text": "so so", "extra": {"a": [1]}, "produced_at": 5.0, "ingested_at": 6.0, "threshold": 0.6,
        "student": {"label_id": 1, "confidence": 0.41, "probs": [0.3, 0.41, 0.29], "version": "mlp-abc"},
    }
    shadow = orjson.loads(teacher_request(tweet, 6.0, 1, 0.41, [0.3, 0.41, 0.29], "mlp-abc", 0.6, shadow=True))
    assert shadow == {**req, "shadow": True}


# --- properties -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decode_never_raises_on_bytes(value):
    out = decode(value)
    assert isinstance(out, (Tweet, Rejected))
    if isinstance(out, Rejected):
        assert out.value == value and isinstance(out.reason, Reason)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_decode_never_raises_on_json(data, ascii_only):
    value = json.dumps(data, ensure_ascii=ascii_only).encode()
    out = decode(value, max_chars=50)
    assert isinstance(out, (Tweet, Rejected))
    if isinstance(out, Rejected):
        assert out.value == value
    else:
        assert isinstance(data, dict) and isinstance(data.get("text"), str)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.text(max_size=8).filter(lambda k: k not in ("text", "id")), json_values, max_size=5),
    st.text(min_size=1, max_size=50).filter(lambda s: s.strip()),
    st.one_of(st.none(), st.text(min_size=1, max_size=20)),
)
def test_valid_object_becomes_tweet_with_extra(extra, text, tweet_id):
    data = {**extra, "text": text}
    if tweet_id is not None:
        data["id"] = tweet_id
    value = json.dumps(data).encode()
    out = decode(value, max_chars=50, produced_at=3.0)
    assert isinstance(out, Tweet), out
    assert out.text == text
    assert out.extra == extra
    assert out.id == (tweet_id if tweet_id is not None else "tweets:3:1234")
    assert out.produced_at == 3.0
