"""Hand the heap's free pages back to the operating system now and then (glibc ``malloc_trim``).

A worker's allocations change size from batch to batch (token tensors, fetched record
buffers, result bytes). glibc keeps the memory they free inside its heaps for reuse,
so a worker's resident memory climbs to the largest mix of sizes it has seen and stays
there, though that memory is free. ``malloc_trim(0)`` releases it: the free top of each
heap, and every whole free page inside one (madvise). Where the C library is not glibc
there is no such call and nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
from collections.abc import Callable

import structlog

log = structlog.get_logger("tango.memory")

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def glibc_malloc_trim() -> Callable[[int], int] | None:
    """The C library's ``malloc_trim``, or None where there is none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def resident_bytes() -> int:
    """This process's resident memory, from /proc (0 where it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def trim_once(trim: Callable[[int], int]) -> int:
    """Run ``trim(0)``; the resident bytes it gave back (never negative)."""
    before = resident_bytes()
    trim(0)
    return max(0, before - resident_bytes())


async def trim_periodically(interval_s: float, worker: str) -> None:
    """Every ``interval_s`` seconds, trim the heap in a thread (it takes the allocator's locks, not the loop)."""
    trim = glibc_malloc_trim() if interval_s > 0 else None
    if trim is None:
        return
    while True:
        await asyncio.sleep(interval_s)
        released = await asyncio.to_thread(trim_once, trim)
        if released >= 1 << 20:
            log.info("heap trimmed", worker=worker, released_mb=round(released / 2**20, 1),
                     resident_mb=round(resident_bytes() / 2**20, 1))
