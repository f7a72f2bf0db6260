"""Kafka's default partitioner for keyed records, a batch at a time.

The partition of a key is ``murmur2(key) & 0x7FFFFFFF`` modulo the partition count, as the Java
client, librdkafka's ``murmur2_random`` and aiokafka's ``DefaultPartitioner`` compute it, so
every topic the pipeline writes stays co-partitioned by tweet id with what other clients write.
aiokafka's ``murmur2`` is pure Python, about 8 µs a 20-byte key here, and the stream worker
hashed every tweet's key for each record it produced; ``key_partitions`` hashes a whole batch
in numpy instead (uint32 arithmetic wraps as Java's 32-bit ints do), one pass per distinct
key length.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_SEED = 0x9747B28C
_M = np.uint32(0x5BD1E995)


def murmur2_many(keys: Sequence[bytes]) -> np.ndarray:
    """``murmur2`` of each key (as ``aiokafka.partitioner.murmur2``), as uint32.

    >>> murmur2_many([b"21", b"foobar", b""]).tolist()
    [3321034988, 3504634814, 275646681]
    """
    lengths = np.fromiter(map(len, keys), dtype=np.int64, count=len(keys))
    hashes = np.empty(len(keys), dtype=np.uint32)
    for length in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == length)
        data = np.frombuffer(b"".join([keys[i] for i in rows.tolist()]), dtype=np.uint8).reshape(len(rows), length)
        h = np.full(len(rows), (_SEED ^ length) & 0xFFFFFFFF, dtype=np.uint32)
        words = length // 4
        if words:
            blocks = np.ascontiguousarray(data[:, :4 * words]).view("<u4")
            for column in range(words):
                k = blocks[:, column] * _M
                k ^= k >> np.uint32(24)
                k *= _M
                h *= _M
                h ^= k
        tail = 4 * words
        if length - tail >= 3:
            h ^= data[:, tail + 2].astype(np.uint32) << np.uint32(16)
        if length - tail >= 2:
            h ^= data[:, tail + 1].astype(np.uint32) << np.uint32(8)
        if length - tail >= 1:
            h ^= data[:, tail].astype(np.uint32)
            h *= _M
        h ^= h >> np.uint32(13)
        h *= _M
        h ^= h >> np.uint32(15)
        hashes[rows] = h
    return hashes


def key_partitions(keys: Sequence[bytes], partitions: int) -> list[int]:
    """The default partitioner's partition (0 … ``partitions`` - 1) of each key.

    >>> key_partitions([b"21", b"foobar"], 3)
    [0, 0]
    """
    return ((murmur2_many(keys) & np.uint32(0x7FFFFFFF)) % np.uint32(partitions)).tolist()
