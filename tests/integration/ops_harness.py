"""Helpers of the operations tests: scraping a process's endpoint, a steady producer."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict

from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import free_port_pair


def free_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        ports.extend(p for p in free_port_pair() if p not in ports)
    return ports[:n]


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_ready(port: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if get(port, "/readyz", timeout=2.0)[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.3)
    raise TimeoutError(f"port {port} never became ready")


class Scrape:
    """One scrape of ``/metrics``: samples by name, summed over the labels asked for."""

    def __init__(self, text: str):
        self.text = text
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[sample.name].append((sample.labels, sample.value))

    @classmethod
    def of(cls, port: int) -> "Scrape":
        status, text = get(port, "/metrics")
        assert status == 200, text
        return cls(text)

    def value(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels``."""
        return sum(v for sample_labels, v in self.samples.get(name, []) if labels.items() <= sample_labels.items())

    def labels(self, name: str) -> list[dict[str, str]]:
        return [labels for labels, _ in self.samples.get(name, [])]


class SteadyProducer(threading.Thread):
    """Sends ``values`` at ``rate`` records/s from a thread; ``sent`` counts them.

    ``finish()`` ends the stream early (after the record in flight), so a test can keep tweets
    coming until what it waits for has happened, however slow the machine is."""

    def __init__(self, bootstrap: str, topic: str, values: list[bytes], rate: float):
        super().__init__(daemon=True)
        self.bootstrap, self.topic, self.values, self.rate = bootstrap, topic, values, rate
        self.sent = 0
        self._finish = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
            started = time.monotonic()
            for i, value in enumerate(self.values):
                delay = started + i / self.rate - time.monotonic()
                if self._finish.wait(max(delay, 0.0)):  # sleeps out the delay unless finished
                    break
                producer.send(self.topic, value=value)
                self.sent = i + 1
            producer.flush()
            producer.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def finish(self) -> None:
        self._finish.set()
