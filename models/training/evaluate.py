"""``tango evaluate`` and ``tango wos``: re-measure a bundle on a dataset split.

``evaluate_bundle`` returns exactly::

    {"dataset", "split", "teacher": {"accuracy"},
     "students": {NAME: {"accuracy", "parameters"}},
     "cascade": {"student", "threshold", "accuracy", "teacher_fraction", "speedup_estimate"}}

with accuracies as fractions. The cascade uses the manifest's served student, temperature
and threshold, the pipeline's rule (teacher when max softmax(logits / T) < threshold), and
the per-record costs measured at training time (``measure_costs=True`` re-times them here).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np

from models.bundle import Bundle, load_bundle
from models.cascade import calibrated_probs, cascade_predictions
from models.student import StudentClassifier
from models.student_weights import load_student
from models.teacher import TeacherClassifier
from models.training.calibrate import speedup, time_per_record
from models.training.data import load_dataset
from models.training.teacher_train import accuracy


def bundle_students(bundle: Bundle) -> dict[str, StudentClassifier]:
    """Every student the bundle holds: the served one first, then those in ``extra.students``."""
    manifest = bundle.manifest
    out = {manifest.student.arch: bundle.load_student()}
    for name, spec in manifest.extra.get("students", {}).items():
        if name in out or not isinstance(spec, dict) or spec.get("served"):
            continue
        out[name] = load_student(
            bundle.root / spec["weights"], bundle.root / spec["tokenizer"], spec["arch"], spec["config"], manifest.max_length)
    return out


def batched_logits(logits, texts: list[str], batch: int = 1024) -> np.ndarray:
    """``logits`` (a model's texts → array call) over ``texts`` in chunks of ``batch``, concatenated."""
    return np.concatenate([logits(texts[i : i + batch]) for i in range(0, len(texts), batch)])


def evaluate_bundle(bundle_dir: str | Path, data: str, split: str = "test", measure_costs: bool = False) -> dict[str, Any]:
    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    dataset = load_dataset(data)
    if tuple(dataset.labels) != tuple(manifest.labels):
        raise ValueError(f"dataset labels {list(dataset.labels)} differ from the bundle's {list(manifest.labels)}")
    part = dataset.split(split)
    # as teacher workers serve it, as training calibrated it
    teacher = TeacherClassifier.load(bundle.teacher_path, max_length=manifest.max_length, precision="auto", device="auto")
    t_logits = batched_logits(teacher.logits, part.texts, 2048)
    students = bundle_students(bundle)
    results = {name: {"accuracy": accuracy(batched_logits(s.logits, part.texts), part.labels), "parameters": s.parameters} for name, s in students.items()}

    served_name = manifest.student.arch
    served = students[served_name]
    s_logits = batched_logits(served.logits, part.texts)
    conf = calibrated_probs(s_logits, manifest.temperature).max(axis=1)
    pred, routed = cascade_predictions(conf, s_logits.argmax(1), t_logits.argmax(1), manifest.threshold)
    fraction = float(routed.mean())
    extra = manifest.extra
    student_cost = extra.get("students", {}).get(served_name, {}).get("cost_per_record")
    teacher_cost = extra.get("teacher_cost_per_record")
    if measure_costs or not student_cost or not teacher_cost:
        sample = part.texts[:320]
        teacher_cost = time_per_record(teacher.logits, sample)
        student_cost = time_per_record(served.logits, sample)
    return {
        "dataset": dataset.name,
        "split": split,
        "teacher": {"accuracy": accuracy(t_logits, part.labels)},
        "students": results,
        "cascade": {
            "student": served_name,
            "threshold": manifest.threshold,
            "accuracy": float((pred == np.asarray(part.labels)).mean()),
            "teacher_fraction": fraction,
            "speedup_estimate": speedup(fraction, student_cost, teacher_cost),
        },
    }


def shuffle_words(texts: list[str], seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for text in texts:
        words = text.split()
        rng.shuffle(words)
        out.append(" ".join(words))
    return out


def word_order_sensitivity(model: str | Path, data: str, split: str = "test", seed: int = 0, max_length: int | None = None) -> dict[str, Any]:
    """WOS = (100 - p) / 50, with p the teacher's accuracy (percent) on word-shuffled texts.

    ``model`` is a bundle folder (its teacher is used) or a teacher folder / hub id.
    """
    path = Path(model).expanduser()
    if (path / "manifest.json").is_file():
        bundle = load_bundle(path)
        teacher_path, max_length = bundle.teacher_path, max_length or bundle.manifest.max_length
    else:
        teacher_path = model
    teacher = TeacherClassifier.load(teacher_path, max_length=max_length or 64, token_budget=8192)
    dataset = load_dataset(data)
    part = dataset.split(split)
    original = accuracy(batched_logits(teacher.logits, part.texts, 2048), part.labels)
    shuffled = accuracy(batched_logits(teacher.logits, shuffle_words(part.texts, seed), 2048), part.labels)
    return {
        "dataset": dataset.name,
        "split": split,
        "seed": seed,
        "teacher_accuracy": original,
        "shuffled_accuracy": shuffled,
        "wos": (100.0 - 100.0 * shuffled) / 50.0,
    }
