"""``tango dlq``: header parsing, selection, fix files, replay plans and the list output (no Kafka)."""

from __future__ import annotations

import base64

import orjson
import pytest

from stream_app.records import Reason, Rejected, Source, dead_letter_headers
from stream_app.tools import dlq
from stream_app.tools.dlq import DeadLetter, DlqError, FixFileError, Selection

INPUT = "tweets"
DLQ = "tweets.dlq"


def letter(
    offset: int,
    reason: Reason = Reason.TEXT_TOO_LONG,
    *,
    value: bytes = b'{"id":"a","text":"x"}',
    key: bytes | None = b"a",
    source: Source = Source(INPUT, 3, 100),
    stage: str = "student",
    detail: str = "`text` has 2500 characters, the limit is 2000",
    original_headers: tuple = (),
    partition: int = 0,
) -> DeadLetter:
    rejected = Rejected(reason, detail, source, value, key, original_headers)
    return dlq.parse_dead_letter(partition, offset, key, value, dead_letter_headers(rejected, stage), timestamp_ms=1700000000000)


# --- header parsing ----------------------------------------------------------------------


def test_parses_the_headers_dead_letter_headers_writes():
    d = letter(7, original_headers=(("trace", b"t-1"), ("x", b"")))
    assert d == DeadLetter(
        dlq_partition=0, dlq_offset=7, reason="text_too_long", source_topic=INPUT, source_partition=3, source_offset=100,
        stage="student", exception_class="text_too_long", message="`text` has 2500 characters, the limit is 2000",
        key=b"a", value=b'{"id":"a","text":"x"}', headers=(("trace", b"t-1"), ("x", b"")), timestamp_ms=1700000000000,
    )
    assert d.position == (0, 7)
    assert d.source == "tweets:3:100"
    assert d.is_data_error
    with pytest.raises(AttributeError):
        d.reason = "other"  # frozen


def test_missing_headers_give_reason_unknown():
    for headers in (None, [], [("trace", b"t")]):
        d = dlq.parse_dead_letter(1, 2, None, b"v", headers)
        assert d.reason == "unknown"
        assert (d.source_topic, d.source_partition, d.source_offset, d.stage, d.message) == (None, None, None, None, "")
        assert d.source == "?:?:?"
        assert not d.is_data_error
    assert dlq.parse_dead_letter(1, 2, None, b"v", [("trace", b"t")]).headers == (("trace", b"t"),)


def test_class_name_stands_in_for_a_missing_reason_and_bad_numbers_are_none():
    headers = [("__connect.errors.exception.class.name", b"org.apache.kafka.connect.errors.DataException"),
               ("__connect.errors.partition", b"zero"), ("__connect.errors.offset", None)]
    d = dlq.parse_dead_letter(0, 0, None, None, headers)
    assert d.reason == "org.apache.kafka.connect.errors.DataException"
    assert d.source_partition is None and d.source_offset is None


def test_original_connect_headers_and_old_replay_marks_are_kept_apart():
    upstream = (("__connect.errors.topic", b"upstream"), ("tango.replayed.from", b"tweets.dlq:0:1"), ("trace", b"t"))
    d = letter(5, original_headers=upstream)
    assert d.source_topic == INPUT  # ours are the last of each name
    assert d.headers == (("__connect.errors.topic", b"upstream"), ("trace", b"t"))  # the old replay mark is dropped


def test_original_key_and_value():
    assert letter(0, key=b"a").original_key() == b"a"
    # a record without key is dead-lettered keyed by its source position: not an original key
    assert letter(0, key=b"tweets:3:100").original_key() is None
    assert letter(0, key=b"tweets:3:101").original_key() == b"tweets:3:101"
    assert letter(0, Reason.TOMBSTONE, value=b"").original_value() is None
    assert letter(0, Reason.NOT_JSON, value=b"").original_value() == b""


# --- selection ---------------------------------------------------------------------------


LETTERS = [
    letter(0, Reason.TEXT_TOO_LONG),
    letter(1, Reason.NOT_JSON, value=b'{"id":"b","text":"oops"'),
    letter(2, Reason.TEXT_TOO_LONG, key=b"c"),
    letter(0, Reason.BAD_TEACHER_REQUEST, source=Source("teacher.requests", 0, 4), stage="teacher", partition=1),
]


def test_parse_offsets():
    assert dlq.parse_offsets(["0:1,0:5", " 1:7 ", "0:1"]) == [(0, 1), (0, 5), (1, 7)]
    for bad in (["1"], ["a:b"], ["0:-1"], ["0:1,x"], [","], ["0:1:2"]):
        with pytest.raises(DlqError):
            dlq.parse_offsets(bad)


def test_selection_by_offsets_reasons_and_all():
    by_offsets = dlq.select(LETTERS, Selection(offsets=frozenset({(0, 1), (1, 0)})))
    assert [d.position for d in by_offsets] == [(0, 1), (1, 0)]
    by_reason = dlq.select(LETTERS, Selection(reasons=frozenset({"text_too_long"})))
    assert [d.position for d in by_reason] == [(0, 0), (0, 2)]
    assert dlq.select(LETTERS, Selection(all=True)) == LETTERS


def test_selection_needs_exactly_one_selector():
    with pytest.raises(DlqError):
        Selection()
    with pytest.raises(DlqError):
        Selection(reasons=frozenset({"x"}), all=True)


def test_listing_filters():
    assert [d.position for d in dlq.filter_listing(LETTERS, reasons=["text_too_long"])] == [(0, 0), (0, 2)]
    assert [d.position for d in dlq.filter_listing(LETTERS, since_offset=1)] == [(0, 1), (0, 2)]
    assert [d.position for d in dlq.filter_listing(LETTERS, max_records=2)] == [(0, 0), (0, 1)]


# --- fix files ---------------------------------------------------------------------------


def test_fix_file_values():
    fixes = dlq.parse_fix_file(
        [
            '{"dlq_partition": 0, "dlq_offset": 1, "value": {"id": "b", "text": "fixed ✓"}}\n',
            "\n",
            b'{"dlq_partition": 0, "dlq_offset": 2, "value": "{\\"text\\": \\"raw bytes\\"}", "reason": "ignored"}\n',
        ],
        name="fixes.jsonl",
    )
    assert set(fixes) == {(0, 1), (0, 2)}
    assert fixes[(0, 1)].value == '{"id":"b","text":"fixed ✓"}'.encode()
    assert fixes[(0, 1)].line == 1
    assert fixes[(0, 2)].value == b'{"text": "raw bytes"}'  # a string is sent exactly
    assert fixes[(0, 2)].line == 3


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"dlq_partition": 0, "dlq_offset": 1, "value": {"text": "x"}', "f.jsonl:2: not valid JSON"),
        ('[0, 1, "x"]', "f.jsonl:2: expected a JSON object"),
        ('{"dlq_offset": 1, "value": "x"}', "f.jsonl:2: missing 'dlq_partition'"),
        ('{"dlq_partition": 0, "dlq_offset": "1", "value": "x"}', "f.jsonl:2: 'dlq_offset' must be a non-negative integer"),
        ('{"dlq_partition": true, "dlq_offset": 1, "value": "x"}', "f.jsonl:2: 'dlq_partition' must be a non-negative integer"),
        ('{"dlq_partition": 0, "dlq_offset": -1, "value": "x"}', "f.jsonl:2: 'dlq_offset' must be a non-negative integer"),
        ('{"dlq_partition": 0, "dlq_offset": 1}', "f.jsonl:2: missing 'value'"),
        ('{"dlq_partition": 0, "dlq_offset": 1, "value": null}', "f.jsonl:2: 'value' must be a JSON object or a string, got null"),
        ('{"dlq_partition": 0, "dlq_offset": 1, "value": [1]}', "f.jsonl:2: 'value' must be a JSON object or a string, got list"),
        ('{"dlq_partition": 0, "dlq_offset": 0, "value": "y"}', "f.jsonl:2: 0:0 is already fixed on line 1"),
    ],
)
def test_fix_file_errors(line, message):
    first = '{"dlq_partition": 0, "dlq_offset": 0, "value": "x"}'
    with pytest.raises(FixFileError, match="^" + message.replace("[", r"\[").replace("(", r"\(")):
        dlq.parse_fix_file([first, line], name="f.jsonl")


def test_fix_file_not_utf8_or_empty():
    with pytest.raises(FixFileError, match="f:1: not UTF-8"):
        dlq.parse_fix_file([b"\xff\n"], name="f")
    with pytest.raises(FixFileError, match="no corrected records"):
        dlq.parse_fix_file(["", "\n"], name="f")


# --- replay plans ------------------------------------------------------------------------


def plan(selection, fixes=None, **kw):
    return dlq.plan_replay(LETTERS, selection, dlq_topic=DLQ, input_topic=INPUT, fixes=fixes, **kw)


def test_plan_replays_original_bytes_key_and_headers_with_a_replay_mark():
    with_headers = [letter(4, original_headers=(("trace", b"t"),))]
    result = dlq.plan_replay(with_headers, Selection(all=True), dlq_topic=DLQ, input_topic=INPUT)
    (r,) = result.replays
    assert (r.key, r.value, r.fixed) == (b"a", b'{"id":"a","text":"x"}', False)
    assert r.headers == (("trace", b"t"), ("tango.replayed.from", b"tweets.dlq:0:4"))
    assert result.unchanged_data_errors == (r,)


def test_plan_skips_records_from_other_topics_unless_asked():
    result = plan(Selection(all=True))
    assert [r.dead_letter.position for r in result.replays] == [(0, 0), (0, 1), (0, 2)]
    assert [d.position for d in result.other_source] == [(1, 0)]
    assert len(plan(Selection(all=True), any_source=True).replays) == 4


def test_plan_applies_fixes():
    fixes = dlq.parse_fix_file(['{"dlq_partition": 0, "dlq_offset": 1, "value": {"id": "b", "text": "fixed"}}'])
    result = plan(Selection(offsets=frozenset({(0, 1), (0, 2)})), fixes)
    fixed, unchanged = result.replays
    assert (fixed.value, fixed.key, fixed.fixed) == (b'{"id":"b","text":"fixed"}', b"a", True)
    assert (unchanged.value, unchanged.fixed) == (b'{"id":"a","text":"x"}', False)
    assert result.unchanged_data_errors == (unchanged,)


def test_plan_errors_name_the_offset():
    with pytest.raises(DlqError, match="not in dead-letter topic tweets.dlq: 0:9"):
        plan(Selection(offsets=frozenset({(0, 1), (0, 9)})))
    unknown = dlq.parse_fix_file(['{"dlq_partition": 0, "dlq_offset": 1, "value": "a"}', '{"dlq_partition": 0, "dlq_offset": 9, "value": "b"}'])
    with pytest.raises(FixFileError, match=r"^F:2: unknown offset 0:9"):
        plan(Selection(offsets=frozenset({(0, 1)})), unknown, fix_file_name="F")
    unselected = dlq.parse_fix_file(['{"dlq_partition": 0, "dlq_offset": 2, "value": "b"}'])
    with pytest.raises(FixFileError, match=r"^F:1: 0:2 is not among the selected records"):
        plan(Selection(offsets=frozenset({(0, 1)})), unselected, fix_file_name="F")


def test_tombstones_replay_as_tombstones():
    tomb = letter(3, Reason.TOMBSTONE, value=b"", key=b"tweets:3:100", detail="record value is null")
    (r,) = dlq.plan_replay([tomb], Selection(all=True), dlq_topic=DLQ, input_topic=INPUT).replays
    assert (r.key, r.value) == (None, None)


# --- output ------------------------------------------------------------------------------


def test_preview_escapes_and_truncates():
    assert dlq.preview(b'{"text": "a\\nb"}') == '{"text": "a\\nb"}'
    assert dlq.preview(b"line1\nline2\ttab") == "line1\\nline2\\ttab"
    assert dlq.preview(b"\xff\xfeok") == "\\xff\\xfeok"
    assert dlq.preview("é😀".encode()) == "é😀"
    long = dlq.preview(b"x" * 500)
    assert len(long) == 80 and long.endswith("…")
    assert dlq.preview(b"") == "(empty)" and dlq.preview(None) == "(null)"


def test_list_line_format():
    d = letter(12, Reason.NOT_JSON, value=b'{"id":\n"b"', detail="value is not JSON:\tunexpected")
    assert dlq.format_line(d) == '0:12\tnot_json\ttweets:3:100\tstudent\tvalue is not JSON:\\tunexpected\t{"id":\\n"b"'
    unknown = dlq.parse_dead_letter(0, 1, None, b"v", [])
    assert dlq.format_line(unknown) == "0:1\tunknown\t?:?:?\t?\t-\tv"


def test_list_json_row():
    d = letter(2, original_headers=(("trace", b"t"),))
    row = orjson.loads(orjson.dumps(dlq.to_json(d)))
    assert row["dlq_partition"] == 0 and row["dlq_offset"] == 2
    assert row["reason"] == "text_too_long" and row["stage"] == "student"
    assert (row["source_topic"], row["source_partition"], row["source_offset"]) == (INPUT, 3, 100)
    assert row["value"] == '{"id":"a","text":"x"}'
    assert base64.b64decode(row["value_base64"]) == d.value
    assert row["key"] == "a" and row["key_base64"] == base64.b64encode(b"a").decode()
    assert row["headers"] == [["trace", base64.b64encode(b"t").decode()]]
    binary = dlq.to_json(letter(3, Reason.NOT_UTF8, value=b"\xff", key=None))
    assert binary["value"] is None and binary["value_base64"] == "/w=="
    assert binary["key"] is None and binary["key_base64"] is None


def test_reason_counts():
    assert dlq.reason_counts({}) == "0 dead letters"
    assert dlq.reason_counts({"not_json": 1}) == "1 dead letter: not_json 1"
    assert dlq.reason_counts({"not_json": 1, "text_too_long": 2, "empty_text": 1}) == (
        "4 dead letters: text_too_long 2, empty_text 1, not_json 1"
    )


# --- the command line --------------------------------------------------------------------


def parse(*argv):
    from stream_app.tools.cli import build_parser

    return build_parser().parse_args(["dlq", *argv])


def test_cli_registers_list_and_replay():
    args = parse("list", "--reason", "not_json", "text_too_long", "--reason", "empty_text", "--since-offset", "3", "--max", "5", "--json")
    assert args.func is dlq.cmd_list
    assert (args.reason, args.since_offset, args.max, args.json) == (["not_json", "text_too_long", "empty_text"], 3, 5, True)
    args = parse("replay", "--offsets", "0:1,0:2", "--offsets", "1:3", "--fix-file", "f.jsonl", "--dry-run", "--dlq-topic", "d")
    assert args.func is dlq.cmd_replay
    assert (args.offsets, args.fix_file, args.dry_run, args.setting_dlq_topic) == (["0:1,0:2", "1:3"], "f.jsonl", True, "d")


@pytest.mark.parametrize("argv", [["replay"], ["replay", "--dry-run"], ["replay", "--all", "--reason", "x"]])
def test_replay_without_one_selector_exits_2(argv, capsys):
    args = parse(*argv)
    with pytest.raises(SystemExit) as exc:
        args.func(args)
    assert exc.value.code == 2
    assert "--offsets" in capsys.readouterr().err


def test_replay_with_bad_offsets_or_fix_file_exits_2_before_kafka(tmp_path, capsys):
    args = parse("replay", "--offsets", "0-1")
    assert args.func(args) == 2
    assert "bad offset '0-1'" in capsys.readouterr().err
    bad = tmp_path / "fix.jsonl"
    bad.write_text('{"dlq_partition": 0, "dlq_offset": 1, "value": 3}\n')
    args = parse("replay", "--offsets", "0:1", "--fix-file", str(bad))
    assert args.func(args) == 2
    assert f"{bad}:1: 'value' must be a JSON object or a string" in capsys.readouterr().err
    args = parse("replay", "--offsets", "0:1", "--fix-file", str(tmp_path / "missing.jsonl"))
    assert args.func(args) == 2
    assert "cannot read fix file" in capsys.readouterr().err



def test_skip_moves_the_group_that_consumes_the_topic_by_default():
    from stream_app.settings import Settings
    from stream_app.tools.dlq.command import default_group

    s = Settings()
    assert default_group(s, s.teacher_topic) == s.teacher_group
    assert default_group(s, s.student_results_topic) == default_group(s, s.teacher_results_topic) == f"{s.app_id}-merge"
    assert default_group(s, s.input_topic) == s.app_id
