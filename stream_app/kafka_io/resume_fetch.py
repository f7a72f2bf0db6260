"""A partition Faust paused for a full stream buffer is read again as soon as it is resumed.

Faust's conductor stops fetching a partition whose records fill the agent's channel past
its high mark (``Consumer.on_buffer_full``), and takes it back once the channel drains to
its low mark (``Consumer.on_buffer_drop``). But its fetch loop asks the consumer's thread
for records of the partitions active *when it asked*, and waits for up to a second
(``getmany(timeout=1.0)``) for one of them to bring something. The paused partitions' next
records are already in aiokafka's buffer, and nothing new arrives for the others, so the
resumed partitions wait out that second while the agent's channel runs dry. On a
100,000-record burst that was 0.4-0.7 s without a record every 4 s: a quarter of the time.

The set Faust passes is its own set of active partitions, which ``on_buffer_drop`` has just
grown. So after a resume, ``wake_fetch_on_resume`` wakes the fetch waiting in the consumer's
thread: it looks at the partitions again, finds the resumed ones' records, and returns them.
The internals used are listed in ``kafka_io.internals.INTERNALS``.
"""

from __future__ import annotations

from typing import Any


def _wake_waiting_fetches(fetcher: Any) -> None:
    for waiter in list(fetcher._fetch_waiters):  # the fetcher's own notify: done futures are left alone
        fetcher._notify(waiter)


def wake_fetch_on_resume(consumer: Any) -> None:
    """Make Faust's ``consumer`` wake its thread's waiting fetch whenever it resumes a partition."""
    resume = consumer.on_buffer_drop

    def resume_and_wake(tp: Any) -> None:
        was_paused = tp in consumer._buffered_partitions
        resume(tp)
        if not was_paused:
            return
        thread = consumer._thread
        client, loop = getattr(thread, "_consumer", None), getattr(thread, "thread_loop", None)
        if client is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(_wake_waiting_fetches, client._fetcher)

    consumer.on_buffer_drop = resume_and_wake
