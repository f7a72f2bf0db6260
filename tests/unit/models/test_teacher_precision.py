"""Teacher precision and device, chosen by the hardware (CUDA present or not, AMX present or not)
and overridden by the ``teacher_precision`` setting; what serving loads and the version it names."""

from __future__ import annotations

import logging
import os

import pytest
import torch

import models.precision
from models.precision import PRECISIONS, choose_device, choose_precision
from models.teacher import TeacherClassifier, resolve_target
from models.testing import make_tiny_bundle
from stream_app.settings import Settings

AMX = {"fpu", "avx512f", "amx_tile", "amx_bf16", "avx512_bf16"}
AVX2 = {"fpu", "sse2", "avx2"}
TEXTS = [f"i feel {w} today {i}" for i, w in enumerate(["happy", "sad", "angry", "calm"] * 5)]


@pytest.fixture
def hardware(monkeypatch):
    """Pretend: ``hardware(cuda=..., flags=..., cuda_bf16=...)``."""

    def pretend(*, cuda: bool, flags: set[str] = AVX2, cuda_bf16: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: cuda_bf16)
        monkeypatch.setattr(models.precision, "cpu_flags", lambda cpuinfo=None: set(flags))

    return pretend


@pytest.mark.parametrize(("cuda", "flags", "cuda_bf16", "expected"), [
    (False, AMX, False, ("cpu", "bf16")),
    (False, {"avx512_bf16"}, False, ("cpu", "bf16")),
    (False, AVX2, False, ("cpu", "fp32")),
    (False, set(), False, ("cpu", "fp32")),  # flags unreadable: the safe choice
    (True, AVX2, False, ("cuda", "fp16")),
    (True, AMX, True, ("cuda", "bf16")),
    (True, AMX, False, ("cuda", "fp16")),  # the GPU decides on CUDA, not the CPU's flags
])
def test_auto_picks_device_and_precision_from_the_hardware(hardware, cuda, flags, cuda_bf16, expected):
    hardware(cuda=cuda, flags=flags, cuda_bf16=cuda_bf16)
    assert resolve_target("auto", "auto") == expected


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("cuda", [False, True])
def test_an_explicit_precision_wins(hardware, precision, cuda):
    hardware(cuda=cuda, flags=AMX, cuda_bf16=True)
    assert resolve_target(precision, "auto") == ("cuda" if cuda else "cpu", precision)


def test_int8_stays_on_the_cpu_even_with_a_gpu(hardware):
    hardware(cuda=True, flags=AMX)
    assert resolve_target("int8", "auto") == ("cpu", "int8")
    with pytest.raises(ValueError, match="CPU only"):
        resolve_target("int8", "cuda")


def test_an_explicit_device(hardware):
    hardware(cuda=True, flags=AVX2)
    assert resolve_target("auto", "cpu") == ("cpu", "fp32")
    hardware(cuda=False, flags=AVX2)
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_target("auto", "cuda")


def test_pure_choices():
    assert choose_device("auto", True) == "cuda" and choose_device("cuda:1", True) == "cuda:1"
    with pytest.raises(ValueError, match="not one of"):
        choose_device("tpu", False)
    with pytest.raises(ValueError, match="not one of"):
        choose_precision("int4", "cpu")
    assert choose_precision("auto", "cpu", flags={"amx_bf16"}) == "bf16"


def test_the_setting_offers_every_precision_and_defaults_to_auto():
    assert Settings().teacher_precision == "auto"
    assert Settings.from_env({"TANGO_TEACHER_PRECISION": "bf16"}).teacher_precision == "bf16"
    assert PRECISIONS == ("auto", "fp32", "bf16", "fp16", "int8")
    with pytest.raises(ValueError, match="teacher_precision 'fp8' is not one of"):
        Settings.from_env({"TANGO_TEACHER_PRECISION": "fp8"})


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from models.bundle import load_bundle

    return load_bundle(make_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", TEXTS))


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_load_casts_the_weights(bundle, precision, dtype):
    teacher = TeacherClassifier.load(bundle.teacher_path, precision=precision)
    assert teacher.precision == precision and teacher.device == "cpu"
    assert {p.dtype for p in teacher.model.parameters()} == {dtype}
    assert teacher.logits(TEXTS).dtype.name == "float32" and teacher.logits(TEXTS).shape == (len(TEXTS), 3)


def test_int8_is_an_opt_in_that_warns(bundle, caplog):
    with caplog.at_level(logging.WARNING, logger="tango.teacher"):
        teacher = TeacherClassifier.load(bundle.teacher_path, precision="int8")
    assert teacher.precision == "int8" and "deprecated" in caplog.text
    assert teacher.logits(TEXTS).shape == (len(TEXTS), 3)


def test_bf16_keeps_the_fp32_labels_of_the_tiny_teacher(bundle):
    fp32 = TeacherClassifier.load(bundle.teacher_path).logits(TEXTS).argmax(1)
    bf16 = TeacherClassifier.load(bundle.teacher_path, precision="bf16").logits(TEXTS).argmax(1)
    assert (fp32 == bf16).mean() >= 0.9


@pytest.mark.parametrize("precision", ["fp32", "bf16", "int8"])
def test_served_teacher_version_names_its_precision(bundle, precision):
    from workers.teacher_stage import build_teacher_stage

    stage = build_teacher_stage(Settings(teacher_precision=precision), bundle)
    assert stage.teacher_version == f"{bundle.manifest.teacher.version}-{precision}"


def test_served_teacher_auto_names_what_it_chose(bundle):
    from workers.teacher_stage import build_teacher_stage

    stage = build_teacher_stage(Settings(), bundle)
    assert stage.teacher_version == f"{bundle.manifest.teacher.version}-{resolve_target('auto', 'auto')[1]}"


def test_served_teacher_token_budget_is_chosen_by_device_unless_set(bundle):
    from models.teacher import bulk_token_budget
    from workers.teacher_stage import build_teacher_stage

    chosen = build_teacher_stage(Settings(), bundle).logits.__self__
    assert chosen.token_budget == bulk_token_budget(chosen.device) == (1024 if chosen.device == "cpu" else 16384)
    assert build_teacher_stage(Settings(teacher_token_budget=77), bundle).logits.__self__.token_budget == 77


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: the GPU path runs where one is")
def test_on_a_gpu_the_teacher_runs_there(bundle):
    teacher = TeacherClassifier.load(bundle.teacher_path, precision="auto", device="auto", token_budget=256)
    assert teacher.device == "cuda" and teacher.precision in ("bf16", "fp16")
    assert next(teacher.model.parameters()).is_cuda
    fp32 = TeacherClassifier.load(bundle.teacher_path).logits(TEXTS).argmax(1)
    assert (teacher.logits(TEXTS).argmax(1) == fp32).mean() >= 0.9


def test_serving_bounds_onednn_cache_but_keeps_the_users_choice(monkeypatch):
    from models.teacher import ONEDNN_CACHE_ENTRIES, bound_inference_memory

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    bound_inference_memory()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == ONEDNN_CACHE_ENTRIES
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "512")
    bound_inference_memory()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "512"
