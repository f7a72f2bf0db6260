"""The teacher's forward pass alone, as a teacher worker batches it, with the other core idle or busy.

    .venv/bin/python scripts/bench_teacher_alone.py [--bundle DIR] [--budgets 1024,2048,4096] [--rounds 2]

One torch thread, bf16 (what ``teacher_precision=auto`` picks on this CPU), the first 320
emotion test tweets in batches of 64 (``teacher_batch_size``), each batch cut by the token
budget. For every round and budget it prints the CPU-seconds per 1,000 records with the
other core idle, running a Python busy loop, and running bf16 matrix products (what a
neighbouring model would do). Rounds interleave the variants, so their ratios are
comparable on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

from models.bundle import load_bundle
from models.teacher import TeacherClassifier, bound_inference_memory
from stream_app.settings import CACHE_DIR
from stream_app.tools.runner import default_dataset, load_split

NEIGHBOURS = {
    "idle": None,
    "busy loop": "while True: pass",
    "bf16 matmuls": "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512, dtype=torch.bfloat16)\nwhile True: a @ a",
}


def cpu_per_1k(teacher: TeacherClassifier, texts: list[str], batch: int = 64) -> float:
    started = time.process_time()
    for i in range(0, len(texts), batch):
        teacher.logits(texts[i : i + batch])
    return 1000 * (time.process_time() - started) / len(texts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=str(CACHE_DIR / "bundles" / "emotion-mpnet"))
    parser.add_argument("--data", default=str(default_dataset()))
    parser.add_argument("--budgets", default="1024,4096")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bound_inference_memory()
    bundle = load_bundle(Path(args.bundle).expanduser())
    texts = load_split(args.data, "test", 320)[0]
    teachers = {int(b): TeacherClassifier.load(bundle.teacher_path, max_length=bundle.manifest.max_length, precision="bf16",
                                               token_budget=int(b)) for b in args.budgets.split(",")}
    for teacher in teachers.values():
        cpu_per_1k(teacher, texts)  # warm-up: oneDNN builds its kernels for these shapes
    for rnd in range(1, args.rounds + 1):
        for name, code in NEIGHBOURS.items():
            neighbour = subprocess.Popen([sys.executable, "-c", code]) if code else None
            try:
                time.sleep(1.0 if neighbour else 0.0)
                for budget, teacher in teachers.items():
                    print(json.dumps({"round": rnd, "other core": name, "token_budget": budget,
                                      "cpu_s_per_1k": round(cpu_per_1k(teacher, texts), 2)}), flush=True)
            finally:
                if neighbour:
                    neighbour.kill()
                    neighbour.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
