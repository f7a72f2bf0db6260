"""The model bundle: one folder that the pipeline loads.

Layout::

    BUNDLE/
      manifest.json            labels, threshold, temperature, versions and file hashes
      student/model.safetensors
      student/tokenizer.json
      teacher/                 a ``save_pretrained`` folder (config, tokenizer, model.safetensors)

``manifest.json``::

    {"format": "tango-bundle/1", "labels": [...], "threshold": 0.9, "temperature": 1.2,
     "max_length": 64,
     "student": {"arch": "mlp", "config": {...}, "weights": "student/model.safetensors",
                 "tokenizer": "student/tokenizer.json", "sha256": {FILE: HEX}},
     "teacher": {"path": "teacher", "sha256": {FILE: HEX}},
     "created_at": "...", "extra": {...}}

Versions (``student.version``, ``teacher.version``) are derived from the weight hashes,
so a result names exactly the weights that decided it.

Reading and checking a bundle needs no torch; the student's weights are loaded (and saved) by
``models.student_weights``, so a stream worker whose student runs in a child process never
imports torch.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.student import StudentClassifier

FORMAT = "tango-bundle/1"
MANIFEST = "manifest.json"
STUDENT_WEIGHTS = "student/model.safetensors"
STUDENT_TOKENIZER = "student/tokenizer.json"
TEACHER_DIR = "teacher"
STUDENT_ARCHITECTURES = ("bilstm", "cnn", "mlp")
"""The ``student.arch`` names a manifest may give: ``models.student_nets.ARCHITECTURES``'s keys, named
here so that reading a manifest needs no torch (a stream worker whose student runs in a process of
its own never imports it)."""


class BundleError(ValueError):
    """A bundle folder that cannot be used, with the reason in the message."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class StudentSpec:
    arch: str
    config: dict[str, Any]
    weights: str = STUDENT_WEIGHTS
    tokenizer: str = STUDENT_TOKENIZER
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return f"{self.arch}-{self.sha256.get(self.weights, 'unhashed')[:12]}"


@dataclass(frozen=True)
class TeacherSpec:
    path: str = TEACHER_DIR
    sha256: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        weights = self.sha256.get(f"{self.path}/model.safetensors", "unhashed")
        return f"teacher-{weights[:12]}"


@dataclass(frozen=True)
class Manifest:
    labels: tuple[str, ...]
    threshold: float
    temperature: float
    student: StudentSpec
    teacher: TeacherSpec
    max_length: int = 64
    created_at: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "labels": list(self.labels),
            "threshold": self.threshold,
            "temperature": self.temperature,
            "max_length": self.max_length,
            "student": {
                "arch": self.student.arch,
                "config": self.student.config,
                "weights": self.student.weights,
                "tokenizer": self.student.tokenizer,
                "sha256": self.student.sha256,
                "version": self.student.version,
            },
            "teacher": {"path": self.teacher.path, "sha256": self.teacher.sha256, "version": self.teacher.version},
            "created_at": self.created_at,
            "extra": self.extra,
        }


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise BundleError(message)


def parse_manifest(data: Any, where: str = MANIFEST) -> Manifest:
    """Validate a manifest's JSON; every problem is a ``BundleError`` naming the field."""
    _require(isinstance(data, dict), f"{where}: must be a JSON object")
    _require(data.get("format") == FORMAT, f"{where}: format must be {FORMAT!r}, got {data.get('format')!r}")
    labels = data.get("labels")
    _require(
        isinstance(labels, list) and labels and all(isinstance(x, str) and x for x in labels),
        f"{where}: labels must be a non-empty list of non-empty strings",
    )
    _require(len(set(labels)) == len(labels), f"{where}: labels must be unique")
    threshold, temperature = data.get("threshold"), data.get("temperature")
    _require(isinstance(threshold, (int, float)) and 0.0 <= threshold <= 1.0, f"{where}: threshold must be a number in [0, 1]")
    _require(isinstance(temperature, (int, float)) and temperature > 0, f"{where}: temperature must be a positive number")
    max_length = data.get("max_length", 64)
    _require(isinstance(max_length, int) and max_length > 0, f"{where}: max_length must be a positive integer")
    student, teacher = data.get("student"), data.get("teacher")
    _require(isinstance(student, dict), f"{where}: student must be an object")
    _require(student.get("arch") in STUDENT_ARCHITECTURES, f"{where}: student.arch must be one of {list(STUDENT_ARCHITECTURES)}")
    _require(isinstance(student.get("config"), dict), f"{where}: student.config must be an object")
    _require(
        student["config"].get("num_labels") == len(labels),
        f"{where}: student.config.num_labels must equal the number of labels ({len(labels)})",
    )
    _require(isinstance(teacher, dict) and isinstance(teacher.get("path"), str), f"{where}: teacher.path must be a string")
    return Manifest(
        labels=tuple(labels),
        threshold=float(threshold),
        temperature=float(temperature),
        max_length=max_length,
        student=StudentSpec(
            arch=student["arch"],
            config=dict(student["config"]),
            weights=student.get("weights", STUDENT_WEIGHTS),
            tokenizer=student.get("tokenizer", STUDENT_TOKENIZER),
            sha256=dict(student.get("sha256", {})),
        ),
        teacher=TeacherSpec(path=teacher["path"], sha256=dict(teacher.get("sha256", {}))),
        created_at=str(data.get("created_at", "")),
        extra=dict(data.get("extra", {})),
    )


@dataclass(frozen=True)
class Bundle:
    root: Path
    manifest: Manifest

    @property
    def teacher_path(self) -> Path:
        return self.root / self.manifest.teacher.path

    def load_student(self, precision: str = "fp32") -> StudentClassifier:
        """The served student, its weights in ``precision`` (fp32 or bf16; see ``choose_student_precision``)."""
        from models.student_weights import load_student  # noqa: PLC0415 - torch, only where a student is served

        spec = self.manifest.student
        return load_student(self.root / spec.weights, self.root / spec.tokenizer, spec.arch, spec.config, self.manifest.max_length,
                            precision)


def _check_hashes(root: Path, hashes: dict[str, str]) -> None:
    for name, expected in hashes.items():
        path = root / name
        _require(path.is_file(), f"{root}: missing file {name}")
        actual = sha256_file(path)
        _require(actual == expected, f"{path}: sha256 {actual[:12]}… does not match the manifest's {expected[:12]}…")


def load_bundle(root: str | Path, verify_hashes: bool = True) -> Bundle:
    """Read and validate a bundle folder; raises ``BundleError`` with a clear reason."""
    root = Path(root)
    _require(root.is_dir(), f"bundle folder {root} does not exist")
    manifest_path = root / MANIFEST
    _require(manifest_path.is_file(), f"{root}: no {MANIFEST}")
    try:
        data = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON: {exc}") from exc
    manifest = parse_manifest(data, str(manifest_path))
    for name in (manifest.student.weights, manifest.student.tokenizer):
        _require((root / name).is_file(), f"{root}: missing file {name}")
    teacher = root / manifest.teacher.path
    _require((teacher / "config.json").is_file(), f"{root}: teacher folder {manifest.teacher.path} has no config.json")
    teacher_config = json.loads((teacher / "config.json").read_text())
    teacher_labels = teacher_config.get("id2label") or {}
    _require(
        len(teacher_labels) == len(manifest.labels),
        f"{teacher}: teacher has {len(teacher_labels)} labels, manifest has {len(manifest.labels)}",
    )
    if verify_hashes:
        _check_hashes(root, manifest.student.sha256)
        _check_hashes(root, manifest.teacher.sha256)
    return Bundle(root=root, manifest=manifest)


def hash_teacher(root: str | Path, teacher_dir: str = TEACHER_DIR) -> dict[str, str]:
    """sha256 of every file of the teacher folder, keyed by bundle-relative path."""
    root = Path(root)
    return {
        str(p.relative_to(root)): sha256_file(p) for p in sorted((root / teacher_dir).rglob("*")) if p.is_file()
    }


def write_manifest(root: str | Path, manifest: Manifest) -> Path:
    root = Path(root)
    stamped = manifest if manifest.created_at else _with_created_at(manifest)
    path = root / MANIFEST
    path.write_text(json.dumps(stamped.to_json(), indent=2) + "\n")
    return path


def _with_created_at(manifest: Manifest) -> Manifest:
    from dataclasses import replace

    return replace(manifest, created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
