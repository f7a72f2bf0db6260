"""Pins the public surface: the package exports, the `tango` subcommands, the settings.

A change here is a change to what users script against: update these lists on purpose.
"""

from __future__ import annotations

import argparse
import dataclasses
from importlib import metadata

import pytest

import stream_app
from stream_app.settings import Settings
from stream_app.tools import cli

CORE_COMMANDS = ["bench", "bench-models", "demo", "dlq", "kafka", "produce", "settings", "stream", "tail", "teacher", "top"]
MODEL_COMMANDS = {"train", "evaluate", "wos", "base-models", "distill"}

SETTINGS_FIELDS = {
    "bootstrap_servers", "security_protocol", "sasl_mechanism", "sasl_username", "sasl_password",
    "ssl_cafile", "ssl_certfile", "ssl_keyfile",
    "input_topic", "input_partitions", "teacher_topic", "teacher_partitions", "student_results_topic",
    "teacher_results_topic", "result_partitions", "output_topic", "dlq_topic", "replication_factor",
    "app_id", "teacher_group",
    "bundle", "threshold", "teacher_model", "teacher_precision", "student_precision", "teacher_token_budget", "torch_threads",
    "student_batch_size", "student_batch_wait", "student_batches_in_flight", "student_process", "teacher_batch_size", "teacher_batch_wait",
    "merge_batch_size", "merge_batch_wait", "fetch_max_wait_s", "fetch_min_bytes", "merge_fetch_min_bytes", "merge_fetch_max_wait_s",
    "max_poll_interval_s", "session_timeout_s",
    "max_text_chars", "max_id_chars", "max_record_bytes", "dedup_window", "direct_student_results", "processing_guarantee", "compression_type",
    "metrics_port", "stall_timeout_s", "lag_routing", "teacher_lag_budget_records", "teacher_lag_budget_s",
    "threshold_floor", "threshold_step", "lag_check_interval_s", "reload_check_s", "shadow_fraction", "shadow_topic",
    "shadow_results_topic", "teacher_probs_digits", "knowledge_topic", "knowledge_retention_bytes",
    "data_dir", "summary_interval_s", "memory_trim_interval_s", "shutdown_timeout_s", "log_format", "log_level",
}


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return dict(actions[0].choices)


STREAM_APP_EXPORTS = [
    "Incoming", "MergeStage", "Output", "Reason", "RecentIds", "Settings", "Source", "StageResult", "StudentStage",
    "collect_batch", "decode_tweet", "run_local",
]
MODELS_EXPORTS = [
    "Bundle", "BundleError", "Manifest", "StudentClassifier", "TeacherClassifier", "calibrated_probs",
    "cascade_predictions", "load_bundle", "make_tiny_bundle", "route", "to_teacher",
]


def test_package_exports():
    assert stream_app.__all__ == STREAM_APP_EXPORTS
    assert stream_app.Settings is Settings
    namespace: dict = {}
    exec("from stream_app import *", namespace)
    assert {k for k in namespace if not k.startswith("__")} == set(STREAM_APP_EXPORTS)


def test_models_exports_resolve_lazily():
    import models

    assert models.__all__ == MODELS_EXPORTS
    for name in MODELS_EXPORTS:
        assert callable(getattr(models, name)), name
    with pytest.raises(AttributeError):
        models.no_such_name  # noqa: B018


def test_subcommands_pinned():
    names = set(subcommands(cli.build_parser()))
    assert {"kafka", "stream", "teacher", "produce", "tail", "settings"} <= names
    assert sorted(names - MODEL_COMMANDS) == CORE_COMMANDS
    assert MODEL_COMMANDS <= names


def test_subcommand_required():
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args([])


@pytest.mark.parametrize("command", CORE_COMMANDS)
def test_every_subcommand_dispatches_to_a_function(command):
    argv = {"produce": ["produce", "-"], "kafka": ["kafka", "status"], "dlq": ["dlq", "list"]}.get(command, [command])
    args = cli.build_parser().parse_args(argv)
    assert callable(args.func)
    assert args.command == command


def test_kafka_actions():
    parser = subcommands(cli.build_parser())["kafka"]
    for action in ("up", "down", "status", "wipe"):
        assert parser.parse_args([action]).kafka_action == action
    with pytest.raises(SystemExit):
        parser.parse_args(["restart"])


def test_settings_fields_pinned():
    assert {f.name for f in dataclasses.fields(Settings)} == SETTINGS_FIELDS


def test_settings_constructible_by_keyword_only_names():
    s = Settings(**{name: getattr(Settings(), name) for name in SETTINGS_FIELDS})
    assert s == Settings()


def test_console_script_entry_point():
    try:
        scripts = metadata.entry_points(group="console_scripts")
    except Exception:  # pragma: no cover - metadata unavailable
        pytest.skip("package metadata unavailable")
    tango = [ep for ep in scripts if ep.name == "tango"]
    if not tango:
        pytest.skip("tango-stream is not installed in this environment")
    assert tango[0].value == "stream_app.tools.cli:main"


@pytest.mark.parametrize("command", [None, *CORE_COMMANDS, *sorted(MODEL_COMMANDS)])
def test_every_help_prints(command, capsys):
    argv = ["--help"] if command is None else [command, "--help"]
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(argv)
    assert exit_.value.code == 0
    assert "usage: tango" in capsys.readouterr().out
