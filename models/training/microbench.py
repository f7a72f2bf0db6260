"""In-process micro-benchmarks of the models alone (no Kafka).

- student: records/s by batch size;
- teacher: records/s, accuracy and agreement with fp32's labels in every precision side by
  side (CPU: fp32, bf16, int8 - torch's deprecated dynamic quantisation; CUDA: fp32, bf16
  where supported, fp16), each padded to a fixed length versus length-bucketed by a token
  budget; ``precisions`` sums up the bucketed runs next to what ``auto`` picks here.

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
from models.teacher import TeacherClassifier, resolve_target


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
            return teacher.model(**batch.to(teacher.device)).logits.float().cpu().numpy()

    return run


def default_precisions(device: str) -> tuple[str, ...]:
    """What the bench compares: fp32 always; bf16 and int8 on a CPU; bf16 (if supported) and fp16 on CUDA."""
    if device.startswith("cuda"):
        return ("fp32", "bf16", "fp16") if torch.cuda.is_bf16_supported() else ("fp32", "fp16")
    return ("fp32", "bf16", "int8")


def run_microbench(
    bundle_dir: str | Path,
    texts: Sequence[str],
    labels: Sequence[int],
    student_batches: Sequence[int] = (1, 8, 32, 128, 512),
    teacher_batch: int = 64,
    pad_length: int = 64,
    threads: int = 1,
    precisions: Sequence[str] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    bundle = load_bundle(bundle_dir)
    gold = np.asarray(labels)
    device, auto = resolve_target("auto", device)
    precisions = tuple(precisions or default_precisions(device))
    if "fp32" not in precisions:
        precisions = ("fp32", *precisions)  # the reference the others are compared with
    student = bundle.load_student()
    report: dict[str, Any] = {"records": len(texts), "threads": threads, "device": device, "auto_precision": auto,
                              "student": {}, "teacher": {}, "precisions": {}}
    for batch in student_batches:
        rate, logits = _rate(student.logits, texts, batch, repeats=2)
        report["student"][str(batch)] = {"records_per_s": round(rate, 1), "accuracy": round(float((logits.argmax(1) == gold).mean()), 4)}
    reference = None
    for precision in sorted(precisions, key=lambda p: p != "fp32"):
        teacher = TeacherClassifier.load(bundle.teacher_path, max_length=bundle.manifest.max_length, precision=precision,
                                         device="cpu" if precision == "int8" else device)
        for mode, fn in (("bucketed", teacher.logits), ("padded", padded_logits(teacher, pad_length))):
            fn(texts[:teacher_batch])  # warm-up: the first batches of a fresh model pay one-off kernel set-up
            rate, logits = _rate(fn, texts, teacher_batch)
            predicted = logits.argmax(1)
            reference = predicted if reference is None else reference  # fp32 bucketed: the first run
            report["teacher"][f"{precision}-{mode}"] = {
                "records_per_s": round(rate, 1), "accuracy": round(float((predicted == gold).mean()), 4),
                "agreement_with_fp32": round(float((predicted == reference).mean()), 4),
            }
        del teacher
    base, fp32 = report["teacher"]["fp32-padded"], report["teacher"]["fp32-bucketed"]
    report["ratios"] = {"accuracy_change_points": {}}
    for precision in precisions:
        run = report["teacher"][f"{precision}-bucketed"]
        report["precisions"][precision] = {**run, "vs_fp32_bucketed": round(run["records_per_s"] / fp32["records_per_s"], 3),
                                           "auto": precision == auto}
        report["ratios"][f"{precision}_bucketed_vs_fp32_padded"] = round(run["records_per_s"] / base["records_per_s"], 3)
        report["ratios"]["accuracy_change_points"][precision] = round((run["accuracy"] - base["accuracy"]) * 100, 2)
    return report
