"""Lag-aware routing on the real broker: with every teacher stopped the threshold falls to its
floor within the configured time, and it comes back once they return; nothing is lost."""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest

from models.bundle import load_bundle
from models.testing import make_tiny_bundle
from tests.integration.ops_harness import SteadyProducer
from tests.integration.pipeline_harness import Pipeline, running, tweet_texts

RATE = 150  # tweets/s, steady
BUDGET = 60  # teacher lag budget, records
STEP, CHECK_S, FLOOR = 0.1, 0.5, 0.0


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), tweet_texts(400, seed=1), teacher_fraction=0.3)


def threshold_trace(log_text: str) -> list[dict]:
    rows = [orjson.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    return [r for r in rows if r.get("event") == "threshold changed"]


def back_at(target: float, trace: list[dict]) -> bool:
    """Whether the last change of ``trace`` raised the threshold to ``target``."""
    return bool(trace) and trace[-1]["threshold"] > trace[-1]["previous"] and trace[-1]["threshold"] == pytest.approx(target)


def test_threshold_falls_to_the_floor_while_teachers_are_stopped_and_recovers(kafka_local, bundle, tmp_path):
    target = load_bundle(bundle).manifest.threshold
    steps_down = int((target - FLOOR) / STEP + 0.999)
    allowed_s = steps_down * CHECK_S + 10.0  # the lag must first pass the budget, then one step per check
    pipeline = Pipeline(kafka_local.bootstrap, bundle, tmp_path, extra_env={
        "TANGO_LAG_ROUTING": "true", "TANGO_TEACHER_LAG_BUDGET_RECORDS": str(BUDGET), "TANGO_THRESHOLD_STEP": str(STEP),
        "TANGO_LAG_CHECK_INTERVAL_S": str(CHECK_S), "TANGO_THRESHOLD_FLOOR": str(FLOOR),
    })
    texts = tweet_texts(RATE * 240, seed=5)  # enough for a slow machine; the producer finishes once recovered
    values = [orjson.dumps({"id": f"l{i}", "text": t}) for i, t in enumerate(texts)]

    with running(pipeline):
        pipeline.start("teacher-1", "teacher")
        pipeline.start("stream", "stream")
        pipeline.wait_teachers(1)
        producer = SteadyProducer(kafka_local.bootstrap, pipeline.topic("input"), values, RATE)
        producer.start()
        time.sleep(10)  # teachers keep up: the threshold stays at the bundle's
        stopped_at = time.time()
        pipeline.stop("teacher-1")
        time.sleep(allowed_s + 5)
        restarted_at = time.time()
        pipeline.start("teacher-2", "teacher")
        recovered_by = time.monotonic() + 150  # a new teacher loads its model first: slow on a busy machine
        while not back_at(target, threshold_trace(pipeline.log("stream"))):
            assert time.monotonic() < recovered_by, "the threshold never came back with the new teacher"
            time.sleep(0.5)
        time.sleep(6)  # tweets ingested after the recovery, to check they are routed again
        producer.finish()
        producer.join(30)
        assert producer.error is None and not producer.is_alive()
        values = values[:producer.sent]
        output = pipeline.read("output", until=len(values), timeout=240, settle=4.0)
        trace = threshold_trace(pipeline.log("stream"))

    results = [orjson.loads(r.value) for r in output]
    ids = Counter(r["id"] for r in results)
    assert len(ids) == len(values) and max(ids.values()) == 1, "every tweet exactly once"

    print("\nthreshold trace (seconds after the teachers were stopped):")
    for row in trace:
        print(f"  {row['at'] - stopped_at:+7.2f}s threshold {row['previous']:.3f} -> {row['threshold']:.3f}"
              f"  teacher lag {row['teacher_lag']}  drain {row['teacher_drain_per_s']}/s")
    down = [r for r in trace if r["threshold"] < r["previous"]]
    assert down and all(r["at"] >= stopped_at for r in down), "no lowering before the teachers stopped"
    at_floor = [r for r in down if r["threshold"] == pytest.approx(FLOOR)]
    assert at_floor and at_floor[0]["at"] - stopped_at <= allowed_s, f"floor not reached within {allowed_s:.1f}s"
    up = [r for r in trace if r["threshold"] > r["previous"]]
    assert up and up[-1]["threshold"] == pytest.approx(target) and up[-1]["at"] >= restarted_at

    # every result names the threshold that decided it; at the floor nothing was routed
    before = [r for r in results if r["ingested_at"] < stopped_at]
    floor_window = [r for r in results if at_floor[0]["at"] + 1 < r["ingested_at"] < restarted_at]
    after = [r for r in results if r["ingested_at"] > up[-1]["at"] + 1]
    assert before and all(r["threshold"] == pytest.approx(target) for r in before)
    assert floor_window and all(r["threshold"] == pytest.approx(FLOOR) and r["tier"] == "student" for r in floor_window)
    assert after and all(r["threshold"] == pytest.approx(target) for r in after)
    routed = {name: sum(r["tier"] == "teacher" for r in rs) / len(rs)
              for name, rs in (("before", before), ("floor", floor_window), ("after", after))}
    print(f"routed fraction: {routed}")
    assert routed["before"] > 0.1 and routed["after"] > 0.1 and routed["floor"] == 0.0
