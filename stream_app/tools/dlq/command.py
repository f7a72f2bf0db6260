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

The parsing, selection and formatting (``letters``) and the replay planning (``replay``)
are pure; only ``topic_io`` and the commands here touch Kafka.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import Counter

import orjson

from stream_app.settings import add_setting_flags, settings_from_args
from stream_app.tools.dlq.letters import (
    REPLAYED_FROM,
    DlqError,
    FixFileError,
    Selection,
    filter_listing,
    format_line,
    parse_offsets,
    preview,
    reason_counts,
    to_json,
)
from stream_app.tools.dlq.replay import Fix, parse_fix_file, plan_replay
from stream_app.tools.dlq.topic_io import (
    TopicMissing,
    move_group_offset,
    read_dead_letters,
    send_replays,
)


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

    try:
        send_replays(settings, plan.replays)
    except TopicMissing as exc:
        return _fail(str(exc))
    fixed = sum(r.fixed for r in plan.replays)
    print(f"replayed {len(plan.replays)} records to {settings.input_topic} ({fixed} with fixed values)")
    return 0


def default_group(settings, topic: str) -> str:
    """The group that consumes ``topic``: the teachers', the merge's (result topics) or the stream workers'."""
    if topic == settings.teacher_topic:
        return settings.teacher_group
    if topic in settings.result_topics:
        return settings.merge_group
    return settings.app_id


@_kafka_errors_as_exit
def cmd_skip(args: argparse.Namespace) -> int:
    """Move a consumer group past a batch that cannot be decoded, after a person decided to."""
    settings = settings_from_args(args)
    topic = args.topic or settings.input_topic
    group = args.group or default_group(settings, topic)
    try:
        before = move_group_offset(settings, group, topic, args.partition, args.offset)
    except TopicMissing as exc:
        return _fail(str(exc))
    skipped = f"{args.offset - before} records" if before is not None and args.offset > before else "nothing committed before"
    print(f"group {group} now resumes {topic}:{args.partition} at offset {args.offset} (was {before}; {skipped} skipped, "
          "not processed and not dead-lettered)")
    return 0


def add_cli(commands: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register ``dlq {list,replay,skip}``; sets ``func`` on each subcommand."""
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

    skip = actions.add_parser(
        "skip", help="move a consumer group past a record batch that cannot be decoded",
        description="Commit OFFSET for the consumer group on TOPIC:PARTITION, so its workers resume there. For the "
                    "batch a worker named when it stopped (cannot decode the record batch ...): those records are "
                    "neither processed nor dead-lettered. The group's workers must be stopped first.",
    )
    skip.add_argument("--topic", default="", help="the topic (default: the input topic)")
    skip.add_argument("--partition", type=int, required=True, help="the partition the worker named")
    skip.add_argument("--offset", type=int, required=True, help="the offset to resume at: the batch's next offset")
    skip.add_argument("--group", default="", help="the consumer group (default: teacher_group for the teacher topic, <app_id>-merge for a result topic, else app_id)")
    add_setting_flags(skip)
    skip.set_defaults(func=cmd_skip, dlq_parser=skip)
    return dlq
