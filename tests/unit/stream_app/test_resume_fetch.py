"""``kafka_io.resume_fetch``: a resumed partition wakes the fetch waiting in the consumer's thread."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

from stream_app.kafka_io.resume_fetch import wake_fetch_on_resume


class FakeFetcher:
    """aiokafka's ``Fetcher`` as far as the wake-up reads it: the waiting futures and ``_notify``."""

    def __init__(self):
        self._fetch_waiters: set[asyncio.Future] = set()

    def _notify(self, future):
        if future is not None and not future.done():
            future.set_result(None)


def consumer_with_thread():
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    fetcher = FakeFetcher()
    resumed: list[str] = []
    consumer = SimpleNamespace(_buffered_partitions={"tweets-0"},
                               _thread=SimpleNamespace(_consumer=SimpleNamespace(_fetcher=fetcher), thread_loop=loop))

    def on_buffer_drop(tp):  # Faust's: the partition is active again
        resumed.append(tp)
        consumer._buffered_partitions.discard(tp)

    consumer.on_buffer_drop = on_buffer_drop
    return consumer, fetcher, loop, resumed


def waiting_fetch(fetcher, loop) -> asyncio.Future:
    async def create():
        waiter = loop.create_future()
        fetcher._fetch_waiters.add(waiter)
        return waiter
    return asyncio.run_coroutine_threadsafe(create(), loop).result(1)


def settled(loop):
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(1)


def test_resuming_a_paused_partition_wakes_the_waiting_fetch():
    consumer, fetcher, loop, resumed = consumer_with_thread()
    wake_fetch_on_resume(consumer)
    waiter = waiting_fetch(fetcher, loop)
    consumer.on_buffer_drop("tweets-0")
    settled(loop)
    assert resumed == ["tweets-0"] and waiter.done()
    loop.call_soon_threadsafe(loop.stop)


def test_a_partition_that_was_not_paused_wakes_nothing():
    consumer, fetcher, loop, resumed = consumer_with_thread()
    wake_fetch_on_resume(consumer)
    waiter = waiting_fetch(fetcher, loop)
    consumer.on_buffer_drop("tweets-1")  # Faust calls it for every partition it may resume
    settled(loop)
    assert resumed == ["tweets-1"] and not waiter.done()
    loop.call_soon_threadsafe(loop.stop)


def test_before_the_consumer_thread_has_a_client_resuming_still_works():
    consumer, _, loop, resumed = consumer_with_thread()
    consumer._thread._consumer = None
    wake_fetch_on_resume(consumer)
    consumer.on_buffer_drop("tweets-0")
    assert resumed == ["tweets-0"]
    loop.call_soon_threadsafe(loop.stop)
