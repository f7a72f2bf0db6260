"""``tango dlq``: list dead-letter records with their reasons, replay chosen ones.

``tango dlq list`` reads the dead-letter topic from the beginning (no consumer group,
``read_committed``, up to the end offsets taken at start) and prints one line per record:
where it sits in the dead-letter topic, its reason, where it came from, the stage that
rejected it, the message, and a preview of its value; ``--json`` prints one JSON object a
line instead. A count per reason ends the listing on standard error.

``tango dlq replay`` sends chosen dead letters back to the input topic after a fix: their
original bytes (or, with ``--fix-file``, corrected values), the original key and headers,
plus ``tango.replayed.from: <dlq topic>:<partition>:<offset>``. Replaying unchanged bytes
only helps if the stream app was fixed instead (say ``max_text_chars`` was raised);
otherwise the record is dead-lettered again, which is warned about but done. Replaying
twice sends twice: the merge de-duplicates results by id, so records with an ``id`` still
give one result; records without one get a new id from their new offset.

The parsing, selection, fix-file and formatting functions are pure; only
``read_dead_letters`` and the ``cmd_*`` functions touch Kafka.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from stream_app.records import Reason
from stream_app.settings import Settings, add_setting_flags, settings_from_args

# The headers ``stream_app.records.dead_letter_headers`` appends, in its order.
H_TOPIC = "__connect.errors.topic"
H_PARTITION = "__connect.errors.partition"
H_OFFSET = "__connect.errors.offset"
H_STAGE = "__connect.errors.stage"
H_CLASS = "__connect.errors.exception.class.name"
H_MESSAGE = "__connect.errors.exception.message"
H_REASON = "tango.dlq.reason"
DLQ_HEADERS = (H_TOPIC, H_PARTITION, H_OFFSET, H_STAGE, H_CLASS, H_MESSAGE, H_REASON)
REPLAYED_FROM = "tango.replayed.from"
UNKNOWN = "unknown"
PREVIEW_CHARS = 80

# Reasons that are properties of the record's bytes: replayed unchanged, such a record is
# dead-lettered again unless the stream app itself was changed.
DATA_ERROR_REASONS = frozenset(r.value for r in Reason)


class DlqError(ValueError):
    """A user error in what was asked (offsets, fix file, selection); exit status 2."""


class FixFileError(DlqError):
    pass


# --- dead letters ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead-letter topic, its headers parsed."""

    dlq_partition: int
    dlq_offset: int
    reason: str
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    stage: str | None
    exception_class: str | None
    message: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()  # the original record's headers
    timestamp_ms: int | None = None

    @property
    def position(self) -> tuple[int, int]:
        return (self.dlq_partition, self.dlq_offset)

    @property
    def source(self) -> str:
        """``topic:partition:offset`` of the rejected record, ``?`` for what is unknown."""
        parts = (self.source_topic, self.source_partition, self.source_offset)
        return ":".join("?" if p is None else str(p) for p in parts)

    @property
    def is_data_error(self) -> bool:
        return self.reason in DATA_ERROR_REASONS

    def original_key(self) -> bytes | None:
        """The rejected record's key. A dead letter of a record without key is keyed
        ``<topic>:<partition>:<offset>`` of its source (``stages.dead_letter``); that
        stand-in is not the original key, so it gives ``None``."""
        if self.key is not None and self.source_topic is not None and self.key == self.source.encode():
            return None
        return self.key

    def original_value(self) -> bytes | None:
        """The rejected record's value: a tombstone was dead-lettered as empty bytes."""
        if self.reason == Reason.TOMBSTONE.value and not self.value:
            return None
        return self.value


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode("utf-8", errors="replace")


def _int(raw: bytes | None) -> int | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def split_headers(headers: Sequence[tuple[str, bytes | None]]) -> tuple[tuple[tuple[str, bytes], ...], dict[str, bytes]]:
    """(the original headers, the dead-letter headers by name).

    ``dead_letter_headers`` puts the original headers first and its own seven last, so the
    last occurrence of each of those names is ours and earlier ones (say, from an upstream
    Kafka Connect) belong to the original record. Earlier ``tango.replayed.from`` headers
    (a replayed record that failed again) are dropped: a replay sets a fresh one.
    """
    headers = [(name, value if value is not None else b"") for name, value in headers or ()]
    ours: dict[str, bytes] = {}
    ours_at: set[int] = set()
    for i in range(len(headers) - 1, -1, -1):
        name, value = headers[i]
        if name in DLQ_HEADERS and name not in ours:
            ours[name] = value
            ours_at.add(i)
    original = tuple(h for i, h in enumerate(headers) if i not in ours_at and h[0] != REPLAYED_FROM)
    return original, ours


def parse_dead_letter(
    dlq_partition: int,
    dlq_offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]] | None,
    timestamp_ms: int | None = None,
) -> DeadLetter:
    """A dead-letter record's metadata from its headers; never raises.

    Missing headers give reason ``unknown`` and ``None`` for the rest.
    """
    original, ours = split_headers(headers or ())
    reason = _text(ours.get(H_REASON)) or _text(ours.get(H_CLASS)) or UNKNOWN
    return DeadLetter(
        dlq_partition=dlq_partition,
        dlq_offset=dlq_offset,
        reason=reason,
        source_topic=_text(ours.get(H_TOPIC)),
        source_partition=_int(ours.get(H_PARTITION)),
        source_offset=_int(ours.get(H_OFFSET)),
        stage=_text(ours.get(H_STAGE)),
        exception_class=_text(ours.get(H_CLASS)),
        message=_text(ours.get(H_MESSAGE)) or "",
        key=key,
        value=value,
        headers=original,
        timestamp_ms=timestamp_ms,
    )


def from_message(message: Any) -> DeadLetter:
    """A kafka-python ``ConsumerRecord`` as a ``DeadLetter``."""
    return parse_dead_letter(
        message.partition, message.offset, message.key, message.value, message.headers, getattr(message, "timestamp", None)
    )


# --- selection ---------------------------------------------------------------------------


def parse_offsets(specs: Iterable[str]) -> list[tuple[int, int]]:
    """``["0:1,0:5", "1:7"]`` → ``[(0, 1), (0, 5), (1, 7)]``; raises ``DlqError``."""
    positions: list[tuple[int, int]] = []
    for spec in specs:
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            partition, sep, offset = item.partition(":")
            try:
                if not sep:
                    raise ValueError
                position = (int(partition), int(offset))
            except ValueError:
                raise DlqError(f"bad offset {item!r}: expected PARTITION:OFFSET, e.g. 0:12") from None
            if position[0] < 0 or position[1] < 0:
                raise DlqError(f"bad offset {item!r}: partition and offset cannot be negative")
            if position not in positions:
                positions.append(position)
    if not positions:
        raise DlqError("--offsets names no record: expected PARTITION:OFFSET[,PARTITION:OFFSET...]")
    return positions


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters: by position, by reason, or all (exactly one of them)."""

    offsets: frozenset[tuple[int, int]] | None = None
    reasons: frozenset[str] | None = None
    all: bool = False

    def __post_init__(self) -> None:
        chosen = (self.offsets is not None) + (self.reasons is not None) + bool(self.all)
        if chosen != 1:
            raise DlqError("choose the records with exactly one of --offsets, --reason or --all")

    def matches(self, dead_letter: DeadLetter) -> bool:
        if self.all:
            return True
        if self.offsets is not None:
            return dead_letter.position in self.offsets
        return dead_letter.reason in (self.reasons or ())


def select(dead_letters: Iterable[DeadLetter], selection: Selection) -> list[DeadLetter]:
    return [d for d in dead_letters if selection.matches(d)]


def filter_listing(dead_letters: Iterable[DeadLetter], reasons: Sequence[str] | None = None, since_offset: int = 0, max_records: int = 0) -> Iterator[DeadLetter]:
    """The ``list`` filters: reasons (any of), offsets at or after ``since_offset``, at most ``max_records`` (0: all)."""
    shown = 0
    for d in dead_letters:
        if d.dlq_offset < since_offset or (reasons and d.reason not in reasons):
            continue
        yield d
        shown += 1
        if max_records and shown >= max_records:
            return


# --- fix file ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fix:
    dlq_partition: int
    dlq_offset: int
    value: bytes
    line: int  # 1-based line of the fix file, for error messages

    @property
    def position(self) -> tuple[int, int]:
        return (self.dlq_partition, self.dlq_offset)


def parse_fix_file(lines: Iterable[str | bytes], name: str = "fix file") -> dict[tuple[int, int], Fix]:
    """JSONL of ``{"dlq_partition": P, "dlq_offset": O, "value": <object or string>}``.

    An object value is sent as its compact JSON encoding (re-encoded: spacing and number
    spelling may change), a string value as its UTF-8 bytes, exactly (to fix a record
    that was not JSON, or to choose the exact bytes, write the corrected JSON as a
    string). Other fields are ignored, so edited ``tango dlq list --json`` lines work.
    Blank lines are skipped. Raises ``FixFileError`` naming the file and line.
    """
    fixes: dict[tuple[int, int], Fix] = {}
    for number, line in enumerate(lines, start=1):
        where = f"{name}:{number}"
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FixFileError(f"{where}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise FixFileError(f"{where}: not valid JSON: {exc}") from None
        if not isinstance(row, dict):
            raise FixFileError(f'{where}: expected a JSON object {{"dlq_partition", "dlq_offset", "value"}}, got a JSON {type(row).__name__}')
        for field in ("dlq_partition", "dlq_offset"):
            if field not in row:
                raise FixFileError(f"{where}: missing {field!r}")
            number_value = row[field]
            if isinstance(number_value, bool) or not isinstance(number_value, int) or number_value < 0:
                raise FixFileError(f"{where}: {field!r} must be a non-negative integer, got {number_value!r}")
        if "value" not in row:
            raise FixFileError(f"{where}: missing 'value' (the corrected record: a JSON object or a string)")
        value = row["value"]
        if isinstance(value, dict):
            encoded = orjson.dumps(value)
        elif isinstance(value, str):
            encoded = value.encode("utf-8")
        else:
            kind = "null" if value is None else type(value).__name__
            raise FixFileError(f"{where}: 'value' must be a JSON object or a string, got {kind}")
        fix = Fix(row["dlq_partition"], row["dlq_offset"], encoded, number)
        if fix.position in fixes:
            raise FixFileError(f"{where}: {fix.position[0]}:{fix.position[1]} is already fixed on line {fixes[fix.position].line}")
        fixes[fix.position] = fix
    if not fixes:
        raise FixFileError(f"{name}: no corrected records in it")
    return fixes


# --- replay plan -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replay:
    dead_letter: DeadLetter
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    fixed: bool


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    replays: tuple[Replay, ...]
    other_source: tuple[DeadLetter, ...]  # selected, but not from the input topic: skipped

    @property
    def unchanged_data_errors(self) -> tuple[Replay, ...]:
        return tuple(r for r in self.replays if not r.fixed and r.dead_letter.is_data_error)


def replayed_from(dlq_topic: str, dead_letter: DeadLetter) -> bytes:
    return f"{dlq_topic}:{dead_letter.dlq_partition}:{dead_letter.dlq_offset}".encode()


def plan_replay(
    dead_letters: Iterable[DeadLetter],
    selection: Selection,
    *,
    dlq_topic: str,
    input_topic: str,
    fixes: Mapping[tuple[int, int], Fix] | None = None,
    any_source: bool = False,
    fix_file_name: str = "fix file",
) -> ReplayPlan:
    """What to send where, from every dead letter that was read.

    Raises ``DlqError`` when ``--offsets`` names a record that is not in the topic, and
    ``FixFileError`` when a fix names a record that is not in the topic or not selected.
    Selected records from another topic than the input topic (teacher requests, results)
    are set aside unless ``any_source``.
    """
    fixes = fixes or {}
    seen = {d.position: d for d in dead_letters}
    if selection.offsets is not None:
        missing = sorted(selection.offsets - seen.keys())
        if missing:
            raise DlqError(f"not in dead-letter topic {dlq_topic}: " + ", ".join(f"{p}:{o}" for p, o in missing))
    chosen = [d for d in seen.values() if selection.matches(d)]
    chosen_at = {d.position for d in chosen}
    for fix in sorted(fixes.values(), key=lambda f: f.line):
        p, o = fix.position
        if fix.position not in seen:
            raise FixFileError(f"{fix_file_name}:{fix.line}: unknown offset {p}:{o}: no such record in dead-letter topic {dlq_topic}")
        if fix.position not in chosen_at:
            raise FixFileError(f"{fix_file_name}:{fix.line}: {p}:{o} is not among the selected records (select it with --offsets)")
    replays: list[Replay] = []
    other: list[DeadLetter] = []
    for d in sorted(chosen, key=lambda d: d.position):
        if d.source_topic != input_topic and not any_source:
            other.append(d)
            continue
        fix = fixes.get(d.position)
        replays.append(
            Replay(
                dead_letter=d,
                key=d.original_key(),
                value=fix.value if fix is not None else d.original_value(),
                headers=(*d.headers, (REPLAYED_FROM, replayed_from(dlq_topic, d))),
                fixed=fix is not None,
            )
        )
    return ReplayPlan(tuple(replays), tuple(other))


# --- output ------------------------------------------------------------------------------


def escape(text: str) -> str:
    """Non-printable characters (newlines, tabs, controls) as escapes; the rest as is."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def preview(value: bytes | None, width: int = PREVIEW_CHARS) -> str:
    """The value as escaped text, invalid UTF-8 as ``\\xNN``, cut to ``width`` characters."""
    if value is None:
        return "(null)"
    if not value:
        return "(empty)"
    text = escape(value.decode("utf-8", errors="backslashreplace"))
    return text if len(text) <= width else text[: width - 1] + "…"


def format_line(d: DeadLetter) -> str:
    """One tab-separated line: dlq position, reason, source, stage, message, value preview."""
    fields = (
        f"{d.dlq_partition}:{d.dlq_offset}",
        d.reason,
        d.source,
        d.stage or "?",
        escape(d.message) or "-",
        preview(d.value),
    )
    return "\t".join(escape(f).replace("\t", "\\t") for f in fields)


def _b64(raw: bytes | None) -> str | None:
    return None if raw is None else base64.b64encode(raw).decode("ascii")


def _utf8(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def to_json(d: DeadLetter) -> dict[str, Any]:
    """One ``--json`` row: bytes as base64, and as text when they are valid UTF-8 (else null)."""
    return {
        "dlq_partition": d.dlq_partition,
        "dlq_offset": d.dlq_offset,
        "timestamp_ms": d.timestamp_ms,
        "reason": d.reason,
        "source_topic": d.source_topic,
        "source_partition": d.source_partition,
        "source_offset": d.source_offset,
        "stage": d.stage,
        "exception_class": d.exception_class,
        "message": d.message,
        "key": _utf8(d.key),
        "key_base64": _b64(d.key),
        "headers": [[name, _b64(value)] for name, value in d.headers],
        "value": _utf8(d.value),
        "value_base64": _b64(d.value),
    }


def reason_counts(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    noun = "dead letter" if total == 1 else "dead letters"
    if not total:
        return f"0 {noun}"
    return f"{total} {noun}: " + ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


# --- Kafka -------------------------------------------------------------------------------


class TopicMissing(RuntimeError):
    pass


def read_dead_letters(
    settings: Settings,
    *,
    start: int | Mapping[int, int] = 0,
    stop: Mapping[int, int] | None = None,
    idle_timeout_s: float = 30.0,
) -> Iterator[DeadLetter]:
    """The dead-letter topic from ``start`` (one offset for every partition, or per
    partition: partitions not in the mapping are not read) up to the end offsets at start
    (or ``stop``, exclusive, if smaller). No consumer group, nothing committed,
    ``read_committed``. Raises ``TopicMissing`` when the topic does not exist."""
    from kafka import KafkaConsumer, TopicPartition

    from stream_app.kafka_clients import kafka_python_config

    consumer = KafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        allow_auto_create_topics=False,
        auto_offset_reset="earliest",
        **kafka_python_config(settings),
    )
    try:
        topic = settings.dlq_topic
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise TopicMissing(f"dead-letter topic {topic!r} does not exist at {settings.bootstrap_servers}")
        if isinstance(start, Mapping):
            partitions = {p for p in partitions if p in start}
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return
        consumer.assign(tps)
        beginning = consumer.beginning_offsets(tps)
        end = consumer.end_offsets(tps)
        remaining: dict[Any, int] = {}
        for tp in tps:
            first = start.get(tp.partition, 0) if isinstance(start, Mapping) else start
            first = max(first, beginning[tp])
            last = end[tp] if stop is None or tp.partition not in stop else min(end[tp], stop[tp.partition])
            if first < last:
                consumer.seek(tp, first)
                remaining[tp] = last
        if not remaining:
            return
        consumer.pause(*(tp for tp in tps if tp not in remaining))
        progress_at = time.monotonic()
        while remaining:
            batches = consumer.poll(timeout_ms=500)
            if batches:
                progress_at = time.monotonic()
            for tp, messages in sorted(batches.items(), key=lambda kv: kv[0].partition):
                last = remaining.get(tp)
                if last is None:
                    continue
                for message in messages:
                    if message.offset >= last:
                        break
                    yield from_message(message)
            for tp in list(remaining):
                if consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
                    consumer.pause(tp)  # stop fetching what is done
            if remaining and time.monotonic() - progress_at > idle_timeout_s:
                behind = ", ".join(f"{tp.partition}:{consumer.position(tp)}<{last}" for tp, last in remaining.items())
                raise TimeoutError(f"no progress reading {topic} for {idle_timeout_s:.0f} s ({behind})")
    finally:
        consumer.close()


def _fail(message: str, status: int = 1) -> int:
    print(f"tango dlq: {message}", file=sys.stderr)
    return status


def _kafka_errors_as_exit(command):
    """Broker errors (unreachable, timeouts, authorisation) as one line and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        from kafka.errors import KafkaError

        try:
            return command(args)
        except (KafkaError, TimeoutError) as exc:
            return _fail(f"{exc} (bootstrap servers: {settings_from_args(args).bootstrap_servers})")

    run.__name__ = run.__qualname__ = command.__name__
    run.__doc__ = command.__doc__
    return run


@_kafka_errors_as_exit
def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.since_offset < 0 or args.max < 0:
        args.dlq_parser.error("--since-offset and --max cannot be negative")
    counts: Counter[str] = Counter()
    out = sys.stdout
    try:
        with contextlib.closing(read_dead_letters(settings, start=args.since_offset)) as dead_letters:
            for d in filter_listing(dead_letters, reasons=args.reason or None, since_offset=args.since_offset, max_records=args.max):
                counts[d.reason] += 1
                out.write((orjson.dumps(to_json(d)).decode() if args.json else format_line(d)) + "\n")
        out.flush()
    except TopicMissing as exc:
        return _fail(str(exc))
    except BrokenPipeError:  # `| head`: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    print(reason_counts(counts), file=sys.stderr)
    return 0


@_kafka_errors_as_exit
def cmd_replay(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.dlq_parser
    chosen = [flag for flag, given in (("--offsets", args.offsets), ("--reason", args.reason), ("--all", args.all)) if given]
    if not chosen:
        parser.error("say which dead letters to replay: --offsets P:O[,P:O...], --reason R [R ...] or --all")
    if len(chosen) > 1:
        parser.error(f"choose one of --offsets, --reason and --all, not {' and '.join(chosen)}")
    settings = settings_from_args(args)
    try:
        offsets = parse_offsets(args.offsets) if args.offsets else None
        selection = Selection(
            offsets=frozenset(offsets) if offsets is not None else None,
            reasons=frozenset(args.reason) if args.reason else None,
            all=args.all,
        )
        fixes: dict[tuple[int, int], Fix] = {}
        if args.fix_file:
            try:
                with open(args.fix_file, "rb") as f:
                    fixes = parse_fix_file(f, name=args.fix_file)
            except OSError as exc:
                raise FixFileError(f"cannot read fix file: {exc}") from None
    except DlqError as exc:
        return _fail(str(exc), 2)

    # With --offsets, read only the partitions and offset range asked for.
    start: int | dict[int, int] = 0
    stop: dict[int, int] | None = None
    if offsets is not None:
        wanted = set(offsets) | set(fixes)
        start = {p: min(o for q, o in wanted if q == p) for p, _ in wanted}
        stop = {p: max(o for q, o in wanted if q == p) + 1 for p, _ in wanted}
    try:
        dead_letters = list(read_dead_letters(settings, start=start, stop=stop))
        plan = plan_replay(
            dead_letters, selection, dlq_topic=settings.dlq_topic, input_topic=settings.input_topic,
            fixes=fixes, any_source=args.any_source, fix_file_name=args.fix_file or "fix file",
        )
    except TopicMissing as exc:
        return _fail(str(exc))
    except DlqError as exc:
        return _fail(str(exc), 2)

    for d in plan.other_source:
        print(f"tango dlq: skipping {d.dlq_partition}:{d.dlq_offset} ({d.reason}): it came from {d.source}, not the input "
              f"topic {settings.input_topic} (--any-source replays it anyway)", file=sys.stderr)
    unchanged = plan.unchanged_data_errors
    if unchanged:
        reasons = Counter(r.dead_letter.reason for r in unchanged)
        print(f"tango dlq: warning: {len(unchanged)} record(s) replayed unchanged were rejected for their data "
              f"({', '.join(f'{k} {v}' for k, v in sorted(reasons.items()))}); they will be dead-lettered again unless "
              "the stream app was changed to accept them (e.g. a higher max_text_chars). Use --fix-file to correct them.",
              file=sys.stderr)
    if not plan.replays:
        print(f"{'would replay' if args.dry_run else 'replayed'} 0 records to {settings.input_topic}")
        return 0

    if args.dry_run:
        for r in plan.replays:
            print(f"would replay {r.dead_letter.dlq_partition}:{r.dead_letter.dlq_offset}\t{r.dead_letter.reason}\t"
                  f"{'fixed' if r.fixed else 'unchanged'}\t{preview(r.value)}")
        print(f"dry run: would replay {len(plan.replays)} records to {settings.input_topic}")
        return 0

    from kafka import KafkaConsumer, KafkaProducer

    from stream_app.kafka_clients import kafka_python_config

    probe = KafkaConsumer(allow_auto_create_topics=False, **kafka_python_config(settings))
    try:
        if not probe.partitions_for_topic(settings.input_topic):
            return _fail(f"input topic {settings.input_topic!r} does not exist at {settings.bootstrap_servers}")
    finally:
        probe.close()
    producer = KafkaProducer(acks="all", linger_ms=10, **kafka_python_config(settings))
    try:
        futures = [
            producer.send(settings.input_topic, key=r.key, value=r.value, headers=list(r.headers)) for r in plan.replays
        ]
        producer.flush()
        for future in futures:
            future.get(timeout=60)  # raises the send's error, if any
    finally:
        producer.close()
    fixed = sum(r.fixed for r in plan.replays)
    print(f"replayed {len(plan.replays)} records to {settings.input_topic} ({fixed} with fixed values)")
    return 0


def add_cli(commands: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register ``dlq {list,replay}``; sets ``func`` on each subcommand."""
    dlq = commands.add_parser(
        "dlq", help="list dead-letter records with their reasons; replay chosen ones into the input topic",
        description="Dead-letter tooling: list the dead-letter topic, and replay chosen records into the input topic after a fix.",
    )
    actions = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list", help="print the dead-letter topic, one record a line",
        description="Read the dead-letter topic from the beginning up to its end at start (no consumer group) and print "
                    "one tab-separated line per record: dlq partition:offset, reason, source topic:partition:offset, stage, "
                    "message, value preview. A count per reason ends on standard error.",
    )
    listing.add_argument("--reason", action="extend", nargs="+", metavar="R", default=[], help="only these reasons (repeatable)")
    listing.add_argument("--since-offset", type=int, default=0, metavar="N", help="only dead-letter offsets at or after N")
    listing.add_argument("--max", type=int, default=0, metavar="N", help="stop after N records (0: all)")
    listing.add_argument("--json", action="store_true", help="one JSON object a line (bytes as base64, and as text when UTF-8)")
    add_setting_flags(listing)
    listing.set_defaults(func=cmd_list, dlq_parser=listing)

    replay = actions.add_parser(
        "replay", help="send chosen dead letters back to the input topic",
        description="Send chosen dead letters to the input topic with their original key and headers plus "
                    f"{REPLAYED_FROM}=<dlq topic>:<partition>:<offset>: their original bytes, or corrected values from "
                    "--fix-file. Unchanged records rejected for their data are dead-lettered again unless the stream app "
                    "was changed to accept them.",
    )
    replay.add_argument("--offsets", action="append", default=[], metavar="P:O[,P:O...]", help="these dead-letter records (repeatable)")
    replay.add_argument("--reason", action="extend", nargs="+", metavar="R", default=[], help="every record with one of these reasons")
    replay.add_argument("--all", action="store_true", help="every record of the dead-letter topic")
    replay.add_argument("--dry-run", action="store_true", help="print what would be replayed, send nothing")
    replay.add_argument(
        "--fix-file", default="", metavar="FILE",
        help='JSONL of corrected records {"dlq_partition": P, "dlq_offset": O, "value": <JSON object or string>}, '
             "each replacing the value of a selected record",
    )
    replay.add_argument("--any-source", action="store_true",
                        help="also replay records that came from other topics than the input topic (teacher requests, results)")
    add_setting_flags(replay)
    replay.set_defaults(func=cmd_replay, dlq_parser=replay)
    return dlq
