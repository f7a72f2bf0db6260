"""A smoke run of ``tango bench`` (tiny bundle, few records): the report has its documented shape,
says which configurations really routed, and its accuracies match the models' own predictions
on the gold labels."""

from __future__ import annotations

import json
import subprocess
import sys

import orjson
import pytest

from models.bundle import load_bundle
from models.teacher import TeacherClassifier
from models.testing import make_tiny_bundle
from tests.integration.pipeline_harness import tweet_texts


def test_bench_smoke(kafka_local, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    labels = ["negative", "neutral", "positive"]
    texts = tweet_texts(120, seed=5)
    (data / "labels.json").write_text(json.dumps(labels))
    for split in ("train", "validation", "test"):
        (data / f"{split}.jsonl").write_bytes(b"".join(orjson.dumps({"text": t, "label": i % 3}) + b"\n" for i, t in enumerate(texts)))
    bundle = make_tiny_bundle(tmp_path / "bundle", texts, labels=labels)
    out = tmp_path / "bench" / "bench.json"
    subprocess.run(
        [sys.executable, "-m", "stream_app.tools.cli", "bench", "--records", "300", "--warmup", "20", "--data", str(data),
         "--out", str(out), "--external-kafka", "--bootstrap-servers", kafka_local.bootstrap, "--bundle", str(bundle),
         "--timeout", "240", "--logs", str(tmp_path / "logs")],
        check=True, timeout=900,
    )
    report = json.loads(out.read_text())
    assert report["records"] == 300
    assert set(report["configs"]) == {"passthrough", "student", "teacher", "cascade-1", "cascade-2"}
    for name, config in report["configs"].items():
        assert config["records"] == 300, name
        assert config["throughput"] > 0 and config["cpu_s_per_1k"] > 0
        assert set(config["peak_rss_mb"]) >= {"stream"}
        for tier in config["latency_ms"].values():
            assert tier["p50"] <= tier["p95"] <= tier["p99"]
    assert report["configs"]["student"]["teacher_fraction"] == 0.0
    assert report["configs"]["teacher"]["teacher_fraction"] > 0.95
    assert 0 < report["configs"]["cascade-1"]["teacher_fraction"] < 1
    assert set(report["ratios"]) == {"cascade_vs_teacher", "student_vs_passthrough", "cascade_1_routed_fraction", "cascade_minus_teacher_accuracy_points"}
    assert report["configs"]["cascade-1"]["is_cascade"] and not report["configs"]["student"]["is_cascade"]
    # accuracy against the gold labels: what the bundle's models predict offline for the same records
    loaded = load_bundle(bundle)
    gold = [i % 3 for i in range(len(texts))]
    sent = [i % len(texts) for i in range(300)]  # the bench cycles through the split
    student = loaded.load_student().logits(texts).argmax(axis=1)
    teacher = TeacherClassifier.load(loaded.teacher_path, max_length=loaded.manifest.max_length, precision="auto").logits(texts).argmax(axis=1)
    expected = {"student": sum(student[i] == gold[i] for i in sent) / 300, "teacher": sum(teacher[i] == gold[i] for i in sent) / 300}
    for name, accuracy in expected.items():
        assert report["configs"][name]["accuracy"] == pytest.approx(accuracy, abs=0.005), name
    assert out.with_suffix(".md").is_file() and out.with_suffix(".png").stat().st_size > 0
