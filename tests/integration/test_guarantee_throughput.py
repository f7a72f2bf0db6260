"""Throughput of the two processing guarantees on the same pipeline, one after the other.

Not part of the default run (two full pipelines take minutes on a small machine):
``TANGO_GUARANTEE_BENCH=1 pytest tests/integration/test_guarantee_throughput.py -s``.
``TANGO_GUARANTEE_BENCH_ROUNDS=N`` alternates the modes N times. Each pipeline is the one
of ``test_pipeline.py``: 5,000 tweets and 50 malformed records, two teacher workers, one
stream worker, started and joined before the clock starts; the clock stops when the last
of the 5,000 results is readable (read_committed) in the output. It prints one
``[guarantees]`` line with records/s per mode and checks exactly one result per id and,
in exactly_once mode, exactly one dead letter per malformed record.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter

import orjson
import pytest
from kafka import KafkaConsumer

from models.testing import make_tiny_bundle
from tests.integration.pipeline_harness import Pipeline, running, tweet_texts
from tests.integration.test_pipeline import MALFORMED, TWEETS, cascade_input

pytestmark = pytest.mark.skipif(not os.environ.get("TANGO_GUARANTEE_BENCH"), reason="set TANGO_GUARANTEE_BENCH=1 to run")

ROUNDS = int(os.environ.get("TANGO_GUARANTEE_BENCH_ROUNDS", "1"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), tweet_texts(400, seed=1), teacher_fraction=0.3)


def read_until(pipeline: Pipeline, role: str, count: int, timeout: float) -> tuple[list, float]:
    """All records of a topic once ``count`` arrived (read_committed), and when the last one did."""
    consumer = KafkaConsumer(pipeline.topic(role), bootstrap_servers=pipeline.bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, isolation_level="read_committed")
    records: list = []
    reached = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            for part in consumer.poll(timeout_ms=100).values():
                records.extend(part)
            if reached is None and len(records) >= count:
                reached = time.monotonic()
                deadline = reached + 3.0  # and anything after it (a duplicate would show up here)
            pipeline.check_alive()
    finally:
        consumer.close()
    assert reached is not None, f"{role}: {len(records)} of {count} records within {timeout}s"
    return records, reached


def run_pipeline(kafka_local, bundle, workdir, guarantee: str) -> dict:
    workdir.mkdir(parents=True)
    pipeline = Pipeline(kafka_local.bootstrap, bundle, workdir, guarantee=guarantee)
    values = cascade_input()
    with running(pipeline):
        pipeline.start("teacher-1", "teacher")
        pipeline.start("teacher-2", "teacher")
        pipeline.start("stream", "stream")
        pipeline.wait_teachers(2)
        time.sleep(3)  # the stream worker's group settles too
        started = time.monotonic()
        pipeline.produce(values)
        output, reached = read_until(pipeline, "output", TWEETS, timeout=300)
        dead, _ = read_until(pipeline, "dlq", len(MALFORMED), timeout=30)
    ids = Counter(orjson.loads(r.value)["id"] for r in output)
    assert set(ids) == {f"t{i}" for i in range(TWEETS)} and max(ids.values()) == 1
    if guarantee == "exactly_once":
        assert len(dead) == len(MALFORMED), "exactly_once: one dead letter per malformed record"
    seconds = reached - started
    return {"seconds": round(seconds, 1), "records_per_s": round(TWEETS / seconds, 1), "dead_letters": len(dead)}


def test_throughput_of_both_guarantees(kafka_local, bundle, tmp_path, capsys):
    runs: dict[str, list[dict]] = {"at_least_once": [], "exactly_once": []}
    for round_ in range(ROUNDS):
        for guarantee in runs:
            runs[guarantee].append(run_pipeline(kafka_local, bundle, tmp_path / f"{guarantee}-{round_}", guarantee))
    mean = {g: round(sum(r["records_per_s"] for r in rs) / len(rs), 1) for g, rs in runs.items()}
    median = {g: statistics.median(r["records_per_s"] for r in rs) for g, rs in runs.items()}
    report = {"tweets": TWEETS, "runs": runs, "mean_records_per_s": mean, "median_records_per_s": median,
              "exactly_once_relative_mean": round(mean["exactly_once"] / mean["at_least_once"], 3),
              "exactly_once_relative_median": round(median["exactly_once"] / median["at_least_once"], 3)}
    with capsys.disabled():
        print(f"\n[guarantees] {json.dumps(report)}")
