"""No send fails silently: every produce future is awaited and checked before a commit.

A record the broker refuses for good (too large for its topic, a topic this client may not
write to, a deleted topic) is not dropped and does not block the partition: the input it was
made for is dead-lettered instead (reason ``output_rejected``). If that dead letter is
refused too, or the refused record was itself a dead letter, ``Unproducible`` is raised and
the worker must stop without committing: its input is redelivered once the cause is fixed.
Errors the client may recover from (a broker restarting, a leader moving) are retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog

from stream_app.records import Output, Reason, dead_letter

log = structlog.get_logger("tango.delivery")

Send = Callable[[Output], Awaitable[asyncio.Future]]


class Unproducible(RuntimeError):
    """A record and its dead letter were both refused; the worker stops, its input uncommitted."""


def root_cause(exc: BaseException) -> BaseException:
    """The client's own error under wrappers such as Faust's ``ProducerSendError``."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def is_retriable(exc: BaseException) -> bool:
    """True for errors that may pass: aiokafka's ``retriable`` ones (leader moves, ...), and timeouts
    and lost connections (a broker restarting), which aiokafka does not mark so."""
    from aiokafka import errors

    cause = root_cause(exc)
    return bool(getattr(cause, "retriable", False)) or isinstance(
        cause, (errors.KafkaTimeoutError, errors.KafkaConnectionError, asyncio.TimeoutError, ConnectionError))


def is_refusal(exc: BaseException) -> bool:
    """True for errors that are the record's own: too large for the topic or the client, a topic
    this client may not write to or that cannot exist. Its input is then dead-lettered."""
    from aiokafka import errors

    return isinstance(root_cause(exc), (
        errors.MessageSizeTooLargeError, errors.RecordTooLargeError, errors.RecordListTooLargeError,
        errors.TopicAuthorizationFailedError, errors.InvalidTopicError,
    ))


def reroute(outputs: Sequence[Output], refused: dict[int, BaseException], dlq_topic: str) -> list[Output]:
    """The dead letters to send instead of the refused outputs: one per input they were made for.

    Raises ``Unproducible`` for a refused output that has no input to dead-letter (it was a
    dead letter already).
    """
    letters: dict[int, Output] = {}
    for i, exc in sorted(refused.items()):
        output = outputs[i]
        if output.origin is None or output.topic == dlq_topic:
            raise Unproducible(f"the broker refused a record for {output.topic} that cannot be dead-lettered: "
                               f"{root_cause(exc)!r}")
        source = output.origin.source
        if id(output.origin) not in letters:  # one dead letter per input, however many of its outputs were refused
            letters[id(output.origin)] = dead_letter(dlq_topic, output.origin, Reason.OUTPUT_REJECTED,
                                                     f"{output.topic} refused the record made for it: {root_cause(exc)!r}",
                                                     "produce")
        log.warning("output refused; its input is dead-lettered", topic=output.topic,
                    input=f"{source.topic}:{source.partition}:{source.offset}", error=repr(root_cause(exc)))
    return list(letters.values())


def _failed(exc: BaseException) -> asyncio.Future:
    failed = asyncio.get_running_loop().create_future()
    failed.set_exception(exc)
    return failed


async def send_future(send: Send, output: Output) -> asyncio.Future:
    """``send(output)``'s future; a send refused before it was queued becomes a failed future."""
    try:
        return await send(output)
    except Exception as exc:  # noqa: BLE001 - refused before it was queued (too large for the client): same as a failed send
        return _failed(exc)


async def send_all(send: Send, outputs: Sequence[Output]) -> list[asyncio.Future]:
    """``send_future`` for each of ``outputs``, in one loop (the student path's hot loop: no
    coroutine per record beyond ``send`` itself)."""
    futures = []
    for output in outputs:
        try:
            futures.append(await send(output))
        except Exception as exc:  # noqa: BLE001 - as in send_future
            futures.append(_failed(exc))
    return futures


def _stop_on_other_errors(errors) -> None:
    """Neither passing nor the record's own (say the cluster refuses this client): stop, uncommitted."""
    for exc in errors:
        if not is_retriable(exc) and not is_refusal(exc):
            raise Unproducible(f"the broker refused a send for a reason that is not the record's: {root_cause(exc)!r}")


async def isolate(send: Send, outputs: Sequence[Output]) -> dict[int, BaseException]:
    """Send each of ``outputs`` alone, waiting for each: the refusals that are its own.

    The broker refuses a whole batch for one record in it (over ``max.message.bytes``), so a
    refused output is dead-lettered only if it is refused alone as well.
    """
    refused: dict[int, BaseException] = {}
    for i, output in enumerate(outputs):
        try:
            await (await send_future(send, output))
        except Exception as exc:  # noqa: BLE001 - classified by the caller
            refused[i] = exc
    return refused


async def produce_checked(send: Send, outputs: Sequence[Output], dlq_topic: str) -> list[str]:
    """Send ``outputs`` and wait until every one is acknowledged, rerouted or retried.

    Returns the reasons of the dead letters sent instead of refused outputs. Raises
    ``Unproducible`` when something can be neither produced nor dead-lettered.
    """
    pending = list(outputs)
    rerouted: list[str] = []
    delay = 0.2
    while pending:
        futures = await send_all(send, pending)
        results = await asyncio.gather(*futures, return_exceptions=True)
        failed = {i: r for i, r in enumerate(results) if isinstance(r, BaseException)}
        if not failed:
            return rerouted
        _stop_on_other_errors(failed.values())
        retry = [pending[i] for i, exc in failed.items() if is_retriable(exc)]
        suspects = [pending[i] for i, exc in failed.items() if is_refusal(exc)]
        alone = await isolate(send, suspects)  # the innocent ones are delivered on the way
        _stop_on_other_errors(alone.values())
        retry += [suspects[i] for i, exc in alone.items() if is_retriable(exc)]
        letters = reroute(suspects, {i: exc for i, exc in alone.items() if is_refusal(exc)}, dlq_topic)
        rerouted.extend(Reason.OUTPUT_REJECTED.value for _ in letters)
        if retry:
            log.warning("sends failed and are retried", records=len(retry), error=repr(root_cause(next(iter(failed.values())))))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        pending = retry + letters
    return rerouted
