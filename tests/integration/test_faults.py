"""The fault suite: each scenario injects a fault mid-run into the real pipeline on the real
broker, then checks that every input id is in the output exactly once.

CI runs it at 5,000 tweets; ``scripts/chaos.sh`` at 50,000 (``TANGO_FAULT_TWEETS``).
Each prints a ``[faults]`` line: duplicates (must be 0), lost (must be 0), recovery time.

Every scenario runs in the processing guarantee ``TANGO_FAULT_GUARANTEE`` (default
at_least_once; ``TANGO_FAULT_GUARANTEE=exactly_once`` runs the whole suite in that mode);
the two ``kill -9`` scenarios also run in exactly_once mode whatever it says. In
exactly_once mode the merge's de-duplication window is one id, so zero duplicates are the
transactions' doing, and the merge must not have dropped any repeat either.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from models.testing import make_tiny_bundle
from tests.integration.fault_harness import (
    FAULT_GUARANTEE,
    FaultRun,
    fault_pipeline,
    merge_dropped,
)
from tests.integration.pipeline_harness import Pipeline, running, summaries, tweet_texts

pytestmark = pytest.mark.faults

SLOW_TEACHER = str(Path(__file__).with_name("slow_teacher.py"))

# The scenarios CI also runs in exactly_once mode: TANGO_FAULT_GUARANTEE's mode, and exactly_once.
BOTH_MODES = pytest.mark.parametrize("guarantee", list(dict.fromkeys([FAULT_GUARANTEE, "exactly_once"])))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle"), tweet_texts(400, seed=1), teacher_fraction=0.3)


def report(capsys, scenario: str, result: dict, pipeline: Pipeline | None = None, streams=("stream", "stream-2"), **extra) -> None:
    guarantee = pipeline.guarantee if pipeline is not None else FAULT_GUARANTEE
    dropped = merge_dropped(pipeline, [n for n in streams if (pipeline.workdir / f"{n}.log").exists()]) if pipeline else None
    with capsys.disabled():
        print(f"\n[faults] {json.dumps({'scenario': scenario, 'guarantee': guarantee, **result, 'merge_dropped': dropped, **extra})}")
    assert result["lost"] == 0, f"{scenario}: lost {result['lost']} ids"
    assert result["unexpected"] == 0
    assert result["duplicates"] == 0, f"{scenario}: {result['duplicates']} duplicates in the output"
    if guarantee == "exactly_once":
        assert dropped == 0, f"{scenario}: the merge dropped {dropped} repeated results; exactly_once must produce none"


@BOTH_MODES
def test_kill_stream_worker(kafka_local, bundle, tmp_path, capsys, guarantee):
    pipeline = fault_pipeline(kafka_local.bootstrap, bundle, tmp_path, guarantee)
    with running(pipeline):
        pipeline.start("teacher", "teacher")
        stream = pipeline.start("stream", "stream")
        run = FaultRun(pipeline)
        run.start_producing()
        run.wait_output(run.count // 5)
        killed_at = time.monotonic()
        pipeline.processes.pop("stream")
        stream.kill()
        stream.wait()
        pipeline.start("stream-2", "stream")
        recovery = run.recovery_after(killed_at)
        result = run.finish()
    report(capsys, "kill -9 stream worker", result, pipeline, recovery_s=recovery)


@BOTH_MODES
def test_kill_one_of_two_teachers(kafka_local, bundle, tmp_path, capsys, guarantee):
    pipeline = fault_pipeline(kafka_local.bootstrap, bundle, tmp_path, guarantee)
    with running(pipeline):
        pipeline.start("teacher-1", "teacher")
        pipeline.start("teacher-2", "teacher")
        pipeline.start("stream", "stream")
        pipeline.wait_teachers(2)
        run = FaultRun(pipeline)
        run.start_producing()
        run.wait_output(run.count // 4)
        killed_at = time.monotonic()
        pipeline.stop("teacher-1", signal.SIGKILL)
        pipeline.wait_teachers(1)  # the survivor took over every partition
        takeover = round(time.monotonic() - killed_at, 2)
        time.sleep(2)
        pipeline.start("teacher-1b", "teacher")
        result = run.finish()
    report(capsys, "kill -9 one of two teachers", result, pipeline, takeover_s=takeover)


def test_scale_teachers_1_3_1(kafka_local, bundle, tmp_path, capsys):
    pipeline = fault_pipeline(kafka_local.bootstrap, bundle, tmp_path)
    with running(pipeline):
        pipeline.start("teacher-1", "teacher")
        pipeline.start("stream", "stream")
        pipeline.wait_teachers(1)
        run = FaultRun(pipeline, produce_seconds=15)
        run.start_producing()
        run.wait_output(run.count // 5)
        pipeline.start("teacher-2", "teacher")
        pipeline.start("teacher-3", "teacher")
        pipeline.wait_teachers(3)
        run.wait_output(run.count // 2)
        stopped = [pipeline.stop(name, signal.SIGTERM) for name in ("teacher-2", "teacher-3")]
        result = run.finish()
    report(capsys, "teachers 1 -> 3 -> 1", result, pipeline, sigterm_exit_s=[round(s, 2) for s in stopped])
    assert max(stopped) < 10.0  # the default shutdown bound


def test_broker_restart(make_kafka, bundle, tmp_path, capsys):
    kafka = make_kafka()
    kafka.up(wait_s=120)
    pipeline = fault_pipeline(kafka.bootstrap, bundle, tmp_path)
    with running(pipeline):
        pipeline.start("teacher", "teacher")
        pipeline.start("stream", "stream")
        pipeline.wait_teachers(1)
        run = FaultRun(pipeline, produce_seconds=20)
        run.start_producing()
        run.wait_output(run.count // 5)
        before = run.output_count()
        kafka.down()
        down_at = time.monotonic()
        time.sleep(5)
        kafka.up(wait_s=120)
        # the clients may reconnect and catch up before up() has seen the broker answer
        recovery = run.recovery_after(down_at, timeout=240, before=before)
        result = run.finish(timeout=400)
    report(capsys, "broker stopped and started", result, pipeline, recovery_s=recovery)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_all_teachers_down_then_drain(kafka_local, bundle, tmp_path, capsys):
    pipeline = fault_pipeline(kafka_local.bootstrap, bundle, tmp_path)
    with running(pipeline):
        stream = pipeline.start("stream", "stream")
        run = FaultRun(pipeline, produce_seconds=20)
        run.start_producing()
        # sampled from the first results on: the worker's start-up (imports, model, first windows) is not
        # what this measures, and on a slow machine it outlasted the first quarter of the samples
        run.wait_output(100)
        rss = []
        deadline = time.monotonic() + 20  # teachers down: requests wait in Kafka
        while time.monotonic() < deadline:
            rss.append(_rss_mb(stream.pid))
            time.sleep(1)
        waiting = run.count - run.output_count()
        assert waiting > 0, "with no teacher, the unsure tweets must wait"
        started = time.monotonic()
        pipeline.start("teacher-1", "teacher")
        pipeline.start("teacher-2", "teacher")
        result = run.finish()
        drained = round(time.monotonic() - started, 2)
    quarter = max(1, len(rss) // 4)
    first, last = max(rss[:quarter]), max(rss[-quarter:])
    report(capsys, "all teachers down, then started", result, pipeline, waiting_in_kafka=waiting, drain_s=drained,
           stream_rss_mb={"first_quarter": round(first, 1), "last_quarter": round(last, 1)})
    assert last <= first * 1.10 + 20, "the stream worker's memory grew while teachers were down"


def test_teacher_slower_than_poll_interval(kafka_local, bundle, tmp_path, capsys):
    pipeline = fault_pipeline(kafka_local.bootstrap, bundle, tmp_path)
    slow = {"TANGO_MAX_POLL_INTERVAL_S": "4", "TANGO_TEST_STALL_S": "6", "TANGO_SESSION_TIMEOUT_S": "10"}
    with running(pipeline):
        pipeline.start("teacher", script=SLOW_TEACHER, env=slow)
        pipeline.start("stream", "stream")
        pipeline.wait_teachers(1)
        run = FaultRun(pipeline)
        run.start_producing()
        result = run.finish(timeout=400)
        log = pipeline.log("teacher")
    moved = log.count("their new owner redelivers it") + log.count("commit failed")
    report(capsys, "teacher slower than the poll interval", result, pipeline, stalled_batches=2, uncommitted_batches=moved)
    assert moved <= 4, "the worker kept losing its partitions: a rebalance loop"
    teacher_summaries = summaries(log, "teacher")
    assert sum(s["records"] for s in teacher_summaries) > 0


def test_sigterm_restart_stream_worker(kafka_local, bundle, tmp_path, capsys):
    pipeline = fault_pipeline(kafka_local.bootstrap, bundle, tmp_path)
    with running(pipeline):
        pipeline.start("teacher", "teacher")
        pipeline.start("stream", "stream")
        run = FaultRun(pipeline)
        run.start_producing()
        run.wait_output(run.count // 4)
        took = pipeline.stop("stream", signal.SIGTERM)
        pipeline.start("stream-2", "stream")
        result = run.finish()
    report(capsys, "SIGTERM and restart of the stream worker", result, pipeline, sigterm_exit_s=round(took, 2))
    assert took < 10.0


def wait_members(pipeline: Pipeline, group: str, n: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while pipeline.group_members(group) != n:
        assert time.monotonic() < deadline, f"group {group} never reached {n} stable members"
        pipeline.check_alive()
        time.sleep(0.5)


@BOTH_MODES
@pytest.mark.parametrize("action", ["steady", "kill -9", "add", "sigterm"])
def test_two_stream_workers(kafka_local, bundle, tmp_path, capsys, guarantee, action):
    """Two stream workers share the 4-partition input (and the result partitions): steady, one
    killed with -9, a third added mid-run, one stopped with SIGTERM. Every id exactly once."""
    pipeline = fault_pipeline(kafka_local.bootstrap, bundle, tmp_path, guarantee)
    group = pipeline.env["TANGO_APP_ID"]
    with running(pipeline):
        pipeline.start("teacher", "teacher")
        pipeline.start("stream", "stream")
        pipeline.start("stream-2", "stream")
        wait_members(pipeline, group, 2)
        run = FaultRun(pipeline, produce_seconds=15)
        run.start_producing()
        run.wait_output(run.count // 4)
        fault_at, extra = time.monotonic(), {}
        if action == "kill -9":
            pipeline.stop("stream-2", signal.SIGKILL)
        elif action == "add":
            pipeline.start("stream-3", "stream")
        elif action == "sigterm":
            extra["sigterm_exit_s"] = round(pipeline.stop("stream-2", signal.SIGTERM), 2)
        if action != "steady":  # output growth resumes at once (the other worker); all partitions, later
            extra["every_partition_resumed_s"] = run.every_partition_resumed_after(fault_at)
        result = run.finish()
    report(capsys, f"two stream workers: {action}", result, pipeline, streams=("stream", "stream-2", "stream-3"), **extra)
