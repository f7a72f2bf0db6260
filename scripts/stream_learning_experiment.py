"""Learning from the stream: does the routed fraction fall while accuracy holds?

Emotion, starting from a bundle trained on 2,000 labelled tweets (``tango train
--train-limit 2000 --seed 13``: a fixed subsample of the train split, teacher and student).
The other 14,000 train tweets, without their labels, are the live traffic: they stream
through the cascade on the local broker in ``--rounds`` equal parts, in train-file order.
After each part, ``distill_from_stream`` (what ``tango distill --from-stream`` runs) re-distils
the served student on everything the knowledge topic holds so far; the running stream
worker hot-reloads a kept round. After each round the served bundle is measured on the
test split (cascade accuracy and routed fraction, ``tango evaluate``'s numbers).

    .venv/bin/python scripts/stream_learning_experiment.py [--rounds 3] [--shadow-fraction 0.2]

Writes docs/bench/stream-learning.json and docs/img/stream-learning.png; prints the table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.base_models import resolve_base_model  # noqa: E402
from models.training.data import load_dataset  # noqa: E402
from models.training.evaluate import evaluate_bundle  # noqa: E402
from models.training.from_stream import (  # noqa: E402
    NotBetter,
    StreamDistillConfig,
    TooLittleData,
    distill_from_stream,
)
from models.training.pipeline import TrainConfig, train_bundle  # noqa: E402
from models.training.stream_knowledge import parse_knowledge  # noqa: E402
from models.training.teacher_train import TeacherConfig  # noqa: E402
from models.training.transfer_set import subsample  # noqa: E402
from stream_app.kafka_io.read_back import read_json_topic  # noqa: E402
from stream_app.settings import CACHE_DIR, Settings  # noqa: E402
from stream_app.tools.runner import LocalRun, local_broker  # noqa: E402
from stream_app.tools.train_cli import base_models_dir  # noqa: E402

LABELLED, SEED = 2000, 13


def measure(bundle: Path, data: str) -> dict:
    result = evaluate_bundle(bundle, data, "test")
    c = result["cascade"]
    return {"cascade_accuracy": c["accuracy"], "routed": c["teacher_fraction"], "threshold": c["threshold"],
            "student_accuracy": result["students"][c["student"]]["accuracy"], "teacher_accuracy": result["teacher"]["accuracy"]}


def wait_reloads(run: LocalRun, count: int, timeout: float = 120.0) -> None:
    log = run.logs / f"{run.id}-stream.log"
    deadline = time.monotonic() + timeout
    while log.read_text().count('"event": "bundle reloaded"') < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the stream worker did not reload round {count} within {timeout:g} s")
        run.check_alive()
        time.sleep(0.5)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rounds = [r["round"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.plot(rounds, [100 * r["routed"] for r in rows], "o-", color="tab:blue", label="routed to the teacher (test)")
    ax.plot(rounds, [100 * r["stream_routed"] if r["stream_routed"] is not None else float("nan") for r in rows], "s--", color="tab:cyan",
            label="routed, live traffic of the round")
    ax.set_xlabel("round of learning from the stream")
    ax.set_ylabel("routed (%)")
    ax.set_xticks(rounds)
    ax2 = ax.twinx()
    ax2.plot(rounds, [100 * r["cascade_accuracy"] for r in rows], "^-", color="tab:red", label="cascade accuracy (test)")
    ax2.plot(rounds, [100 * r["student_accuracy"] for r in rows], "v:", color="tab:orange", label="student alone (test)")
    ax2.axhline(100 * rows[0]["teacher_accuracy"], color="black", lw=0.8, ls="--", label="teacher only (test)")
    ax2.set_ylabel("accuracy (%)")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="center right")
    ax.set_title("emotion, 2,000 labelled tweets, 14,000 unlabelled streamed: learning rounds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "emotion"))
    parser.add_argument("--base-model", default="minilm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shadow-fraction", type=float, default=0.2)
    parser.add_argument("--students", default="mlp")
    parser.add_argument("--out", default=str(CACHE_DIR / "experiments" / "emotion-stream-learning"))
    parser.add_argument("--json", default=str(ROOT / "docs" / "bench" / "stream-learning.json"))
    parser.add_argument("--plot", default=str(ROOT / "docs" / "img" / "stream-learning.png"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    out = Path(args.out).expanduser()
    started = time.perf_counter()
    teacher = TeacherConfig(base_model=resolve_base_model(args.base_model, base_models_dir()))
    cfg = TrainConfig(data=args.data, out=str(out / "bundle"), teacher=teacher, students=tuple(args.students.split(",")),
                      train_limit=LABELLED, seed=SEED, threads=args.threads)
    train_bundle(cfg)
    served = out / "served"
    if served.exists():
        shutil.rmtree(served)
    shutil.copytree(out / "bundle", served)  # every run starts from round 0

    train = load_dataset(args.data).split("train")
    labelled, _ = subsample(train.texts, train.labels, LABELLED, SEED)
    taken = set(labelled)
    live = [t for t in train.texts if t not in taken]
    size = -(-len(live) // args.rounds)
    labels = load_dataset(args.data).labels
    rows = [{"round": 0, "kept": None, "stream_routed": None, "knowledge": 0, **measure(served, args.data)}]
    print(f"[learn] round 0: {rows[0]}", flush=True)
    settings = Settings.from_env()
    logs = Path(tempfile.mkdtemp(prefix="tango-learn-"))
    with local_broker(settings, external=False, keep=False):
        run = LocalRun(settings, served, logs, tag="learn",
                       overrides={"TANGO_SHADOW_FRACTION": str(args.shadow_fraction), "TANGO_RELOAD_CHECK_S": "1"})
        try:
            run.start("teacher-1", "teacher")
            run.start("stream", "stream")
            run.wait_teachers(1)
            consumer = run.consumer()
            kept = 0
            for k in range(1, args.rounds + 1):
                part = [(f"live-{i}", text) for i, text in enumerate(live[(k - 1) * size : k * size], (k - 1) * size)]
                run.send(part)
                collected = run.collect(consumer, {i for i, _ in part}, timeout=1800)
                ids = {i for i, _ in part}
                mine = [r for r in collected.results if r["id"] in ids]
                stream_routed = sum(r["tier"] == "teacher" for r in mine) / len(mine)
                records, _ = read_json_topic(run.settings, run.settings.knowledge_topic, timeout_s=120)
                examples = parse_knowledge(records, len(labels))
                row = {"round": k, "stream_routed": stream_routed, "knowledge": len(examples.texts), "knowledge_sources": examples.counts()}
                try:
                    report = distill_from_stream(StreamDistillConfig(bundle=str(served), shadow_fraction=args.shadow_fraction), examples)
                    kept += 1
                    wait_reloads(run, kept)
                    row.update(kept=True, held_out=report["after"])
                except (NotBetter, TooLittleData) as refused:
                    row.update(kept=False, refused=str(refused))
                row.update(measure(served, args.data))
                rows.append(row)
                print(f"[learn] round {k}: {row}", flush=True)
            consumer.close()
        finally:
            run.stop()
    doc = {"labelled": LABELLED, "live": len(live), "rounds": args.rounds, "shadow_fraction": args.shadow_fraction,
           "base_model": args.base_model, "students": args.students, "rows": rows, "seconds": round(time.perf_counter() - started, 1),
           "command": " ".join(["scripts/stream_learning_experiment.py", *sys.argv[1:]])}
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    plot(rows, Path(args.plot))
    print("| round | kept | knowledge records (routed + shadow) | routed (live) | routed (test) | cascade (test) | student (test) | teacher (test) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        live_routed = "—" if r["stream_routed"] is None else f"{100 * r['stream_routed']:.1f}%"
        sources = r.get("knowledge_sources") or {}
        kept = "—" if r["kept"] is None else ("yes" if r["kept"] else "refused")
        print(f"| {r['round']} | {kept} | {r['knowledge']:,} ({sources.get('routed', 0):,} + {sources.get('shadow', 0):,}) | {live_routed} | {100 * r['routed']:.1f}% | {100 * r['cascade_accuracy']:.2f}% "
              f"| {100 * r['student_accuracy']:.2f}% | {100 * r['teacher_accuracy']:.2f}% |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
