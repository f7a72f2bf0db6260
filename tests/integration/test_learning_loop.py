"""The student learns from the stream, on the real broker with a tiny trained bundle: the
teacher keeps what it says (routed and shadow-audited tweets) on the knowledge topic,
`tango distill --from-stream` re-distils the student from it, the running workers
hot-reload the new version, and later results name it. Every tweet comes out once."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections import Counter

import numpy as np
import orjson
import pytest

from models.bundle import load_bundle, write_manifest
from models.cascade import calibrated_probs
from models.training.data import load_dataset
from stream_app.kafka_io.read_back import read_json_topic
from stream_app.settings import Settings
from tests.integration.pipeline_harness import Pipeline, running
from tests.tiny_training import train_tiny

PHASE = 300


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data, out, _ = train_tiny(tmp_path_factory.mktemp("loop"), {"train": 120, "validation": 40, "test": 40},
                              "--students", "mlp", "--augment-per-text", "1", "--teacher-budget", "0.4")
    return data, out


def test_the_student_is_redistilled_from_the_stream_and_reloaded(kafka_local, trained, tmp_path):
    data, bundle = trained
    served = tmp_path / "served"
    shutil.copytree(bundle, served)
    texts = [f"{t} {i}" for i, t in enumerate(load_dataset(data).split("train").texts * 5)][: 2 * PHASE]
    # a tiny random student's confidences sit close together: a threshold at their median routes
    # about half the tweets, so both the routed and the shadow-audited kinds reach the knowledge topic
    loaded = load_bundle(served)
    confidences = calibrated_probs(loaded.load_student().logits(texts[:PHASE]), loaded.manifest.temperature).max(axis=1)
    write_manifest(served, dataclasses.replace(loaded.manifest, threshold=float(np.median(confidences))))
    old = load_bundle(served).manifest
    values = [orjson.dumps({"id": f"t{i}", "text": t}) for i, t in enumerate(texts)]
    pipeline = Pipeline(kafka_local.bootstrap, served, tmp_path, extra_env={"TANGO_SHADOW_FRACTION": "0.3", "TANGO_RELOAD_CHECK_S": "0.5"})

    with running(pipeline):
        pipeline.start("teacher", "teacher")
        pipeline.start("stream", "stream")
        pipeline.wait_teachers(1)
        pipeline.produce(values[:PHASE])
        first = [orjson.loads(r.value) for r in pipeline.read("output", until=PHASE, timeout=180)]
        settings = Settings.from_env({k: v for k, v in pipeline.env.items() if k.startswith("TANGO_")})
        knowledge, unparsable = read_json_topic(settings, settings.knowledge_topic, timeout_s=60)
        shadow_answers = pipeline.read("shadow_results", until=1, timeout=30)
        # the tolerance keeps the round whatever a random tiny model scores: the switch is what is tested here
        done = subprocess.run([sys.executable, "-m", "stream_app.tools.cli", "distill", "--from-stream", "--min-records", "20", "--epochs", "1",
                               "--tolerance", "100", "--no-progress", "--threads", "1", "--report", str(tmp_path / "round.json")], env={**os.environ, **pipeline.env},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        round_report = json.loads(done.stdout.strip().splitlines()[-1])
        pipeline.wait_log("stream", "bundle reloaded", timeout=60)  # the teacher serves on: its model did not change
        pipeline.produce(values[PHASE:])
        output = [orjson.loads(r.value) for r in pipeline.read("output", until=2 * PHASE, timeout=180)]

    new = load_bundle(served).manifest
    routed = [r for r in first if r["tier"] == "teacher"]
    assert routed and shadow_answers and unparsable == 0
    sources = Counter(k["source"] for k in knowledge)
    assert sources["routed"] == len(routed) and sources["shadow"] == len(shadow_answers)
    assert all(len(k["probs"]) == len(old.labels) and k["text"] for k in knowledge)
    assert {r["teacher_probs"] == k["probs"] for r in routed for k in knowledge if k["id"] == r["id"]} == {True}
    assert (tmp_path / "round.png").stat().st_size > 1000 and json.loads((tmp_path / "round.json").read_text())["kept"]
    assert round_report["kept"] and round_report["records"]["stream"] == len({k["id"] for k in knowledge})
    assert new.student.version != old.student.version and new.extra["stream_rounds"][-1]["student"] == new.student.version
    ids = Counter(r["id"] for r in output)
    assert len(ids) == 2 * PHASE and max(ids.values()) == 1
    versions = {r["id"]: r["models"]["student"] for r in output}
    assert {versions[f"t{i}"] for i in range(PHASE)} == {old.student.version}
    assert {versions[f"t{i}"] for i in range(PHASE, 2 * PHASE)} == {new.student.version}
