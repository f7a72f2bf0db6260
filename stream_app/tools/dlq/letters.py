"""Dead letters as ``tango dlq`` reads them: parsing, selection and formatting (pure).

A dead letter is the original record (bytes, key, headers) plus the error headers of
``stream_app.records.dead_letter_headers``; ``parse_dead_letter`` splits the two apart again.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stream_app.records import (
    DLQ_HEADERS,
    H_CLASS,
    H_MESSAGE,
    H_OFFSET,
    H_PARTITION,
    H_REASON,
    H_STAGE,
    H_TOPIC,
    Reason,
)

REPLAYED_FROM = "tango.replayed.from"  # header a replayed record carries: where it was dead-lettered
UNKNOWN = "unknown"


PREVIEW_CHARS = 80


# Reasons that are properties of the record's bytes: replayed unchanged, such a record is
# dead-lettered again unless the stream app itself was changed.
DATA_ERROR_REASONS = frozenset(r.value for r in Reason)


class DlqError(ValueError):
    """A user error in what was asked (offsets, fix file, selection); exit status 2."""


class FixFileError(DlqError):
    pass


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
