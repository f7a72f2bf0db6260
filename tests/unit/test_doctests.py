"""The examples in the pure functions' docstrings run as tests."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["models.cascade", "stream_app.batching", "stream_app.records", "stream_app.kafka_io.batch_commit",
           "models.teacher", "models.training.calibrate", "models.precision", "stream_app.audit",
           "stream_app.lag_routing", "stream_app.endpoint", "stream_app.tools.bench", "models.training.tango_curve",
           "models.training.transfer_data", "models.training.stream_knowledge", "models.training.word_vectors",
           "stream_app.student_process", "stream_app.startup_heap", "stream_app.tools.runner",
           "models.student_serving"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
