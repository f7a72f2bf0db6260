"""In-process micro-benchmarks of the models alone (no Kafka).

- student: records/s by batch size;
- teacher: records/s and accuracy in fp32 and int8 (dynamic quantisation of the linear
  layers), each padded to a fixed length versus length-bucketed by a token budget.

All variants run in one process, one after another, on the same texts, so their ratios
are comparable even on a noisy machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.bundle import load_bundle
from models.teacher import TeacherClassifier


def _rate(fn: Callable[[Sequence[str]], np.ndarray], texts: Sequence[str], batch: int, repeats: int = 1) -> tuple[float, np.ndarray]:
    """Records/s of ``fn`` over ``texts`` in batches (best of ``repeats``), and its logits."""
    best, logits = 0.0, None
    for _ in range(repeats):
        started = time.perf_counter()
        logits = np.concatenate([fn(texts[i : i + batch]) for i in range(0, len(texts), batch)])
        best = max(best, len(texts) / (time.perf_counter() - started))
    return best, logits


def padded_logits(teacher: TeacherClassifier, length: int) -> Callable[[Sequence[str]], np.ndarray]:
    """The teacher with every batch padded to ``length`` tokens: the naive baseline."""

    def run(texts: Sequence[str]) -> np.ndarray:
        batch = teacher.tokenizer(list(texts), truncation=True, max_length=length, padding="max_length", return_tensors="pt")
        with torch.inference_mode():
            return teacher.model(**batch).logits.float().numpy()

    return run


def run_microbench(
    bundle_dir: str | Path,
    texts: Sequence[str],
    labels: Sequence[int],
    student_batches: Sequence[int] = (1, 8, 32, 128, 512),
    teacher_batch: int = 64,
    pad_length: int = 64,
    threads: int = 1,
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    bundle = load_bundle(bundle_dir)
    gold = np.asarray(labels)
    student = bundle.load_student()
    report: dict[str, Any] = {"records": len(texts), "threads": threads, "student": {}, "teacher": {}}
    for batch in student_batches:
        rate, logits = _rate(student.logits, texts, batch, repeats=2)
        report["student"][str(batch)] = {"records_per_s": round(rate, 1), "accuracy": round(float((logits.argmax(1) == gold).mean()), 4)}
    for int8 in (False, True):
        teacher = TeacherClassifier.load(bundle.teacher_path, max_length=bundle.manifest.max_length, int8=int8)
        for mode, fn in (("padded", padded_logits(teacher, pad_length)), ("bucketed", teacher.logits)):
            rate, logits = _rate(fn, texts, teacher_batch)
            name = f"{'int8' if int8 else 'fp32'}-{mode}"
            report["teacher"][name] = {"records_per_s": round(rate, 1), "accuracy": round(float((logits.argmax(1) == gold).mean()), 4)}
    base = report["teacher"]["fp32-padded"]
    best = report["teacher"]["int8-bucketed"]
    report["ratios"] = {
        "int8_bucketed_vs_fp32_padded": round(best["records_per_s"] / base["records_per_s"], 3),
        "accuracy_change_points": round((best["accuracy"] - base["accuracy"]) * 100, 2),
    }
    return report
