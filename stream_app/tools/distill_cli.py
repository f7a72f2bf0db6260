"""``tango distill --from-stream``: one round of learning from the stream (``models.training.from_stream``).

Exit codes: 0 the new student was written into the bundle, 3 refused (too little new data,
or not at least as accurate on the held-out split; the bundle is unchanged), 2 an error.
"""

from __future__ import annotations

import json
import sys

from stream_app.settings import add_setting_flags


def add_distill_cli(subparsers) -> None:
    stream = subparsers.add_parser(
        "distill", help="re-distil a bundle's student from the teacher's answers kept on the stream (--from-stream)",
        description="One round of learning from the stream: read the knowledge topic, re-distil the served student on it and "
                    "the bundle's own data, recalibrate on held-out data (the validation split, or the bundle's calibration holdout), "
                    "and write a new student version "
                    "into the bundle only if its cascade is at least as accurate there. Workers hot-reload it.",
    )
    stream.add_argument("--from-stream", action="store_true", required=True, help="read the teacher's answers from the knowledge topic")
    stream.add_argument("--min-records", type=int, default=500, help="refuse a round with fewer usable knowledge records than this")
    stream.add_argument("--max-weight", type=float, default=20.0, help="cap on a shadow record's weight (1 / shadow_fraction)")
    stream.add_argument("--data", default="", help="labelled dataset (default: the one the bundle was trained on)")
    stream.add_argument("--epochs", type=int, default=0, help="distillation epochs (0: the architecture's default)")
    stream.add_argument("--tolerance", type=float, default=0.0,
                        help="keep the new student if its held-out cascade is at most this many accuracy points below the served one's")
    stream.add_argument("--read-timeout", type=float, default=120.0, help="seconds reading the knowledge topic may take")
    stream.add_argument("--report", default="", help="also write the round's JSON report here, and its before/after curves beside it (.png)")
    stream.add_argument("--threads", type=int, default=2)
    stream.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_setting_flags(stream)
    stream.set_defaults(func=run_distill)


def run_distill(args) -> int:
    from models.bundle import BundleError  # noqa: PLC0415
    from models.training.data import DataError  # noqa: PLC0415
    from models.training.from_stream import (  # noqa: PLC0415
        NotBetter,
        StreamDistillConfig,
        TooLittleData,
        distill_from_stream,
    )
    from models.training.stream_knowledge import parse_knowledge  # noqa: PLC0415
    from stream_app.kafka_io.read_back import read_json_topic  # noqa: PLC0415
    from stream_app.settings import settings_from_args  # noqa: PLC0415

    settings = settings_from_args(args)
    import torch  # noqa: PLC0415

    torch.set_num_threads(max(1, args.threads))
    say = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    if not settings.knowledge_topic:
        say("tango distill: error: knowledge_topic is empty: the teacher workers keep nothing to learn from")
        return 2
    if not settings.shadow_fraction:
        say("tango distill: note: shadow_fraction is 0: only routed (hard) tweets can be on the knowledge topic")
    try:
        from models.bundle import load_bundle  # noqa: PLC0415

        labels = load_bundle(settings.bundle, verify_hashes=False).manifest.labels
        records, unparsable = read_json_topic(settings, settings.knowledge_topic, timeout_s=args.read_timeout)
        examples = parse_knowledge(records, len(labels))
        say(f"read {len(records):,} knowledge records from {settings.knowledge_topic} ({unparsable} not JSON objects, "
            f"{examples.skipped} of another shape; {len(examples.texts):,} distinct tweets: {examples.counts()})")
        cfg = StreamDistillConfig(bundle=settings.bundle, shadow_fraction=settings.shadow_fraction or 1.0, min_records=args.min_records,
                                  max_weight=args.max_weight, data=args.data, epochs=args.epochs, progress=not args.no_progress,
                                  tolerance=args.tolerance)
        report = distill_from_stream(cfg, examples, log=say)
        status = 0
    except TooLittleData as exc:
        say(f"tango distill: refused: {exc}")
        return 3
    except NotBetter as exc:
        say(f"tango distill: refused: {exc}")
        report, status = exc.report, 3
    except (BundleError, DataError, ValueError, TimeoutError) as exc:
        say(f"tango distill: error: {exc}")
        return 2
    b, a = report["before"], report["after"]
    say(f"held-out cascade: {100 * b['accuracy']:.2f}% with {100 * b['teacher_fraction']:.1f}% routed before, "
        f"{100 * a['accuracy']:.2f}% with {100 * a['teacher_fraction']:.1f}% routed after"
        + (f"; new student {a['student']} written to {settings.bundle}" if report.get("kept") else ""))
    if args.report:
        from pathlib import Path  # noqa: PLC0415

        from models.training.from_stream import plot_round  # noqa: PLC0415

        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
        plot_round(report, Path(args.report).with_suffix(".png"))
    print(json.dumps({k: report[k] for k in ("kept", "before", "after", "records")}))
    return status
