"""Every process's /metrics, /livez and /readyz during a run on the real broker, the counters
checked against what the run produced; and the shadow audit's estimate against the truth."""

from __future__ import annotations

import time
from collections import Counter

import orjson
import pytest

from models.bundle import load_bundle
from models.teacher import TeacherClassifier
from models.testing import make_tiny_bundle
from stream_app.audit import AgreementEstimate
from tests.integration.ops_harness import Scrape, free_ports, get, wait_ready
from tests.integration.pipeline_harness import Pipeline, running, tweet_texts

TWEETS = 3000
BAD = [b"not json %d" % i for i in range(20)]
SHADOW_FRACTION = 0.25


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), tweet_texts(400, seed=1), teacher_fraction=0.3)


def settled(port: int, name: str, want: float, timeout: float = 30.0, **labels: str) -> Scrape:
    """Scrape until ``name`` (summed over ``labels``) reaches ``want``: the metrics trail the topics."""
    deadline = time.monotonic() + timeout
    while True:
        scrape = Scrape.of(port)
        if scrape.value(name, **labels) >= want or time.monotonic() > deadline:
            return scrape
        time.sleep(0.5)


def test_every_process_exports_metrics_that_add_up(kafka_local, bundle, tmp_path):
    stream_port, *teacher_ports = free_ports(3)
    pipeline = Pipeline(kafka_local.bootstrap, bundle, tmp_path,
                        extra_env={"TANGO_SHADOW_FRACTION": str(SHADOW_FRACTION), "TANGO_TEACHER_PRECISION": "fp32",
                                   "TANGO_LAG_CHECK_INTERVAL_S": "0.5"})
    texts = {f"m{i}": text for i, text in enumerate(tweet_texts(TWEETS, seed=7))}
    values = [orjson.dumps({"id": tweet_id, "text": text}) for tweet_id, text in texts.items()] + BAD

    with running(pipeline):
        for i, port in enumerate(teacher_ports):
            pipeline.start(f"teacher-{i}", "teacher", env={"TANGO_METRICS_PORT": str(port)})
        pipeline.start("stream", "stream", env={"TANGO_METRICS_PORT": str(stream_port)})
        for port in (stream_port, *teacher_ports):
            wait_ready(port)
        pipeline.wait_teachers(2)
        pipeline.produce(values)
        output = pipeline.read("output", until=TWEETS, timeout=180)
        stream = settled(stream_port, "tango_output_records_total", TWEETS)
        shadow_sent = stream.value("tango_records_out_total", stage="student", kind="shadow_request")
        answers = [orjson.loads(r.value) for r in pipeline.read("shadow_results", until=int(shadow_sent), timeout=60)]
        teachers = [Scrape.of(port) for port in teacher_ports]
        probes = {port: (get(port, "/livez")[0], get(port, "/readyz")[0]) for port in (stream_port, *teacher_ports)}
        (tmp_path / "stream-scrape.txt").write_text(stream.text)
        print("\n--- /metrics of the stream worker (tango_* lines) ---")
        print("\n".join(line for line in stream.text.splitlines() if line.startswith("tango_")))

    results = [orjson.loads(r.value) for r in output]
    tiers = Counter(r["tier"] for r in results)
    assert len({r["id"] for r in results}) == TWEETS == len(results)
    assert all(status == (200, 200) for status in probes.values()), probes

    # the stream worker: in = good + bad, out per kind, the merge's per-tier output and latencies
    assert stream.value("tango_records_in_total", stage="student") == TWEETS + len(BAD)
    assert stream.value("tango_dead_letters_total", stage="student", reason="not_json") == len(BAD)
    assert stream.value("tango_records_out_total", stage="student", kind="result") == tiers["student"]
    assert stream.value("tango_records_out_total", stage="student", kind="teacher_request") == tiers["teacher"]
    assert stream.value("tango_decided_total", tier="student") == tiers["student"]
    for tier, n in tiers.items():
        assert stream.value("tango_output_records_total", tier=tier) == n
        assert stream.value("tango_end_to_end_latency_seconds_count", tier=tier) == n
    assert stream.value("tango_records_in_total", stage="merge") == TWEETS
    assert stream.value("tango_duplicates_dropped_total") == 0
    assert stream.value("tango_batch_records_sum", stage="student") == TWEETS + len(BAD)
    assert stream.value("tango_model_seconds_count", stage="student") >= 1
    manifest = load_bundle(bundle).manifest
    assert stream.value("tango_threshold") == pytest.approx(manifest.threshold)
    assert stream.value("tango_bundle_info", student_version=manifest.student.version) == 1
    assert stream.value("tango_rebalances_total") >= 1
    lag_topics = {labels["topic"] for labels in stream.labels("tango_consumer_lag_records")}
    assert {pipeline.topic("input"), pipeline.topic("teacher"), pipeline.topic("student_results"), pipeline.topic("teacher_results")} <= lag_topics
    assert stream.value("process_cpu_seconds_total") > 0

    # the teachers: together they decided every teacher-tier result and audited the shadow sample
    assert shadow_sent == sum(1 for r in results if r["tier"] == "student" and _sampled(r["id"]))
    assert sum(t.value("tango_decided_total", tier="teacher") for t in teachers) == tiers["teacher"]
    assert sum(t.value("tango_records_in_total", stage="teacher") for t in teachers) == tiers["teacher"] + shadow_sent
    assert sum(t.value("tango_shadow_audited_total") for t in teachers) == shadow_sent
    assert all(t.value("tango_bundle_info") == 1 for t in teachers)

    # the shadow audit: its estimate covers the student's true agreement with the teacher on
    # every tweet the student kept (the teacher's label computed here for all of them)
    assert len({a["id"] for a in answers}) == shadow_sent
    estimate = AgreementEstimate(len(answers), sum(a["agreed"] for a in answers))
    kept = [r for r in results if r["tier"] == "student"]
    teacher = TeacherClassifier.load(bundle / "teacher", max_length=manifest.max_length)
    teacher_labels = teacher.logits([texts[r["id"]] for r in kept]).argmax(axis=1)
    truth = sum(int(t) == manifest.labels.index(r["student_label"]) for t, r in zip(teacher_labels, kept)) / len(kept)
    low, high = estimate.interval
    print(f"shadow audit: {estimate.as_log()} true agreement {truth:.4f} over {len(kept)} student-decided tweets")
    assert low <= truth <= high
    assert sum(t.value("tango_shadow_agreed_total") for t in teachers) == estimate.agreed
    assert not {a["id"] for a in answers} - {r["id"] for r in kept}


def _sampled(tweet_id: str) -> bool:
    from stream_app.audit import in_shadow_sample

    return in_shadow_sample(tweet_id, SHADOW_FRACTION)
