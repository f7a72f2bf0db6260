"""The exactly-once batch step every stage shares: the stream worker's agents and the teacher workers.

A batch is cut by consumed partition, run through the stage, and each part's outputs and next
offset are committed in that partition's transaction (``PartitionTransactions.commit``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog
from aiokafka import TopicPartition

from stream_app.kafka_io.transactions import PartitionTransactions
from stream_app.records import Incoming, StageResult

log = structlog.get_logger("tango.transactions")


Stamped = tuple[int, Incoming]  # (generation the record was fetched in, the record)


def split_by_partition(
    stamped: Sequence[Stamped], generation: int, is_stale: Callable[[TopicPartition, int], bool]
) -> tuple[dict[TopicPartition, list[Incoming]], int]:
    """A batch's records per consumed partition, without those not this batch's to commit.

    Dropped (and counted): records fetched in another generation (after a rebalance the
    consumer reads them again from the committed offset), records this member already
    committed (``is_stale``), and copies re-read within the batch (offset not increasing).

    >>> from stream_app.records import Source
    >>> r = lambda p, o: (1, Incoming(Source("t", p, o), None, b""))
    >>> parts, dropped = split_by_partition([r(0, 5), r(1, 2), r(0, 5), (0, r(0, 6)[1])], 1, lambda tp, o: False)
    >>> {tp.partition: [x.source.offset for x in xs] for tp, xs in parts.items()}, dropped
    ({0: [5], 1: [2]}, 2)
    """
    parts: dict[TopicPartition, list[Incoming]] = {}
    dropped = 0
    for fetched_in, record in stamped:
        tp = TopicPartition(record.source.topic, record.source.partition)
        part = parts.setdefault(tp, [])
        if fetched_in != generation or is_stale(tp, record.source.offset) or (part and record.source.offset <= part[-1].source.offset):
            dropped += 1
            continue
        part.append(record)
    return {tp: part for tp, part in parts.items() if part}, dropped


@dataclass(frozen=True)
class PartOutcome:
    """One consumed partition's share of a batch, the stage's result for it, and whether it committed."""

    tp: TopicPartition
    records: list[Incoming]
    result: StageResult
    committed: bool
    rerouted: tuple[str, ...] = ()  # dead letters sent in place of refused outputs


async def transact_batch(
    transactions: PartitionTransactions,
    stamped: Sequence[Stamped],
    run_parts: Callable[[list[list[Incoming]]], Awaitable[list[StageResult]]],
    wait_for_generation: bool,
) -> list[PartOutcome]:
    """Run a batch's partitions through a stage and commit each in its own transaction.

    The one exactly-once batch step of the stream worker's agents and the teacher workers.
    A record is committed only in the generation it was fetched in, by the producers
    started for that generation. ``wait_for_generation``: the stream worker's Faust events
    can arrive before its rebalance handler has started the new producers, so it waits for
    them; a teacher worker stamps records only after its producers started, and must not
    wait (its consumer may rejoin only on its next poll), so a batch met mid-rebalance is
    left to be redelivered. Raises ``TransactionFenced`` (see ``check_fenced``).
    """
    transactions.check_fenced()
    if wait_for_generation:
        newest = max(generation for generation, _ in stamped)
        await transactions.ready.wait()
        while transactions.generation < newest:  # the new assignment's producers are starting
            await asyncio.sleep(0.05)
            await transactions.ready.wait()
    elif not transactions.ready.is_set():
        return []  # a rebalance is under way: the consumer re-reads these from the committed offsets
    generation = transactions.generation
    parts, dropped = split_by_partition(stamped, generation, transactions.is_stale)
    if dropped:
        log.info("skipped records of an earlier assignment or already committed", records=dropped)
    if not parts:
        return []
    results = await run_parts(list(parts.values()))
    committed = await asyncio.gather(*(
        transactions.commit(tp, result.outputs, part[-1].source.offset + 1, generation)
        for (tp, part), result in zip(parts.items(), results)
    ))
    moved = [tp.partition for tp, done in zip(parts, committed) if done is None]
    if moved:
        log.info("partitions moved during the batch; their new owner redelivers it", partitions=moved)
    return [PartOutcome(tp, part, result, done is not None, done.rerouted if done else ())
            for (tp, part), result, done in zip(parts.items(), results, committed)]
