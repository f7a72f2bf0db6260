"""The models' micro-benchmark runs every variant and reports comparable numbers."""

from models.testing import make_tiny_bundle
from models.training.microbench import run_microbench

TEXTS = [f"i feel {w} today {i}" for i, w in enumerate(["happy", "sad", "angry", "calm"] * 10)]


def test_microbench_reports_every_variant(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", TEXTS)
    report = run_microbench(bundle, TEXTS, [i % 3 for i in range(len(TEXTS))], student_batches=(1, 16), teacher_batch=8)
    assert set(report["student"]) == {"1", "16"}
    assert set(report["teacher"]) == {"fp32-padded", "fp32-bucketed", "int8-padded", "int8-bucketed"}
    for variant in (*report["student"].values(), *report["teacher"].values()):
        assert variant["records_per_s"] > 0 and 0.0 <= variant["accuracy"] <= 1.0
    # padding and bucketing change the cost, never the predictions of the fp32 teacher
    assert report["teacher"]["fp32-padded"]["accuracy"] == report["teacher"]["fp32-bucketed"]["accuracy"]
    assert report["ratios"]["int8_bucketed_vs_fp32_padded"] > 0
