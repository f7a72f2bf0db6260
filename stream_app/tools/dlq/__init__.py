"""``tango dlq``: list dead letters with their reasons, replay chosen ones, skip a stuck batch.

``letters`` (parsing, selection, formatting) and ``replay`` (fix files, replay plans) are
pure; ``reader`` reads the dead-letter topic; ``command`` is the subcommand. May import
``stream_app`` (records, settings, kafka_io); nothing imports this but ``stream_app.tools``.
"""

from stream_app.tools.dlq.command import add_cli, cmd_list, cmd_replay, cmd_skip
from stream_app.tools.dlq.letters import (
    DATA_ERROR_REASONS,
    REPLAYED_FROM,
    DeadLetter,
    DlqError,
    FixFileError,
    Selection,
    filter_listing,
    format_line,
    parse_dead_letter,
    parse_offsets,
    preview,
    reason_counts,
    select,
    to_json,
)
from stream_app.tools.dlq.replay import (
    Fix,
    Replay,
    ReplayPlan,
    parse_fix_file,
    plan_replay,
)
from stream_app.tools.dlq.topic_io import (
    TopicMissing,
    move_group_offset,
    read_dead_letters,
    send_replays,
)

__all__ = [
    "DATA_ERROR_REASONS", "REPLAYED_FROM", "DeadLetter", "DlqError", "Fix", "FixFileError", "Replay", "ReplayPlan",
    "Selection", "TopicMissing", "add_cli", "cmd_list", "cmd_replay", "cmd_skip", "filter_listing", "format_line",
    "parse_dead_letter", "parse_fix_file", "parse_offsets", "plan_replay", "preview", "move_group_offset", "read_dead_letters", "send_replays",
    "reason_counts", "select", "to_json",
]
