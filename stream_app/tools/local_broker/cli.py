"""``tango kafka up|down|status|wipe`` and ``python -m stream_app.tools.local_broker``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stream_app.tools.local_broker.broker import LocalKafka
from stream_app.tools.local_broker.config import DEFAULT_VERSION
from stream_app.tools.local_broker.process import KafkaLocalError


# -------------------------------------------------------------------- CLI
def add_cli(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register ``kafka {up,down,status,wipe}`` on an argparse subparsers object.

    Sets ``func=run_cli`` as the parser default, so ``args.func(args)`` dispatches.
    """
    p = subparsers.add_parser("kafka", help="run a local single-node Kafka broker",
                              description="Manage a local single-node Kafka broker (KRaft) on 127.0.0.1.")
    p.add_argument("kafka_action", metavar="action", choices=["up", "down", "status", "wipe"],
                   help="up: start and wait until ready (prints bootstrap); down: stop; "
                        "status: one line of JSON; wipe: stop and delete the data dir")
    p.add_argument("--port", type=int, default=9092, help="broker port (controller uses port+1)")
    p.add_argument("--data-dir", dest="kafka_data_dir", default=None,
                   help="data dir (default $TANGO_CACHE_DIR/kafka-data/<port>)")
    p.add_argument("--version", dest="kafka_version", default=DEFAULT_VERSION,
                   help=f"Kafka version (default {DEFAULT_VERSION})")
    p.add_argument("--wait", dest="kafka_wait", type=float, default=60.0,
                   help="seconds up waits for the broker to answer (default 60)")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Execute a parsed ``kafka`` subcommand; returns the process exit code."""
    try:
        kafka = LocalKafka(version=args.kafka_version, port=args.port,
                           data_dir=Path(args.kafka_data_dir) if args.kafka_data_dir else None)
        action = args.kafka_action
        if action == "up":
            print(kafka.up(wait_s=getattr(args, "kafka_wait", 60.0)), flush=True)
        elif action == "down":
            kafka.down()
        elif action == "status":
            print(json.dumps(kafka.status()), flush=True)
        elif action == "wipe":
            kafka.wipe()
        return 0
    except KafkaLocalError as exc:
        print(f"kafka {args.kafka_action}: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    """``python -m stream_app.tools.local_broker up|down|status|wipe`` (same flags as ``tango kafka``)."""
    parser = argparse.ArgumentParser(prog="python -m stream_app.tools.local_broker")
    sub = parser.add_subparsers(dest="command", required=True)
    add_cli(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_cli(parser.parse_args(["kafka", *argv]))
