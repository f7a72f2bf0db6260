"""tango-stream: a Tango cascade (student → teacher) streaming classifier on Kafka.

The public surface is small: ``Settings`` (every knob, env var and CLI flag), the
``tango`` console script, and the pure stages in ``stream_app.pipeline`` for testing a
pipeline without a broker.
"""

from stream_app.settings import Settings

__all__ = ["Settings"]
