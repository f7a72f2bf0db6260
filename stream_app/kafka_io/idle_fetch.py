"""A consumer that finds nothing fetches twice a second, and answers at the first record.

Every consumer of the workers fetches with ``fetch_min_bytes`` and ``fetch_max_wait_s`` (64 KiB,
50 ms): below capacity the broker gathers records for up to 50 ms, so fetches are fewer and
larger. With no records at all, the same settings make 20 empty fetches a second, each a round
trip through aiokafka's protocol code in Python; an idle stream worker spent most of its CPU on
them (docs/benchmarks.md).

``fetch_lightly_when_idle`` switches a consumer's fetcher after a fetch that brought nothing: its
next fetches ask for one byte and wait up to ``IDLE_FETCH_WAIT_MS`` (Kafka's own default), so the
broker answers at the first record (sooner than the gathering fetch would) and an idle consumer
fetches twice a second. The first fetch that brings records switches back to the settings. The
fetcher reads both values each time it builds a request; the internals used are listed in
``kafka_io.internals.INTERNALS``.
"""

from __future__ import annotations

from typing import Any

IDLE_FETCH_WAIT_MS = 500


def fetch_lightly_when_idle(client: Any) -> None:
    """Make the aiokafka consumer ``client`` (not yet started) fetch lightly while it finds nothing."""
    start = client.start

    async def start_then_adapt() -> None:
        await start()  # the fetcher exists once the consumer has started
        adapt_fetches(client._fetcher)

    client.start = start_then_adapt


def adapt_fetches(fetcher: Any) -> None:
    """After each fetch, the next one's min bytes and wait: the configured ones if it brought records,
    else one byte and at least ``IDLE_FETCH_WAIT_MS``."""
    busy = fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms
    idle = 1, max(busy[1], IDLE_FETCH_WAIT_MS)
    fetch = fetcher._proc_fetch_request

    async def fetch_and_adapt(assignment: Any, node_id: int, request: Any) -> bool:
        brought = await fetch(assignment, node_id, request)  # True: records were added to the fetcher's buffer
        fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms = busy if brought else idle
        return brought

    fetcher._proc_fetch_request = fetch_and_adapt
