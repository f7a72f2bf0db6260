"""The at-least-once rebalance gate of the stream worker's batch loops (student agent and merge)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Protocol

import structlog

log = structlog.get_logger("tango.stream")


class Queued(Protocol):
    def drop_queued(self) -> int:
        """Drop the events waiting for a batch; returns how many."""


class RebalanceGate:
    """At least once: no batch of a revoked assignment is produced once the rebalance is over.

    The invariant (what keeps two stream workers from emitting one id twice): on revocation the
    gate closes, queued events are dropped (not acked: their partition's next owner reads them
    again) and the revocation waits for the batch in flight to be produced; batches wait while
    the gate is closed, and on assignment only events fetched in the new generation go on.
    So a revoked partition's outputs are all in the log before its next owner reads back the
    merge window, and none follow. (Exactly once keeps this through the transactions instead.)
    """

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._busy = 0

    async def revoked(self, queues: Sequence[Queued], timeout_s: float) -> None:
        """Close the gate, drop what ``queues`` hold and wait for the batch in flight."""
        self._open.clear()
        dropped = sum(queue.drop_queued() for queue in queues)
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except asyncio.TimeoutError:
            log.warning("a batch is still in flight at revocation", timeout_s=timeout_s)
        if dropped:
            log.info("queued events of the revoked assignment dropped; their next owner reads them", events=dropped)

    def assigned(self) -> None:
        self._open.set()

    def is_open(self) -> bool:
        """No rebalance in progress: ``batch`` would enter without waiting."""
        return self._open.is_set()

    @contextlib.asynccontextmanager
    async def batch(self):
        await self._open.wait()
        self._busy += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle.set()
