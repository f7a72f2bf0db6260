"""A bound on graceful shutdown, shared by the stream and teacher workers.

On SIGTERM a worker hands back its in-flight batch (its events are not acked, so they
are redelivered) or finishes it, commits what was acknowledged, and exits. If that has
not happened within ``shutdown_timeout_s``, the watchdog ends the process: nothing is
lost by that either, since only acknowledged work was ever committed.

SIGHUP asks a worker to check its bundle at once (``stream_app.reload``); a worker with no
bundle to reload (passthrough, or a teacher serving ``teacher_model`` alone) logs it
instead of taking the signal's default action, which would end the process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from typing import Any


def start_shutdown_watchdog(timeout_s: float, name: str) -> threading.Timer:
    """Exit the process with status 1 if it is still running ``timeout_s`` from now."""

    def expire() -> None:
        sys.stderr.write(f'{{"event": "shutdown timed out, exiting", "process": "{name}", "timeout_s": {timeout_s}}}\n')
        sys.stderr.flush()
        os._exit(1)

    timer = threading.Timer(timeout_s, expire)
    timer.daemon = True
    timer.start()
    return timer


def log_reload_requests(logger: Any, reason: str) -> None:
    """On SIGHUP, log that there is nothing to reload (``reason``) and go on."""
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, lambda: logger.info("SIGHUP: nothing to reload", reason=reason))
