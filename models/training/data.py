"""Labelled text data for training and evaluation: a local folder of JSONL splits or a hub id.

A local dataset folder holds ``labels.json`` (the label names, in index order) and one
``<split>.jsonl`` per split, each line ``{"text": "...", "label": <int>}``. Anything else
(``dair-ai/emotion``) is taken as a Hugging Face hub dataset id and read through the
``datasets`` library, which is imported only then (it is optional).

Every problem is a ``DataError`` naming the file and line: a missing split, a label index
out of range, an empty text, a line that is not JSON.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPLITS = ("train", "validation", "test")
# names some hub datasets use for the same splits
_HUB_ALIASES = {"validation": ("validation", "valid", "dev", "val"), "test": ("test",), "train": ("train",)}


class DataError(ValueError):
    """A dataset that cannot be used, with the reason in the message."""


@dataclass(frozen=True)
class Split:
    """One split: parallel lists of texts and integer labels."""

    name: str
    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)

    def fingerprint(self) -> str:
        """sha256 over the texts and labels, to key cached work on exactly this data."""
        digest = hashlib.sha256()
        for text, label in zip(self.texts, self.labels):
            digest.update(f"{label}\t{text}\0".encode())
        return digest.hexdigest()


@dataclass
class TextDataset:
    """A dataset's label names and a loader for its splits (read once, then kept)."""

    name: str
    source: str
    labels: tuple[str, ...]
    _loader: Any = None
    _cache: dict[str, Split] | None = None

    def split(self, name: str) -> Split:
        if self._cache is None:
            self._cache = {}
        if name not in self._cache:
            self._cache[name] = self._loader(name)
        return self._cache[name]

    def has_split(self, name: str) -> bool:
        try:
            self.split(name)
        except DataError:
            return False
        return True


def is_local(spec: str | Path) -> bool:
    path = Path(spec).expanduser()
    return path.exists() or str(spec).startswith((".", "/", "~"))


def dataset_name(spec: str | Path) -> str:
    """A short name for a dataset spec: the folder's name or the hub id's last part."""
    text = str(spec).rstrip("/")
    if is_local(text):
        return Path(text).expanduser().resolve().name
    return text.split("/")[-1]


def load_dataset(spec: str | Path) -> TextDataset:
    """Open a dataset folder or hub id; splits are read when first asked for."""
    if is_local(spec):
        return _load_folder(Path(spec).expanduser())
    return _load_hub(str(spec))


# --- local folders ---------------------------------------------------------------------


def _load_folder(root: Path) -> TextDataset:
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist")
    labels_path = root / "labels.json"
    if not labels_path.is_file():
        raise DataError(f"{root}: no labels.json (a JSON list of the label names in index order)")
    try:
        labels = json.loads(labels_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{labels_path}: not valid JSON: {exc}") from exc
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) and x for x in labels)):
        raise DataError(f"{labels_path}: must be a non-empty JSON list of non-empty strings")
    if len(set(labels)) != len(labels):
        raise DataError(f"{labels_path}: label names must be unique")
    labels = tuple(labels)

    def loader(name: str) -> Split:
        return read_jsonl_split(root / f"{name}.jsonl", name, len(labels))

    return TextDataset(name=root.resolve().name, source=str(root.resolve()), labels=labels, _loader=loader)


def read_jsonl_split(path: Path, name: str, num_labels: int) -> Split:
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.jsonl"))
        raise DataError(f"{path.parent}: no {name!r} split ({path.name} missing; present: {available or 'none'})")
    texts: list[str] = []
    labels: list[int] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON: {exc}") from exc
            if not isinstance(record, dict):
                raise DataError(f"{where}: each line must be a JSON object with 'text' and 'label'")
            texts.append(_check_text(record.get("text"), where))
            labels.append(_check_label(record.get("label"), num_labels, where))
    if not texts:
        raise DataError(f"{path}: the {name!r} split is empty")
    return Split(name=name, texts=texts, labels=labels)


def _check_text(text: Any, where: str) -> str:
    if not isinstance(text, str):
        raise DataError(f"{where}: 'text' must be a string, got {type(text).__name__}")
    if not text.strip():
        raise DataError(f"{where}: empty text")
    return text


def _check_label(label: Any, num_labels: int, where: str) -> int:
    if isinstance(label, bool) or not isinstance(label, int):
        raise DataError(f"{where}: 'label' must be an integer index, got {label!r}")
    if not 0 <= label < num_labels:
        raise DataError(f"{where}: unknown label {label}: labels.json has {num_labels} labels (0..{num_labels - 1})")
    return label


CALIBRATION = "calibration"  # the held-out split's name, when there is one


def with_calibration_holdout(dataset: TextDataset, size: int, seed: int) -> TextDataset:
    """``dataset`` with ``size`` train records (a seeded sample) moved to a ``calibration`` split."""
    train = dataset.split("train")
    if not 0 < size < len(train):
        raise ValueError(f"--calibration-holdout {size} must be between 1 and the train split's {len(train) - 1}")
    held = sorted(random.Random(seed + 2).sample(range(len(train)), size))
    keep = sorted(set(range(len(train))) - set(held))
    out = TextDataset(name=dataset.name, source=dataset.source, labels=dataset.labels, _loader=dataset.split)
    out._cache = {
        "train": Split("train", [train.texts[i] for i in keep], [train.labels[i] for i in keep]),
        CALIBRATION: Split(CALIBRATION, [train.texts[i] for i in held], [train.labels[i] for i in held]),
    }
    return out


# --- hub datasets ----------------------------------------------------------------------


def _load_hub(dataset_id: str) -> TextDataset:
    try:
        import datasets  # noqa: PLC0415 - optional, only for hub ids
    except ImportError:
        raise DataError(
            f"{dataset_id!r} is not a local folder, so it is read as a Hugging Face hub dataset id, "
            "which needs the optional 'datasets' package: pip install datasets "
            "(or pass a folder with train/validation/test.jsonl and labels.json)"
        ) from None
    try:
        loaded = datasets.load_dataset(dataset_id)
    except Exception as exc:  # network, unknown id, ...: one clear error
        raise DataError(f"cannot load hub dataset {dataset_id!r}: {exc}") from exc
    any_split = next(iter(loaded.values()))
    feature = any_split.features.get("label")
    names = getattr(feature, "names", None)
    if not names:
        raise DataError(f"hub dataset {dataset_id!r}: its 'label' column is not a ClassLabel with names")
    if "text" not in any_split.column_names:
        raise DataError(f"hub dataset {dataset_id!r}: no 'text' column (columns: {any_split.column_names})")
    labels = tuple(names)

    def loader(name: str) -> Split:
        for alias in _HUB_ALIASES.get(name, (name,)):
            if alias in loaded:
                part = loaded[alias]
                texts, gold = [], []
                for number, (text, label) in enumerate(zip(part["text"], part["label"]), 1):
                    where = f"{dataset_id}[{alias}] row {number}"
                    texts.append(_check_text(text, where))
                    gold.append(_check_label(label, len(labels), where))
                return Split(name=name, texts=texts, labels=gold)
        raise DataError(f"hub dataset {dataset_id!r}: no {name!r} split (present: {sorted(loaded)})")

    return TextDataset(name=dataset_id.split("/")[-1], source=dataset_id, labels=labels, _loader=loader)
