"""Unlabelled transfer data on a small labelled set: SST-2 with 2,000 labelled sentences.

Two bundles with the same teacher (fine-tuned on the 2,000 labelled sentences only):

- ``without``: students distilled from the 2,000 sentences and their augmented variants;
- ``with``: the same, plus the other 65,349 training sentences with their labels removed
  (``tango train --transfer-data``), labelled by the teacher.

The 2,000 are ``tango train --train-limit 2000 --seed 13``'s subsample of the train split.
Both bundles calibrate on the validation split; the table is on the test split.

    .venv/bin/python scripts/transfer_experiment.py [--base-model mpnet] [--out DIR] [--student-init teacher|random] [--json FILE]

Finished stages are reused, so a rerun after an interruption continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.base_models import resolve_base_model  # noqa: E402
from models.training.data import load_dataset  # noqa: E402
from models.training.pipeline import TrainConfig, train_bundle  # noqa: E402
from models.training.report import at_threshold  # noqa: E402
from models.training.teacher_train import TeacherConfig  # noqa: E402
from models.training.transfer_set import subsample  # noqa: E402
from stream_app.settings import CACHE_DIR  # noqa: E402
from stream_app.tools.train_cli import base_models_dir  # noqa: E402

LABELLED = 2000
SEED = 13


def unlabelled_rest(data: str, out: Path) -> Path:
    """The train sentences outside the labelled subsample, as ``{"text": ...}`` lines (no labels)."""
    train = load_dataset(data).split("train")
    kept, _ = subsample(train.texts, train.labels, LABELLED, SEED)
    kept_set = set(kept)
    path = out / "sst2-train-unlabelled.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for text in train.texts:
            if text not in kept_set:
                handle.write(json.dumps({"text": text}) + "\n")
    return path


def share_teacher(source: Path, target: Path) -> None:
    """Give ``target`` the teacher ``source`` trained (same key: only the transfer set differs)."""
    if (target / "teacher" / "model.safetensors").is_file():
        return
    shutil.copytree(source / "teacher", target / "teacher")
    (target / "work" / "stages").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "work" / "stages" / "teacher.json", target / "work" / "stages" / "teacher.json")
    shutil.copytree(source / "work" / "cache", target / "work" / "cache", dirs_exist_ok=True)


def summarise(bundle: Path) -> dict:
    manifest = json.loads((bundle / "manifest.json").read_text())
    extra = manifest["extra"]
    soft = json.loads((bundle / "work" / "stages" / "soft_labels.json").read_text())
    curves = json.loads((bundle / "tango_curve.json").read_text())
    students = {}
    for arch, spec in extra["students"].items():
        entry = curves["students"][arch]
        at = at_threshold(entry["cascade"], spec["threshold"])
        students[arch] = {"parameters": spec["parameters"], "test_accuracy": spec["test_accuracy"], "threshold": spec["threshold"],
                          "cascade_test_accuracy": at["accuracy"], "cascade_test_routed": at["teacher_fraction"],
                          "cascade_cpu_s_per_1k": at["cpu_s_per_1k"]}
    return {"teacher_test_accuracy": extra["teacher_accuracy"]["test"], "transfer": {k: soft["result"].get(k) for k in ("original", "augmented", "unlabelled")},
            "stage_seconds": extra["stage_seconds"], "students": students, "teacher_cpu_s_per_1k": curves["teacher"]["cpu_s_per_1k"]}


def markdown(results: dict, command: str) -> str:
    lines = ["| transfer set | student | parameters | student test | cascade test | routed (test) | teacher test | CPU-s / 1k (cascade) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        t = r["transfer"]
        described = f"{t['original']:,} labelled + {t['augmented']:,} augmented" + (f" + {t['unlabelled']:,} unlabelled" if t["unlabelled"] else "")
        for arch, s in r["students"].items():
            lines.append(f"| {name}: {described} | {arch} | {s['parameters']:,} | {100 * s['test_accuracy']:.2f}% | {100 * s['cascade_test_accuracy']:.2f}% "
                         f"| {100 * s['cascade_test_routed']:.1f}% | {100 * r['teacher_test_accuracy']:.2f}% | {s['cascade_cpu_s_per_1k']:.3f} |")
    return "\n".join(lines) + f"\n\nReproduce: `{command}`\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "sst2"))
    parser.add_argument("--base-model", default="mpnet")
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--teacher-lr", type=float, default=5e-5)
    parser.add_argument("--out", default=str(CACHE_DIR / "experiments" / "sst2-transfer"))
    parser.add_argument("--json", default=str(ROOT / "docs" / "bench" / "transfer-sst2.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--student-init", default="teacher", choices=("teacher", "random"),
                        help="how the students' word embeddings start (tango train --student-init)")
    args = parser.parse_args()
    out = Path(args.out).expanduser()
    teacher = TeacherConfig(base_model=resolve_base_model(args.base_model, base_models_dir()), epochs=args.teacher_epochs,
                            learning_rate=args.teacher_lr, batch_size=32)
    base = TrainConfig(data=args.data, out=str(out / "without"), teacher=teacher, train_limit=LABELLED, seed=SEED, threads=args.threads,
                       student_init=args.student_init)
    started = time.perf_counter()
    train_bundle(base)
    rest = unlabelled_rest(args.data, out)
    with_cfg = replace(base, out=str(out / "with"), transfer_data=str(rest))
    share_teacher(out / "without", out / "with")
    train_bundle(with_cfg)
    results = {"without": summarise(out / "without"), "with": summarise(out / "with")}
    command = " ".join(["scripts/transfer_experiment.py", *sys.argv[1:]])
    doc = {"labelled": LABELLED, "seed": SEED, "data": args.data, "base_model": args.base_model, "student_init": args.student_init, "results": results,
           "seconds": round(time.perf_counter() - started, 1), "command": command}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    print(markdown(results, f".venv/bin/python {command}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
