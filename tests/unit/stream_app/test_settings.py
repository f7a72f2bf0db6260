"""Settings: defaults, TANGO_* variables, CLI flags (flag > variable > default), validation."""

from __future__ import annotations

import dataclasses

import pytest

from stream_app.settings import (
    Settings,
    env_name,
    flag_name,
    setting_names,
    settings_from_args,
)
from stream_app.tools import cli

FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
WAITS = ("student_batch_wait", "teacher_batch_wait", "merge_batch_wait", "max_poll_interval_s", "session_timeout_s", "summary_interval_s", "shutdown_timeout_s")
COUNTS = ("input_partitions", "teacher_partitions", "result_partitions", "replication_factor", "student_batch_size",
          "teacher_batch_size", "merge_batch_size", "max_text_chars", "dedup_window", "torch_threads")


def parse(argv, environ=None):
    return settings_from_args(cli.build_parser().parse_args(argv), environ or {})


# --- defaults ----------------------------------------------------------------------------


def test_defaults_are_valid():
    s = Settings()
    assert s.validated() is s
    assert Settings.from_env({}) == s


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().student_batch_size = 3  # type: ignore[misc]


def test_every_field_has_a_doc_and_a_parseable_type():
    for f in dataclasses.fields(Settings):
        doc = f.metadata.get("doc")
        assert isinstance(doc, str) and doc.strip(), f.name
        assert type(f.default) in (int, float, bool, str), f.name


def test_names():
    assert env_name("student_batch_size") == "TANGO_STUDENT_BATCH_SIZE"
    assert flag_name("student_batch_size") == "--student-batch-size"
    assert setting_names() == list(FIELDS)


# --- environment ----------------------------------------------------------------------------


def test_env_int_float_str():
    s = Settings.from_env({
        "TANGO_STUDENT_BATCH_SIZE": "7",
        "TANGO_STUDENT_BATCH_WAIT": "0.25",
        "TANGO_THRESHOLD": "0.8",
        "TANGO_INPUT_TOPIC": "my.tweets",
        "TANGO_BOOTSTRAP_SERVERS": "a:1,b:2",
        "TANGO_MAX_POLL_INTERVAL_S": "1e2",
    })
    assert s.student_batch_size == 7 and type(s.student_batch_size) is int
    assert s.student_batch_wait == 0.25 and type(s.student_batch_wait) is float
    assert s.threshold == 0.8
    assert s.input_topic == "my.tweets"
    assert s.bootstrap_servers == "a:1,b:2"
    assert s.max_poll_interval_s == 100.0


def test_env_float_accepts_integer_text():
    assert Settings.from_env({"TANGO_MERGE_BATCH_WAIT": "2"}).merge_batch_wait == 2.0


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "Yes", "on", " true "])
def test_env_bool_true(raw):
    assert Settings.from_env({"TANGO_LAG_ROUTING": raw}).lag_routing is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "NO", "off"])
def test_env_bool_false(raw):
    assert Settings.from_env({"TANGO_LAG_ROUTING": raw}).lag_routing is False


def test_env_empty_string_for_str_setting():
    assert Settings.from_env({"TANGO_SASL_USERNAME": ""}).sasl_username == ""


def test_unrelated_env_ignored():
    assert Settings.from_env({"STUDENT_BATCH_SIZE": "3", "TANGO": "x", "tango_student_batch_size": "3"}) == Settings()


@pytest.mark.parametrize(
    "var,raw,kind",
    [
        ("TANGO_STUDENT_BATCH_SIZE", "abc", "int"),
        ("TANGO_STUDENT_BATCH_SIZE", "7.5", "int"),
        ("TANGO_STUDENT_BATCH_SIZE", "", "int"),
        ("TANGO_DEDUP_WINDOW", "1_000x", "int"),
        ("TANGO_STUDENT_BATCH_WAIT", "fast", "float"),
        ("TANGO_THRESHOLD", "", "float"),
        ("TANGO_LAG_ROUTING", "maybe", "bool"),
        ("TANGO_LAG_ROUTING", "", "bool"),
        ("TANGO_LAG_ROUTING", "2", "bool"),
    ],
)
def test_bad_env_value_names_the_variable(var, raw, kind):
    with pytest.raises(ValueError) as info:
        Settings.from_env({var: raw})
    message = str(info.value)
    assert var in message
    assert repr(raw) in message
    assert kind in message


@pytest.mark.parametrize("name", COUNTS)
def test_counts_below_one_rejected(name):  # teacher_token_budget: 0 chooses by device, below 0 is refused (below)
    with pytest.raises(ValueError, match=name):
        Settings.from_env({env_name(name): "0"})
    with pytest.raises(ValueError, match=name):
        Settings().replace(**{name: 0})


@pytest.mark.parametrize("name", WAITS)
@pytest.mark.parametrize("raw", ["0", "0.0", "-1"])
def test_zero_or_negative_waits_rejected(name, raw):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({env_name(name): raw})


@pytest.mark.parametrize("name", WAITS)
def test_zero_wait_rejected_by_replace_and_flag(name):
    with pytest.raises(ValueError, match=name):
        Settings().replace(**{name: 0.0})
    with pytest.raises(ValueError, match=name):
        parse(["stream", flag_name(name), "0"])


def test_all_errors_reported_together():
    with pytest.raises(ValueError) as info:
        Settings.from_env({"TANGO_STUDENT_BATCH_WAIT": "0", "TANGO_MERGE_BATCH_SIZE": "0"})
    assert "student_batch_wait" in str(info.value) and "merge_batch_size" in str(info.value)
    assert str(info.value).startswith("invalid settings")


def test_threshold_range():
    assert Settings.from_env({"TANGO_THRESHOLD": "1"}).threshold == 1.0
    assert Settings.from_env({"TANGO_THRESHOLD": "0"}).threshold == 0.0
    assert Settings.from_env({"TANGO_THRESHOLD": "-1"}).threshold == -1.0  # the bundle's
    with pytest.raises(ValueError, match="threshold"):
        Settings.from_env({"TANGO_THRESHOLD": "1.01"})


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_security_protocols_accepted(protocol):
    assert Settings.from_env({"TANGO_SECURITY_PROTOCOL": protocol}).security_protocol == protocol


def test_bad_security_protocol_and_log_format_rejected():
    with pytest.raises(ValueError, match="security_protocol"):
        Settings.from_env({"TANGO_SECURITY_PROTOCOL": "plaintext"})
    with pytest.raises(ValueError, match="log_format"):
        Settings.from_env({"TANGO_LOG_FORMAT": "xml"})


@pytest.mark.parametrize("name", WAITS + ("threshold",))
def test_nan_rejected(name):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({env_name(name): "nan"})


# --- CLI flags ------------------------------------------------------------------------------


def test_flag_overrides_env():
    env = {"TANGO_STUDENT_BATCH_SIZE": "9", "TANGO_INPUT_TOPIC": "from-env"}
    s = parse(["stream", "--student-batch-size", "7"], env)
    assert s.student_batch_size == 7
    assert s.input_topic == "from-env"  # no flag: the variable wins over the default
    assert s.teacher_batch_size == Settings().teacher_batch_size  # neither: the default


def test_env_applies_without_flag():
    assert parse(["stream"], {"TANGO_STUDENT_BATCH_SIZE": "9"}).student_batch_size == 9
    assert parse(["stream"]) == Settings()


def test_bool_flag_overrides_env_both_ways():
    assert parse(["stream", "--no-lag-routing"], {"TANGO_LAG_ROUTING": "true"}).lag_routing is False
    assert parse(["stream", "--lag-routing"], {"TANGO_LAG_ROUTING": "false"}).lag_routing is True
    assert parse(["stream"], {"TANGO_LAG_ROUTING": "yes"}).lag_routing is True


def test_flags_typed():
    s = parse(["stream", "--student-batch-wait", "0.5", "--threshold", "0.3", "--dlq-topic", "bad"])
    assert (s.student_batch_wait, s.threshold, s.dlq_topic) == (0.5, 0.3, "bad")
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["stream", "--student-batch-size", "many"])


def test_flag_overrides_bad_env_value_still_reported():
    # the variable is parsed (and rejected) even when a flag overrides it
    with pytest.raises(ValueError, match="TANGO_STUDENT_BATCH_SIZE"):
        parse(["stream", "--student-batch-size", "7"], {"TANGO_STUDENT_BATCH_SIZE": "x"})


@pytest.mark.parametrize("command", ["stream", "teacher", "tail"])
def test_every_setting_has_a_flag(command):
    args = cli.build_parser().parse_args([command])
    for name in FIELDS:
        assert hasattr(args, f"setting_{name}"), (command, name)
        assert getattr(args, f"setting_{name}") is None


def test_produce_has_setting_flags():
    args = cli.build_parser().parse_args(["produce", "-", "--input-topic", "x"])
    assert settings_from_args(args, {}).input_topic == "x"


# --- `tango settings` and errors at the command line -----------------------------------------


def test_tango_settings_prints_every_variable(capsys):
    assert cli.main(["settings"]) == 0
    out = capsys.readouterr().out
    for name, f in FIELDS.items():
        assert env_name(name) in out, name
        assert flag_name(name) in out, name
        assert f.metadata["doc"] in out, name
    lines = [line for line in out.splitlines() if line.startswith("TANGO_")]
    assert len(lines) == len(FIELDS)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # kafka-python's import-time warnings
def test_bad_env_is_a_clean_exit_code(monkeypatch, capsys):
    monkeypatch.setenv("TANGO_STUDENT_BATCH_SIZE", "lots")
    assert cli.main(["tail"]) == 2
    err = capsys.readouterr().err
    assert "TANGO_STUDENT_BATCH_SIZE" in err and "'lots'" in err


# --- processing guarantee -------------------------------------------------------------------


def test_processing_guarantee_default_is_at_least_once():
    s = Settings()
    assert s.processing_guarantee == "at_least_once" and not s.exactly_once


@pytest.mark.parametrize("mode", ["at_least_once", "exactly_once"])
def test_processing_guarantee_env_and_flag(mode):
    assert Settings.from_env({"TANGO_PROCESSING_GUARANTEE": mode}).processing_guarantee == mode
    assert parse(["stream", "--processing-guarantee", mode]).processing_guarantee == mode
    assert Settings(processing_guarantee=mode).exactly_once == (mode == "exactly_once")


@pytest.mark.parametrize("raw", ["exactly-once", "EXACTLY_ONCE", "at_most_once", ""])
def test_bad_processing_guarantee_rejected(raw):
    with pytest.raises(ValueError, match="processing_guarantee"):
        Settings.from_env({"TANGO_PROCESSING_GUARANTEE": raw})
    with pytest.raises(ValueError, match="processing_guarantee"):
        Settings().replace(processing_guarantee=raw)


def test_processing_guarantee_documented_with_its_cost():
    doc = FIELDS["processing_guarantee"].metadata["doc"]
    assert "at_least_once" in doc and "exactly_once" in doc and "Cost" in doc


def test_a_negative_teacher_token_budget_is_rejected_and_zero_chooses_by_device():
    with pytest.raises(ValueError, match="teacher_token_budget must be at least 0"):
        Settings.from_env({env_name("teacher_token_budget"): "-1"})
    assert Settings().teacher_token_budget == 0


@pytest.mark.parametrize("name", ["metrics_port", "teacher_lag_budget_s", "threshold_floor", "reload_check_s", "shadow_fraction", "teacher_token_budget"])
def test_a_lower_bound_of_zero_is_enforced(name):  # a bound of 0 used to be dropped as falsy
    assert FIELDS[name].metadata["at_least"] == 0
    with pytest.raises(ValueError, match=f"{name} must be at least 0"):
        Settings().replace(**{name: -1})
    Settings().replace(**{name: 0})
