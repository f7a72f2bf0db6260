"""A local run's workers get the settings its command line set, under the run's own topics."""

from stream_app.settings import Settings
from stream_app.tools import runner


def test_the_workers_of_a_run_get_the_settings_the_command_line_changed(tmp_path, monkeypatch):
    monkeypatch.setattr("stream_app.kafka_io.topics.ensure_topics", lambda settings: None)  # no broker here
    monkeypatch.delenv("TANGO_TEACHER_TOKEN_BUDGET", raising=False)
    settings = Settings(teacher_token_budget=1024, merge_batch_wait=0.02, input_topic="mine", metrics_port=9464)
    run = runner.LocalRun(settings, tmp_path / "bundle", tmp_path / "logs", tag="t", overrides={"TANGO_THRESHOLD": "1.0"})
    worker = Settings.from_env(run.env)
    assert worker.teacher_token_budget == 1024 and worker.merge_batch_wait == 0.02  # were dropped before
    assert worker.input_topic == f"{run.id}.tweets"  # the run's own topics win
    assert worker.threshold == 1.0  # and the configuration's overrides win over both
    assert worker.metrics_port == Settings().metrics_port  # one port cannot serve every process of the run
