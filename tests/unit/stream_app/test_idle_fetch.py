"""A consumer that finds nothing fetches lightly (``kafka_io.idle_fetch``): one byte and half a
second after an empty fetch, the settings again after a fetch that brought records. No broker:
a stand-in fetcher; tests/integration/test_light_fetches_on_the_broker.py runs it against the real one."""

from __future__ import annotations

import asyncio

from stream_app.kafka_io.idle_fetch import IDLE_FETCH_WAIT_MS, adapt_fetches, fetch_lightly_when_idle


class Fetcher:
    """aiokafka's Fetcher as far as adapt_fetches uses it: a fetch says whether it added records."""

    def __init__(self, answers: list[bool]):
        self._fetch_min_bytes, self._fetch_max_wait_ms = 65536, 50
        self.answers, self.asked_with = answers, []

    async def _proc_fetch_request(self, assignment, node_id, request) -> bool:
        self.asked_with.append((self._fetch_min_bytes, self._fetch_max_wait_ms))
        return self.answers.pop(0)


def test_an_empty_fetch_makes_the_next_one_light_and_records_make_it_gather_again():
    fetcher = Fetcher([False, False, True, True, False])

    async def fetches():
        return [await fetcher._proc_fetch_request(None, 0, None) for _ in range(5)]

    adapt_fetches(fetcher)
    assert asyncio.run(fetches()) == [False, False, True, True, False]  # the answers pass through
    light, gathering = (1, IDLE_FETCH_WAIT_MS), (65536, 50)
    assert fetcher.asked_with == [gathering, light, light, gathering, gathering]
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == light


def test_a_wait_longer_than_the_idle_one_is_kept():
    fetcher = Fetcher([False])
    fetcher._fetch_max_wait_ms = 1500
    adapt_fetches(fetcher)
    asyncio.run(fetcher._proc_fetch_request(None, 0, None))
    assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (1, 1500)


def test_the_fetcher_is_adapted_once_the_consumer_has_started():
    class Client:
        _fetcher = None

        async def start(self):
            self._fetcher = Fetcher([False])

    client = Client()
    fetch_lightly_when_idle(client)
    asyncio.run(client.start())
    asyncio.run(client._fetcher._proc_fetch_request(None, 0, None))
    assert (client._fetcher._fetch_min_bytes, client._fetcher._fetch_max_wait_ms) == (1, IDLE_FETCH_WAIT_MS)
