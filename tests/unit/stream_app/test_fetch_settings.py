"""fetch_max_wait_s and fetch_min_bytes reach every consumer the workers start: the one Faust
creates in its consumer thread (both delivery modes) and the group consumers of the merge and the
teacher workers; the merge's takes merge_fetch_min_bytes and merge_fetch_max_wait_s. No broker: the consumers are built, not
started."""

from __future__ import annotations

import asyncio

import pytest

from stream_app import merge_worker
from stream_app.endpoint import Health
from stream_app.kafka_io.clients import fetch_config
from stream_app.kafka_io.group_consumer import group_consumer
from stream_app.metrics import Metrics
from stream_app.settings import Settings
from stream_app.stream_worker import create_app


def settings(tmp_path, **overrides) -> Settings:
    return Settings(bootstrap_servers="127.0.0.1:1", data_dir=str(tmp_path / "faust"), **overrides)


def test_fetch_config_is_empty_without_a_wait():
    # a min bytes above 1 with no wait would have the broker answer every fetch at once, empty
    assert fetch_config(Settings(fetch_max_wait_s=0, fetch_min_bytes=10_000)) == {}
    assert fetch_config(Settings(fetch_max_wait_s=0.05, fetch_min_bytes=10_000)) == {"fetch_min_bytes": 10_000, "fetch_max_wait_ms": 50}
    assert fetch_config(Settings(fetch_max_wait_s=0.05, fetch_min_bytes=10_000), 1) == {"fetch_min_bytes": 1, "fetch_max_wait_ms": 50}


def _faust_client(app):
    async def build():  # Faust's thread creates its aiokafka consumer inside a running loop
        return app.consumer._thread._create_consumer(loop=asyncio.get_running_loop())

    return asyncio.run(build())


@pytest.mark.parametrize("mode", ["at_least_once", "exactly_once"])
def test_the_faust_consumer_fetches_with_the_settings(tmp_path, mode):
    client = _faust_client(create_app(settings(tmp_path, processing_guarantee=mode, fetch_max_wait_s=0.08,
                                               fetch_min_bytes=4096), None))
    assert (client._fetch_min_bytes, client._fetch_max_wait_ms) == (4096, 80)


def test_without_a_wait_the_faust_consumer_keeps_fausts_defaults(tmp_path):
    client = _faust_client(create_app(settings(tmp_path, fetch_max_wait_s=0), None))
    assert (client._fetch_min_bytes, client._fetch_max_wait_ms) == (1, 1500)


def test_group_consumers_fetch_with_the_settings(tmp_path):
    async def build():
        s = settings(tmp_path, fetch_max_wait_s=0.02, fetch_min_bytes=1000)
        return group_consumer(s, "g", ["results.student"], lambda c: None)

    consumer = asyncio.run(build())
    assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (1000, 20)


class Built(Exception):
    """Raised in place of starting the merge's consumer, once it is built."""


def test_the_merge_consumer_answers_at_its_own_min_bytes(tmp_path, monkeypatch):
    built = []

    def build(*args, **kwargs):
        built.append(group_consumer(*args, **kwargs))
        raise Built

    monkeypatch.setattr(merge_worker, "group_consumer", build)

    async def scenario(s):
        async def nothing(*args):
            return []

        with pytest.raises(Built):
            await merge_worker.MergeWorker(s, Metrics(s), Health(30.0), nothing, nothing).run()

    asyncio.run(scenario(settings(tmp_path, fetch_max_wait_s=0.02, fetch_min_bytes=1000)))
    asyncio.run(scenario(settings(tmp_path, fetch_max_wait_s=0.02, fetch_min_bytes=1000, merge_fetch_min_bytes=300,
                                  merge_fetch_max_wait_s=0)))
    asyncio.run(scenario(settings(tmp_path, fetch_max_wait_s=0.02, merge_fetch_max_wait_s=0.25)))
    # the merge's fetches answer at the first byte and wait half a second when there is none
    assert [(c._fetch_min_bytes, c._fetch_max_wait_ms) for c in built] == [(1, 500), (300, 20), (1, 250)]
