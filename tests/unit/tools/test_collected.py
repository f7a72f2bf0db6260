"""What the demo and the benchmark read back: accuracy, routed fraction, rate and latency per tier, in columns."""

import orjson
import pytest

from stream_app.tools.runner import Collected


def result(tweet_id: str, tier: str, label_id: int, produced_at: float) -> dict:
    return {"id": tweet_id, "tier": tier, "label_id": label_id, "produced_at": produced_at, "models": {"student": "v1"}}


def test_the_summary_counts_only_the_gold_ids_and_gives_latency_per_tier():
    collected = Collected(keep_results=False)
    collected.add(result("a", "student", 1, 100.0), 100.2)
    collected.add(result("b", "teacher", 0, 100.0), 101.0)
    collected.add(result("c", "student", 2, 100.5), 100.6)
    collected.add(result("warm-1", "student", 0, 90.0), 99.0)  # not in gold: neither counted nor timed
    summary = collected.summary({"a": 1, "b": 0, "c": 0}, started=100.0)
    assert summary["records"] == 3
    assert summary["accuracy"] == pytest.approx(0.6667)  # c is wrong
    assert summary["teacher_fraction"] == pytest.approx(0.3333)
    assert summary["seconds"] == 1.0 and summary["throughput"] == 3.0  # the last gold result at 101.0
    assert summary["latency_ms"]["teacher"]["p99"] == pytest.approx(1000.0)
    assert summary["latency_ms"]["student"]["p50"] == pytest.approx(150.0)  # 200 and 100 ms
    assert collected.results == [] and len(collected) == 4  # columns only


def test_an_output_without_a_tier_is_the_passthroughs_input_and_has_no_label():
    collected = Collected()
    collected.add({"id": "a", "text": "hello", "produced_at": 5.0}, 5.25)
    summary = collected.summary({"a": 3}, started=5.0)
    assert summary["latency_ms"] == {"passthrough": {"p50": 250.0, "p95": 250.0, "p99": 250.0}}
    assert summary["accuracy"] == 0.0 and summary["teacher_fraction"] == 0.0
    assert collected.results == [{"id": "a", "text": "hello", "produced_at": 5.0}]  # kept whole by default


def test_a_result_costs_tens_of_bytes_of_columns():
    """The 30-minute soak reads about two million results; each decoded result kept whole cost a few kB."""
    import sys

    collected = Collected(keep_results=False)
    for i in range(10_000):
        collected.add(result(f"s{i}", "student", i % 6, 1.0), 1.1)
    columns = sum(sys.getsizeof(column) for column in (collected.label_ids, collected.latency_s, collected.written_at))
    per_result = (columns + sys.getsizeof(collected.ids) + sys.getsizeof(collected.tiers)) / len(collected)
    assert per_result < 64  # bytes of columns a result (the id strings themselves come on top)
    assert collected.tiers[0] is collected.tiers[-1]  # one interned string for every tier name


def test_a_soaks_records_and_gold_are_made_when_asked_and_collect_counts_them():
    """A 30-minute soak at 3,700 records/s is 6.6 million records: listed up front with their gold
    labels and the sets collect made of them, they took the bench past 23 GB (killed by the kernel)."""
    import sys
    from types import SimpleNamespace

    from stream_app.tools.runner import LocalRun, Replayed

    items = Replayed(["happy text", "sad text", "other"], 6_600_000, prefix="s")
    gold = items.gold([1, 0, 2])
    assert sys.getsizeof(items) + sys.getsizeof(gold) < 1000
    assert len(gold) == 6_600_000 and gold["s6599999"] == 2 and gold["s4"] == 0 and items[5] == ("s5", "other")
    for outside in ("s6600000", "r1", "s", "s-1", "sx", 7):
        assert outside not in gold

    class Consumer:  # three results, one of them twice and one not the run's
        def poll(self, timeout_ms, max_records):
            values = [{"id": "s0", "label_id": 1}, {"id": "s1", "label_id": 0}, {"id": "s1", "label_id": 0},
                      {"id": "warm-1", "label_id": 0}, {"id": "s2", "label_id": 0}]
            return {0: [SimpleNamespace(value=orjson.dumps(v), headers=(), timestamp=1000) for v in values]}

    run = LocalRun.__new__(LocalRun)  # collect alone: no processes
    run.check_alive = lambda: None
    few = Replayed(["happy text", "sad text", "other"], 3, prefix="s")
    collected = run.collect(Consumer(), few.gold([1, 0, 2]), timeout=5)
    assert len(collected) == 4  # s1's repeat dropped; warm-1 read but not counted
    assert collected.summary(few.gold([1, 0, 2]), started=0.0)["accuracy"] == pytest.approx(0.6667)
    with pytest.raises(TimeoutError, match="1 of 4 results missing"):
        run.collect(Consumer(), Replayed(["t"], 4, prefix="s").gold([0]), timeout=0.2)
