"""Hot model reload: a worker picks up a new bundle in its folder without a restart.

The folder is checked every ``reload_check_s`` (and at once on SIGHUP): when any file in
it changed, the bundle is loaded and validated off the event loop (manifest, file hashes,
the same labels, one test prediction); a bundle that fails is refused with a log line and
the old one goes on serving. The switch itself is one assignment on the event loop, between
batches: a batch in flight finishes on the model it started with (the agents and the teacher
take their stage once per batch), and every result names the versions that decided it.
Nothing is consumed, produced or committed by the switch, so it cannot lose or repeat a
record in either delivery mode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import structlog

from models.bundle import Bundle, BundleError, load_bundle
from stream_app.startup_heap import refreeze_heap

log = structlog.get_logger("tango.reload")

Built = TypeVar("Built")
PROBE_TEXTS = ("a probe of the new bundle", "")


def bundle_signature(root: Path) -> tuple:
    """Every file of the bundle folder with its size and modification time."""
    try:
        return tuple(sorted((str(p.relative_to(root)), s.st_size, s.st_mtime_ns)
                            for p in root.rglob("*") if p.is_file() for s in (p.stat(),)))
    except FileNotFoundError:  # a file vanished while we looked: look again next time
        return ()


def check_predictions(logits: Callable, num_labels: int) -> None:
    """A model's answer to the probe texts must be finite, one row per text and column per label."""
    out = np.asarray(logits(list(PROBE_TEXTS)))
    if out.shape != (len(PROBE_TEXTS), num_labels) or not np.isfinite(out).all():
        raise BundleError(f"the model's probe prediction has shape {out.shape} (want {(len(PROBE_TEXTS), num_labels)}) or is not finite")


class BundleWatch(Generic[Built]):
    """Watches one bundle folder for one worker.

    ``identity(bundle)`` says what the worker serves (a new identity means a reload),
    ``build(bundle)`` (in a thread) loads and checks the new model, ``apply(built, bundle)``
    (on the loop) switches to it; the heap is then frozen again (``startup_heap.refreeze_heap``).
    """

    def __init__(self, root: str | Path, current: Bundle, identity: Callable[[Bundle], Hashable],
                 build: Callable[[Bundle], Built], apply: Callable[[Built, Bundle], None], on_outcome: Callable[[str], None]):
        self.root = Path(root)
        self.current = current
        self.identity = identity
        self.build = build
        self.apply = apply
        self.on_outcome = on_outcome
        self.wake = asyncio.Event()
        self._signature = bundle_signature(self.root)

    async def check(self, force: bool = False) -> str:
        """Look once; returns "unchanged", "same", "reloaded" or "refused"."""
        signature = await asyncio.to_thread(bundle_signature, self.root)  # a stat per file: not on the loop
        if signature == self._signature and not force:
            return "unchanged"
        self._signature = signature
        try:
            bundle = await asyncio.to_thread(load_bundle, self.root)
            if bundle.manifest.labels != self.current.manifest.labels:
                raise BundleError(f"its labels {list(bundle.manifest.labels)} differ from the served "
                                  f"{list(self.current.manifest.labels)}; a label change needs a restart of every worker")
            if self.identity(bundle) == self.identity(self.current):
                return "same"
            built = await asyncio.to_thread(self.build, bundle)
        except Exception as exc:  # noqa: BLE001 - any failure refuses the bundle; the old one serves on
            log.error("new bundle refused; still serving the previous one", bundle=str(self.root), reason=str(exc),
                      serving=str(self.identity(self.current)))
            self.on_outcome("refused")
            return "refused"
        before = self.identity(self.current)
        self.apply(built, bundle)
        refreeze_heap()  # the new model joins the frozen startup heap; the old one's cycles are collected
        self.current = bundle
        log.info("bundle reloaded", bundle=str(self.root), before=str(before), now=str(self.identity(bundle)))
        self.on_outcome("ok")
        return "reloaded"

    async def run(self, every_s: float) -> None:
        """Check every ``every_s`` seconds (0: only when woken, by SIGHUP)."""
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), every_s if every_s > 0 else None)
                forced = True
            except asyncio.TimeoutError:
                forced = False
            self.wake.clear()
            await self.check(force=forced)
