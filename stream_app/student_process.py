"""The student's model in a child process of its own (the ``student_process`` setting).

In the stream worker the student stage runs on an executor thread while the event loop does
Kafka's work on the main thread, both in one interpreter. Every torch call gives up the
interpreter's lock and must take it back, and the loop's Python holds that lock much of the
time: measured on a 100,000-record burst, the stage thread was on a CPU for 62-74 µs a tweet
of the 112-151 µs it spent in the stage (docs/benchmarks.md). A child process has a lock of
its own. The stage thread sends the batch's texts to it and waits on the pipe, without the
lock, while the child tokenises and runs the network.

Protocol: length-prefixed frames (``<I``) over the child's stdin and stdout. A request is the
batch's texts as a JSON list; a reply is ``b"L"``, rows and columns (``<II``) and the float32
logits, or ``b"E"`` and the error's text. The child first replies ``b"R"`` once its model is
loaded, and exits at the end of its stdin: when its parent closes it, or dies. It ignores SIGINT
and SIGTERM, which a terminal or a process group's stop also sends it, so that a worker draining
its last batches still has its model.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
import orjson
import structlog

log = structlog.get_logger("tango.stream")

_LENGTH = struct.Struct("<I")
_SHAPE = struct.Struct("<II")


class StudentProcessError(RuntimeError):
    """The child process failed to start, or failed a batch."""


def write_frame(channel: BinaryIO, payload: bytes) -> None:
    channel.write(_LENGTH.pack(len(payload)) + payload)
    channel.flush()


def read_frame(channel: BinaryIO) -> bytes:
    """One frame's payload; ``EOFError`` if the channel ends first."""
    header = channel.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError("the channel closed")
    (size,) = _LENGTH.unpack(header)
    payload = channel.read(size)
    if len(payload) < size:
        raise EOFError("the channel closed mid-frame")
    return payload


def encode_logits(logits: np.ndarray) -> bytes:
    """
    >>> decode_logits(encode_logits(np.arange(6, dtype=np.float32).reshape(2, 3))).tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    """
    rows, columns = logits.shape
    return b"L" + _SHAPE.pack(rows, columns) + np.ascontiguousarray(logits, dtype=np.float32).tobytes()


def decode_logits(reply: bytes) -> np.ndarray:
    if reply[:1] == b"E":
        raise StudentProcessError(f"the student process failed the batch: {reply[1:].decode(errors='replace')}")
    if reply[:1] != b"L":
        raise StudentProcessError(f"the student process replied {reply[:16]!r}")
    rows, columns = _SHAPE.unpack_from(reply, 1)
    return np.frombuffer(reply, dtype=np.float32, offset=1 + _SHAPE.size).reshape(rows, columns)


class StudentProcess:
    """``logits(texts)`` computed by a child process that serves a bundle's student.

    One batch at a time (a lock). If the child dies, the batch that found it dead starts a new
    one and is asked again, once; a second failure is raised. The child stops when this object
    is closed or collected (a reload replaces the stage, and the old stage's child goes with it).
    """

    def __init__(self, bundle_root: str | Path, precision: str, threads: int = 1, python: str = sys.executable):
        self._command = [python, "-m", "stream_app.student_process", str(bundle_root), precision, str(threads)]
        self._lock = threading.Lock()
        self._start()

    @property
    def pid(self) -> int:
        return self._child.pid

    def _start(self) -> None:
        """Start a child, wait until its model is loaded, and make it this object's."""
        child = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            ready = read_frame(child.stdout)
        except EOFError:
            child.wait()
            raise StudentProcessError(f"the student process exited with {child.returncode} before it was ready "
                                      "(its error is in this worker's log)") from None
        if ready[:1] != b"R":
            _stop(child)
            raise StudentProcessError(f"the student process could not load its model: {ready[1:].decode(errors='replace')}")
        log.info("student process ready", pid=child.pid)
        self._child = child
        self._finalizer = weakref.finalize(self, _stop, child)

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        request = orjson.dumps(list(texts))
        with self._lock:
            try:
                return decode_logits(self._ask(request))
            except (EOFError, OSError) as exc:  # the child died (a broken pipe, an early end): one new one, one more try
                log.warning("student process lost; starting a new one", pid=self._child.pid, error=repr(exc))
                self._finalizer()
                self._start()
                return decode_logits(self._ask(request))

    def _ask(self, request: bytes) -> bytes:
        write_frame(self._child.stdin, request)
        return read_frame(self._child.stdout)

    def close(self) -> None:
        self._finalizer()


def _stop(child: subprocess.Popen, timeout_s: float = 5.0) -> None:
    if child.stdin is not None:
        try:
            child.stdin.close()  # the child's end of input: it exits
        except OSError:
            pass
    try:
        child.wait(timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    if child.stdout is not None:
        child.stdout.close()


def serve(bundle_root: str, precision: str, threads: int) -> int:
    """The child: load the student, then answer each request until stdin ends."""
    for stop in (signal.SIGINT, signal.SIGTERM):  # a terminal's ^C or a group's SIGTERM: the worker decides
        signal.signal(stop, signal.SIG_IGN)  # when its child ends (its input closes), after its last batch
    channel_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything else printed goes to the worker's log, not into the replies
    channel_in = os.fdopen(os.dup(0), "rb")
    try:
        import torch

        from models.bundle import load_bundle

        torch.set_num_threads(threads)
        student = load_bundle(bundle_root, verify_hashes=False).load_student(precision)  # the parent checked the hashes
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        write_frame(channel_out, b"F" + repr(exc).encode())
        return 1
    write_frame(channel_out, b"R")
    while True:
        try:
            request = read_frame(channel_in)
        except EOFError:
            return 0
        try:
            reply = encode_logits(student.logits(orjson.loads(request)))
        except Exception as exc:  # noqa: BLE001 - one bad batch is the parent's to report
            reply = b"E" + repr(exc).encode()
        write_frame(channel_out, reply)


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.argv[2], int(sys.argv[3])))
