"""Unlabelled in-domain texts for distillation (``tango train --transfer-data``).

The teacher labels them; the students learn from its soft labels alone (no gold). Accepted:

- a ``.jsonl`` file, one JSON object per line with a ``text`` field (any ``label`` is ignored,
  so a labelled split can serve with its labels removed);
- a ``.txt`` file, one text per line;
- a folder: every ``*.jsonl`` and ``*.txt`` file in it, in name order.

Blank lines are skipped; repeated texts, and texts already in the labelled training set,
are kept once (the labelled copy wins). Anything else is a ``DataError`` naming the file
and line.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "a.txt").write_text("good film\\n\\nbad film\\ngood film\\n")
>>> _ = (folder / "b.jsonl").write_text('{"text": "fine film", "label": 1}\\n')
>>> load_unlabelled(folder, exclude=["bad film"])
['good film', 'fine film']
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from models.training.data import DataError

SUFFIXES = (".jsonl", ".txt")


def transfer_files(path: str | Path) -> list[Path]:
    """The files ``path`` names: itself, or the ``.jsonl``/``.txt`` files of a folder."""
    root = Path(path).expanduser()
    if root.is_file():
        if root.suffix not in SUFFIXES:
            raise DataError(f"{root}: transfer data must be a .jsonl or .txt file, or a folder of them")
        return [root]
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise DataError(f"{root}: no .jsonl or .txt files in the transfer-data folder")
        return files
    raise DataError(f"{root}: no such transfer-data file or folder")


def _texts_of(path: Path) -> Iterable[str]:
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            if path.suffix == ".txt":
                yield line.rstrip("\n")
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON: {exc}") from exc
            text = record.get("text") if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise DataError(f"{path}:{number}: each line must be a JSON object with a string 'text'")
            if text.strip():
                yield text


def load_unlabelled(path: str | Path, exclude: Iterable[str] = (), limit: int = 0) -> list[str]:
    """The unlabelled texts under ``path`` in file order, each once, none of ``exclude``;
    at most ``limit`` of them when ``limit`` > 0."""
    seen = set(exclude)
    texts: list[str] = []
    for file in transfer_files(path):
        for text in _texts_of(file):
            if text not in seen:
                seen.add(text)
                texts.append(text)
                if limit and len(texts) >= limit:
                    return texts
    if not texts:
        raise DataError(f"{path}: the transfer data holds no new texts")
    return texts
