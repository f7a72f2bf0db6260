"""Against the real broker: a consumer that finds nothing fetches lightly, twice a second, and
goes back to gathering fetches (fetch_min_bytes, fetch_max_wait_s) once records come
(``stream_app.kafka_io.idle_fetch``)."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener

from stream_app.kafka_io.group_consumer import group_consumer
from stream_app.kafka_io.idle_fetch import IDLE_FETCH_WAIT_MS
from stream_app.settings import Settings
from tests.integration.pipeline_harness import create_topic


class _Listener(ConsumerRebalanceListener):
    async def on_partitions_revoked(self, revoked):
        pass

    async def on_partitions_assigned(self, assigned):
        pass


def test_an_idle_consumer_fetches_twice_a_second_and_gathers_again_once_records_come(kafka_bootstrap):
    topic = f"idle-fetch-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_bootstrap, topic)
    settings = Settings(bootstrap_servers=kafka_bootstrap)  # gathering fetches: 64 KiB, 50 ms

    async def scenario() -> tuple[int, tuple[int, int], tuple[int, int], float]:
        consumer = group_consumer(settings, f"g-{topic}", [topic], lambda c: _Listener())
        await consumer.start()
        try:
            deadline = time.monotonic() + 30
            while not consumer.assignment() and time.monotonic() < deadline:
                await consumer.getmany(timeout_ms=200)
            fetcher, fetches = consumer._fetcher, []
            adapted = fetcher._proc_fetch_request

            async def counted(*args):
                fetches.append(time.monotonic())
                return await adapted(*args)

            fetcher._proc_fetch_request = counted
            await asyncio.sleep(3.0)
            idle = (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms)
            in_two_seconds = sum(1 for t in fetches if t > fetches[-1] - 2.0)
            producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
            await producer.start()
            try:
                sent = time.monotonic()
                await producer.send_and_wait(topic, b"a record", key=b"k")
                records = await consumer.getmany(timeout_ms=5000)
                waited = time.monotonic() - sent
            finally:
                await producer.stop()
            assert sum(len(batch) for batch in records.values()) == 1
            return in_two_seconds, idle, (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms), waited
        finally:
            await consumer.stop()

    in_two_seconds, idle, after, waited = asyncio.run(scenario())
    assert idle == (1, IDLE_FETCH_WAIT_MS)
    assert in_two_seconds <= 6  # about 4 (two a second), against 40 at 50 ms
    assert after == (65536, 50)  # the fetch that brought the record: gathering again
    assert waited < IDLE_FETCH_WAIT_MS / 1000  # answered at the first record, not at the end of the wait
