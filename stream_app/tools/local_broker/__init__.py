"""A local single-node Apache Kafka broker (KRaft) for development, tests and the demo.

``broker`` holds ``LocalKafka`` (fetch jars, format, start, stop); ``config`` the files it
writes; ``process`` its process handling; ``cli`` the ``tango kafka`` subcommand. Imports
``stream_app.settings`` only (for the cache root).
"""

from stream_app.tools.local_broker.broker import LocalKafka
from stream_app.tools.local_broker.cli import add_cli, main, run_cli
from stream_app.tools.local_broker.config import DEFAULT_VERSION
from stream_app.tools.local_broker.process import KafkaLocalError

__all__ = ["DEFAULT_VERSION", "KafkaLocalError", "LocalKafka", "add_cli", "main", "run_cli"]
