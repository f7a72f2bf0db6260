"""Replay planning for ``tango dlq replay`` (pure): fix files and which dead letters go back how.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson

from stream_app.tools.dlq.letters import (
    REPLAYED_FROM,
    DeadLetter,
    DlqError,
    FixFileError,
    Selection,
)

# The headers ``stream_app.records.dead_letter_headers`` appends, in its order.


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
