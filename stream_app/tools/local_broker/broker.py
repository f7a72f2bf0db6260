"""Run a real single-node Apache Kafka broker (KRaft mode) on 127.0.0.1.

The broker and its controller share one JVM. Jars come from Maven Central
(fetched once with ``mvn`` into a cache folder); the broker runs detached, so
it keeps running after the Python process that started it exits.

Files in ``data_dir``:

* ``server.properties`` / ``log4j2.properties`` - rewritten on every ``up()``
* ``kraft-logs/``     - the broker's log dir (topics, metadata, meta.properties)
* ``broker.log``      - log4j output (WARN and above), truncated on every start
* ``broker.out``      - JVM stdout/stderr (crashes, bad flags), truncated likewise
* ``kafka.pid``       - pid of the running JVM (also its process-group id)
* ``scram-users.sha256`` - fingerprint of the SCRAM users the storage was formatted
  with (only when ``scram_users`` is set)

Typical use::

    kafka = LocalKafka(port=9092)
    bootstrap = kafka.up()      # "127.0.0.1:9092"
    ...
    kafka.down()

With ``sasl_port`` and ``scram_users`` the broker also gets a
``SASL_PLAINTEXT://127.0.0.1:<sasl_port>`` listener that accepts SCRAM-SHA-256
and SCRAM-SHA-512; the users' credentials are written into the KRaft bootstrap
metadata when the storage is formatted (``StorageTool format --add-scram``)::

    kafka = LocalKafka(port=9092, sasl_port=9094, scram_users=(("alice", "secret"),))
    kafka.up()
    kafka.sasl_bootstrap        # "127.0.0.1:9094"

The PLAINTEXT listener stays as it is (inter-broker traffic, admin, readiness).

Standard library only, plus kafka-python for the readiness check."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream_app.settings import CACHE_DIR
from stream_app.tools.local_broker.config import (
    DEFAULT_VERSION,
    LOG_FILE,
    MAIN_CLASS,
    OUT_FILE,
    PID_FILE,
    SCRAM_FILE,
    SCRAM_MECHANISMS,
    log4j_properties,
    random_cluster_id,
    scram_fingerprint,
    server_properties,
)
from stream_app.tools.local_broker.jars import fetch_jars, jars_ready
from stream_app.tools.local_broker.process import (
    CHILDREN,
    KafkaLocalError,
    alive,
    port_free,
    probe,
    process_cmdline,
    signal_group,
    tail_file,
    tail_text,
    wait_dead,
)

__all__ = ["KafkaLocalError", "LocalKafka"]


@dataclass(frozen=True)
class LocalKafka:
    """A local single-node Kafka broker bound to 127.0.0.1.

    ``controller_port`` defaults to ``port + 1``; ``data_dir`` to
    ``<cache root>/kafka-data/<port>``; ``cache_dir`` (the jar folder) to
    ``<cache root>/kafka-<version>/libs``, the cache root being the settings'
    ``CACHE_DIR`` (``$TANGO_CACHE_DIR``, default ``~/.cache/tango-stream``). ``heap`` is the JVM's ``-Xmx``.

    ``sasl_port`` and ``scram_users`` (``(user, password)`` pairs) go together:
    they add a SASL_PLAINTEXT listener on ``sasl_port`` whose users are created,
    for both SCRAM mechanisms, when the data dir is formatted. A data dir that
    was formatted with other users (or none) is refused; ``wipe()`` it first.
    """

    version: str = DEFAULT_VERSION
    port: int = 9092
    controller_port: int | None = None
    data_dir: Path | None = None
    cache_dir: Path | None = None
    heap: str = "512m"
    java: str | None = field(default=None, compare=False)  # default: $JAVA_HOME/bin/java or PATH
    sasl_port: int | None = None
    scram_users: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # (user, password); no passwords in repr

    def __post_init__(self) -> None:
        # Frozen dataclass: resolve the derived defaults once, here.
        set_ = object.__setattr__
        if self.controller_port is None:
            set_(self, "controller_port", self.port + 1)
        if self.controller_port == self.port:
            raise KafkaLocalError("port and controller_port must differ")
        users = tuple((str(u), str(p)) for u, p in self.scram_users)
        set_(self, "scram_users", users)
        if bool(users) != (self.sasl_port is not None):
            raise KafkaLocalError("sasl_port and scram_users go together: set both or neither")
        if self.sasl_port is not None and self.sasl_port in (self.port, self.controller_port):
            raise KafkaLocalError("sasl_port must differ from port and controller_port")
        for user, password in users:
            # StorageTool splits "name=..,password=.." on every comma, with no escape.
            if not user or not password or "," in user or "," in password:
                raise KafkaLocalError(
                    f"SCRAM user {user!r}: user and password must be non-empty and contain no comma")
        if self.data_dir is None:
            set_(self, "data_dir", CACHE_DIR / "kafka-data" / str(self.port))
        if self.cache_dir is None:
            set_(self, "cache_dir", CACHE_DIR / f"kafka-{self.version}" / "libs")
        set_(self, "data_dir", Path(self.data_dir).expanduser().absolute())
        set_(self, "cache_dir", Path(self.cache_dir).expanduser().absolute())

    # ------------------------------------------------------------------ paths
    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """Bootstrap of the SASL_PLAINTEXT (SCRAM) listener; KafkaLocalError if there is none."""
        if self.sasl_port is None:
            raise KafkaLocalError("this LocalKafka has no SASL listener (set sasl_port and scram_users)")
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def log_dir(self) -> Path:
        """Kafka's ``log.dirs`` (partition data + KRaft metadata + meta.properties)."""
        return self.data_dir / "kraft-logs"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / PID_FILE

    @property
    def log_file(self) -> Path:
        return self.data_dir / LOG_FILE

    @property
    def out_file(self) -> Path:
        return self.data_dir / OUT_FILE

    @property
    def server_properties(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log4j_properties(self) -> Path:
        return self.data_dir / "log4j2.properties"

    # ------------------------------------------------------------------- jars
    def jars_ready(self) -> bool:
        """True if the jar folder holds a complete download of the current pom."""
        return jars_ready(self.cache_dir, self.version)

    def ensure_jars(self) -> Path:
        """Fetch the broker's runtime jars with Maven unless already cached (``jars.fetch_jars``)."""
        if not jars_ready(self.cache_dir, self.version):
            self._java()  # fail early, before a download, if there is no JVM to run them
            fetch_jars(self.cache_dir, self.version)
        return self.cache_dir

    # ------------------------------------------------------------- lifecycle
    def up(self, wait_s: float = 60) -> str:
        """Start the broker (if needed) and block until it answers; return the bootstrap.

        Idempotent: if our broker is already running it only waits for it to answer.
        ``wait_s`` bounds that wait (the one-off jar download and format are extra).
        Raises KafkaLocalError (with the broker's log tail) if it dies or times out.
        """
        pid = self._running_pid()
        if pid is not None:
            self._check_scram_users()  # a running broker cannot gain users either
            self._wait_ready(pid, time.monotonic() + wait_s)
            return self.bootstrap

        self.pid_file.unlink(missing_ok=True)  # stale: process is gone
        for p in (self.port, self.controller_port, self.sasl_port):
            if p is None:
                continue
            if not port_free(p):
                raise KafkaLocalError(
                    f"port {p} on 127.0.0.1 is already in use by another process; "
                    "pick other ports (--port) or stop that process"
                )
        self.ensure_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_configs()
        self._format_storage_once()

        cmd = self._java_cmd(MAIN_CLASS, str(self.server_properties))
        with open(self.out_file, "wb") as out:
            out.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            out.flush()
            # New session: the broker is its own process-group leader, so Ctrl-C
            # in the caller's terminal does not reach it and down() can signal
            # the whole group (pgid == pid).
            proc = subprocess.Popen(cmd, cwd=self.data_dir, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True)
        CHILDREN[proc.pid] = proc
        self.pid_file.write_text(f"{proc.pid}\n")
        try:
            self._wait_ready(proc.pid, time.monotonic() + wait_s)
        except BaseException:
            self.down(timeout_s=10)
            raise
        return self.bootstrap

    def down(self, timeout_s: float = 30) -> bool:
        """Stop the broker: SIGTERM its process group, SIGKILL after ``timeout_s``.

        Safe when not running. Returns True if a running broker was stopped.
        """
        pid = self._running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        signal_group(pid, signal.SIGTERM)  # Kafka shuts down cleanly on SIGTERM
        if not wait_dead(pid, timeout_s):
            signal_group(pid, signal.SIGKILL)
            if not wait_dead(pid, 10):
                raise KafkaLocalError(f"broker pid {pid} survived SIGKILL")
        CHILDREN.pop(pid, None)
        self.pid_file.unlink(missing_ok=True)
        return True

    def status(self) -> dict[str, Any]:
        """Cheap status (no network): is our JVM alive, and where."""
        pid = self._running_pid()
        status = {
            "running": pid is not None,
            "pid": pid,
            "bootstrap": self.bootstrap,
            "data_dir": str(self.data_dir),
            "version": self.version,
        }
        if self.sasl_port is not None:
            status["sasl_bootstrap"] = self.sasl_bootstrap
        return status

    def wipe(self, timeout_s: float = 30) -> None:
        """Stop the broker and delete its data dir (topics, offsets, cluster id)."""
        self.down(timeout_s=timeout_s)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the broker's log4j log and JVM output (for error messages)."""
        parts = []
        for path in (self.log_file, self.out_file):
            text = tail_file(path, lines)
            if text.strip():
                parts.append(f"--- {path} ---\n{text}")
        return "\n".join(parts) or "(broker log is empty)"

    # -------------------------------------------------------------- internals
    def _java(self) -> str:
        if self.java:
            return self.java
        home = os.environ.get("JAVA_HOME")
        if home and (Path(home) / "bin" / "java").is_file():
            return str(Path(home) / "bin" / "java")
        java = shutil.which("java")
        if java is None:
            raise KafkaLocalError("Java ('java') is not on PATH and JAVA_HOME is unset; "
                                  f"Kafka {self.version} needs Java 17+")
        return java

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        # Same spirit as kafka-run-class.sh, minus JMX/GC logging.
        return [
            self._java(), f"-Xmx{self.heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_properties}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp", str(self.cache_dir / "*"), main, *args,
        ]

    def _write_configs(self) -> None:
        """(Re)write server.properties and log4j2.properties; cheap, done on every up()."""
        self.server_properties.write_text(server_properties(
            port=self.port, controller_port=self.controller_port, log_dir=self.log_dir,
            sasl_port=self.sasl_port))
        self.log4j_properties.write_text(log4j_properties(self.log_file))

    def _format_storage_once(self) -> None:
        """Format KRaft storage, once per data dir.

        Invariant: meta.properties in ``log_dir`` means the dir is formatted and
        owns a cluster id; formatting again would fail (or, forced, lose data).
        SCRAM users are part of that one format: ``--add-scram`` writes their
        UserScramCredentialRecords into the bootstrap metadata
        (``bootstrap.checkpoint``), which the controller replays only when the
        cluster metadata log is first created. So users can only be chosen at
        format time; the fingerprint file records which ones were, and a later
        ``up()`` with other users is refused instead of silently not applying them.
        """
        fingerprint_file = self.data_dir / SCRAM_FILE
        if (self.log_dir / "meta.properties").is_file():
            self._check_scram_users()
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        scram_args: list[str] = []
        for user, password in self.scram_users:
            for mechanism in SCRAM_MECHANISMS:
                # Values quoted: StorageTool strips one pair of surrounding quotes, so a
                # password that itself starts and ends with '"' survives intact.
                scram_args += ["--add-scram", f'{mechanism}=[name="{user}",password="{password}"]']
        cmd = self._java_cmd("kafka.tools.StorageTool", "format", "-t", random_cluster_id(),
                             "-c", str(self.server_properties), *scram_args)
        proc = subprocess.run(cmd, cwd=self.data_dir, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not (self.log_dir / "meta.properties").is_file():
            output = proc.stdout + proc.stderr
            for _, password in self.scram_users:
                output = output.replace(password, "***")
            raise KafkaLocalError(
                f"formatting Kafka storage in {self.log_dir} failed (exit {proc.returncode}):\n"
                + tail_text(output, 40) + "\n" + self.log_tail(20)
            )
        if self.scram_users:
            fingerprint_file.write_text(scram_fingerprint(self.scram_users) + "\n")
        else:
            fingerprint_file.unlink(missing_ok=True)

    def _check_scram_users(self) -> None:
        """Refuse a formatted data dir whose SCRAM users are not the requested ones."""
        if not self.scram_users or not (self.log_dir / "meta.properties").is_file():
            return
        try:
            formatted_with = (self.data_dir / SCRAM_FILE).read_text().strip()
        except OSError:
            formatted_with = "(none)"
        if formatted_with != scram_fingerprint(self.scram_users):
            raise KafkaLocalError(
                f"{self.data_dir} was formatted with other SCRAM users than requested; SCRAM users are "
                "created only when storage is formatted: wipe the data dir (or use another) first")

    def _running_pid(self) -> int | None:
        """Pid from the pid file if that process is alive and is *this* broker."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not alive(pid):
            return None
        if pid in CHILDREN:  # started by this interpreter: certainly ours
            return pid
        # Guard against pid reuse: the command line must be our broker's.
        cmdline = process_cmdline(pid)
        if cmdline and (MAIN_CLASS not in cmdline or str(self.server_properties) not in cmdline):
            return None
        return pid

    def _wait_ready(self, pid: int, deadline: float) -> None:
        """Poll until the broker answers a metadata request, the JVM dies, or the deadline."""
        last_err: str = "no answer yet"
        while True:
            if not alive(pid):
                self.pid_file.unlink(missing_ok=True)
                CHILDREN.pop(pid, None)
                raise KafkaLocalError(
                    f"Kafka broker (pid {pid}) exited during startup.\n{self.log_tail()}")
            remaining = deadline - time.monotonic()
            where = self.bootstrap
            ok, last_err = probe(self.bootstrap, timeout_s=max(0.5, min(5.0, remaining)))
            if ok and self.sasl_port is not None:
                # The SCRAM listener answers too, and the first user can log in.
                user, password = self.scram_users[0]
                where = f"{self.sasl_bootstrap} (SASL, user {user})"
                ok, last_err = probe(self.sasl_bootstrap, timeout_s=max(0.5, min(5.0, remaining)),
                                      security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                                      sasl_plain_username=user, sasl_plain_password=password)
            if ok:
                return
            if time.monotonic() >= deadline:
                raise KafkaLocalError(
                    f"Kafka broker (pid {pid}) did not answer on {where} in time "
                    f"(last error: {last_err}).\n{self.log_tail()}")
            time.sleep(0.25)

