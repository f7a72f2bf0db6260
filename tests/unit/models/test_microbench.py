"""The models' micro-benchmark runs every variant and reports comparable numbers."""

from models.testing import make_tiny_bundle
from models.training.microbench import run_microbench

TEXTS = [f"i feel {w} today {i}" for i, w in enumerate(["happy", "sad", "angry", "calm"] * 10)]


def test_microbench_reports_every_variant(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", TEXTS)
    report = run_microbench(bundle, TEXTS, [i % 3 for i in range(len(TEXTS))], student_batches=(1, 16), teacher_batch=8,
                            device="cpu")
    assert set(report["student"]) == {"1", "16"}
    assert set(report["teacher"]) == {f"{p}-{m}" for p in ("fp32", "bf16", "int8") for m in ("padded", "bucketed")}
    for variant in (*report["student"].values(), *report["teacher"].values()):
        assert variant["records_per_s"] > 0 and 0.0 <= variant["accuracy"] <= 1.0
    # padding and bucketing change the cost, never the predictions of the fp32 teacher
    assert report["teacher"]["fp32-padded"]["accuracy"] == report["teacher"]["fp32-bucketed"]["accuracy"]
    assert report["teacher"]["fp32-bucketed"]["agreement_with_fp32"] == 1.0
    # every precision side by side, and which one auto picks on this machine
    assert list(report["precisions"]) == ["fp32", "bf16", "int8"]
    assert report["device"] == "cpu" and report["auto_precision"] in ("fp32", "bf16")
    assert sum(p["auto"] for p in report["precisions"].values()) == 1
    for precision in ("fp32", "bf16", "int8"):
        assert report["ratios"][f"{precision}_bucketed_vs_fp32_padded"] > 0
        assert 0.0 <= report["precisions"][precision]["agreement_with_fp32"] <= 1.0
    assert set(report["ratios"]["accuracy_change_points"]) == {"fp32", "bf16", "int8"}


def test_microbench_takes_the_precisions_asked_for(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", TEXTS)
    report = run_microbench(bundle, TEXTS, [0] * len(TEXTS), student_batches=(8,), teacher_batch=8, precisions=("bf16",),
                            device="cpu")
    assert list(report["precisions"]) == ["fp32", "bf16"]  # fp32 always: the reference
