"""``tango demo``: the whole cascade on this machine, from nothing to a summary.

Starts the local broker, trains the quick emotion bundle if none is cached (``tango train
--preset quick``, a few minutes), starts a stream worker and a teacher worker as separate
processes, streams the emotion test split through them at a steady rate while a live view
shows both tiers deciding, and ends with a table: accuracy, routed fraction, throughput and
per-tier latency beside the bundle's student-only and teacher-only numbers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import orjson

from models.bundle import load_bundle
from stream_app.settings import (
    CACHE_DIR,
    Settings,
    add_setting_flags,
    settings_from_args,
)
from stream_app.tools.live import PipelineWatch, watch
from stream_app.tools.runner import Collected, LocalRun, default_dataset, load_split, local_broker


def ensure_bundle(bundle: Path, dataset: str, quick: bool) -> None:
    """Train the bundle (in this process, as ``tango train`` would) unless it is there."""
    if (bundle / "manifest.json").is_file():
        return
    from stream_app.tools.cli import build_parser

    how = ["--preset", "quick"] if quick else []
    print(f"[demo] no bundle at {bundle}: training one from {dataset}{' (quick preset, a few minutes)' if quick else ''}",
          flush=True)
    args = build_parser().parse_args(["train", "--data", dataset, "--out", str(bundle), "--no-progress", *how])
    if args.func(args) != 0:
        raise SystemExit("tango demo: training the bundle failed (see above)")


def demo_bundle(args: argparse.Namespace, settings: Settings) -> tuple[Path, bool]:
    """The bundle the demo serves, and whether it is the quick one: ``--bundle``/TANGO_BUNDLE if
    given, else the quick demo bundle (trained on first run; the full one routes nothing on
    emotion, so it would not show the teacher)."""
    if args.setting_bundle or "TANGO_BUNDLE" in os.environ:
        return Path(settings.bundle), False
    return CACHE_DIR / "bundles" / "emotion-quick", True


def ending(summary: dict, bundle: Path) -> str:
    """The demo's closing table: this run beside student-only and teacher-only from the bundle's report."""
    from rich.console import Console
    from rich.table import Table

    extra = load_bundle(bundle, verify_hashes=False).manifest.extra
    served = extra.get("students", {}).get(extra.get("cascade", {}).get("student", ""), {})
    teacher_cost, student_cost = extra.get("teacher_cost_per_record"), served.get("cost_per_record")
    latency = summary["latency_ms"]
    view = Table(title="tango demo: the cascade on the emotion test split")
    for column in ("", "this run (cascade, via Kafka)", "student only (report)", "teacher only (report)"):
        view.add_column(column, justify="left" if not column else "right")
    pct = lambda x: "—" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    view.add_row("accuracy", pct(summary["accuracy"]), pct(served.get("test_accuracy")),
                 pct(extra.get("teacher_accuracy", {}).get("test")))
    view.add_row("routed to the teacher", pct(summary["teacher_fraction"]), "0%", "100%")
    paced = f" (sent at {summary['rate']:g}/s)" if summary.get("rate") else ""
    view.add_row("records/s", f"{summary['throughput']:,.0f}{paced}",
                 f"{1 / student_cost:,.0f} model only" if student_cost else "—",
                 f"{1 / teacher_cost:,.0f} model only" if teacher_cost else "—")
    for tier in ("student", "teacher"):
        if tier in latency:
            v = latency[tier]
            view.add_row(f"latency {tier}-decided p50/p95", f"{v['p50']:,.0f} / {v['p95']:,.0f} ms", "", "")
    console = Console(record=True, width=120)
    with console.capture() as captured:
        console.print(view)
        plot = bundle / "tradeoff.png"
        console.print(f"Tango curve (accuracy against cost, every threshold): {plot}" if plot.is_file() else "")
        console.print(f"Full-quality bundle (about 30 minutes here): tango train --data {extra.get('data', 'DATA')}")
    return captured.get()


def run_demo(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    dataset = args.data or default_dataset()
    bundle, quick = demo_bundle(args, settings)
    with local_broker(settings, external=args.external_kafka, keep=args.keep_kafka):
        ensure_bundle(bundle, dataset, quick)
        texts, labels, names = load_split(dataset, args.split, args.limit)
        run = LocalRun(settings, bundle, Path(tempfile.mkdtemp(prefix="tango-demo-")), tag="demo")
        try:
            run.start("stream", "stream")
            for i in range(args.teachers):
                run.start(f"teacher-{i + 1}", "teacher")
            run.wait_teachers(args.teachers)
            print(f"[demo] stream worker and {args.teachers} teacher worker(s) running; logs in {run.logs}", flush=True)
            items = [(f"{args.split}-{i}", text) for i, text in enumerate(texts)]
            gold = {tweet_id: label for (tweet_id, _), label in zip(items, labels)}
            collected = Collected(keep_results=False)  # ids, tiers, labels, latencies: the summary's columns
            watcher = PipelineWatch(run.settings, gold=gold, collected=collected)
            sent: dict[str, float] = {}
            producer = threading.Thread(target=lambda: sent.update(started=run.send(items, rate=args.rate)), daemon=True)
            producer.start()
            print(f"[demo] producing {len(items)} tweets of {dataset} ({args.split}) at {args.rate:g}/s", flush=True)
            deadline = time.monotonic() + args.timeout
            watch(watcher, done=lambda s: s.accuracy_of >= len(gold) or time.monotonic() > deadline,
                  title="tango demo", terminal=None if not args.json else False)
            producer.join()
            watcher.close()
            missing = set(gold).difference(collected.ids)
            if missing:
                raise TimeoutError(f"{len(missing)} of {len(gold)} results missing after {args.timeout:g}s")
        finally:
            run.stop()
    summary = collected.summary(gold, sent["started"])
    summary.update(dataset=dataset, split=args.split, labels=names, bundle=str(bundle), teachers=args.teachers, rate=args.rate)
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() if args.json else ending(summary, bundle))
    return 0


def add_cli(commands) -> None:
    demo = commands.add_parser("demo", help="run the whole cascade locally on the emotion test split, live, and print a summary")
    demo.add_argument("--data", default="", help="dataset folder or hub id (default: ../shared/data/emotion, else dair-ai/emotion)")
    demo.add_argument("--split", default="test", help="split to stream (default: test)")
    demo.add_argument("--limit", type=int, default=0, help="stream only the first N records")
    demo.add_argument("--teachers", type=int, default=1, help="teacher worker processes")
    demo.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    demo.add_argument("--rate", type=float, default=250.0, help="tweets per second to produce, so the live view has time to show them (0: as fast as possible)")
    demo.add_argument("--json", action="store_true", help="end with the summary as JSON instead of the table (live view as plain lines)")
    demo.add_argument("--external-kafka", action="store_true", help="use the broker at --bootstrap-servers, start none")
    demo.add_argument("--keep-kafka", action="store_true", help="leave the local broker running afterwards")
    add_setting_flags(demo)
    demo.set_defaults(func=run_demo)
