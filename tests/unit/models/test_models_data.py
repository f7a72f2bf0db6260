import json

import pytest

from models.testing import make_tiny_dataset
from models.training.data import DataError, dataset_name, load_dataset


def _write(root, labels=("a", "b"), **splits):
    root.mkdir(parents=True, exist_ok=True)
    (root / "labels.json").write_text(json.dumps(list(labels)))
    for name, lines in splits.items():
        (root / f"{name}.jsonl").write_text("".join(line + "\n" for line in lines))
    return root


def test_folder_dataset_loads(tmp_path):
    root = make_tiny_dataset(tmp_path / "tiny", {"train": 30, "validation": 10, "test": 10})
    ds = load_dataset(str(root))
    assert ds.labels == ("negative", "neutral", "positive")
    train = ds.split("train")
    assert len(train) == 30 and all(isinstance(t, str) and t for t in train.texts)
    assert set(train.labels) <= {0, 1, 2}
    assert train.fingerprint() == load_dataset(root).split("train").fingerprint()
    assert dataset_name(str(root)) == "tiny"
    assert dataset_name("dair-ai/emotion") == "emotion"


def test_missing_split(tmp_path):
    root = _write(tmp_path / "d", train=['{"text": "x", "label": 0}'])
    ds = load_dataset(root)
    with pytest.raises(DataError, match="no 'validation' split"):
        ds.split("validation")
    assert not ds.has_split("test")


def test_label_out_of_range(tmp_path):
    root = _write(tmp_path / "d", train=['{"text": "x", "label": 0}', '{"text": "y", "label": 2}'])
    with pytest.raises(DataError, match=r"train.jsonl:2: unknown label 2"):
        load_dataset(root).split("train")


def test_negative_or_non_integer_label(tmp_path):
    root = _write(tmp_path / "d", train=['{"text": "x", "label": -1}'], validation=['{"text": "x", "label": "a"}'])
    with pytest.raises(DataError, match="unknown label -1"):
        load_dataset(root).split("train")
    with pytest.raises(DataError, match="must be an integer"):
        load_dataset(root).split("validation")


def test_empty_text(tmp_path):
    root = _write(tmp_path / "d", train=['{"text": "ok", "label": 0}', '{"text": "   ", "label": 1}'])
    with pytest.raises(DataError, match=r"train.jsonl:2: empty text"):
        load_dataset(root).split("train")


def test_bad_json_line_and_missing_labels(tmp_path):
    root = _write(tmp_path / "d", train=["{not json"])
    with pytest.raises(DataError, match="not valid JSON"):
        load_dataset(root).split("train")
    (root / "labels.json").unlink()
    with pytest.raises(DataError, match="labels.json"):
        load_dataset(root)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope")


def test_hub_id_without_datasets_package(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(DataError, match="pip install datasets"):
        load_dataset("dair-ai/emotion")
