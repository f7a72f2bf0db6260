"""``tango distill --from-stream``: re-distil a bundle's student from what the teacher said on the stream.

One round: the knowledge records (``models.training.stream_knowledge``) are joined with the
bundle's own transfer set (its labelled train texts, as it was trained on them, and their
augmented variants, both labelled by the bundle's teacher), weighted (routed 1, shadow
``1 / shadow_fraction``, the bundle's own records 1), and a fresh student of the served
architecture is distilled on them; its tokenizer learns its words from the labelled and the
streamed texts. Temperature and threshold are then fitted on the held-out split (the
bundle's validation split, never trained on; or, for a bundle calibrated on held-out train
records, ``--calibration-holdout``, the same records, kept out of the round's training) with
the bundle's own policy (margin or teacher budget). The new student is kept only if, routing
at most the fraction the served cascade routes there, its cascade is at least as accurate
there as the served one (``tolerance``: within that many points): a better student at the
same cost. It is then served at the policy's threshold, which spends the gain on routing
less (margin policy).

Kept, it is written beside the old one (``student-r<round>-<hash>/``) and the manifest is
replaced in one rename, so a worker's bundle watch sees either the old bundle or the new
one, and hot-reloads it (``stream_app.reload``); results then name the new student version.
The old student's folder stays for a rollback (restore ``manifest.prev.json``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from models.bundle import (
    STUDENT_TOKENIZER,
    STUDENT_WEIGHTS,
    Manifest,
    StudentSpec,
    load_bundle,
    parse_manifest,
)
from models.cascade import calibrated_probs, cascade_predictions
from models.student import StudentClassifier
from models.student_nets import count_parameters
from models.student_weights import save_student
from models.teacher import TeacherClassifier
from models.training.calibrate import (
    choose_threshold,
    default_thresholds,
    fit_temperature,
    sweep,
)
from models.training.data import (
    CALIBRATION,
    Split,
    load_dataset,
    with_calibration_holdout,
)
from models.training.distill import (
    DISTILL_DEFAULTS,
    DistillConfig,
    distill,
    make_student,
    teacher_logits_cached,
)
from models.training.evaluate import batched_logits
from models.training.stream_knowledge import StreamExamples, stream_weights
from models.training.transfer_set import TransferSet, build_transfer_set, subsample
from models.training.word_vectors import start_from_teacher


class TooLittleData(ValueError):
    """Fewer new knowledge records than a round needs."""


class NotBetter(ValueError):
    """The re-distilled student's cascade is less accurate on the held-out data: the bundle is unchanged."""

    def __init__(self, message: str, report: dict):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class StreamDistillConfig:
    bundle: str
    shadow_fraction: float  # the stream workers' shadow_fraction: how many kept tweets a shadow record stands for
    min_records: int = 500
    max_weight: float = 20.0
    data: str = ""  # labelled dataset; default: the one the bundle was trained on
    epochs: int = 0  # 0: the architecture's distillation default
    tolerance: float = 0.0  # accuracy points the new held-out cascade may be below the served one's and still be kept
    progress: bool = True


def bundle_transfer_set(extra: dict, train_texts: list[str], train_labels: list[int]) -> TransferSet:
    """The labelled texts and augmented variants the bundle was distilled on, rebuilt from its manifest."""
    seed = int(extra.get("seed", 13))
    texts, labels = subsample(train_texts, train_labels, int(extra.get("train_limit", 0)), seed)
    return build_transfer_set(texts, labels, seed=seed, transfer_limit=int(extra.get("transfer_limit", 0)), augment=extra.get("augment", {}))


def calibration_holdout(extra: dict) -> int:
    """How many train records the bundle held out for calibration (0: it calibrated on validation).

    >>> calibration_holdout({"calibration_holdout": 300}), calibration_holdout({"calibration_split": "300 held-out train records"})
    (300, 300)
    >>> calibration_holdout({"calibration_split": "validation"}), calibration_holdout({})
    (0, 0)
    """
    if "calibration_holdout" in extra:
        return int(extra["calibration_holdout"])
    described = str(extra.get("calibration_split", "validation")).split()  # bundles written before the count was recorded
    return int(described[0]) if described and described[0].isdigit() else 0


def _cascade(student_logits: np.ndarray, temperature: float, threshold: float, teacher_pred: np.ndarray, labels: np.ndarray) -> dict:
    conf = calibrated_probs(student_logits, temperature).max(axis=1)
    pred, routed = cascade_predictions(conf, student_logits.argmax(1), teacher_pred, threshold)
    return {"accuracy": float((pred == labels).mean()), "teacher_fraction": float(routed.mean()),
            "student_accuracy": float((student_logits.argmax(1) == labels).mean())}


def distill_from_stream(cfg: StreamDistillConfig, examples: StreamExamples, log: Callable[[str], None] = print) -> dict:
    """One round; returns its report. Raises ``TooLittleData`` or ``NotBetter`` (bundle untouched)."""
    started = time.perf_counter()
    bundle = load_bundle(cfg.bundle)
    root, manifest, extra = bundle.root, bundle.manifest, bundle.manifest.extra
    teacher_version = manifest.teacher.version
    same_teacher = [i for i, v in enumerate(examples.teacher_versions) if v.startswith(teacher_version)]
    if len(same_teacher) < cfg.min_records:
        raise TooLittleData(f"{len(same_teacher)} knowledge records from this bundle's teacher {teacher_version} "
                            f"({len(examples.texts)} in all, {examples.skipped} unusable); a round needs at least {cfg.min_records}")
    stream_texts = [examples.texts[i] for i in same_teacher]
    stream_logits = examples.logits[same_teacher]
    sources = [examples.sources[i] for i in same_teacher]

    dataset = load_dataset(cfg.data or extra["data"])
    if tuple(dataset.labels) != manifest.labels:
        raise ValueError(f"dataset labels {list(dataset.labels)} differ from the bundle's {list(manifest.labels)}")
    seed = int(extra.get("seed", 13))
    holdout = calibration_holdout(extra)
    if holdout:  # the bundle was calibrated on held-out train records: so is the round, and they stay out of training
        dataset = with_calibration_holdout(dataset, holdout, seed)
    train = dataset.split("train")
    own_set = bundle_transfer_set(extra, train.texts, train.labels)
    validation = dataset.split("validation")  # what distillation picks its best epoch on, as in training
    held_out = dataset.split(CALIBRATION) if holdout else validation  # what temperature, threshold and the check use

    teacher = TeacherClassifier.load(bundle.teacher_path, max_length=manifest.max_length, precision="auto", device="auto")
    cache = root / "work" / "cache"

    def teacher_logits(part: list[str]) -> np.ndarray:
        return teacher_logits_cached(bundle.teacher_path, part, cache, manifest.max_length, progress=cfg.progress, teacher=teacher,
                                     log=log, precision=teacher.precision)

    own = own_set.texts
    transfer = own + stream_texts
    logits = np.concatenate([teacher_logits(own), stream_logits])
    gold = own_set.gold + [-1] * len(stream_texts)
    weights = np.concatenate([np.ones(len(own)), stream_weights(sources, cfg.shadow_fraction, cfg.max_weight)])

    arch = manifest.student.arch
    overrides = {k: v for k, v in manifest.student.config.items() if k != "num_labels"}
    net, tokenizer, config = make_student(arch, own_set.vocabulary_texts() + stream_texts, len(manifest.labels), overrides)
    if extra.get("student_init", "random") == "teacher":  # as the bundle's students started (bundles from before: random)
        start_from_teacher(net, tokenizer, teacher)
    dcfg = replace(DISTILL_DEFAULTS.get(arch, DistillConfig()), seed=seed, max_length=manifest.max_length)
    if cfg.epochs:
        dcfg = replace(dcfg, epochs=cfg.epochs)
    log(f"re-distilling {arch} on {len(own):,} of the bundle's records and {len(stream_texts):,} from the stream "
        f"({sources.count('routed'):,} routed, {sources.count('shadow'):,} shadow, shadow weight {weights[-1] if sources.count('shadow') else 0:g})")
    history = distill(net, tokenizer, transfer, logits, gold, validation.texts, validation.labels, dcfg, progress=cfg.progress,
                      desc=f"{arch} from the stream", log=log, weights=weights.tolist())

    new_student = StudentClassifier(net=net.eval(), tokenizer=tokenizer, max_length=manifest.max_length)
    served = bundle.load_student()
    report = judge(manifest, served, new_student, held_out, teacher_logits(held_out.texts), extra.get("cascade", {}))
    report["bundle"] = str(root)
    report["records"] = {"stream": len(stream_texts), "bundle": len(own), **{s: sources.count(s) for s in ("routed", "shadow")}}
    report.update(distill=history["history"], parameters=count_parameters(net))
    temperature, threshold = report["after"]["temperature"], report["after"]["threshold"]
    if dataset.has_split("test"):  # reported, never used to choose
        test = dataset.split("test")
        ty, tt = np.asarray(test.labels), teacher_logits(test.texts).argmax(1)
        report["test"] = {"before": _cascade(batched_logits(served.logits, test.texts), manifest.temperature, manifest.threshold, tt, ty),
                          "after": _cascade(batched_logits(new_student.logits, test.texts), temperature, threshold, tt, ty),
                          "teacher_accuracy": float((tt == ty).mean())}
    report["seconds"] = round(time.perf_counter() - started, 1)
    before, same_cost = report["before"], report["at_served_fraction"]
    if same_cost["accuracy"] < before["accuracy"] - cfg.tolerance / 100.0 - 1e-12:
        report["kept"] = False
        raise NotBetter(f"routing at most the served {100 * before['teacher_fraction']:.1f}%, the re-distilled cascade is "
                        f"{100 * same_cost['accuracy']:.2f}% on the held-out split against the served {100 * before['accuracy']:.2f}%: "
                        "the bundle is unchanged", report)
    report["kept"] = True
    report["after"]["student"] = write_round(root, manifest, net, tokenizer, config, temperature, threshold, report)
    return report


def judge(manifest: Manifest, served: StudentClassifier, new_student: StudentClassifier, held_out: Split, teacher_logits: np.ndarray,
          policy: dict) -> dict:
    """The served and the new cascade on the held-out split: the new one's temperature and policy
    threshold, and the new student's best cascade routing at most the served fraction."""
    y, t_pred = np.asarray(held_out.labels), teacher_logits.argmax(1)
    teacher_accuracy = float((t_pred == y).mean())
    old_logits = batched_logits(served.logits, held_out.texts)
    new_logits = batched_logits(new_student.logits, held_out.texts)
    temperature = fit_temperature(new_logits, held_out.labels)
    conf = calibrated_probs(new_logits, temperature).max(axis=1)
    rows = sweep(conf, new_logits.argmax(1), t_pred, y, default_thresholds(conf), 1.0, 1.0)
    choice = choose_threshold(rows, teacher_accuracy, float(policy.get("margin", 0.3)), policy.get("teacher_budget"))
    old_conf = calibrated_probs(old_logits, manifest.temperature).max(axis=1)
    old_rows = sweep(old_conf, old_logits.argmax(1), t_pred, y, default_thresholds(old_conf), 1.0, 1.0)
    before = _cascade(old_logits, manifest.temperature, manifest.threshold, t_pred, y)
    same_cost = choose_threshold(rows, teacher_accuracy, teacher_budget=before["teacher_fraction"]).row
    return {
        "held_out": held_out.name, "teacher_accuracy": teacher_accuracy,
        "before": {"student": manifest.student.version, "threshold": manifest.threshold, **before},
        "after": {"threshold": choice.row.threshold, "temperature": temperature, "rule": choice.rule,
                  **_cascade(new_logits, temperature, choice.row.threshold, t_pred, y)},
        "at_served_fraction": {"threshold": same_cost.threshold, "teacher_fraction": same_cost.teacher_fraction, "accuracy": same_cost.accuracy},
        "curves": {"before": [[r.teacher_fraction, r.accuracy] for r in old_rows], "after": [[r.teacher_fraction, r.accuracy] for r in rows]},
    }


def plot_round(report: dict, path: Path) -> None:
    """The round's before/after Tango curves on the held-out split: accuracy against routed fraction."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    for name, color in (("before", "tab:grey"), ("after", "tab:blue")):
        points = sorted(report["curves"][name])
        ax.plot([100 * f for f, _ in points], [100 * a for _, a in points], "-", color=color, label=f"cascade {name} the round")
        chosen = report[name]
        ax.plot(100 * chosen["teacher_fraction"], 100 * chosen["accuracy"], "*", color=color, ms=12,
                label=f"served {name}: {100 * chosen['accuracy']:.2f}%, {100 * chosen['teacher_fraction']:.1f}% routed")
    ax.axhline(100 * report["teacher_accuracy"], color="black", lw=0.8, ls="--", label="teacher only")
    ax.set_xlabel("routed to the teacher (%)")
    ax.set_ylabel(f"accuracy on the held-out {report['held_out']} split (%)")
    ax.set_title(f"learning from the stream: {report['records']['stream']:,} streamed tweets")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_round(root: Path, manifest: Manifest, net, tokenizer, config: dict, temperature: float, threshold: float, report: dict) -> str:
    """The new student beside the old one, then the manifest in one rename; returns the new student version."""
    rounds = list(manifest.extra.get("stream_rounds", []))
    folder = f"student-r{len(rounds) + 1}"
    staging = root / f".{folder}.tmp"
    hashes = save_student(staging, net, tokenizer)
    digest = hashes[STUDENT_WEIGHTS][:8]
    final = root / f"{folder}-{digest}"
    os.replace(staging / STUDENT_WEIGHTS.split("/")[0], final)
    staging.rmdir()
    weights, tok = f"{final.name}/model.safetensors", f"{final.name}/tokenizer.json"
    spec = StudentSpec(arch=manifest.student.arch, config=config, weights=weights, tokenizer=tok,
                       sha256={weights: hashes[STUDENT_WEIGHTS], tok: hashes[STUDENT_TOKENIZER]})
    summary = {k: report[k] for k in ("records", "before", "after", "held_out")} | {"test": report.get("test"), "student": spec.version}
    extra = {**manifest.extra, "stream_rounds": [*rounds, summary]}
    updated = replace(manifest, student=spec, temperature=float(temperature), threshold=float(threshold), extra=extra,
                      created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    (root / "manifest.prev.json").write_text((root / "manifest.json").read_text())
    tmp = root / ".manifest.json.tmp"
    tmp.write_text(json.dumps(updated.to_json(), indent=2) + "\n")
    parse_manifest(json.loads(tmp.read_text()))
    os.replace(tmp, root / "manifest.json")  # the switch: a watcher sees the old manifest or the new one
    load_bundle(root)
    return spec.version
