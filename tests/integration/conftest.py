"""Integration fixtures: a real local Kafka broker for the whole test session.

Every test under tests/integration is marked ``integration`` automatically, so
``pytest -m "not integration"`` skips them (they need Java, and Maven the first
time to fetch the broker jars into $TANGO_CACHE_DIR, default ~/.cache/tango-stream).
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path
from typing import Callable, Iterator

import pytest

from stream_app.tools.local_broker import LocalKafka

_HERE = Path(__file__).resolve().parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs a real local Kafka broker (Java)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items, so only mark the ones in this folder.
    for item in items:
        if _HERE == Path(item.path).resolve().parent or _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)


def free_port_pair() -> tuple[int, int]:
    """Two distinct currently-free TCP ports on 127.0.0.1 (broker, controller)."""
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(2)]
    try:
        for s in socks:  # hold both open at once so the OS hands out two different ports
            s.bind(("127.0.0.1", 0))
        return socks[0].getsockname()[1], socks[1].getsockname()[1]
    finally:
        for s in socks:
            s.close()


def _unavailable(why: str) -> None:
    """Skip, or with TANGO_REQUIRE_KAFKA=1 (as in CI) fail: a Kafka test must not pass vacuously."""
    if os.environ.get("TANGO_REQUIRE_KAFKA") == "1":
        pytest.fail(f"{why}; TANGO_REQUIRE_KAFKA=1 forbids skipping the Kafka tests", pytrace=False)
    pytest.skip(why)


def make_local_kafka(data_dir: Path) -> LocalKafka:
    """A LocalKafka on fresh free ports; skips the test if Java/Maven are unavailable."""
    port, cport = free_port_pair()
    kafka = LocalKafka(port=port, controller_port=cport, data_dir=data_dir)
    if shutil.which("java") is None:
        _unavailable("java is not installed; the local Kafka broker needs Java 17+")
    if not kafka.jars_ready() and shutil.which("mvn") is None:
        _unavailable("Kafka jars are not cached and mvn is not installed to fetch them")
    return kafka


@pytest.fixture(scope="session")
def kafka_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """The session's LocalKafka (started); stopped at the end of the session."""
    kafka = make_local_kafka(tmp_path_factory.mktemp("kafka"))
    try:
        kafka.up(wait_s=120)
        yield kafka
    finally:
        kafka.down()


@pytest.fixture
def make_kafka(tmp_path: Path) -> Iterator[Callable[[], LocalKafka]]:
    """Factory for extra, not-yet-started brokers on fresh ports (stopped after the test)."""
    made: list[LocalKafka] = []

    def make() -> LocalKafka:
        kafka = make_local_kafka(tmp_path / f"kafka-{len(made)}")
        made.append(kafka)
        return kafka

    try:
        yield make
    finally:
        for kafka in made:
            kafka.down()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_local: LocalKafka) -> str:
    """Bootstrap string ("127.0.0.1:PORT") of the session broker."""
    return kafka_local.bootstrap
