"""Exactly-once mode: one Kafka transaction per consumed partition and batch.

With ``processing_guarantee=exactly_once`` every stage (student agent, merge,
teacher workers) writes a batch's outputs for one consumed partition, dead letters
included, and that partition's next offset in one transaction (``commit``), and reads
its input ``read_committed``. A batch is either wholly visible downstream with its input
committed, or not at all and redelivered: nothing is produced twice.

Fencing (what stops a worker that lost a partition from committing it too). Each
consumed partition has its own transactional id, ``<group>-<topic>-<partition>``: the
same in every process and across restarts. A worker that is assigned a partition starts
a fresh producer for that id (``assign``) before it reads the partition's committed
offset; starting it (InitProducerId) bumps the id's epoch, which

* fences the previous owner's producer: a worker that was declared dead but is still
  running (a "zombie": stalled longer than the session or poll timeout) fails its next
  send or commit with ``ProducerFenced`` instead of committing the partition's batch a
  second time; and
* aborts the previous owner's open transaction at once (a ``kill -9`` mid-batch), so the
  partitions it wrote do not stay blocked for ``read_committed`` readers until the
  transaction times out.

This is the per-partition scheme of Kafka Streams before KIP-447 ("eos-alpha"). KIP-447
fencing by consumer-group generation is not available: aiokafka's
``send_offsets_to_transaction`` takes only a group id (TxnOffsetCommit v0, no generation
or member id), so the broker accepts an offset commit from any producer of the group;
fencing rests on the transactional ids alone. What this does not cover: a worker whose
generation is stale without its knowing it, whose producer was started after the new
owner's (impossible in one rebalance: the new owner's assignment is later), and a
partition whose producer was fenced while the worker still owns it in the current
generation (a transaction older than the coordinator's transaction timeout, 60 s): the
partition then commits nothing more, and if no rebalance follows within twice the
session timeout the worker raises ``TransactionFenced`` and must be restarted (nothing
is lost: its offsets were not committed).

Costs: one producer (one connection, one coordinator entry) per consumed partition; per
batch and partition an AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and EndTxn
round trip plus a commit marker in every partition written; and outputs become visible
only at the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import ProducerFenced

from stream_app.kafka_io.clients import aiokafka_config, compression
from stream_app.kafka_io.delivery import (
    Unproducible,
    is_refusal,
    is_retriable,
    reroute,
    root_cause,
    send_all,
    send_future,
)
from stream_app.records import Output, Reason
from stream_app.settings import Settings

log = structlog.get_logger("tango.transactions")


class TransactionFenced(RuntimeError):
    """A partition's producer was fenced although this worker still owns the partition."""


class _SendsFailed(RuntimeError):
    """Some sends of the attempt failed: abort it and try again (with refused outputs rerouted)."""

    def __init__(self, cause: BaseException):
        super().__init__(repr(root_cause(cause)))
        self.cause = cause


@dataclass(frozen=True)
class Committed:
    """A committed transaction, and the reasons of dead letters sent in place of refused outputs."""

    rerouted: tuple[str, ...] = ()


async def _send_with(producer: AIOKafkaProducer, o: Output) -> asyncio.Future:
    return await producer.send(o.topic, o.value, key=o.key, headers=list(o.headers) or None, partition=o.partition)


class PartitionTransactions:
    """Transactional producers for the partitions one consumer group member owns.

    ``generation`` counts assignments; a batch is committed only in the generation its
    records were fetched in (``commit`` returns False otherwise: the consumer re-reads
    the partition from its committed offset after a rebalance, so the batch comes back).
    ``next_offsets`` is the offset after the last batch committed per partition, so
    records fetched again after a commit raced a rebalance are recognised and skipped.
    """

    def __init__(self, settings: Settings, group_id: str, fenced_grace_s: float | None = None):
        self._config = aiokafka_config(settings)
        self._compression = compression(settings)
        self._dlq_topic = settings.dlq_topic
        self.group_id = group_id
        self.generation = -1
        self.next_offsets: dict[TopicPartition, int] = {}
        self.ready = asyncio.Event()  # set while producers match the current assignment
        self._producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self._open: set[TopicPartition] = set()  # producers with a begun transaction
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._fenced_grace_s = fenced_grace_s if fenced_grace_s is not None else 2 * settings.session_timeout_s
        self._fenced_at: tuple[int, float] | None = None  # (generation, when) of a fence without a rebalance yet

    def transactional_id(self, tp: TopicPartition) -> str:
        return f"{self.group_id}-{tp.topic}-{tp.partition}"

    def owns(self, tp: TopicPartition) -> bool:
        return tp in self._producers

    def is_stale(self, tp: TopicPartition, offset: int) -> bool:
        """True for a record this member already committed (fetched again after a rebalance)."""
        return offset < self.next_offsets.get(tp, -1)

    async def pause(self, timeout_s: float) -> None:
        """On revocation: start no new transaction and let the one in flight finish."""
        self.ready.clear()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except asyncio.TimeoutError:
            log.warning("a transaction is still in flight at revocation; the next owner's producer aborts it")

    async def assign(self, tps: Iterable[TopicPartition], generation: int) -> None:
        """Fresh producers for the partitions of a new assignment.

        Every producer is started (InitProducerId: fences the id's previous producer and
        aborts its open transaction) before this returns, so call it before the consumer
        reads the committed offsets of ``tps``.
        """
        self.ready.clear()
        old, self._producers = self._producers, {}
        self._open.clear()
        await asyncio.gather(*(p.stop() for p in old.values()), return_exceptions=True)
        wanted = sorted({TopicPartition(tp.topic, tp.partition) for tp in tps})
        producers = {tp: self._new_producer(tp) for tp in wanted}
        started = await asyncio.gather(*(p.start() for p in producers.values()), return_exceptions=True)
        errors = [r for r in started if isinstance(r, BaseException)]
        if errors:
            await asyncio.gather(*(p.stop() for p in producers.values()), return_exceptions=True)
            raise errors[0]
        self._producers = producers
        self.next_offsets = {tp: o for tp, o in self.next_offsets.items() if tp in producers}
        self.generation = generation
        self._fenced_at = None
        self.ready.set()
        if wanted:
            log.info("transactional producers started", generation=generation,
                     partitions=[f"{tp.topic}:{tp.partition}" for tp in wanted])

    def _new_producer(self, tp: TopicPartition) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            transactional_id=self.transactional_id(tp), acks="all", enable_idempotence=True, linger_ms=5,
            compression_type=self._compression, **self._config,
        )

    async def close(self) -> None:
        self.ready.clear()
        producers, self._producers = self._producers, {}
        await asyncio.gather(*(p.stop() for p in producers.values()), return_exceptions=True)

    def check_fenced(self) -> None:
        """Raise ``TransactionFenced`` if a producer was fenced in the current generation and
        no rebalance has followed within the grace period (called before each batch)."""
        if self._fenced_at is not None:
            generation, since = self._fenced_at
            if generation == self.generation and time.monotonic() - since > self._fenced_grace_s:
                raise TransactionFenced(
                    f"a transactional producer of group {self.group_id} was fenced in generation {generation} and no "
                    f"rebalance followed within {self._fenced_grace_s:g}s; restart the worker")

    async def commit(self, tp: TopicPartition, outputs: Sequence[Output], next_offset: int, generation: int) -> Committed | None:
        """Produce ``outputs`` and commit ``tp`` at ``next_offset`` in one transaction.

        Every send is awaited and checked before the commit: an output the broker refuses
        for good aborts the attempt, and the retry carries its input's dead letter instead
        (``delivery.reroute``; ``Unproducible`` if that is impossible, nothing committed).

        ``Committed`` once committed. None, with nothing of it visible, if ``tp`` is not this
        member's to commit in ``generation`` any more: a rebalance is under way or done
        (the consumer then re-reads the partition from its committed offset), or the
        producer was fenced (a new owner started one). After False no later batch of ``tp``
        is committed before the next assignment, so nothing is skipped. Transient errors (a
        broker restart) abort the attempt and retry it.
        """
        delay = 0.2
        outputs = list(outputs)
        rerouted: list[str] = []
        while True:
            # never wait for the next assignment here: a consumer may only rejoin on its next poll
            if not self.ready.is_set() or generation != self.generation or tp not in self._producers:
                return None
            producer = self._producers[tp]
            fenced = False
            self._busy += 1
            self._idle.clear()
            try:
                if tp not in self._open:
                    await producer.begin_transaction()
                    self._open.add(tp)
                futures = await send_all(partial(_send_with, producer), outputs)
                results = await asyncio.gather(*futures, return_exceptions=True)
                failed = {i: r for i, r in enumerate(results) if isinstance(r, BaseException)}
                if failed:  # never commit the offset past an output that is not in the log
                    suspects = {i for i, exc in failed.items() if is_refusal(exc)}
                    if suspects:
                        outputs, letters = await self._reroute_refused(tp, producer, outputs, suspects)
                        rerouted.extend(Reason.OUTPUT_REJECTED.value for _ in letters)
                    raise _SendsFailed(next(iter(failed.values())))
                await producer.send_offsets_to_transaction({tp: next_offset}, self.group_id)
                self._open.discard(tp)  # committed or failed, the transaction is over
                await producer.commit_transaction()
                self.next_offsets[tp] = max(next_offset, self.next_offsets.get(tp, 0))
                return Committed(tuple(rerouted))
            except ProducerFenced:
                fenced = True
            except _SendsFailed as exc:
                log.warning("sends failed; the transaction is aborted and retried", partition=f"{tp.topic}:{tp.partition}",
                            error=repr(exc))
                if tp in self._open:  # not yet replaced by the refused outputs' probe
                    self._open.discard(tp)
                    if is_retriable(exc.cause):  # a broker restarting: abort and try again, as for any transient error
                        fenced = await self._abort(producer)
                    else:  # the idempotent sequence may be broken: a fresh producer aborts and resets it
                        await self._fresh_producer(tp, producer)
            except Unproducible:  # from the probe, which left no transaction open
                self._open.discard(tp)
                raise
            except Exception as exc:  # noqa: BLE001 - any other failure: abort, then retry the batch
                if producer._txn_manager.is_fatal_error():  # noqa: SLF001 - no public accessor
                    fenced = True
                else:
                    log.warning("transaction failed; aborting and retrying", partition=f"{tp.topic}:{tp.partition}",
                                error=repr(exc))
                    self._open.discard(tp)
                    fenced = await self._abort(producer)
            finally:
                self._busy -= 1
                if not self._busy:
                    self._idle.set()
            if fenced:
                self._fenced(tp, producer, generation)
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _abort(self, producer: AIOKafkaProducer) -> bool:
        """Abort the open transaction; True if that showed the producer fenced."""
        try:
            await producer.abort_transaction()
        except ProducerFenced:
            return True
        except Exception as abort_exc:  # noqa: BLE001
            log.warning("abort failed", error=repr(abort_exc))
            return producer._txn_manager.is_fatal_error()  # noqa: SLF001
        return False

    async def _reroute_refused(
        self, tp: TopicPartition, producer: AIOKafkaProducer, outputs: list[Output], suspects: set[int]
    ) -> tuple[list[Output], list[Output]]:
        """The outputs for the next attempt: those refused even alone replaced by dead letters.

        The broker refuses a whole batch for one record in it, so each suspect is sent alone, in
        a probe transaction that is then aborted (nothing of it is visible). A refusal leaves the
        idempotent producer's sequence numbers broken, so after each one the partition gets a
        fresh producer for the same transactional id (InitProducerId resets them)."""
        self._open.discard(tp)
        producer = await self._fresh_producer(tp, producer)
        refused: dict[int, BaseException] = {}
        for i in sorted(suspects):
            await producer.begin_transaction()
            try:
                await (await send_future(partial(_send_with, producer), outputs[i]))
                await producer.abort_transaction()
            except Exception as exc:  # noqa: BLE001 - a probe: classified below
                if is_refusal(exc):
                    refused[i] = exc
                producer = await self._fresh_producer(tp, producer)
        letters = reroute(outputs, refused, self._dlq_topic)
        return [o for i, o in enumerate(outputs) if i not in refused] + letters, letters

    async def _fresh_producer(self, tp: TopicPartition, old: AIOKafkaProducer) -> AIOKafkaProducer:
        with contextlib.suppress(Exception):
            await old.stop()
        producer = self._new_producer(tp)
        await producer.start()
        self._producers[tp] = producer
        return producer

    def _fenced(self, tp: TopicPartition, producer: AIOKafkaProducer, generation: int) -> None:
        """Fenced: another producer took the id, so the partition has moved (a rebalance is
        under way) - or this member's transaction outlived the coordinator's timeout. The
        partition gets no producer until the next assignment; ``check_fenced`` gives up if
        that does not come."""
        if self._producers.get(tp) is producer:
            del self._producers[tp]
            self._open.discard(tp)
            asyncio.ensure_future(producer.stop())
        log.info("producer fenced; the partition's owner reprocesses the batch", partition=f"{tp.topic}:{tp.partition}")
        if generation == self.generation and self._fenced_at is None:
            self._fenced_at = (generation, time.monotonic())
