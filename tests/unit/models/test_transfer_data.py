"""``--transfer-data``: unlabelled texts from a file or a folder, with clear errors."""

import pytest

from models.training.data import DataError
from models.training.transfer_data import load_unlabelled


def test_jsonl_ignores_labels_and_drops_the_labelled_and_repeated(tmp_path):
    path = tmp_path / "more.jsonl"
    path.write_text('{"text": "a new one", "label": 3}\n\n{"text": "in train"}\n{"text": "a new one"}\n{"text": "another"}\n')
    assert load_unlabelled(path, exclude=["in train"]) == ["a new one", "another"]
    assert load_unlabelled(path, limit=1) == ["a new one"]


@pytest.mark.parametrize("content, message", [("not json\n", "not valid JSON"), ('{"label": 1}\n', "string 'text'"), ('["x"]\n', "string 'text'")])
def test_bad_jsonl_names_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n' + content)
    with pytest.raises(DataError, match=rf"bad.jsonl:2: .*{message}"):
        load_unlabelled(path)


def test_missing_wrong_kind_and_empty_are_refused(tmp_path):
    with pytest.raises(DataError, match="no such"):
        load_unlabelled(tmp_path / "nowhere")
    (tmp_path / "data.csv").write_text("x\n")
    with pytest.raises(DataError, match=".jsonl or .txt"):
        load_unlabelled(tmp_path / "data.csv")
    with pytest.raises(DataError, match="no .jsonl or .txt files"):
        load_unlabelled(tmp_path)
    (tmp_path / "only.txt").write_text("seen\n")
    with pytest.raises(DataError, match="no new texts"):
        load_unlabelled(tmp_path / "only.txt", exclude=["seen"])


def test_texts_the_bundle_is_calibrated_or_measured_on_never_enter_the_transfer_set(tmp_path):
    from models.training.data import CALIBRATION, Split, TextDataset
    from models.training.pipeline import TrainConfig, transfer_set

    path = tmp_path / "all.jsonl"
    path.write_text("".join(f'{{"text": "{t}"}}\n' for t in ("in train", "held for calibration", "in validation", "in test", "new")))
    dataset = TextDataset(name="d", source="d", labels=["a", "b"], _loader=lambda name: (_ for _ in ()).throw(DataError(name)))
    dataset._cache = {"train": Split("train", ["in train"], [0]), CALIBRATION: Split(CALIBRATION, ["held for calibration"], [1]),
                      "validation": Split("validation", ["in validation"], [0]), "test": Split("test", ["in test"], [1])}
    cfg = TrainConfig(data=str(tmp_path), out=str(tmp_path / "bundle"), transfer_data=str(path), extra={"augment": {"per_text": 0}})
    made = transfer_set(cfg, dataset, ["in train"], [0])
    assert made.texts == ["in train", "new"] and made.gold == [0, -1] and made.unlabelled == 1
