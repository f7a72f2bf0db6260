"""``tango train``: teacher → soft labels → students → calibration → one bundle folder.

Each stage writes its output and a marker under ``BUNDLE/work/stages/`` keyed by a hash
of its inputs, and is skipped on the next run when the marker matches, so a changed
student option retrains only the students (the teacher's logits are cached by a hash of
the texts and the teacher's weights).

Bundle layout written here (``models/bundle.py`` has the base format)::

    BUNDLE/manifest.json      serves the chosen student; extra.students describes all
    BUNDLE/student/           the served student
    BUNDLE/students/<name>/   every other student trained
    BUNDLE/teacher/           the fine-tuned teacher (save_pretrained, safetensors)
    BUNDLE/report.md, BUNDLE/tradeoff.png
    BUNDLE/work/              stage markers, teacher-logit cache, per-student outputs
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.bundle import (
    STUDENT_TOKENIZER,
    STUDENT_WEIGHTS,
    Manifest,
    StudentSpec,
    TeacherSpec,
    hash_teacher,
    load_bundle,
    sha256_file,
    write_manifest,
)
from models.cascade import calibrated_probs
from models.student import StudentClassifier
from models.student_nets import ARCHITECTURES, count_parameters
from models.student_weights import load_student, save_student
from models.teacher import TeacherClassifier, resolve_target
from models.training.calibrate import (
    choose_threshold,
    default_thresholds,
    fit_temperature,
    nll,
    sweep,
    time_per_record,
)
from models.training.checkpoints import run_stage, stable_hash, texts_hash
from models.training.data import (
    CALIBRATION,
    TextDataset,
    dataset_name,
    load_dataset,
    with_calibration_holdout,
)
from models.training.distill import (
    DISTILL_DEFAULTS,
    DistillConfig,
    distill,
    make_student,
    teacher_identity,
    teacher_logits_cached,
)
from models.training.evaluate import batched_logits
from models.training.report import write_report
from models.training.tango_curve import measured_curves
from models.training.teacher_train import TeacherConfig, accuracy, train_teacher
from models.training.transfer_set import TransferSet, build_transfer_set, subsample
from models.training.word_vectors import STUDENT_INITS, start_from_teacher

STAGE_VERSION = 1


def default_out(data: str, bundles_dir: str | Path) -> Path:
    """``<bundles_dir>/<dataset name>``: where ``tango train`` writes a bundle by default."""
    return (Path(bundles_dir) / dataset_name(data)).expanduser()


def base_model_identity(base_model: str) -> dict[str, Any]:
    """What identifies a base model cheaply: the hub id, or a local folder's config and weight sizes."""
    path = Path(base_model).expanduser()
    if not path.is_dir():
        return {"hub_id": base_model}
    files = {p.name: p.stat().st_size for p in sorted(path.glob("*.safetensors"))}
    config = (path / "config.json").read_text() if (path / "config.json").is_file() else ""
    return {"config": stable_hash(config), "weights": files}


@dataclass(frozen=True)
class TrainConfig:
    data: str
    out: str  # the bundle folder (``tango train`` defaults it under the cache root, ``default_out``)
    teacher: TeacherConfig = TeacherConfig()
    students: tuple[str, ...] = ("mlp", "bilstm")
    serve: str = ""
    margin: float = 0.3  # accuracy points below the teacher the cascade may lose on validation
    teacher_budget: float | None = None  # or: at most this fraction routed to the teacher
    seed: int = 13
    train_limit: int = 0  # if > 0, subsample the train split (teacher and students) to this many
    transfer_limit: int = 0  # if > 0, at most this many original train texts seed the transfer set
    threads: int = 2
    progress: bool = True
    # the precision the teacher labels the transfer set and is calibrated in; ``auto`` is the
    # one a teacher worker serves it in on this machine (bf16 with AMX or AVX-512 BF16)
    label_precision: str = "auto"
    transfer_data: str = ""  # a file or folder of unlabelled in-domain texts the teacher labels for distillation
    # if > 0: this many train records are held out (never trained on) and temperature and threshold
    # are fitted on them instead of on the validation split (steadier where validation is small)
    calibration_holdout: int = 0
    student_init: str = "teacher"  # the students' embeddings: "teacher" (models/training/word_vectors.py) or "random"
    extra: dict[str, Any] = field(default_factory=dict)  # student / distillation / augmentation overrides

    def out_path(self) -> Path:
        return Path(self.out).expanduser()


def teacher_stage(cfg: TrainConfig, dataset: TextDataset, log: Callable[[str], None] = print) -> dict:
    out = cfg.out_path()
    tcfg = replace(cfg.teacher, seed=cfg.seed).resolved()
    train = dataset.split("train")
    val = dataset.split("validation")
    texts, labels = subsample(train.texts, train.labels, cfg.train_limit, cfg.seed)
    key = stable_hash(
        {
            "v": STAGE_VERSION,
            "train": train.fingerprint(),
            "limit": cfg.train_limit,
            "val": val.fingerprint(),
            "labels": dataset.labels,
            "config": {**asdict(tcfg), "base_model": base_model_identity(tcfg.base_model)},
        }
    )

    def run() -> dict:
        teacher_dir = out / "teacher"
        if teacher_dir.exists():
            shutil.rmtree(teacher_dir)
        return train_teacher(texts, labels, val.texts, val.labels, dataset.labels, teacher_dir, tcfg, progress=cfg.progress, log=log)

    return run_stage(out / "work" / "stages", "teacher", key, run, [out / "teacher" / "model.safetensors"], log=log)


def label_precision(cfg: TrainConfig) -> str:
    """``cfg.label_precision`` resolved for this machine (never ``auto``)."""
    return resolve_target(cfg.label_precision, "auto")[1]


def labelling_teacher(cfg: TrainConfig) -> TeacherClassifier:
    """The bundle's teacher as it labels and is calibrated: in ``label_precision``, on a GPU if there is one."""
    return TeacherClassifier.load(cfg.out_path() / "teacher", max_length=cfg.teacher.max_length, precision=cfg.label_precision, device="auto")


def setup_torch(cfg: TrainConfig) -> None:
    torch.set_num_threads(max(1, cfg.threads))


def log_to(path: Path | None) -> Callable[[str], None]:
    def log(message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        print(line, flush=True)
        if path is not None:
            with open(path, "a") as handle:
                handle.write(line + "\n")

    return log


# --- soft labels -----------------------------------------------------------------------


def transfer_set(cfg: TrainConfig, dataset: TextDataset, train_texts: list[str], train_labels: list[int]) -> TransferSet:
    held_out = [text for split in (CALIBRATION, "validation", "test") if dataset.has_split(split) for text in dataset.split(split).texts]
    return build_transfer_set(train_texts, train_labels, seed=cfg.seed, transfer_limit=cfg.transfer_limit,
                              augment=cfg.extra.get("augment", {}), transfer_data=cfg.transfer_data, held_out=held_out)


def soft_label_stage(cfg: TrainConfig, dataset: TextDataset, log: Callable[[str], None] = print) -> dict:
    out = cfg.out_path()
    work = out / "work"
    train = dataset.split("train")
    texts, labels = subsample(train.texts, train.labels, cfg.train_limit, cfg.seed)
    transfer_data = transfer_set(cfg, dataset, texts, labels)
    transfer, gold = transfer_data.texts, transfer_data.gold
    teacher_id = teacher_identity(out / "teacher")
    max_length = cfg.teacher.max_length
    precision = label_precision(cfg)
    key_parts = {"v": STAGE_VERSION, "texts": texts_hash(transfer), "gold": stable_hash(gold), "teacher": teacher_id, "max_length": max_length}
    key = stable_hash(key_parts if precision == "fp32" else {**key_parts, "precision": precision})

    def run() -> dict:
        teacher = labelling_teacher(cfg)
        result: dict[str, Any] = {"transfer_size": len(transfer), "original": len(texts), "unlabelled": transfer_data.unlabelled,
                                  "augmented": len(transfer) - len(texts) - transfer_data.unlabelled, "precision": precision}
        teacher_logits_cached(out / "teacher", transfer, work / "cache", max_length, progress=cfg.progress, teacher=teacher, log=log, precision=precision)
        for split in ("validation", "test"):
            if dataset.has_split(split):
                part = dataset.split(split)
                logits = teacher_logits_cached(out / "teacher", part.texts, work / "cache", max_length, progress=cfg.progress, teacher=teacher, log=log,
                                               precision=precision)
                result[f"teacher_{split}_accuracy"] = accuracy(logits, part.labels)
        return result

    result = run_stage(work / "stages", "soft_labels", key, run, [work / "cache"], log=log)
    result["transfer_set"] = transfer_data
    return result


# --- students --------------------------------------------------------------------------

PARAM_LIMITS = {"mlp": 200_000, "bilstm": 2_000_000, "cnn": 200_000}


def student_stage(cfg: TrainConfig, dataset: TextDataset, arch: str, transfer_data: TransferSet, log: Callable[[str], None] = print) -> dict:
    out = cfg.out_path()
    work = out / "work"
    folder = work / "students" / arch
    max_length = cfg.teacher.max_length
    overrides = cfg.extra.get("students", {}).get(arch, {})
    dcfg = replace(DISTILL_DEFAULTS.get(arch, DistillConfig()), seed=cfg.seed, max_length=max_length)
    dcfg = replace(dcfg, **cfg.extra.get("distill", {}).get(arch, {}))
    transfer, gold = transfer_data.texts, transfer_data.gold
    precision = label_precision(cfg)
    teacher_id = teacher_identity(out / "teacher") + ("" if precision == "fp32" else f"|{precision}")
    val = dataset.split("validation")
    key = stable_hash(
        {"v": STAGE_VERSION, "arch": arch, "overrides": overrides, "distill": asdict(dcfg), "texts": texts_hash(transfer),
         "gold": stable_hash(gold), "teacher": teacher_id, "val": val.fingerprint(), "init": cfg.student_init}
    )

    def run() -> dict:
        logits = teacher_logits_cached(out / "teacher", transfer, work / "cache", max_length, progress=cfg.progress, log=log, precision=precision)
        net, tokenizer, config = make_student(arch, transfer_data.vocabulary_texts(), len(dataset.labels), overrides)
        log(f"student {arch}: {count_parameters(net):,} parameters, vocabulary {tokenizer.get_vocab_size():,}")
        if cfg.student_init == "teacher":
            log(f"student {arch}: embeddings of {start_from_teacher(net, tokenizer, labelling_teacher(cfg)):,} words start from the teacher's")
        result = distill(net, tokenizer, transfer, logits, gold, val.texts, val.labels, dcfg, progress=cfg.progress, desc=arch, log=log)
        if folder.exists():
            shutil.rmtree(folder)
        hashes = save_student(folder, net, tokenizer)
        (folder / "student.json").write_text(json.dumps({"arch": arch, "config": config, "distill": asdict(dcfg), **result}, indent=2) + "\n")
        return {"arch": arch, "config": config, "sha256": hashes, **result}

    return run_stage(work / "stages", f"student_{arch}", key, run, [folder / STUDENT_WEIGHTS, folder / STUDENT_TOKENIZER], log=log)


def load_student_from(folder: Path, arch: str, config: dict, max_length: int) -> StudentClassifier:
    return load_student(folder / STUDENT_WEIGHTS, folder / STUDENT_TOKENIZER, arch, config, max_length)


# --- calibration and the bundle -----------------------------------------------------------


def calibrate_stage(cfg: TrainConfig, dataset: TextDataset, students: dict[str, dict], stage_times: dict, log: Callable[[str], None] = print) -> dict:
    """Temperature, sweep and threshold for every student; picks the served one; writes the bundle."""
    out = cfg.out_path()
    work = out / "work"
    max_length = cfg.teacher.max_length
    val = dataset.split(CALIBRATION if cfg.calibration_holdout else "validation")  # what temperature and threshold are fitted on
    test = dataset.split("test") if dataset.has_split("test") else None
    teacher = labelling_teacher(cfg)
    logits_of = lambda texts: teacher_logits_cached(out / "teacher", texts, work / "cache", max_length, progress=False, teacher=teacher, log=log,  # noqa: E731
                                                    precision=teacher.precision)
    t_val = logits_of(val.texts)
    teacher_val_acc = accuracy(t_val, val.labels)
    t_test = logits_of(test.texts) if test else None
    teacher_test_acc = accuracy(t_test, test.labels) if test else None

    timing_texts = val.texts[: int(cfg.extra.get("timing_records", 320))]
    started = time.perf_counter()
    teacher_cost = time_per_record(teacher.logits, timing_texts, batch_size=64)
    log(f"teacher: {teacher_cost * 1e3:.2f} ms/record (validation accuracy {teacher_val_acc:.4f})")

    summary: dict[str, dict] = {}
    for arch, info in students.items():
        folder = work / "students" / arch
        student = load_student_from(folder, arch, info["config"], max_length)
        s_val = batched_logits(student.logits, val.texts)
        temperature = fit_temperature(s_val, val.labels)
        cost = time_per_record(student.logits, timing_texts, batch_size=64)
        conf = calibrated_probs(s_val, temperature).max(axis=1)
        rows = sweep(conf, s_val.argmax(1), t_val.argmax(1), np.asarray(val.labels), default_thresholds(conf), cost, teacher_cost)
        choice = choose_threshold(rows, teacher_val_acc, cfg.margin, cfg.teacher_budget)
        parameters = student.parameters  # the trained network's (a served cnn's table is buffers)
        entry = {
            "arch": arch, "config": info["config"], "parameters": parameters,
            "temperature": temperature, "nll_before": nll(s_val, val.labels), "nll_after": nll(s_val, val.labels, temperature),
            "cost_per_record": cost, "validation_accuracy": accuracy(s_val, val.labels),
            "threshold": choice.row.threshold, "rule": choice.rule, "validation_cascade": choice.row.to_json(),
            "validation_sweep": [r.to_json() for r in rows], "fits": parameters <= PARAM_LIMITS.get(arch, 10**12),
        }
        if test is not None:
            s_test = batched_logits(student.logits, test.texts)
            tconf = calibrated_probs(s_test, temperature).max(axis=1)
            entry["test_accuracy"] = accuracy(s_test, test.labels)
            entry["test_cascade"] = sweep(tconf, s_test.argmax(1), t_test.argmax(1), np.asarray(test.labels), [choice.row.threshold], cost, teacher_cost)[0].to_json()
            entry["test_sweep"] = [r.to_json() for r in sweep(tconf, s_test.argmax(1), t_test.argmax(1), np.asarray(test.labels), default_thresholds(conf), cost, teacher_cost)]
        summary[arch] = entry
        log(f"student {arch}: T={temperature:.3f}, threshold {choice.row.threshold:.4f} ({choice.rule}), validation cascade {choice.row.accuracy:.4f} "
            f"with {choice.row.teacher_fraction:.3f} to the teacher, speed-up {choice.row.speedup:.2f}x")
    stage_times["calibration"] = round(time.perf_counter() - started, 1)
    serve = cfg.serve or max((a for a in summary if summary[a]["fits"]), key=lambda a: (summary[a]["validation_accuracy"], -summary[a]["parameters"]), default=next(iter(summary)))
    if serve not in summary:
        raise ValueError(f"--serve {serve!r} is not among the trained students {sorted(summary)}")
    started = time.perf_counter()
    trained = {arch: (load_student_from(work / "students" / arch, arch, entry["config"], max_length), entry) for arch, entry in summary.items()}
    curves = measured_curves(test or val, teacher, logits_of(test.texts) if test else t_val, trained, serve, log)
    stage_times["measured_costs"] = round(time.perf_counter() - started, 1)
    (out / "tango_curve.json").write_text(json.dumps(curves) + "\n")
    return write_bundle(cfg, dataset, summary, serve, {"validation": teacher_val_acc, "test": teacher_test_acc}, teacher_cost, stage_times, log)


def write_bundle(cfg: TrainConfig, dataset: TextDataset, summary: dict, serve: str, teacher_acc: dict, teacher_cost: float, stage_times: dict, log: Callable[[str], None]) -> dict:
    out = cfg.out_path()
    work = out / "work"
    for old in (out / "student", out / "students"):
        if old.exists():
            shutil.rmtree(old)
    described: dict[str, dict] = {}
    for arch, entry in summary.items():
        target = out / "student" if arch == serve else out / "students" / arch
        target.mkdir(parents=True, exist_ok=True)
        source = work / "students" / arch
        shutil.copyfile(source / STUDENT_WEIGHTS, target / "model.safetensors")
        shutil.copyfile(source / STUDENT_TOKENIZER, target / "tokenizer.json")
        rel = target.relative_to(out)
        weights, tok = f"{rel}/model.safetensors", f"{rel}/tokenizer.json"
        described[arch] = {
            "arch": arch, "config": entry["config"], "weights": weights, "tokenizer": tok,
            "sha256": {weights: sha256_file(out / weights), tok: sha256_file(out / tok)},
            "temperature": entry["temperature"], "threshold": entry["threshold"], "parameters": entry["parameters"],
            "cost_per_record": entry["cost_per_record"], "validation_accuracy": entry["validation_accuracy"],
            "test_accuracy": entry.get("test_accuracy"), "served": arch == serve,
        }
    chosen = summary[serve]
    sweep_doc = {arch: {"validation": e["validation_sweep"], "test": e.get("test_sweep", [])} for arch, e in summary.items()}
    (out / "sweep.json").write_text(json.dumps(sweep_doc) + "\n")
    extra = {
        "dataset": dataset.name, "data": dataset.source, "seed": cfg.seed, "train_limit": cfg.train_limit,
        "augment": cfg.extra.get("augment", {}), "transfer_limit": cfg.transfer_limit,
        "calibration_split": f"{cfg.calibration_holdout} held-out train records" if cfg.calibration_holdout else "validation",
        "calibration_holdout": cfg.calibration_holdout, "student_init": cfg.student_init,
        "teacher_accuracy": teacher_acc, "teacher_cost_per_record": teacher_cost,
        "students": described,
        "cascade": {"student": serve, "threshold": chosen["threshold"], "rule": chosen["rule"], "margin": cfg.margin,
                    "teacher_budget": cfg.teacher_budget, "validation": chosen["validation_cascade"], "test": chosen.get("test_cascade")},
        "stage_seconds": stage_times,
        "teacher_training": json.loads((out / "teacher" / "training.json").read_text()) if (out / "teacher" / "training.json").is_file() else {},
    }
    manifest = Manifest(
        labels=tuple(dataset.labels), threshold=float(chosen["threshold"]), temperature=float(chosen["temperature"]),
        max_length=cfg.teacher.max_length,
        student=StudentSpec(arch=serve, config=chosen["config"], sha256=described[serve]["sha256"]),
        teacher=TeacherSpec(sha256=hash_teacher(out)), extra=extra,
    )
    write_manifest(out, manifest)
    load_bundle(out)
    write_report(out, manifest_extra=extra, summary=summary)
    log(f"bundle written to {out} (serving {serve})")
    return extra


def train_bundle(cfg: TrainConfig, log: Callable[[str], None] | None = None) -> Path:
    """Run every stage (reusing finished ones) and return the bundle folder."""
    out = cfg.out_path()
    out.mkdir(parents=True, exist_ok=True)
    log = log or log_to(out / "work" / "train.log")
    (out / "work").mkdir(parents=True, exist_ok=True)
    setup_torch(cfg)
    dataset = load_dataset(cfg.data)
    for split in ("train", "validation"):
        dataset.split(split)  # fail early with a clear DataError
    if cfg.calibration_holdout:
        dataset = with_calibration_holdout(dataset, cfg.calibration_holdout, cfg.seed)
        log(f"calibrating on {cfg.calibration_holdout:,} held-out train records, not on validation")
    if cfg.student_init not in STUDENT_INITS:
        raise ValueError(f"unknown student init {cfg.student_init!r}; choose from {list(STUDENT_INITS)}")
    unknown = [s for s in cfg.students if s not in ARCHITECTURES]
    if unknown or not cfg.students:
        raise ValueError(f"unknown students {unknown}; choose from {sorted(ARCHITECTURES)}")
    log(f"training bundle {out} from {dataset.source} ({len(dataset.labels)} labels)")
    times: dict[str, Any] = {}
    teacher = teacher_stage(cfg, dataset, log)
    times["teacher"] = teacher["seconds"]
    soft = soft_label_stage(cfg, dataset, log)
    times["soft_labels"] = soft["seconds"]
    students = {}
    for arch in cfg.students:
        students[arch] = student_stage(cfg, dataset, arch, soft["transfer_set"], log)
        times[f"student_{arch}"] = students[arch]["seconds"]
    calibrate_stage(cfg, dataset, students, times, log)
    return out
