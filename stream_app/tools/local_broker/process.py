"""Processes and ports of the local broker: liveness, signals, readiness probe, log tails.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

# Popen objects of brokers started by *this* interpreter, keyed by pid. Kept so
# that a broker that died can be reaped (otherwise it lingers as a zombie and
# os.kill(pid, 0) keeps reporting it alive) and so Popen never warns on GC.
CHILDREN: dict[int, subprocess.Popen] = {}


class KafkaLocalError(RuntimeError):
    """Anything that stops the local broker from being fetched, started or stopped."""


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def probe(bootstrap: str, timeout_s: float, **client_config: Any) -> tuple[bool, str]:
    """One readiness check: TCP connect, then a metadata request via kafka-python.

    ``client_config`` (e.g. SASL settings) is passed to the KafkaAdminClient.
    """
    host, port = bootstrap.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=min(timeout_s, 1.0)):
            pass
    except OSError as exc:
        return False, f"connect: {exc}"
    try:
        from kafka import KafkaAdminClient
    except ImportError as exc:  # pragma: no cover - kafka-python is a project dependency
        raise KafkaLocalError("kafka-python is required for the readiness check") from exc
    ms = int(timeout_s * 1000)
    admin = None
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tango-kafka-local",
                                 request_timeout_ms=max(ms, 1000), bootstrap_timeout_ms=ms, **client_config)
        admin.list_topics()
        return True, ""
    except Exception as exc:  # any client error just means "not ready yet"
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        if admin is not None:
            try:
                admin.close()
            except Exception:
                pass


def alive(pid: int) -> bool:
    proc = CHILDREN.get(pid)
    if proc is not None:  # our own child: poll() also reaps it
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (dead, unreaped) is not running
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def process_cmdline(pid: int) -> str | None:
    """Process command line (Linux /proc); None where unavailable.

    Right after exec it can read back empty for a moment; callers treat empty as unknown.
    """
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # pgid == pid thanks to start_new_session=True
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def wait_dead(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def tail_text(text: str, lines: int) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # drop ANSI colours
    return "\n".join(text.rstrip().splitlines()[-lines:])


def tail_file(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            return tail_text(f.read().decode(errors="replace"), lines)
    except OSError:
        return ""
