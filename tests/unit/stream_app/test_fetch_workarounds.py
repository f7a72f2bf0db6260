"""The fetch-path workarounds and the pinned internals (stream_app.kafka_io.internals)."""

from __future__ import annotations

import gzip

import pytest
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

from stream_app.kafka_io import internals
from stream_app.kafka_io.internals import UndecodableBatch, _Records
from tests.odd_records import RawName


def batch(records, codec: int = 0) -> bytes:
    builder = _DefaultRecordBatchBuilderPy(magic=2, compression_type=codec, is_transactional=0, producer_id=-1,
                                           producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    for offset, (value, headers) in enumerate(records):
        builder.append(offset, timestamp=1000, key=None, value=value, headers=headers)
    return bytes(builder.build())


def fetched(data: bytes) -> list:
    records = _Records(data)
    records.where = ("tweets", 3)
    out = []
    while records.has_next():
        out.extend(records.next_batch())
    return out


def test_the_internals_this_project_uses_are_where_they_were():
    internals.check_internals()  # raises InternalsMoved, naming each, if a library moved them


def test_moved_internals_are_named(monkeypatch):
    monkeypatch.setattr(internals, "INTERNALS", (("faust Thing.gone: what it is for", "faust-streaming", lambda: False),))
    with pytest.raises(internals.InternalsMoved, match=r"Thing.gone.*installed faust-streaming 0\.15"):
        internals.check_internals()


def test_plain_batches_pass_through_unchanged():
    records = fetched(batch([(b"a", [("h", b"1")]), (b"b", [])]))
    assert [(r.offset, r.value, r.headers) for r in records] == [(0, b"a", [("h", b"1")]), (1, b"b", [])]


@pytest.mark.parametrize("codec", [0, 1])  # none, gzip
def test_a_header_name_that_is_not_utf8_is_read_losslessly(codec):
    records = fetched(batch([(b"a", []), (b"b", [(RawName(b"tr\xffce"), b"v")]), (b"c", [("ok", b"\xff")])], codec))
    assert [r.value for r in records] == [b"a", b"b", b"c"]  # none lost, none twice
    name = records[1].headers[0][0]
    assert name.encode("utf-8", "surrogateescape") == b"tr\xffce"
    assert records[2].headers == [("ok", b"\xff")]


def test_an_undecodable_batch_names_its_place():
    good = bytearray(batch([(b"x" * 200, []) for _ in range(5)], codec=1))
    good[-40:-20] = b"\x00" * 20  # corrupt the gzip payload
    with pytest.raises(UndecodableBatch) as error:
        fetched(bytes(good))
    where = error.value.where
    assert (where.topic, where.partition, where.first_offset, where.next_offset) == ("tweets", 3, 0, 5)
    assert "tango dlq skip --topic tweets --partition 3 --offset 5" in str(error.value)
    assert gzip  # the codec under test
