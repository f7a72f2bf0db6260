"""Resumable stages: each writes a marker keyed by a hash of its inputs and is skipped
when the marker is present, the key matches and its outputs still exist."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


def stable_hash(value: Any) -> str:
    """sha256 of a JSON-able value, independent of dict order."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def texts_hash(texts: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def run_stage(
    marker_dir: Path,
    name: str,
    key: str,
    fn: Callable[[], dict],
    outputs: Iterable[Path] = (),
    log: Callable[[str], None] = print,
) -> dict:
    """Run ``fn`` unless ``marker_dir/name.json`` records the same ``key`` and the outputs exist.

    Returns the stage's result dict, with ``seconds`` (its wall time when it ran) and
    ``reused`` (whether this call skipped it).
    """
    marker = marker_dir / f"{name}.json"
    outputs = list(outputs)
    if marker.is_file():
        try:
            recorded = json.loads(marker.read_text())
        except json.JSONDecodeError:
            recorded = {}
        if recorded.get("key") == key and all(p.exists() for p in outputs):
            log(f"[{name}] reusing finished stage (ran in {recorded.get('seconds', '?')}s)")
            return {**recorded.get("result", {}), "seconds": recorded.get("seconds"), "reused": True}
    log(f"[{name}] running")
    started = time.perf_counter()
    result = fn()
    seconds = round(time.perf_counter() - started, 1)
    marker_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"key": key, "seconds": seconds, "result": result}, indent=2, default=str) + "\n")
    log(f"[{name}] done in {seconds}s")
    return {**result, "seconds": seconds, "reused": False}
