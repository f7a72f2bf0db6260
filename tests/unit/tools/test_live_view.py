"""The live view's rendering and the demo's closing table (no broker)."""

from __future__ import annotations

from rich.console import Console

from models.testing import make_tiny_bundle
from stream_app.tools.demo import ending
from stream_app.tools.live import Snapshot, plain_line, table

SNAPSHOT = Snapshot(
    seconds=12.0, input_per_s=250.0, output_per_s=240.0, outputs=3000, tiers={"student": 2550, "teacher": 450},
    teacher_lag=12, dead_letters=3, latency_ms={"student": {"p50": 110.0, "p95": 180.0, "p99": 220.0},
                                                "teacher": {"p50": 400.0, "p95": 900.0, "p99": 1200.0}},
    accuracy=0.8812, accuracy_of=3000,
)


def test_plain_line_says_everything_on_one_line():
    line = plain_line(SNAPSHOT)
    assert "\n" not in line
    for part in ("in     250/s", "out     240/s", "routed 15.0%", "teacher lag 12", "dead letters 3",
                 "student p50/p95 110/180 ms", "teacher p50/p95 400/900 ms", "accuracy 88.1% of 3000"):
        assert part in line


def test_table_rows():
    console = Console(record=True, width=100)
    console.print(table(SNAPSHOT))
    text = console.export_text()
    assert "routed to the teacher" in text and "15.0%" in text and "running accuracy" in text


def test_the_ending_names_the_tiers_and_the_plot(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", ["so happy", "so sad", "what a day", "i am angry"] * 10)
    (bundle / "tradeoff.png").write_bytes(b"png")
    summary = {"accuracy": 0.9, "teacher_fraction": 0.15, "throughput": 240.0,
               "latency_ms": {"student": {"p50": 110.0, "p95": 180.0, "p99": 1.0}}}
    text = ending(summary, bundle)
    assert "90.0%" in text and "15.0%" in text and "student-decided" in text and str(bundle / "tradeoff.png") in text


def test_the_demo_finds_the_shared_emotion_data_beside_the_repository():
    from stream_app.tools import runner as demo

    assert (demo.PROJECT_ROOT / "pyproject.toml").is_file()
    assert demo.SHARED_EMOTION == demo.PROJECT_ROOT.parent / "shared" / "data" / "emotion"
