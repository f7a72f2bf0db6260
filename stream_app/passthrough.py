"""The passthrough stage: the transport's ceiling for benchmarks (no model, pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from stream_app.records import Incoming, Output, StageResult, fallback_key


@dataclass(frozen=True)
class PassthroughStage:
    """Forward every record unchanged (benchmark ceiling of the transport, no model).

    The input record's timestamp rides along in the ``tango.produced_at`` header so the
    benchmark can measure latency without touching the value.
    """

    output_topic: str

    def __call__(self, records: Sequence[Incoming]) -> StageResult:
        out = StageResult()
        for r in records:
            key = r.key if r.key is not None else fallback_key(r.source)
            out.outputs.append(Output(self.output_topic, key, r.value or b"", (("tango.produced_at", repr(r.timestamp).encode()),), origin=r))
        return out
