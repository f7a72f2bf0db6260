"""The operations pieces without a broker: shadow sampling and its estimate, the stages'
shadow requests and answers, the merge's latency headers, the metrics of a batch, lag-aware
routing over a lag trace, health, and the bundle watch (reload, refusal, unchanged)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import math
import random
import shutil

import numpy as np
import orjson
import pytest
from prometheus_client import generate_latest

from models.bundle import load_bundle
from models.testing import make_tiny_bundle
from stream_app.audit import AgreementEstimate, in_shadow_sample
from stream_app.endpoint import Health
from stream_app.lag_routing import LagPolicy, next_threshold
from stream_app.merge import MergeStage, RecentIds
from stream_app.metrics import Metrics, StageMeter
from stream_app.records import H_PRODUCED_AT, H_TIER, Incoming, Source, StageResult
from stream_app.reload import BundleWatch
from stream_app.settings import Settings
from stream_app.startup_heap import freeze_startup_heap
from stream_app.student import build_student_stage
from tests.unit.stream_app.test_stream_stages import (
    S,
    as_incoming,
    make_texts,
    records,
    tweet_values,
)
from workers.teacher_stage import TeacherStage


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(make_tiny_bundle(tmp_path_factory.mktemp("bundle"), make_texts(100, seed=1)))


# --- the shadow audit ------------------------------------------------------------------------

def test_the_wilson_interval_covers_the_true_agreement_about_95_percent_of_the_time():
    rng = random.Random(3)
    covered = 0
    for _ in range(400):
        truth = rng.uniform(0.5, 0.99)
        kept = [rng.random() < truth for _ in range(5000)]  # a labelled stream: does the teacher agree?
        sample = [agreed for i, agreed in enumerate(kept) if in_shadow_sample(f"s{rng.random()}-{i}", 0.05)]
        low, high = AgreementEstimate(len(sample), sum(sample)).interval
        covered += low <= sum(kept) / len(kept) <= high
    assert 0.92 <= covered / 400 <= 0.98


def test_the_student_shadows_a_sample_of_what_it_decides_and_the_teacher_answers_apart(bundle):
    stage = dataclasses.replace(build_student_stage(S.replace(threshold=0.0, shadow_fraction=0.3), bundle),
                                shadow_topic="shadow")
    texts = make_texts(400, seed=4)
    out = stage(records(tweet_values(texts)))
    shadow = [o for o in out.outputs if o.topic == "shadow"]
    decided = [o for o in out.outputs if o.topic == S.student_results_topic]
    assert len(decided) == 400 and 0.2 < len(shadow) / 400 < 0.4
    assert {o.key for o in shadow} == {o.key for o in decided if in_shadow_sample(o.key.decode(), 0.3)}
    assert all(orjson.loads(o.value)["shadow"] is True for o in shadow)
    assert all(dict(o.headers)[H_TIER] == b"student" for o in decided)

    calls = []
    teacher = TeacherStage(logits=lambda t: calls.append(len(t)) or np.tile([0.0, 0.0, 5.0], (len(t), 1)),
                           labels=bundle.manifest.labels, teacher_version="t1", results_topic="r.teacher", dlq_topic="dlq",
                           shadow_results_topic="answers")
    answered = teacher(as_incoming(shadow))
    assert calls == [len(shadow)] and {o.topic for o in answered.outputs} == {"answers"}
    answers = [orjson.loads(o.value) for o in answered.outputs]
    assert answered.audits == [a["agreed"] for a in answers]
    assert all(a["agreed"] == (a["student_label_id"] == 2) and a["label_id"] == 2 for a in answers)


# --- the merge's headers and the metrics of a batch -----------------------------------------------

def test_the_merge_forwards_headers_and_times_each_result(bundle):
    stage = build_student_stage(S.replace(threshold=0.0), bundle)
    results = stage(records(tweet_values(make_texts(5, seed=2)))).outputs
    merged = MergeStage(RecentIds(10), "out", "dlq")(as_incoming(results))
    assert [dict(o.headers)[H_PRODUCED_AT] for o in merged.outputs] == [dict(r.headers)[H_PRODUCED_AT] for r in results]
    assert [tier for tier, _ in merged.latencies] == ["student"] * 5
    assert all(seconds > 0 for _, seconds in merged.latencies)  # produced at epoch 100 s
    untimed = MergeStage(RecentIds(10), "out", "dlq")([Incoming(Source("r", 0, 0), b"k", b"{}", 0.0, ((H_TIER, b"x"),))])
    assert untimed.latencies == [] and len(untimed.outputs) == 1


def test_a_stage_meter_counts_a_batch_into_the_summary_and_the_metrics(bundle):
    metrics = Metrics(S)
    meter = StageMeter("student", metrics)
    stage = build_student_stage(S.replace(shadow_fraction=1.0), bundle)
    out = stage(records([*tweet_values(make_texts(50, seed=5)), b"not json"]))
    meter.batch(51, out, rerouted=["output_rejected"])
    value = metrics.registry.get_sample_value
    assert value("tango_records_in_total", {"stage": "student"}) == 51
    assert value("tango_records_out_total", {"stage": "student", "kind": "teacher_request"}) == out.to_teacher
    decided = 50 - out.to_teacher
    assert value("tango_decided_total", {"tier": "student"}) == decided
    assert value("tango_records_out_total", {"stage": "student", "kind": "shadow_request"}) == decided
    assert value("tango_dead_letters_total", {"stage": "student", "reason": "not_json"}) == 1
    assert value("tango_dead_letters_total", {"stage": "student", "reason": "output_rejected"}) == 1
    assert value("tango_routed_fraction") == pytest.approx(out.to_teacher / 50)
    assert value("tango_batch_records_count", {"stage": "student"}) == 1
    assert meter.counters.take()["dead_letters"] == 2
    # a process that audits nothing (the stream worker) exports no agreement, not a 0 that reads as "never agrees"
    assert all(math.isnan(value(name)) for name in ("tango_shadow_agreement", "tango_shadow_agreement_low", "tango_shadow_agreement_high"))


def test_the_merge_meter_counts_each_tiers_latencies_into_their_buckets():
    metrics = Metrics(S)
    merged = StageResult(latencies=[("student", 0.004), ("teacher", 0.7), ("student", 0.25), ("student", 99.0)])
    StageMeter("merge", metrics).batch(4, merged)
    StageMeter("merge", metrics).batch(1, StageResult(latencies=[("student", 0.0025)]))
    value = metrics.registry.get_sample_value
    name = "tango_end_to_end_latency_seconds"
    assert value("tango_output_records_total", {"tier": "student"}) == 4
    assert value(f"{name}_count", {"tier": "student"}) == 4 and value(f"{name}_count", {"tier": "teacher"}) == 1
    assert value(f"{name}_sum", {"tier": "student"}) == pytest.approx(99.2565)
    # cumulative, and a value on a bound falls in that bound's bucket, as prometheus_client's Histogram counts
    assert [value(f"{name}_bucket", {"tier": "student", "le": le}) for le in ("0.001", "0.0025", "0.005", "0.25", "60.0", "+Inf")] \
        == [0, 1, 2, 3, 3, 4]
    assert value(f"{name}_bucket", {"tier": "teacher", "le": "0.5"}) == 0
    assert value(f"{name}_bucket", {"tier": "teacher", "le": "1.0"}) == 1
    assert "tango_end_to_end_latency_seconds_bucket{le=\"0.25\",tier=\"student\"} 3.0" in \
        generate_latest(metrics.registry).decode()


# --- lag-aware routing over a lag trace -------------------------------------------------------

def test_the_threshold_follows_a_lag_trace_down_to_the_floor_and_back():
    policy = LagPolicy(target=0.8, floor=0.3, step=0.2, budget_records=100, budget_s=5.0)
    threshold, trace = 0.8, []
    for lag, drain in [(10, 50.0), (150, 50.0), (300, 0.0), (500, 0.0), (500, 0.0), (90, 10.0), (40, 100.0), (0, 100.0), (0, 0)]:
        threshold = next_threshold(threshold, lag, drain, policy)
        trace.append(round(threshold, 3))
    # 150 over budget; then down to the floor; 90 records at 10/s is 9 s > 5 s: lower; then calm
    assert trace == [0.8, 0.6, 0.4, 0.3, 0.3, 0.3, 0.5, 0.7, 0.8]
    # a floor above the target never raises the threshold over it
    assert next_threshold(0.2, 10**6, 0.0, LagPolicy(target=0.2, floor=0.4, step=0.1, budget_records=1)) == 0.2


# --- health -------------------------------------------------------------------------------------

def test_readiness_follows_the_assignment_and_the_shutdown():
    now = [0.0]
    health = Health(5.0, clock=lambda: now[0])
    assert health.ready() == (False, "no partition assignment yet")
    health.assigned()
    assert health.ready()[0] and health.live()[0]
    now[0] = 6.0
    assert health.live() == (False, "the event loop has not ticked for 6.0 s")
    health.stopping()
    assert health.ready() == (False, "shutting down")


# --- the bundle watch -----------------------------------------------------------------------------

def test_the_bundle_watch_reloads_a_new_bundle_refuses_a_broken_one_and_ignores_the_same(tmp_path, bundle):
    served = tmp_path / "served"
    shutil.copytree(bundle.root, served)
    applied, outcomes = [], []
    watch = BundleWatch(served, load_bundle(served), identity=lambda b: b.manifest.student.version,
                        build=lambda b: b.manifest.student.version, apply=lambda built, b: applied.append(built),
                        on_outcome=outcomes.append)

    async def scenario():
        yield await watch.check()  # nothing changed
        (served / "notes.txt").write_text("a file changed, the student did not")
        yield await watch.check()
        shutil.rmtree(served)
        make_tiny_bundle(served, make_texts(100, seed=1), seed=7)  # a new student
        manifest = json.loads((served / "manifest.json").read_text())
        good = json.loads(json.dumps(manifest))
        manifest["student"]["sha256"]["student/model.safetensors"] = "0" * 64
        (served / "manifest.json").write_text(json.dumps(manifest))
        yield await watch.check()  # its hash is wrong: refused
        (served / "manifest.json").write_text(json.dumps({**good, "labels": ["a", "b", "c"]}))
        yield await watch.check()  # other labels: refused
        (served / "manifest.json").write_text(json.dumps(good))
        yield await watch.check()

    async def run():
        return [step async for step in scenario()]

    assert asyncio.run(run()) == ["unchanged", "same", "refused", "refused", "reloaded"]
    assert outcomes == ["refused", "refused", "ok"] and applied == [watch.current.manifest.student.version]
    assert applied[0] != bundle.manifest.student.version



def test_a_reload_in_a_worker_with_a_frozen_heap_freezes_the_new_model_too(tmp_path, bundle):
    """Workers freeze their startup heap (``startup_heap``); a reload's new model joins it."""
    served = tmp_path / "served"
    shutil.copytree(bundle.root, served)
    kept = []
    watch = BundleWatch(served, load_bundle(served), identity=lambda b: b.manifest.student.version,
                        build=lambda b: [[] for _ in range(1000)], apply=lambda built, b: kept.append(built),
                        on_outcome=lambda outcome: None)
    freeze_startup_heap()
    try:
        before = gc.get_freeze_count()
        shutil.rmtree(served)
        make_tiny_bundle(served, make_texts(100, seed=1), seed=7)  # a new student
        assert asyncio.run(watch.check()) == "reloaded"
        assert gc.get_freeze_count() >= before + 1000  # the new "model" (1,000 lists) is frozen
    finally:
        gc.unfreeze()

def test_settings_of_the_operations_are_checked():
    with pytest.raises(ValueError, match="metrics_port must be at most 65535"):
        Settings(metrics_port=70000).validated()
    with pytest.raises(ValueError, match="shadow_fraction must be at most 1"):
        Settings(shadow_fraction=1.5).validated()
