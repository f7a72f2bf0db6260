"""Handing the heap's free pages back: glibc's malloc_trim, measured by resident memory."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from stream_app import memory_trim
from stream_app.memory_trim import (
    glibc_malloc_trim,
    resident_bytes,
    trim_periodically,
)


def test_resident_bytes_reads_this_process():
    assert resident_bytes() > 10 * 2**20  # an interpreter with pytest loaded


HOLES_IN_THE_HEAP = """
import ctypes
from stream_app.memory_trim import glibc_malloc_trim, trim_once
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes, libc.memset.argtypes = [ctypes.c_void_p], [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
blocks = [libc.malloc(64 * 1024) for _ in range(4000)]  # 250 MB below the mmap threshold: in the heap
for block in blocks:
    libc.memset(block, 1, 64 * 1024)
for block in blocks[::2]:
    libc.free(block)  # holes under live blocks, which only malloc_trim hands back
print(trim_once(glibc_malloc_trim()))
"""


@pytest.mark.skipif(glibc_malloc_trim() is None, reason="not glibc: nothing to trim with")
def test_trim_gives_back_memory_freed_inside_the_heap():
    # a fresh interpreter, so that no other test's threads and allocations share its heap
    released = subprocess.run([sys.executable, "-c", HOLES_IN_THE_HEAP], capture_output=True, text=True, check=True)
    assert int(released.stdout) > 100 * 2**20


def test_periodic_trim_logs_what_it_released(monkeypatch):
    calls = []
    monkeypatch.setattr(memory_trim, "glibc_malloc_trim", lambda: calls.append)
    sizes = iter([500 * 2**20, 400 * 2**20, 400 * 2**20] * 10)
    monkeypatch.setattr(memory_trim, "resident_bytes", lambda: next(sizes))
    logged = []
    monkeypatch.setattr(memory_trim.log, "info", lambda event, **fields: logged.append((event, fields)))

    async def two_rounds():
        task = asyncio.ensure_future(trim_periodically(0.01, "stream"))
        while len(calls) < 2:
            await asyncio.sleep(0.005)
        task.cancel()

    asyncio.run(two_rounds())
    assert calls[:2] == [0, 0]
    assert logged[0] == ("heap trimmed", {"worker": "stream", "released_mb": 100.0, "resident_mb": 400.0})


def test_interval_zero_never_trims(monkeypatch):
    monkeypatch.setattr(memory_trim, "glibc_malloc_trim", lambda: pytest.fail("looked up although switched off"))
    asyncio.run(asyncio.wait_for(trim_periodically(0, "stream"), 1))
