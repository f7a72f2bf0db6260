"""Faust's consumer hands each fetched record to its stream without four tasks per record.

Faust's fetch loop (``Consumer._drain_messages``) delivers every record with
``await self.wait_first(callback(message), self.suspend_flow.wait())``. mode's ``wait_first``
wraps the callback, the suspend-flow wait and the service's stopped and crashed events in four
tasks, waits for the first to finish and cancels the other three: per record. The callback
(find the topic's handler, decode, create the event, put it on the stream's queue) almost never
suspends. So ``install_eager_delivery`` runs it at once, to its first suspension:

- it finished without suspending (the common case): there was nothing to race, and no task
  is made;
- it suspended (a held lock, a full producer buffer): the rest of it (``_Rest``) races the
  suspend-flow wait through mode's ``wait_first``, exactly as the whole callback did before.

Only that one call is changed: ``wait_first`` with two coroutines, the second the wait on the
consumer's own ``suspend_flow``, no timeout, and the consumer neither stopped nor crashed (then
mode's answer would be "stopped"). Every other call goes to mode's ``wait_first`` unchanged.
The internal is listed in ``kafka_io.internals.INTERNALS``. Measured: docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

from mode.services import WaitResults


class _Rest:
    """The rest of a coroutine that already ran to its first suspension, where it yielded ``yielded``.

    Awaiting it continues the coroutine as ``await`` would have from its second step on: what the
    coroutine yields goes to the awaiting task, and what the task sends or throws (a cancellation)
    goes back into the coroutine.
    """

    def __init__(self, coro: Coroutine, yielded: Any):
        self._coro, self._yielded = coro, yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self._coro, self._yielded
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - thrown in by the task (a cancellation): the coroutine's to handle
                step = coro.throw, exc
            else:
                step = coro.send, sent
            try:
                yielded = step[0](step[1])
            except StopIteration as stop:
                return stop.value


_EVENT_WAIT = asyncio.Event.wait.__code__


def _is_delivery(consumer: Any, coros: tuple, timeout: object) -> bool:
    # per record: the cheap checks first, the frame's locals (a dict built on access) last
    if timeout is not None or len(coros) != 2 or consumer._stopped.is_set() or consumer._crashed.is_set():
        return False
    delivery, flow_wait = coros
    if not (asyncio.iscoroutine(delivery) and asyncio.iscoroutine(flow_wait) and flow_wait.cr_code is _EVENT_WAIT):
        return False
    frame = flow_wait.cr_frame
    return frame is not None and frame.f_locals.get("self") is consumer.suspend_flow


def install_eager_delivery(consumer: Any) -> None:
    """Make Faust's ``consumer`` (a mode ``Service``) run each record's delivery callback eagerly."""
    wait_first = consumer.wait_first

    async def eager_wait_first(*coros: Any, timeout: Any = None) -> WaitResults:
        if not _is_delivery(consumer, coros, timeout):
            return await wait_first(*coros, timeout=timeout)
        delivery, flow_wait = coros
        try:
            yielded = delivery.send(None)
        except StopIteration as stop:
            flow_wait.close()  # never started: nothing to cancel
            return WaitResults([delivery], [stop.value], False)
        except BaseException:
            flow_wait.close()
            raise
        return await wait_first(_Rest(delivery, yielded), flow_wait)

    consumer.wait_first = eager_wait_first
