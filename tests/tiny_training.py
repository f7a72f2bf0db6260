"""A tiny bundle trained end to end by `tango train` (a generated dataset, a tiny random BERT), for the tests."""

from __future__ import annotations

from pathlib import Path

from models.testing import make_tiny_base_model, make_tiny_dataset
from models.training.data import load_dataset
from stream_app.tools.cli import main as tango


def train_tiny(root: Path, sizes: dict[str, int], *options: str) -> tuple[Path, Path, list[str]]:
    """``(dataset folder, bundle folder, the train command line)``; ``options`` are more `tango train` flags."""
    data = make_tiny_dataset(root / "tiny", sizes)
    base = make_tiny_base_model(root / "base", load_dataset(data).split("train").texts)
    out = root / "bundle"
    argv = ["train", "--data", str(data), "--out", str(out), "--base-model", str(base), "--teacher-epochs", "1",
            "--student-epochs", "2", "--no-progress", "--threads", "1", *options]
    assert tango(argv) == 0
    return data, out, argv
