"""tango-stream: a Tango cascade (student → teacher) streaming classifier on Kafka.

This package is the pipeline core both kinds of worker share (settings, record contracts,
batching, the student and merge stages, all pure), the Faust stream worker
(``stream_worker``), what talks to a broker (``kafka_io``) and the operator tools
(``tools``: the ``tango`` command). Only ``tools`` may import ``workers``.

The public surface: ``Settings``, the pure stages, and ``run_local`` to test a cascade
without a broker.
"""

from stream_app.batching import collect_batch
from stream_app.local import run_local
from stream_app.merge import MergeStage, RecentIds
from stream_app.records import (
    Incoming,
    Output,
    Reason,
    Source,
    StageResult,
    decode_tweet,
)
from stream_app.settings import Settings
from stream_app.student import StudentStage

__all__ = [
    "Incoming", "MergeStage", "Output", "Reason", "RecentIds", "Settings", "Source", "StageResult", "StudentStage",
    "collect_batch", "decode_tweet", "run_local",
]
