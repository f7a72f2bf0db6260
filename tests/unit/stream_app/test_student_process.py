"""The student's model in a child process (``student_process``): the same logits as in the worker's
own interpreter, a clear error for what the child cannot do, a new child when one dies."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from models.bundle import load_bundle
from models.testing import make_tiny_bundle
from stream_app.student_process import StudentProcess, StudentProcessError

TEXTS = ["i feel so happy today", "what an awful monday", "", "@someone http://x.co/a #mood 😀"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(make_tiny_bundle(tmp_path_factory.mktemp("bundle"), TEXTS * 10))


@pytest.fixture(scope="module")
def remote(bundle):
    process = StudentProcess(bundle.root, "fp32")
    yield process
    process.close()


def test_the_child_gives_the_logits_the_worker_itself_would(bundle, remote):
    own = bundle.load_student("fp32").logits(TEXTS)
    assert np.allclose(remote(TEXTS), own, atol=1e-6)
    assert remote([]).shape == (0, own.shape[1])


def test_a_batch_the_child_cannot_run_is_a_clear_error_and_the_next_one_works(remote):
    with pytest.raises(StudentProcessError, match="failed the batch"):
        remote([None])  # not a text: the child's tokenizer raises, the child goes on
    assert remote(TEXTS[:1]).shape[0] == 1


def test_a_child_that_died_is_replaced_and_the_batch_is_asked_again(remote):
    before = remote.pid
    os.kill(before, signal.SIGKILL)
    os.waitpid(before, 0)
    assert remote(TEXTS).shape[0] == len(TEXTS)
    assert remote.pid != before


def test_a_child_that_cannot_load_its_model_says_why(tmp_path):
    with pytest.raises(StudentProcessError, match="could not load its model"):
        StudentProcess(tmp_path / "no-bundle", "fp32")


def test_close_stops_the_child(bundle):
    process = StudentProcess(bundle.root, "fp32")
    pid = process.pid
    process.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, 0)  # already reaped


def test_a_stream_worker_whose_student_runs_in_a_child_never_imports_torch(bundle):
    """The point of the setting's memory: the worker's own interpreter stays without torch (a fresh one
    here: this test's has it). It reads the bundle, starts the child, builds its app and asks once."""
    import subprocess
    import sys

    program = (
        "import sys\n"
        "from models.bundle import load_bundle\n"
        "from stream_app.settings import Settings\n"
        "from stream_app.stream_worker import create_app\n"
        "from stream_app.student import build_student_stage\n"
        "import stream_app.reload  # the reload watch every stream worker with a bundle runs\n"
        f"bundle = load_bundle({str(bundle.root)!r})\n"
        "stage = build_student_stage(Settings(student_process=True), bundle)\n"
        "create_app(Settings(student_process=True), stage, bundle)\n"
        "assert stage.logits(['a text']).shape == (1, len(bundle.manifest.labels))\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] in ('torch', 'transformers')))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_workers_metrics_export_the_childs_cpu_and_memory(remote):
    from prometheus_client import generate_latest

    from stream_app.metrics import Metrics
    from stream_app.settings import Settings

    metrics = Metrics(Settings())
    metrics.watch_student_process(lambda: remote.pid)
    exported = {line.split(" ")[0]: float(line.split(" ")[1]) for line in generate_latest(metrics.registry).decode().splitlines()
                if line.startswith("tango_student_process_")}
    assert exported["tango_student_process_resident_memory_bytes"] > 10e6  # the child's torch, not nothing
    assert exported["tango_student_process_cpu_seconds_total"] > 0


def test_the_child_outlasts_a_stop_signal_meant_for_its_worker(remote):
    """^C in a terminal, or a SIGTERM to the process group, reaches the child too: the worker, still
    draining its batches, decides when the child ends (by closing its input)."""
    for stop in (signal.SIGINT, signal.SIGTERM):
        os.kill(remote.pid, stop)
    pid = remote.pid
    assert remote(TEXTS).shape[0] == len(TEXTS)
    assert remote.pid == pid  # answered by the same child, not a replacement
