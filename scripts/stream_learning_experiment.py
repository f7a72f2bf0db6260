"""Learning from the stream: does the routed fraction fall while accuracy holds?

Emotion, starting from a bundle trained on 2,000 labelled tweets (``tango train
--train-limit 2000 --seed 13``: a fixed subsample of the train split, teacher and student).
The other 14,000 train tweets, without their labels, are the live traffic: they stream
through the cascade on the local broker in ``--rounds`` equal parts, in train-file order.
After each part, ``distill_from_stream`` (what ``tango distill --from-stream`` runs) re-distils
the served student on everything the knowledge topic holds so far; the running stream
worker hot-reloads a kept round. After each round the served bundle is measured on the
test split (cascade accuracy and routed fraction, ``tango evaluate``'s numbers), and so is
the served student's test curve: the least it must route to stay within ``WINDOW`` points of
round 0's accuracy (a Tango curve's comparison at equal accuracy; reported, never used to
choose anything).

    .venv/bin/python scripts/stream_learning_experiment.py [--students bilstm|mlp] [--rounds 3] [--shadow-fraction 0.2] [--order-seed N]

``--order-seed N`` streams the live tweets in a shuffled order (default: train-file order),
so runs with other seeds give the run-to-run spread.

Writes docs/bench/stream-learning-STUDENTS[-orderN].json and docs/img/stream-learning-STUDENTS[-orderN].png
and prints the table.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from models.base_models import resolve_base_model  # noqa: E402
from models.bundle import load_bundle  # noqa: E402
from models.cascade import calibrated_probs, cascade_predictions  # noqa: E402
from models.teacher import TeacherClassifier  # noqa: E402
from models.training.calibrate import default_thresholds, sweep  # noqa: E402
from models.training.data import Split, load_dataset  # noqa: E402
from models.training.evaluate import batched_logits  # noqa: E402
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
WINDOW = 0.5  # accuracy points: "the same accuracy" of the target


def teacher_test_predictions(bundle: Path, test: Split) -> np.ndarray:
    """The teacher's test-split labels: the teacher never changes between rounds."""
    served = load_bundle(bundle)
    teacher = TeacherClassifier.load(served.teacher_path, max_length=served.manifest.max_length, precision="auto", device="auto")
    return batched_logits(teacher.logits, test.texts, 2048).argmax(1)


def measure(bundle: Path, test: Split, teacher_pred: np.ndarray, round0_accuracy: float | None = None) -> dict:
    """The served cascade on the test split (``tango evaluate``'s rule) and its whole curve there:
    ``[routed, accuracy]`` at every candidate threshold, cheapest first, with the least routed
    fraction within ``WINDOW`` points of round 0 (this round's own accuracy for round 0)."""
    served = load_bundle(bundle)
    manifest, labels = served.manifest, np.asarray(test.labels)
    logits = batched_logits(served.load_student().logits, test.texts)
    conf = calibrated_probs(logits, manifest.temperature).max(axis=1)
    pred, routed = cascade_predictions(conf, logits.argmax(1), teacher_pred, manifest.threshold)
    rows = sweep(conf, logits.argmax(1), teacher_pred, labels, default_thresholds(conf), 1.0, 1.0)
    curve = sorted({(round(r.teacher_fraction, 4), round(r.accuracy, 4)) for r in rows})
    accuracy = float((pred == labels).mean())
    target = (accuracy if round0_accuracy is None else round0_accuracy) - WINDOW / 100
    within = [fraction for fraction, acc in curve if acc >= target - 1e-9]
    return {"cascade_accuracy": accuracy, "routed": float(routed.mean()), "threshold": manifest.threshold,
            "student_accuracy": float((logits.argmax(1) == labels).mean()), "teacher_accuracy": float((teacher_pred == labels).mean()),
            "routed_within_window": min(within) if within else None, "test_curve": curve}


def wait_reloads(run: LocalRun, count: int, timeout: float = 120.0) -> None:
    log = run.logs / f"{run.id}-stream.log"
    deadline = time.monotonic() + timeout
    while log.read_text().count('"event": "bundle reloaded"') < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the stream worker did not reload round {count} within {timeout:g} s")
        run.check_alive()
        time.sleep(0.5)


def plot(rows: list[dict], students: str, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rounds = [r["round"] for r in rows]
    fig, (ax, curves) = plt.subplots(1, 2, figsize=(12, 5.2), dpi=120)
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
    ax.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    ax.set_title(f"emotion, {students}: 2,000 labelled tweets, 14,000 unlabelled streamed", fontsize=9)
    for r in rows:
        if r["round"] and not r["kept"]:
            continue  # refused: the same curve as the round before
        line = curves.plot([100 * x for x, _ in r["test_curve"]], [100 * y for _, y in r["test_curve"]], lw=1.2, label=f"round {r['round']}")[0]
        curves.plot([100 * r["routed"]], [100 * r["cascade_accuracy"]], "o", color=line.get_color(), ms=6)
    curves.axhline(100 * rows[0]["teacher_accuracy"], color="black", lw=0.8, ls="--", label="teacher only")
    curves.axhline(100 * rows[0]["cascade_accuracy"] - WINDOW, color="grey", lw=0.8, ls=":", label=f"round 0's accuracy - {WINDOW:g} points")
    curves.set_xlabel("routed to the teacher (%, test)")
    curves.set_ylabel("cascade accuracy (%, test)")
    curves.set_title("each round's cascade curve on test (dot: served threshold, chosen on validation)", fontsize=9)
    curves.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def stream_rounds(args: argparse.Namespace, served: Path, live: list[str], num_labels: int, test: Split, teacher_pred: np.ndarray,
                  round0_accuracy: float, round0_validation: dict) -> list[dict]:
    """Stream the live tweets in ``args.rounds`` parts through the running cascade, one learning round after each."""
    size = -(-len(live) // args.rounds)
    rows: list[dict] = []
    previous = {"validation": round0_validation}
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
                examples = parse_knowledge(records, num_labels)
                row = {"round": k, "stream_routed": stream_routed, "knowledge": len(examples.texts), "knowledge_sources": examples.counts()}
                try:
                    report = distill_from_stream(StreamDistillConfig(bundle=str(served), shadow_fraction=args.shadow_fraction), examples)
                    kept += 1
                    wait_reloads(run, kept)
                    row.update(kept=True, held_out=report["after"],
                               validation={"accuracy": report["after"]["accuracy"], "routed": report["after"]["teacher_fraction"]})
                except (NotBetter, TooLittleData) as refused:
                    row.update(kept=False, refused=str(refused), validation=previous["validation"])
                row.update(measure(served, test, teacher_pred, round0_accuracy))
                rows.append(row)
                previous = row
                print(f"[learn] round {k}: { {key: v for key, v in row.items() if key != 'test_curve'} }", flush=True)
            consumer.close()
        finally:
            run.stop()
    return rows


def print_table(rows: list[dict]) -> None:
    print("| round | kept | knowledge records (routed + shadow) | routed (live) | routed (test) | cascade (test) | student (test) "
          "| validation: cascade, routed | test curve: least routed within 0.5 points of round 0 |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        live_routed = "—" if r["stream_routed"] is None else f"{100 * r['stream_routed']:.1f}%"
        sources = r.get("knowledge_sources") or {}
        kept = "—" if r["kept"] is None else ("yes" if r["kept"] else "refused")
        at_round0 = r["routed_within_window"]
        at_round0 = "never" if at_round0 is None else f"{100 * at_round0:.1f}%"
        print(f"| {r['round']} | {kept} | {r['knowledge']:,} ({sources.get('routed', 0):,} + {sources.get('shadow', 0):,}) | {live_routed} | {100 * r['routed']:.1f}% | {100 * r['cascade_accuracy']:.2f}% "
              f"| {100 * r['student_accuracy']:.2f}% | {100 * r['validation']['accuracy']:.2f}%, {100 * r['validation']['routed']:.1f}% | {at_round0} |")
    print(f"teacher alone (test): {100 * rows[0]['teacher_accuracy']:.2f}%")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "emotion"))
    parser.add_argument("--base-model", default="minilm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shadow-fraction", type=float, default=0.2)
    parser.add_argument("--students", default="bilstm", help="the student architecture: bilstm (what emotion bundles serve) or mlp")
    parser.add_argument("--out", default="", help="default ~/.cache/tango-stream/experiments/emotion-stream-learning-STUDENTS")
    parser.add_argument("--json", default="", help="default docs/bench/stream-learning-STUDENTS.json")
    parser.add_argument("--plot", default="", help="default docs/img/stream-learning-STUDENTS.png")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--order-seed", type=int, default=None, help="stream the live tweets shuffled with this seed (default: file order)")
    args = parser.parse_args()
    tag = args.students.replace(",", "-")
    args.out = args.out or str(CACHE_DIR / "experiments" / f"emotion-stream-learning-{tag}")  # the bundle: the same for every order
    tag += "" if args.order_seed is None else f"-order{args.order_seed}"
    args.json = args.json or str(ROOT / "docs" / "bench" / f"stream-learning-{tag}.json")
    args.plot = args.plot or str(ROOT / "docs" / "img" / f"stream-learning-{tag}.png")
    return args


def main() -> int:
    args = parse_args()
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

    dataset = load_dataset(args.data)
    train, test = dataset.split("train"), dataset.split("test")
    labelled, _ = subsample(train.texts, train.labels, LABELLED, SEED)
    taken = set(labelled)
    live = [t for t in train.texts if t not in taken]
    if args.order_seed is not None:
        random.Random(args.order_seed).shuffle(live)
    teacher_pred = teacher_test_predictions(served, test)
    validation = load_bundle(served).manifest.extra["cascade"]["validation"]
    rows = [{"round": 0, "kept": None, "stream_routed": None, "knowledge": 0, **measure(served, test, teacher_pred),
             "validation": {"accuracy": validation["accuracy"], "routed": validation["teacher_fraction"]}}]
    rows += stream_rounds(args, served, live, len(dataset.labels), test, teacher_pred, rows[0]["cascade_accuracy"], rows[0]["validation"])
    doc = {"labelled": LABELLED, "live": len(live), "rounds": args.rounds, "shadow_fraction": args.shadow_fraction,
           "base_model": args.base_model, "students": args.students, "order_seed": args.order_seed, "rows": rows, "seconds": round(time.perf_counter() - started, 1),
           "command": " ".join(["scripts/stream_learning_experiment.py", *sys.argv[1:]])}
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    plot(rows, args.students, Path(args.plot))
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
