"""Records other producers can send but our clients cannot make: for tests."""

from __future__ import annotations


class RawName(str):
    """A header name whose wire bytes are not UTF-8: record builders that call ``encode`` on
    header names (kafka-python's, aiokafka's pure-Python one) write ``raw`` as it is."""

    def __new__(cls, raw: bytes):
        name = super().__new__(cls, raw.decode("latin-1"))
        name.raw = raw
        return name

    def encode(self, *args, **kwargs) -> bytes:  # type: ignore[override]
        return self.raw
