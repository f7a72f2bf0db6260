"""`tango train` end to end on a tiny generated folder dataset with a tiny random BERT."""

import argparse
import json

import pytest

from models.bundle import load_bundle
from models.student_nets import build_student, count_parameters
from models.testing import make_tiny_dataset
from stream_app.tools.train_cli import add_cli
from tests.tiny_training import train_tiny


def _run(argv):
    parser = argparse.ArgumentParser(prog="tango")
    add_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("e2e"), {"train": 90, "validation": 30, "test": 30}, "--augment-per-text", "2")


def test_train_writes_a_loadable_bundle(trained):
    data, out, _ = trained
    bundle = load_bundle(out)
    m = bundle.manifest
    assert m.labels == ("negative", "neutral", "positive")
    assert 0.0 <= m.threshold <= 1.0 and m.temperature > 0
    assert set(m.extra["students"]) == {"mlp", "bilstm"}
    others = [n for n, s in m.extra["students"].items() if not s["served"]]
    assert len(others) == 1 and (out / "students" / others[0] / "model.safetensors").is_file()
    assert (out / "report.md").read_text().startswith("# Tango bundle")
    assert (out / "tradeoff.png").stat().st_size > 1000
    assert json.loads((out / "teacher" / "config.json").read_text())["id2label"]["0"] == "negative"
    assert m.extra["student_init"] == "teacher"  # the default: word embeddings start from the teacher's reading
    assert (out / "work" / "train.log").read_text().count("embeddings of") == 2


def test_the_tango_figure_is_measured(trained):
    _, out, _ = trained
    curves = json.loads((out / "tango_curve.json").read_text())
    assert curves["split"] == "test" and curves["records"] == 30 and curves["teacher"]["cpu_s_per_1k"] > 0
    for entry in curves["students"].values():
        assert {"cascade", "random", "oracle"} <= set(entry) and entry["cpu_s_per_1k"] > 0
        assert entry["random"][-1]["accuracy"] == pytest.approx(curves["teacher"]["accuracy"])
        assert max(p["accuracy"] for p in entry["oracle"]) >= max(p["accuracy"] for p in entry["cascade"]) - 1e-9
    run = curves["measured_cascade"]
    assert run["records"] == 30 and run["cpu_s_per_1k"] > 0 and 0 <= run["teacher_fraction"] <= 1
    assert "## Measured cost" in (out / "report.md").read_text()


def test_transfer_data_is_labelled_by_the_teacher_and_feeds_the_vocabulary(trained, tmp_path, capsys):
    data, out, argv = trained
    extra = tmp_path / "unlabelled.txt"
    extra.write_text("\n".join(f"zyzzyva word {i} appears only here" for i in range(40)) + "\n")
    other = tmp_path / "bundle"
    import shutil

    shutil.copytree(out, other)  # the same teacher: only the transfer set changes
    capsys.readouterr()
    assert _run([*argv[:4], str(other), *argv[5:], "--students", "mlp", "--transfer-data", str(extra)]) == 0
    printed = capsys.readouterr().out
    assert "[teacher] reusing finished stage" in printed and "[soft_labels] running" in printed
    stage = json.loads((other / "work" / "stages" / "soft_labels.json").read_text())["result"]
    assert stage["unlabelled"] == 40
    vocab = json.loads((other / "student" / "tokenizer.json").read_text())["model"]["vocab"]
    assert "zyzzyva" in vocab


def test_a_cnn_student_trains_and_serves_from_the_bundle(trained, tmp_path):
    data, out, argv = trained
    import shutil

    other = tmp_path / "cnn-bundle"
    shutil.copytree(out, other)  # the same teacher and soft labels: only the student stage runs
    assert _run([*argv[:4], str(other), *argv[5:], "--students", "cnn", "--serve", "cnn"]) == 0
    bundle = load_bundle(other)
    assert bundle.manifest.student.arch == "cnn" and bundle.manifest.extra["students"]["cnn"]["served"]
    cnn = bundle.manifest.extra["students"]["cnn"]
    # the trained network's count (embeddings, convolution, output), not the served table's buffers
    assert cnn["parameters"] == count_parameters(build_student("cnn", cnn["config"])) <= 200_000
    assert cnn["parameters"] > cnn["config"]["vocab_size"] * cnn["config"]["embed_dim"]
    texts = ["a quick test", "", "another short text to classify"]
    assert bundle.load_student().logits(texts).shape == (3, 3)


def test_evaluate_json_has_the_keys(trained, capsys):
    data, out, _ = trained
    capsys.readouterr()
    assert _run(["evaluate", str(out), "--data", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"dataset", "split", "teacher", "students", "cascade"}
    assert result["split"] == "test" and set(result["teacher"]) == {"accuracy"}
    assert set(result["students"]) == {"mlp", "bilstm"}
    assert all(set(s) == {"accuracy", "parameters"} for s in result["students"].values())
    assert set(result["cascade"]) == {"student", "threshold", "accuracy", "teacher_fraction", "speedup_estimate"}
    assert 0.0 <= result["cascade"]["accuracy"] <= 1.0


def test_rerun_reuses_every_stage(trained, capsys):
    data, out, argv = trained
    capsys.readouterr()
    assert _run(argv) == 0
    printed = capsys.readouterr().out
    for stage in ("teacher", "soft_labels", "student_mlp", "student_bilstm"):
        assert f"[{stage}] reusing finished stage" in printed
    load_bundle(out)


def test_wos_prints_json(trained, capsys):
    data, out, _ = trained
    capsys.readouterr()
    assert _run(["wos", str(out), "--data", str(data), "--split", "validation"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["wos"] == pytest.approx((100 - 100 * result["shuffled_accuracy"]) / 50)


def test_train_reports_data_errors(tmp_path, capsys):
    assert _run(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_calibration_holdout_moves_train_records_out_of_training(tmp_path):
    from models.training.data import CALIBRATION, load_dataset, with_calibration_holdout

    data = make_tiny_dataset(tmp_path / "tiny", {"train": 50, "validation": 10})
    dataset = load_dataset(data)
    held = with_calibration_holdout(dataset, 12, seed=13)
    train, calibration = held.split("train"), held.split(CALIBRATION)
    assert len(train) == 38 and len(calibration) == 12
    assert sorted(train.texts + calibration.texts) == sorted(dataset.split("train").texts)
    assert held.split("validation").texts == dataset.split("validation").texts
    assert with_calibration_holdout(dataset, 12, seed=13).split(CALIBRATION).texts == calibration.texts
    with pytest.raises(ValueError, match="between 1 and"):
        with_calibration_holdout(dataset, 50, seed=13)


def _knowledge_for(bundle_dir, texts, source="routed"):
    from models.bundle import load_bundle as load
    from models.cascade import calibrated_probs
    from models.teacher import TeacherClassifier

    bundle = load(bundle_dir)
    teacher = TeacherClassifier.load(bundle.teacher_path, max_length=bundle.manifest.max_length, precision="auto")
    probs = calibrated_probs(teacher.logits(texts), 1.0).round(3)
    version = f"{bundle.manifest.teacher.version}-{teacher.precision}"
    return [{"id": f"k{i}", "text": t, "probs": p.tolist(), "source": source if i % 3 else "shadow", "models": {"teacher": version}}
            for i, (t, p) in enumerate(zip(texts, probs))]


def test_a_stream_round_refuses_too_little_data(trained):
    from models.training.from_stream import (
        StreamDistillConfig,
        TooLittleData,
        distill_from_stream,
    )
    from models.training.stream_knowledge import parse_knowledge

    data, out, _ = trained
    examples = parse_knowledge(_knowledge_for(out, ["a few words", "some more words"]), 3)
    with pytest.raises(TooLittleData, match="2 knowledge records .* at least 50"):
        distill_from_stream(StreamDistillConfig(bundle=str(out), shadow_fraction=0.2, min_records=50, progress=False), examples)


def _round_on_a_copy(data, out, tmp_path, edit_manifest=None):
    """One stream round (one epoch) on a copy of the trained bundle, the test texts as its knowledge:
    ``(bundle, manifest bytes before, report, kept)``."""
    import shutil

    from models.training.data import load_dataset
    from models.training.from_stream import (
        NotBetter,
        StreamDistillConfig,
        distill_from_stream,
    )
    from models.training.stream_knowledge import parse_knowledge

    bundle = tmp_path / "bundle"
    shutil.copytree(out, bundle)
    if edit_manifest:
        manifest = json.loads((bundle / "manifest.json").read_text())
        edit_manifest(manifest)
        (bundle / "manifest.json").write_text(json.dumps(manifest))
    before = (bundle / "manifest.json").read_bytes()
    examples = parse_knowledge(_knowledge_for(bundle, load_dataset(data).split("test").texts), 3)
    cfg = StreamDistillConfig(bundle=str(bundle), shadow_fraction=0.2, min_records=10, epochs=1, progress=False)
    try:
        return bundle, before, distill_from_stream(cfg, examples, log=lambda m: None), True
    except NotBetter as refused:
        return bundle, before, refused.report, False


def test_a_stream_round_keeps_the_new_student_only_if_not_worse(trained, tmp_path):
    from models.training.data import load_dataset

    data, out, _ = trained
    texts = load_dataset(data).split("test").texts
    bundle, before, report, kept = _round_on_a_copy(data, out, tmp_path)
    if not kept:
        assert report["at_served_fraction"]["accuracy"] < report["before"]["accuracy"]
        assert (bundle / "manifest.json").read_bytes() == before
        return
    from models.training.from_stream import plot_round

    plot_round(report, tmp_path / "round.png")
    assert (tmp_path / "round.png").stat().st_size > 1000
    assert report["kept"] and report["at_served_fraction"]["accuracy"] >= report["before"]["accuracy"]
    assert report["at_served_fraction"]["teacher_fraction"] <= report["before"]["teacher_fraction"]
    assert report["records"]["stream"] == len(texts) and report["records"]["shadow"] == len(range(0, len(texts), 3))
    loaded = load_bundle(bundle)
    assert loaded.manifest.student.version == report["after"]["student"] != json.loads(before)["student"]["version"]
    assert loaded.manifest.extra["stream_rounds"][-1]["student"] == report["after"]["student"]
    assert json.loads((bundle / "manifest.prev.json").read_bytes()) == json.loads(before)
    load_bundle(bundle).load_student().logits(["still serves"])


def test_a_stream_round_writes_beside_the_old_student_and_switches_in_one_rename(trained, tmp_path):
    import shutil

    from models.training.distill import make_student
    from models.training.from_stream import write_round

    _, out, _ = trained
    bundle = tmp_path / "bundle"
    shutil.copytree(out, bundle)
    manifest = load_bundle(bundle).manifest
    net, tokenizer, config = make_student(manifest.student.arch, ["new words here", "and here"], 3)
    version = write_round(bundle, manifest, net, tokenizer, config, 1.5, 0.42, {"records": {}, "before": {}, "after": {}, "held_out": "validation"})
    loaded = load_bundle(bundle)
    assert loaded.manifest.student.version == version and loaded.manifest.threshold == 0.42 and loaded.manifest.temperature == 1.5
    assert loaded.manifest.student.weights.startswith("student-r1-") and (bundle / "student" / "model.safetensors").is_file()
    assert not list(bundle.glob(".*tmp"))


def test_a_stream_round_of_a_bundle_calibrated_on_held_out_train_records_recalibrates_on_them(trained, tmp_path):
    from models.training.data import CALIBRATION, load_dataset, with_calibration_holdout
    from models.training.from_stream import bundle_transfer_set

    def calibrated_on_12_train_records(manifest):
        manifest["extra"].pop("calibration_holdout", None)
        manifest["extra"]["calibration_split"] = "12 held-out train records"  # as bundles wrote it before the count

    data, out, _ = trained
    _, before, report, _ = _round_on_a_copy(data, out, tmp_path, calibrated_on_12_train_records)
    manifest = json.loads(before)
    assert report["held_out"] == CALIBRATION
    # the 12 calibration records stay out of the round's training: its own set is rebuilt from the rest
    held = with_calibration_holdout(load_dataset(data), 12, int(manifest["extra"].get("seed", 13)))
    own = bundle_transfer_set(manifest["extra"], held.split("train").texts, held.split("train").labels)
    assert report["records"]["bundle"] == len(own.texts)
    assert not set(held.split(CALIBRATION).texts) & set(own.texts)
