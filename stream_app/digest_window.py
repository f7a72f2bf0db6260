"""The last ``window`` distinct ids of one partition, in memory fixed at creation (pure).

An id is kept as its 128-bit BLAKE2b digest, in a ring of ``window`` slots (the order of
arrival, for eviction) and in an open-addressing table with linear probing of at least
twice as many slots (membership). Both are ``array("Q")`` allocated and touched in full
when the window is made: about 62 bytes per id, 25 MB for 4 partitions of 100,000
(tracemalloc; the ``OrderedDict`` of id bytes before it took 72 MB when full, for 20-byte
ids), and a filling window does not grow the process. About 5 µs per id, 2.5x the dict.
Two ids count as one only if their digests are equal: about ``window`` / 2^127 per
record, nil in practice.
"""

from __future__ import annotations

from array import array
from hashlib import blake2b

Digest = tuple[int, int]
_WORD = (1 << 64) - 1


def digest(key: bytes) -> Digest:
    """The id's 128-bit digest as two words; the low bit of the second is set, so (0, 0) marks an empty slot."""
    value = int.from_bytes(blake2b(key, digest_size=16).digest(), "little")  # one conversion, then split: cheaper
    return value & _WORD, (value >> 64) | 1


class DigestWindow:
    """A set of at most ``window`` digests that forgets the oldest first (a repeat does not refresh it)."""

    def __init__(self, window: int):
        if window < 1:
            raise ValueError("window must be at least 1")
        self.window = window
        capacity = 1 << max(1, (2 * window - 1).bit_length())  # a power of two ≥ 2 × window: load ≤ 50%
        self._mask = capacity - 1
        self._hi, self._lo = array("Q", bytes(8 * capacity)), array("Q", bytes(8 * capacity))
        self._ring_hi, self._ring_lo = array("Q", bytes(8 * window)), array("Q", bytes(8 * window))
        self._next = 0  # the ring slot written next: the oldest digest once the ring is full
        self._count = 0

    def add(self, key: Digest) -> bool:
        """True if ``key`` was not in the window (it is now, the oldest evicted if full); False if it was."""
        hi, lo = key
        his, los, mask = self._hi, self._lo, self._mask
        slot = hi & mask  # self._find(hi, lo), inlined: this runs for every result the merge forwards
        while los[slot] and (los[slot] != lo or his[slot] != hi):
            slot = (slot + 1) & mask
        if los[slot]:
            return False
        if self._count == self.window:
            self._remove(self._ring_hi[self._next], self._ring_lo[self._next])
            slot = self._find(hi, lo)  # the removal may have shifted entries into that slot's cluster
        else:
            self._count += 1
        his[slot], los[slot] = hi, lo
        self._ring_hi[self._next], self._ring_lo[self._next] = hi, lo
        self._next = (self._next + 1) % self.window
        return True

    def __len__(self) -> int:
        return self._count

    def _find(self, hi: int, lo: int) -> int:
        """The slot holding (hi, lo), or the empty slot where it would go."""
        his, los, mask = self._hi, self._lo, self._mask
        slot = hi & mask
        while los[slot] and (los[slot] != lo or his[slot] != hi):
            slot = (slot + 1) & mask
        return slot

    def _remove(self, hi: int, lo: int) -> None:
        """Delete a present digest by backward shift, so no probe sequence is ever broken (no tombstones)."""
        his, los, mask = self._hi, self._lo, self._mask
        hole = self._find(hi, lo)
        probe = hole
        while True:
            probe = (probe + 1) & mask
            if not los[probe]:
                break
            home = his[probe] & mask
            # The entry at probe may fill the hole if the hole lies on its probe path: [home, probe) cyclically.
            if (probe - home) & mask >= (probe - hole) & mask:
                his[hole], los[hole] = his[probe], los[probe]
                hole = probe
        his[hole] = los[hole] = 0
