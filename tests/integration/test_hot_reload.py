"""Hot model reload on the real broker, in both delivery modes: while tweets stream, the bundle
folder is switched to a broken bundle (refused; the old one serves on) and then to a new one
(the stream worker finds it by itself, the teacher on SIGHUP). Every tweet comes out once,
and each result names the versions that decided it: the old ones, then the new ones."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from models.bundle import load_bundle
from models.testing import make_tiny_bundle
from tests.integration.ops_harness import SteadyProducer
from tests.integration.pipeline_harness import Pipeline, running, tweet_texts

RATE, MOST_TWEETS = 200, 12000  # the producer stops 3 s after the last switch, well before the most


def point(link: Path, target: Path) -> None:
    """Switch the served bundle atomically: a new symlink renamed over the old one."""
    tmp = link.with_name(link.name + ".new")
    tmp.symlink_to(target)
    os.replace(tmp, link)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    texts = tweet_texts(400, seed=1)
    old = make_tiny_bundle(root / "old", texts, teacher_fraction=0.3, seed=0)
    new = make_tiny_bundle(root / "new", texts, teacher_fraction=0.3, seed=3)
    broken = root / "broken"
    shutil.copytree(new, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["student"]["sha256"]["student/model.safetensors"] = "0" * 64  # fails the hash check
    manifest["teacher"]["sha256"]["teacher/model.safetensors"] = "0" * 64
    (broken / "manifest.json").write_text(json.dumps(manifest))
    return {"old": old, "new": new, "broken": broken}


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_a_new_bundle_is_served_without_a_restart(kafka_local, bundles, tmp_path, guarantee):
    served = tmp_path / "served"
    served.symlink_to(bundles["old"])
    old, new = (load_bundle(bundles[k]).manifest for k in ("old", "new"))
    pipeline = Pipeline(kafka_local.bootstrap, served, tmp_path, guarantee=guarantee)
    values = [orjson.dumps({"id": f"r{i}", "text": t}) for i, t in enumerate(tweet_texts(MOST_TWEETS, seed=9))]

    with running(pipeline):
        teacher = pipeline.start("teacher", "teacher", env={"TANGO_RELOAD_CHECK_S": "0"})  # SIGHUP only
        pipeline.start("stream", "stream", env={"TANGO_RELOAD_CHECK_S": "0.5"})
        pipeline.wait_teachers(1)
        producer = SteadyProducer(kafka_local.bootstrap, pipeline.topic("input"), values, RATE)
        producer.start()
        time.sleep(4)
        point(served, bundles["broken"])
        pipeline.wait_log("stream", "new bundle refused; still serving the previous one")
        teacher.send_signal(signal.SIGHUP)
        pipeline.wait_log("teacher", "new bundle refused; still serving the previous one")
        time.sleep(2)
        point(served, bundles["new"])
        pipeline.wait_log("stream", "bundle reloaded")
        teacher.send_signal(signal.SIGHUP)
        pipeline.wait_log("teacher", "bundle reloaded")
        time.sleep(3)  # tweets after both switches, however long the reloads took
        producer.finish()
        producer.join(30)
        assert producer.error is None and not producer.is_alive()
        tweets = producer.sent
        output = pipeline.read("output", until=tweets, timeout=180)

    results = [orjson.loads(r.value) for r in output]
    ids = Counter(r["id"] for r in results)
    assert len(ids) == tweets and max(ids.values()) == 1, "every tweet exactly once across the switches"
    students = Counter(r["models"]["student"] for r in results)
    # the served teacher's version is the bundle's, with its precision appended ("-bf16", "-fp32", ...)
    teachers = Counter(re.sub(r"-(fp32|bf16|fp16|int8)$", "", r["models"]["teacher"]) for r in results if r["tier"] == "teacher")
    print(f"\n{guarantee}: student versions {dict(students)}, teacher versions {dict(teachers)}")
    assert set(students) == {old.student.version, new.student.version}
    assert set(teachers) == {old.teacher.version, new.teacher.version}
    # one switch each, never back: in decision order the old versions come first
    for tier, which in (("student", "student"), ("teacher", "teacher")):
        ordered = [r["models"][which] for r in sorted(results, key=lambda r: r["decided_at"]) if r["tier"] == tier]
        switches = sum(a != b for a, b in zip(ordered, ordered[1:]))
        assert switches == 1 and ordered[0] != ordered[-1], f"{tier}: {switches} switches"
    for r in results:  # a result decided by the new student carries the new bundle's threshold
        expected = new.threshold if r["models"]["student"] == new.student.version else old.threshold
        assert r["threshold"] == pytest.approx(expected)
