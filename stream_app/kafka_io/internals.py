"""Every Faust, mode and aiokafka internal this project relies on, in one place.

The exactly-once path, the CLI's shutdown bound, the Faust consumer's fetch settings and
its light fetches while idle (``kafka_io.idle_fetch``), its eager per-record delivery
(``kafka_io.eager_delivery``), the agent's events taken off its channel in bulk
(``kafka_io.channel_events``), the fetch woken when a partition resumes
(``kafka_io.resume_fetch``) and the fetch-path workarounds below reach past the libraries'
public APIs. Each such use is listed in
``INTERNALS`` with the versions it is known to work on (``KNOWN_GOOD``, matching the bounds in
``pyproject.toml``); ``check_internals`` fails loudly, naming the internal and the installed
version, if one of them moved. Workers call it at start-up and a unit test calls it, so an
upgrade breaks a test, not a stream.

Fetch-path workarounds (``install_fetch_workarounds``), for records other producers send:

* A header *name* that is not UTF-8 makes aiokafka's record parser raise inside the
  fetcher, before our decoding sees the record, and the consumer dies on every restart.
  The batch is parsed again with header names decoded losslessly (``surrogateescape``), so
  the record reaches the stage like any other (``stream_app.records.wire_header_name``
  turns such a name back into a producible one when it is dead-lettered).
* A batch that cannot be decoded at all (an unknown codec, a corrupt payload) raises
  ``UndecodableBatch``, naming topic, partition, first and next offset and the cause, so the
  worker stops with one clear line instead of a library traceback; a person may then skip
  past the batch (``tango dlq skip``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata

import structlog

from stream_app.kafka_io.idle_fetch import fetch_lightly_when_idle

KNOWN_GOOD = {"faust-streaming": ("0.15.3",), "mode-streaming": ("0.7.1",), "aiokafka": ("0.14.0",)}


class InternalsMoved(RuntimeError):
    """A library internal this project relies on is gone or changed."""


def _has(path: str) -> Callable[[], bool]:
    def check() -> bool:
        module_name, _, attributes = path.partition(":")
        obj = __import__(module_name, fromlist=["_"])
        for name in attributes.split("."):
            obj = getattr(obj, name)
        return True

    return check


def _source_mentions(path: str, *needles: str) -> bool:
    """True if the source of ``module:Class`` still uses every one of ``needles`` (instance attributes)."""
    import inspect

    module_name, _, name = path.partition(":")
    source = inspect.getsource(getattr(__import__(module_name, fromlist=["_"]), name))
    return all(needle in source for needle in needles)


INTERNALS: tuple[tuple[str, str, Callable[[], bool]], ...] = (
    ("faust App._new_consumer: the consumer factory the exactly-once app overrides", "faust-streaming",
     _has("faust:App._new_consumer")),
    ("faust Consumer.in_transaction and .transactions: read_committed and the offset committer", "faust-streaming",
     lambda: _source_mentions("faust.transport.consumer:Consumer", "self.in_transaction", "self.transactions.commit")),
    ("faust App.consumer_generation_id: the generation the transactions are started for", "faust-streaming",
     _has("faust:App.consumer_generation_id")),
    ("faust Worker._schedule_shutdown and ._signal_stop_time: the bounded shutdown on SIGTERM", "faust-streaming",
     _has("faust.worker:Worker._schedule_shutdown")),
    ("mode Service: the base of the no-op offset committer", "mode-streaming", _has("mode:Service")),
    ("aiokafka TransactionManager.is_fatal_error: telling a fenced producer from a transient error", "aiokafka",
     _has("aiokafka.producer.transaction_manager:TransactionManager.is_fatal_error")),
    ("faust AIOKafkaConsumerThread._create_consumer: the Faust consumer's fetch settings (tune_faust_fetch)",
     "faust-streaming", _has("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._create_consumer")),
    ("aiokafka AIOKafkaConsumer._fetch_min_bytes and ._fetch_max_wait_ms, read at start()", "aiokafka",
     lambda: _source_mentions("aiokafka.consumer.consumer:AIOKafkaConsumer", "fetch_min_bytes=self._fetch_min_bytes",
                              "fetch_max_wait_ms=self._fetch_max_wait_ms")),
    ("faust Consumer._drain_messages: each record delivered through wait_first(callback, suspend_flow.wait()) "
     "(kafka_io.eager_delivery)", "faust-streaming",
     lambda: _source_mentions("faust.transport.consumer:Consumer", "self.wait_first(", "self.suspend_flow.wait()")),
    ("mode Service.wait_first, ._stopped and ._crashed: what eager delivery falls back to", "mode-streaming",
     lambda: _source_mentions("mode.services:Service", "def wait_first(", "self._stopped", "self._crashed")),
    ("faust Channel.queue, Message.tracked, Consumer.track_message, Conductor.acks_enabled_for and the stream "
     "iterator's skip and tracking of each event: the agent's events taken off its channel (kafka_io.channel_events)",
     "faust-streaming",
     lambda: (_has("faust.channels:Channel.queue")() and _has("faust.transport.consumer:Consumer.track_message")()
              and _has("faust.transport.conductor:Conductor.acks_enabled_for")()
              and _source_mentions("faust.types.tuples:Message", "self.tracked", "self.generation_id")
              and _source_mentions("faust.streams:Stream", "message.tracked = True", "flow_control.is_active()",
                                   "message.generation_id != self.app.consumer_generation_id"))),
    ("faust Consumer.on_buffer_drop and ._buffered_partitions, AIOKafkaConsumerThread._consumer and .thread_loop, "
     "and the active-partition set getmany is given: waking the fetch when a partition resumes (kafka_io.resume_fetch)",
     "faust-streaming",
     lambda: (_source_mentions("faust.transport.consumer:Consumer", "def on_buffer_drop(", "self._buffered_partitions")
              and _source_mentions("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread",
                                   "self._consumer = self._create_consumer(", "self.thread_loop"))),
    ("aiokafka AIOKafkaConsumer._fetcher made in start(), Fetcher._proc_fetch_request (True when it added records) and "
     "._fetch_min_bytes and ._fetch_max_wait_ms read for each request: fetching lightly while idle (kafka_io.idle_fetch)",
     "aiokafka",
     lambda: (_source_mentions("aiokafka.consumer.consumer:AIOKafkaConsumer", "self._fetcher = Fetcher(")
              and _source_mentions("aiokafka.consumer.fetcher:Fetcher", "self._proc_fetch_request(", "needs_wakeup = True",
                                   "self._fetch_max_wait_ms,\n                self._fetch_min_bytes,"))),
    ("aiokafka Fetcher._fetch_waiters and ._notify: the fetch waiting for records (kafka_io.resume_fetch)", "aiokafka",
     lambda: _source_mentions("aiokafka.consumer.fetcher:Fetcher", "self._fetch_waiters", "def _notify(")),
    ("aiokafka fetcher.MemoryRecords and PartitionRecords: the fetch-path workarounds", "aiokafka",
     lambda: _has("aiokafka.consumer.fetcher:MemoryRecords")() and _has("aiokafka.consumer.fetcher:PartitionRecords.__init__")()),
    ("aiokafka _DefaultRecordBatchPy._maybe_uncompress and ._buffer: re-parsing odd header names", "aiokafka",
     _has("aiokafka.record.default_records:_DefaultRecordBatchPy._maybe_uncompress")),
)


def installed(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def check_internals() -> None:
    """Raise ``InternalsMoved`` naming every internal that is not where it is expected."""
    moved = []
    for what, package, check in INTERNALS:
        try:
            ok = check()
        except (AttributeError, ImportError):
            ok = False
        if not ok:
            moved.append(f"{what} (installed {package} {installed(package)}, known to work on "
                         f"{', '.join(KNOWN_GOOD[package])})")
    if moved:
        raise InternalsMoved("library internals this worker relies on have moved: " + "; ".join(moved))


def tune_faust_fetch(consumer, fetch: Mapping[str, int]) -> None:
    """Give the aiokafka consumer that Faust's ``consumer`` creates in its thread the ``fetch``
    arguments (``clients.fetch_config``): Faust passes no ``fetch_min_bytes`` and fixes
    ``fetch_max_wait_ms`` at 1,500. The consumer reads both when it starts, and fetches lightly
    while it finds nothing (``kafka_io.idle_fetch``)."""
    if not fetch:
        return
    thread = consumer._thread
    create = thread._create_consumer

    def create_tuned(*args, **kwargs):
        client = create(*args, **kwargs)
        client._fetch_min_bytes = fetch["fetch_min_bytes"]
        client._fetch_max_wait_ms = fetch["fetch_max_wait_ms"]
        fetch_lightly_when_idle(client)
        return client

    thread._create_consumer = create_tuned


# --- fetch-path workarounds ---------------------------------------------------------------


@dataclass(frozen=True)
class BatchPosition:
    topic: str
    partition: int
    first_offset: int
    next_offset: int


class UndecodableBatch(RuntimeError):
    """A fetched record batch cannot be decoded; the worker must stop rather than skip it."""

    def __init__(self, where: BatchPosition, cause: BaseException):
        self.where = where
        self.cause = cause
        super().__init__(
            f"cannot decode the record batch at {where.topic}:{where.partition} offsets {where.first_offset}-"
            f"{where.next_offset - 1}: {type(cause).__name__}: {cause}. Nothing after it on that partition is "
            f"processed. After deciding to, skip past it: tango dlq skip --topic {where.topic} "
            f"--partition {where.partition} --offset {where.next_offset} --group <this worker's consumer group>")


class _LenientBytes(bytes):
    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:  # type: ignore[override]
        return bytes.decode(self, encoding, "surrogateescape")


class _LenientBuffer(bytearray):
    def __getitem__(self, index):  # type: ignore[override]
        item = bytearray.__getitem__(self, index)
        return _LenientBytes(item) if isinstance(index, slice) else item


def _lenient_batch_class():
    from aiokafka.record.default_records import _DefaultRecordBatchPy

    class LenientBatch(_DefaultRecordBatchPy):  # type: ignore[misc]
        """The pure-Python batch parser, with header names decoded losslessly."""

        def _maybe_uncompress(self) -> None:
            super()._maybe_uncompress()
            if not isinstance(self._buffer, _LenientBuffer):
                self._buffer = _LenientBuffer(self._buffer)

    return LenientBatch


class _Batch:
    """One fetched batch: aiokafka's fast parser, the lenient one where it fails on a header name."""

    _LOG_OVERHEAD = struct.calcsize(">qi")

    def __init__(self, fast, raw: memoryview, records: "_Records"):
        self._fast = fast
        self._raw = raw
        self._records = records

    def __getattr__(self, name: str):
        return getattr(self._fast, name)

    def __next__(self):  # control batches are read with next() (their records carry no headers)
        return next(self._fast)

    def __iter__(self) -> Iterator:
        yielded = -1
        try:
            for record in self._fast:
                yielded = record.offset
                yield record
            return
        except UnicodeDecodeError:
            pass  # a header name that is not UTF-8: parse the batch again, leniently
        except Exception as exc:  # noqa: BLE001 - codec missing, corrupt payload: name the batch and stop
            raise self._undecodable(exc) from exc
        try:
            for record in _lenient_batch_class()(self._raw):
                if record.offset > yielded:
                    yield record
        except Exception as exc:  # noqa: BLE001
            raise self._undecodable(exc) from exc

    def _undecodable(self, cause: BaseException) -> UndecodableBatch:
        topic, partition = self._records.where
        error = UndecodableBatch(BatchPosition(topic, partition, self._fast.base_offset, self._fast.next_offset), cause)
        # the one clear line, whichever library the error then passes through
        structlog.get_logger("tango.fetch").error("undecodable record batch; the worker stops", error=str(error))
        return error


class _Records:
    """``MemoryRecords`` over a fetch response's bytes, handing out ``_Batch`` wrappers."""

    _LOG_OVERHEAD = struct.calcsize(">qi")
    _MAGIC_OFFSET = struct.calcsize(">qii")

    def __init__(self, data: bytes):
        from aiokafka.record.memory_records import MemoryRecords

        self._inner = MemoryRecords(data)  # aiokafka's own slicing and checks
        self._view = memoryview(data)
        self._pos = 0
        self.where: tuple[str, int] = ("?", -1)  # set by the PartitionRecords that owns these records

    def size_in_bytes(self) -> int:
        return self._inner.size_in_bytes()

    def has_next(self) -> bool:
        return self._inner.has_next()

    def next_batch(self):
        batch = self._inner.next_batch()
        if batch is None:
            return None
        (length,) = struct.unpack_from(">i", self._view, self._pos + 8)
        end = self._pos + self._LOG_OVERHEAD + length
        raw, self._pos = self._view[self._pos:end], end
        if raw[self._MAGIC_OFFSET] < 2:
            return batch  # legacy message sets carry no headers
        return _Batch(batch, raw, self)


_installed = False


def install_fetch_workarounds() -> None:
    """Patch aiokafka's fetcher once per process (idempotent); see the module docstring."""
    global _installed
    if _installed:
        return
    check_internals()
    from aiokafka.consumer import fetcher

    original_init = fetcher.PartitionRecords.__init__

    def init(self, tp, records, *args, **kwargs):
        if isinstance(records, _Records):
            records.where = (tp.topic, tp.partition)
        original_init(self, tp, records, *args, **kwargs)

    fetcher.MemoryRecords = _Records
    fetcher.PartitionRecords.__init__ = init
    _installed = True
