"""Each process's HTTP endpoint: ``/metrics``, ``/livez`` and ``/readyz`` (``metrics_port``).

It is served by aiohttp on the worker's own event loop, so a loop that is blocked does not
answer at all and the liveness probe fails by its timeout; ``Health`` adds the two stalls
a loop that still answers can have.

- ``/readyz``: 200 once the process received its first partition assignment (even an
  empty one: more workers than partitions is not a fault), 503 before it and once it
  is shutting down.
- ``/livez``: 503 once a batch has been in flight longer than ``stall_timeout_s`` (a
  model call or a send that hangs), or the loop's ticker has not run for that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterator

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_app.metrics import Metrics

log = structlog.get_logger("tango.endpoint")


class Health:
    """Readiness and liveness of one worker; the worker tells it what happens."""

    def __init__(self, stall_timeout_s: float, clock: Callable[[], float] = time.monotonic):
        self.stall_timeout_s = stall_timeout_s
        self.clock = clock
        self._ready = False
        self._stopping = False
        self._in_flight: dict[int, float] = {}
        self._tokens = itertools.count()
        self._tick = clock()

    def assigned(self) -> None:
        """The first (or a later) partition assignment arrived."""
        self._ready = True

    def stopping(self) -> None:
        self._stopping = True

    def tick(self) -> None:
        self._tick = self.clock()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Wrap one batch's work: liveness fails if it outlasts the stall timeout."""
        token = next(self._tokens)
        self._in_flight[token] = self.clock()
        try:
            yield
        finally:
            del self._in_flight[token]

    def ready(self) -> tuple[bool, str]:
        if self._stopping:
            return False, "shutting down"
        return (True, "assigned") if self._ready else (False, "no partition assignment yet")

    def live(self) -> tuple[bool, str]:
        """(alive, why).

        >>> now = [0.0]
        >>> health = Health(10.0, clock=lambda: now[0])
        >>> with health.batch():
        ...     now[0] = 11.0
        ...     health.tick()
        ...     health.live()
        (False, 'a batch has been in flight for 11.0 s (stall_timeout_s 10.0)')
        >>> health.live()
        (True, 'ok')
        """
        now = self.clock()
        if self._in_flight:
            age = now - min(self._in_flight.values())
            if age > self.stall_timeout_s:
                return False, f"a batch has been in flight for {age:.1f} s (stall_timeout_s {self.stall_timeout_s})"
        if now - self._tick > self.stall_timeout_s:
            return False, f"the event loop has not ticked for {now - self._tick:.1f} s"
        return True, "ok"


async def tick_forever(health: Health, every_s: float = 1.0) -> None:
    while True:
        health.tick()
        await asyncio.sleep(every_s)


async def start_endpoint(port: int, metrics: Metrics, health: Health, host: str = "0.0.0.0"):
    """Serve the endpoint; returns the aiohttp runner (``await runner.cleanup()`` stops it)."""
    from aiohttp import web  # noqa: PLC0415 - only where an endpoint is served

    async def scrape(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def probe(check: Callable[[], tuple[bool, str]]):
        async def handler(request: web.Request) -> web.Response:
            ok, why = check()
            return web.Response(text=why + "\n", status=200 if ok else 503)
        return handler

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    app.router.add_get("/livez", probe(health.live))
    app.router.add_get("/readyz", probe(health.ready))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("metrics and health endpoint", port=port, paths=["/metrics", "/livez", "/readyz"])
    return runner
