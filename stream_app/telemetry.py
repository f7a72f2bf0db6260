"""Logging (structlog) and each process's periodic summary line."""

from __future__ import annotations

import logging
import logging.config
import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from stream_app.settings import Settings


def _renderer(settings: Settings):
    as_json = settings.log_format == "json" or (settings.log_format == "auto" and not sys.stderr.isatty())
    return structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)


def stdlib_logging_config(settings: Settings) -> dict:
    """A ``logging.config.dictConfig`` that renders the libraries' logs (Faust, aiokafka,
    kafka-python) like ours, so a process writes one format. Their chatter is kept at
    WARNING unless ``log_level`` is debug."""
    library_level = "DEBUG" if settings.log_level.lower() == "debug" else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structlog": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    _renderer(settings),
                ],
                "foreign_pre_chain": [
                    structlog.stdlib.add_log_level,
                    structlog.stdlib.add_logger_name,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                ],
            }
        },
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "structlog"}},
        "root": {"level": library_level, "handlers": ["stderr"]},
    }


def configure_logging(settings: Settings) -> None:
    """JSON lines when not on a terminal (or when asked), readable key=value on one."""
    logging.config.dictConfig(stdlib_logging_config(settings))
    renderer = _renderer(settings)
    level = logging.getLevelName(settings.log_level.upper())
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level if isinstance(level, int) else logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def worker_name(role: str) -> str:
    """``role@host:pid``: who decided a result, in the result and in every log line."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


@dataclass
class Counters:
    """What a process did since the last summary; ``take`` reads and resets."""

    records: int = 0
    batches: int = 0
    to_teacher: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    since: float = field(default_factory=time.monotonic)

    def add_batch(self, size: int, to_teacher: int = 0, duplicates: int = 0, dead_letters: Sequence[str] = ()) -> None:
        """Count one batch: its records, those sent to the teacher, repeats dropped, dead-letter reasons."""
        self.records += size
        self.batches += 1
        self.to_teacher += to_teacher
        self.duplicates += duplicates
        self.dead_letters += len(dead_letters)
        for reason in dead_letters:
            self.dead_letter_reasons[reason] = self.dead_letter_reasons.get(reason, 0) + 1

    def take(self) -> dict:
        now = time.monotonic()
        elapsed = max(now - self.since, 1e-9)
        summary = {
            "records_per_s": round(self.records / elapsed, 1),
            "records": self.records,
            "batches": self.batches,
            "mean_batch": round(self.records / self.batches, 1) if self.batches else 0.0,
            "teacher_fraction": round(self.to_teacher / self.records, 4) if self.records else 0.0,
            "dead_letters": self.dead_letters,
            "dead_letter_reasons": dict(self.dead_letter_reasons),
            "duplicates_dropped": self.duplicates,
        }
        self.__init__()  # type: ignore[misc]
        return summary
