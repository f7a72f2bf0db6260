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

Standard library only, plus kafka-python for the readiness check.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KafkaLocalError", "LocalKafka", "add_cli", "run_cli"]

DEFAULT_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
SLF4J_VERSION = "2.0.16"  # the version log4j-slf4j2-impl 2.24.3 is built against
SCALA_VERSION = "2.13"
CACHE_ENV = "TANGO_KAFKA_CACHE"

_MARKER = ".complete"  # written into the jar folder only after mvn succeeded
_PID_FILE = "kafka.pid"
_LOG_FILE = "broker.log"
_OUT_FILE = "broker.out"
_MAIN_CLASS = "kafka.Kafka"
_SCRAM_FILE = "scram-users.sha256"
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"

# Popen objects of brokers started by *this* interpreter, keyed by pid. Kept so
# that a broker that died can be reaped (otherwise it lingers as a zombie and
# os.kill(pid, 0) keeps reporting it alive) and so Popen never warns on GC.
_CHILDREN: dict[int, subprocess.Popen] = {}


class KafkaLocalError(RuntimeError):
    """Anything that stops the local broker from being fetched, started or stopped."""


def _default_cache_base() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tango-stream"


@dataclass(frozen=True)
class LocalKafka:
    """A local single-node Kafka broker bound to 127.0.0.1.

    ``controller_port`` defaults to ``port + 1``; ``data_dir`` to
    ``~/.cache/tango-stream/kafka-data/<port>``; ``cache_dir`` (the jar folder)
    to ``<base>/kafka-<version>/libs`` where ``<base>`` is ``$TANGO_KAFKA_CACHE``
    or ``~/.cache/tango-stream``. ``heap`` is the JVM's ``-Xmx``.

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
            set_(self, "data_dir", Path.home() / ".cache" / "tango-stream" / "kafka-data" / str(self.port))
        if self.cache_dir is None:
            set_(self, "cache_dir", _default_cache_base() / f"kafka-{self.version}" / "libs")
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
        return self.data_dir / _PID_FILE

    @property
    def log_file(self) -> Path:
        return self.data_dir / _LOG_FILE

    @property
    def out_file(self) -> Path:
        return self.data_dir / _OUT_FILE

    @property
    def server_properties(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log4j_properties(self) -> Path:
        return self.data_dir / "log4j2.properties"

    # ------------------------------------------------------------------- jars
    def jars_ready(self) -> bool:
        """True if the jar folder holds a complete download of the current pom."""
        marker = self.cache_dir / _MARKER
        try:
            lines = marker.read_text().splitlines()
        except OSError:
            return False
        if not lines or lines[0] != _marker_header(self.version):
            return False  # missing, or fetched with a different pom
        names = [n for n in lines[1:] if n.endswith(".jar")]
        return bool(names) and all((self.cache_dir / n).is_file() for n in names)

    def ensure_jars(self) -> Path:
        """Fetch the broker's runtime jars with Maven unless already cached.

        Invariant: ``cache_dir`` only ever appears complete. Maven downloads into
        a sibling temp folder, the marker (pom hash + every jar name) is written
        there, and the folder is then renamed into place. A marker from another
        pom (e.g. an older version of this module) triggers a fresh download.
        """
        if self.jars_ready():
            return self.cache_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaLocalError(
                "Maven ('mvn') is not on PATH; it is needed once to download the Kafka "
                f"{self.version} jars into {self.cache_dir} (e.g. apt-get install maven)"
            )
        self._java()  # fail early, before a download, if there is no JVM to run them
        parent = self.cache_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="tango-kafka-pom-") as work, \
                tempfile.TemporaryDirectory(prefix=".libs-", dir=parent) as staging:
            pom = Path(work) / "pom.xml"
            pom.write_text(_pom(self.version))
            out_dir = Path(staging) / "libs"
            cmd = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(pom), "dependency:copy-dependencies",
                   f"-DoutputDirectory={out_dir}", "-DincludeScope=runtime"]
            try:
                proc = subprocess.run(cmd, cwd=work, stdin=subprocess.DEVNULL,
                                      capture_output=True, text=True, timeout=1800)
            except subprocess.TimeoutExpired as exc:
                raise KafkaLocalError(f"mvn timed out after {exc.timeout:.0f}s fetching Kafka jars") from exc
            jars = sorted(p.name for p in out_dir.glob("*.jar")) if out_dir.is_dir() else []
            if proc.returncode != 0 or not jars:
                output = (proc.stdout or "") + (proc.stderr or "")
                raise KafkaLocalError(
                    f"mvn failed (exit {proc.returncode}) fetching Kafka {self.version} jars:\n"
                    + _tail_text(output, 40)
                )
            (out_dir / _MARKER).write_text(_marker_header(self.version) + "\n" + "\n".join(jars) + "\n")
            if self.cache_dir.exists():  # incomplete leftover from an interrupted run
                shutil.rmtree(self.cache_dir, ignore_errors=True)
            try:
                out_dir.rename(self.cache_dir)
            except OSError:
                if not self.jars_ready():  # lost a race to a concurrent ensure_jars()
                    raise
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
            if not _port_free(p):
                raise KafkaLocalError(
                    f"port {p} on 127.0.0.1 is already in use by another process; "
                    "pick other ports (--port) or stop that process"
                )
        self.ensure_jars()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_configs()
        self._format_storage_once()

        cmd = self._java_cmd(_MAIN_CLASS, str(self.server_properties))
        with open(self.out_file, "wb") as out:
            out.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n".encode())
            out.flush()
            # New session: the broker is its own process-group leader, so Ctrl-C
            # in the caller's terminal does not reach it and down() can signal
            # the whole group (pgid == pid).
            proc = subprocess.Popen(cmd, cwd=self.data_dir, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True, close_fds=True)
        _CHILDREN[proc.pid] = proc
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
        _signal_group(pid, signal.SIGTERM)  # Kafka shuts down cleanly on SIGTERM
        if not _wait_dead(pid, timeout_s):
            _signal_group(pid, signal.SIGKILL)
            if not _wait_dead(pid, 10):
                raise KafkaLocalError(f"broker pid {pid} survived SIGKILL")
        _CHILDREN.pop(pid, None)
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
            text = _tail_file(path, lines)
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
        self.server_properties.write_text(_server_properties(
            port=self.port, controller_port=self.controller_port, log_dir=self.log_dir,
            sasl_port=self.sasl_port))
        self.log4j_properties.write_text(_log4j_properties(self.log_file))

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
        fingerprint_file = self.data_dir / _SCRAM_FILE
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
        cmd = self._java_cmd("kafka.tools.StorageTool", "format", "-t", _random_cluster_id(),
                             "-c", str(self.server_properties), *scram_args)
        proc = subprocess.run(cmd, cwd=self.data_dir, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0 or not (self.log_dir / "meta.properties").is_file():
            output = proc.stdout + proc.stderr
            for _, password in self.scram_users:
                output = output.replace(password, "***")
            raise KafkaLocalError(
                f"formatting Kafka storage in {self.log_dir} failed (exit {proc.returncode}):\n"
                + _tail_text(output, 40) + "\n" + self.log_tail(20)
            )
        if self.scram_users:
            fingerprint_file.write_text(_scram_fingerprint(self.scram_users) + "\n")
        else:
            fingerprint_file.unlink(missing_ok=True)

    def _check_scram_users(self) -> None:
        """Refuse a formatted data dir whose SCRAM users are not the requested ones."""
        if not self.scram_users or not (self.log_dir / "meta.properties").is_file():
            return
        try:
            formatted_with = (self.data_dir / _SCRAM_FILE).read_text().strip()
        except OSError:
            formatted_with = "(none)"
        if formatted_with != _scram_fingerprint(self.scram_users):
            raise KafkaLocalError(
                f"{self.data_dir} was formatted with other SCRAM users than requested; SCRAM users are "
                "created only when storage is formatted: wipe the data dir (or use another) first")

    def _running_pid(self) -> int | None:
        """Pid from the pid file if that process is alive and is *this* broker."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        if not _alive(pid):
            return None
        if pid in _CHILDREN:  # started by this interpreter: certainly ours
            return pid
        # Guard against pid reuse: the command line must be our broker's.
        cmdline = _cmdline(pid)
        if cmdline and (_MAIN_CLASS not in cmdline or str(self.server_properties) not in cmdline):
            return None
        return pid

    def _wait_ready(self, pid: int, deadline: float) -> None:
        """Poll until the broker answers a metadata request, the JVM dies, or the deadline."""
        last_err: str = "no answer yet"
        while True:
            if not _alive(pid):
                self.pid_file.unlink(missing_ok=True)
                _CHILDREN.pop(pid, None)
                raise KafkaLocalError(
                    f"Kafka broker (pid {pid}) exited during startup.\n{self.log_tail()}")
            remaining = deadline - time.monotonic()
            where = self.bootstrap
            ok, last_err = _probe(self.bootstrap, timeout_s=max(0.5, min(5.0, remaining)))
            if ok and self.sasl_port is not None:
                # The SCRAM listener answers too, and the first user can log in.
                user, password = self.scram_users[0]
                where = f"{self.sasl_bootstrap} (SASL, user {user})"
                ok, last_err = _probe(self.sasl_bootstrap, timeout_s=max(0.5, min(5.0, remaining)),
                                      security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                                      sasl_plain_username=user, sasl_plain_password=password)
            if ok:
                return
            if time.monotonic() >= deadline:
                raise KafkaLocalError(
                    f"Kafka broker (pid {pid}) did not answer on {where} in time "
                    f"(last error: {last_err}).\n{self.log_tail()}")
            time.sleep(0.25)


# ---------------------------------------------------------------- helpers
def _pom(version: str) -> str:
    deps = [
        ("org.apache.kafka", f"kafka_{SCALA_VERSION}", version),
        # log4j2 backend for Kafka's SLF4J logging (no "no SLF4J providers" noise).
        ("org.apache.logging.log4j", "log4j-slf4j2-impl", LOG4J_VERSION),
        ("org.apache.logging.log4j", "log4j-core", LOG4J_VERSION),
        # Kafka's poms declare slf4j-api 1.7.36, which Maven would pick; 1.7 cannot
        # see the SLF4J-2 provider and prints "StaticLoggerBinder" noise, then
        # drops all logs. A direct dependency wins Maven's mediation.
        ("org.slf4j", "slf4j-api", SLF4J_VERSION),
        # Deliberately NOT kafka-tools: it drags in connect + jetty; StorageTool
        # (kafka.tools.StorageTool) ships in kafka_2.13 itself.
    ]
    body = "\n".join(
        f"    <dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>" for g, a, v in deps)
    return f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tango</groupId><artifactId>tango-kafka-local</artifactId><version>1</version>
  <dependencies>
{body}
  </dependencies>
</project>
"""


def _marker_header(version: str) -> str:
    return f"# kafka {version} pom-sha256 {hashlib.sha256(_pom(version).encode()).hexdigest()[:16]}"


def _server_properties(*, port: int, controller_port: int, log_dir: Path, sasl_port: int | None = None) -> str:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",  # default 50: slow first consumer-group join
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "168",
    }
    if sasl_port is not None:
        # An extra client listener for SCRAM. Inter-broker, controller and admin
        # traffic stay on PLAINTEXT, so no broker-side credentials are needed: the
        # login module only has to be named for each mechanism the listener serves.
        props["listeners"] += f",SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
        props["advertised.listeners"] += f",SASL_PLAINTEXT://127.0.0.1:{sasl_port}"
        props["listener.security.protocol.map"] += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
        props["sasl.enabled.mechanisms"] = ",".join(SCRAM_MECHANISMS)
        for mechanism in SCRAM_MECHANISMS:
            props[f"listener.name.sasl_plaintext.{mechanism.lower()}.sasl.jaas.config"] = _SCRAM_LOGIN
    return "# generated by stream_app.kafka_local; rewritten on every up()\n" + "".join(
        f"{k}={v}\n" for k, v in props.items())


def _log4j_properties(log_file: Path) -> str:
    return f"""# generated by stream_app.kafka_local
status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.append = false
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
"""


def _random_cluster_id() -> str:
    """A cluster id like Kafka's Uuid.randomUuid(): 16 random bytes, url-safe base64, no padding."""
    while True:
        raw = uuid.uuid4().bytes
        cid = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        # Kafka rejects ids that start with '-' (look like CLI flags) and its reserved ids.
        if not cid.startswith("-") and raw not in (bytes(16), bytes(15) + b"\x01"):
            return cid


def _scram_fingerprint(users: tuple[tuple[str, str], ...]) -> str:
    """A one-way digest of the SCRAM users, so the data dir holds no plain passwords (a local test broker)."""
    return hashlib.sha256(json.dumps(sorted(users)).encode()).hexdigest()


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _probe(bootstrap: str, timeout_s: float, **client_config: Any) -> tuple[bool, str]:
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


def _alive(pid: int) -> bool:
    proc = _CHILDREN.get(pid)
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


def _cmdline(pid: int) -> str | None:
    """Process command line (Linux /proc); None where unavailable.

    Right after exec it can read back empty for a moment; callers treat empty as unknown.
    """
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # pgid == pid thanks to start_new_session=True
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def _wait_dead(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _tail_text(text: str, lines: int) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # drop ANSI colours
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _tail_file(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            return _tail_text(f.read().decode(errors="replace"), lines)
    except OSError:
        return ""


# -------------------------------------------------------------------- CLI
def add_cli(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register ``kafka {up,down,status,wipe}`` on an argparse subparsers object.

    Sets ``func=run_cli`` as the parser default, so ``args.func(args)`` dispatches.
    """
    p = subparsers.add_parser("kafka", help="run a local single-node Kafka broker",
                              description="Manage a local single-node Kafka broker (KRaft) on 127.0.0.1.")
    p.add_argument("kafka_action", metavar="action", choices=["up", "down", "status", "wipe"],
                   help="up: start and wait until ready (prints bootstrap); down: stop; "
                        "status: one line of JSON; wipe: stop and delete the data dir")
    p.add_argument("--port", type=int, default=9092, help="broker port (controller uses port+1)")
    p.add_argument("--data-dir", dest="kafka_data_dir", default=None,
                   help="data dir (default ~/.cache/tango-stream/kafka-data/<port>)")
    p.add_argument("--version", dest="kafka_version", default=DEFAULT_VERSION,
                   help=f"Kafka version (default {DEFAULT_VERSION})")
    p.add_argument("--wait", dest="kafka_wait", type=float, default=60.0,
                   help="seconds up waits for the broker to answer (default 60)")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Execute a parsed ``kafka`` subcommand; returns the process exit code."""
    try:
        kafka = LocalKafka(version=args.kafka_version, port=args.port,
                           data_dir=Path(args.kafka_data_dir) if args.kafka_data_dir else None)
        action = args.kafka_action
        if action == "up":
            print(kafka.up(wait_s=getattr(args, "kafka_wait", 60.0)), flush=True)
        elif action == "down":
            kafka.down()
        elif action == "status":
            print(json.dumps(kafka.status()), flush=True)
        elif action == "wipe":
            kafka.wipe()
        return 0
    except KafkaLocalError as exc:
        print(f"kafka {args.kafka_action}: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    """``python -m stream_app.kafka_local up|down|status|wipe`` (same flags as ``tango kafka``)."""
    parser = argparse.ArgumentParser(prog="python -m stream_app.kafka_local")
    sub = parser.add_subparsers(dest="command", required=True)
    add_cli(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_cli(parser.parse_args(["kafka", *argv]))


if __name__ == "__main__":
    sys.exit(main())
