import json

import numpy as np
import pytest

from models.bundle import BundleError, load_bundle
from models.testing import make_tiny_bundle

TEXTS = ["i feel great today", "this is awful", "the train was late", "love it", "so sad", "meh ok"] * 3


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("b") / "bundle", TEXTS)


def _copy(bundle_dir, tmp_path):
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(bundle_dir, target)
    return target


def test_round_trip(bundle_dir):
    bundle = load_bundle(bundle_dir)
    assert bundle.manifest.labels == ("negative", "neutral", "positive")
    data = json.loads((bundle_dir / "manifest.json").read_text())
    assert bundle.manifest.to_json()["student"]["sha256"] == data["student"]["sha256"]
    logits = bundle.load_student().logits(TEXTS[:4])
    assert logits.shape == (4, 3) and np.isfinite(logits).all()


def test_rejects_bad_json(bundle_dir, tmp_path):
    root = _copy(bundle_dir, tmp_path)
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(root)


def test_rejects_wrong_label_count(bundle_dir, tmp_path):
    root = _copy(bundle_dir, tmp_path)
    data = json.loads((root / "manifest.json").read_text())
    data["labels"] = ["a", "b"]
    (root / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="num_labels"):
        load_bundle(root)


def test_rejects_hash_mismatch(bundle_dir, tmp_path):
    root = _copy(bundle_dir, tmp_path)
    with open(root / "student" / "tokenizer.json", "a") as handle:
        handle.write(" ")
    with pytest.raises(BundleError, match="does not match"):
        load_bundle(root)
    load_bundle(root, verify_hashes=False)


def test_rejects_missing_file(bundle_dir, tmp_path):
    root = _copy(bundle_dir, tmp_path)
    (root / "student" / "model.safetensors").unlink()
    with pytest.raises(BundleError, match="missing file"):
        load_bundle(root)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nothing")


def test_a_student_loads_in_bf16_weights_and_still_returns_float32_logits(bundle_dir, tmp_path):
    import torch
    from safetensors.torch import save_file

    from models.student_weights import load_student
    from models.student_nets import build_student

    bundle = load_bundle(bundle_dir)
    tokenizer = bundle_dir / bundle.manifest.student.tokenizer
    config = {"vocab_size": bundle.load_student().tokenizer.get_vocab_size(), "num_labels": 3, "embed_dim": 16, "hidden_dim": 16}
    torch.manual_seed(0)
    save_file(build_student("bilstm", config).state_dict(), tmp_path / "bilstm.safetensors")
    fp32 = load_student(tmp_path / "bilstm.safetensors", tokenizer, "bilstm", config, 16)
    bf16 = load_student(tmp_path / "bilstm.safetensors", tokenizer, "bilstm", config, 16, precision="bf16")
    assert next(bf16.net.parameters()).dtype == torch.bfloat16 and next(fp32.net.parameters()).dtype == torch.float32
    a, b = fp32.logits(TEXTS), bf16.logits(TEXTS)
    assert b.dtype == np.float32 and b.shape == a.shape == (len(TEXTS), 3)
    assert np.abs(a - b).max() < 0.05  # bf16 keeps about 3 significant digits
    with pytest.raises(ValueError, match="fp32 or bf16"):
        load_student(tmp_path / "bilstm.safetensors", tokenizer, "bilstm", config, 16, precision="int8")


def test_the_manifest_knows_every_student_architecture_without_torch():
    from models.bundle import STUDENT_ARCHITECTURES
    from models.student_nets import ARCHITECTURES

    assert sorted(STUDENT_ARCHITECTURES) == sorted(ARCHITECTURES)
