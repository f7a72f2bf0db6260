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
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.data import TextDataset, dataset_name, load_dataset
from models.stages import run_stage, stable_hash
from models.teacher_train import TeacherConfig, train_teacher

STAGE_VERSION = 1
DEFAULT_BUNDLES = Path("~/.cache/tango-stream/bundles")


def default_out(data: str) -> Path:
    return (DEFAULT_BUNDLES / dataset_name(data)).expanduser()


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
    out: str = ""
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
    extra: dict[str, Any] = field(default_factory=dict)  # student / distillation / augmentation overrides

    def out_path(self) -> Path:
        return Path(self.out).expanduser() if self.out else default_out(self.data)


def _subsample(texts: list[str], labels: list[int], limit: int, seed: int) -> tuple[list[str], list[int]]:
    if not limit or limit >= len(texts):
        return texts, labels
    order = sorted(random.Random(seed).sample(range(len(texts)), limit))
    return [texts[i] for i in order], [labels[i] for i in order]


def teacher_stage(cfg: TrainConfig, dataset: TextDataset, log: Callable[[str], None] = print) -> dict:
    out = cfg.out_path()
    tcfg = replace(cfg.teacher, seed=cfg.seed).resolved()
    train = dataset.split("train")
    val = dataset.split("validation")
    texts, labels = _subsample(train.texts, train.labels, cfg.train_limit, cfg.seed)
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


def train_bundle(cfg: TrainConfig) -> Path:
    """Run every stage (reusing finished ones) and return the bundle folder."""
    from models.pipeline_stages import run_all  # noqa: PLC0415  (the later stages)

    return run_all(cfg)
