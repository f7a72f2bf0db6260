import numpy as np
import pytest
import torch

from models.student_tokenizer import encode_batch
from models.testing import make_tiny_bundle
from models.training.distill import (
    DistillConfig,
    distill,
    kd_loss,
    make_student,
    mean_kl,
    teacher_logits_cached,
)

TEXTS = [f"{w} {x}" for w in ("great", "awful", "table", "happy", "sad", "paper") for x in ("day", "one", "thing", "time")]


def _teacher_logits(texts):
    cue = {"great": 2, "happy": 2, "awful": 0, "sad": 0, "table": 1, "paper": 1}
    out = np.zeros((len(texts), 3), dtype=np.float32)
    for i, t in enumerate(texts):
        out[i, cue[t.split()[0]]] = 4.0
    return out


def test_kd_loss_uses_gold_only_where_given():
    torch.manual_seed(0)
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    no_gold = kd_loss(s, t, torch.tensor([-1, -1, -1, -1]), 2.0, 0.5)
    pure_kl = kd_loss(s, t, torch.tensor([0, 1, 2, 0]), 2.0, 1.0)
    assert torch.allclose(no_gold, pure_kl)
    assert kd_loss(t, t, torch.tensor([-1] * 4), 2.0, 0.5).abs() < 1e-6  # KL(p || p) = 0


def test_distillation_lowers_kl_to_teacher():
    texts = TEXTS * 2
    logits = _teacher_logits(texts)
    gold = list(logits.argmax(1)[: len(TEXTS)]) + [-1] * len(TEXTS)
    torch.manual_seed(0)
    net, tokenizer, config = make_student("mlp", texts, 3, {"vocab_size": 100, "min_frequency": 1, "hidden_dim": 16})
    ids = encode_batch(tokenizer, texts, 16)
    before = mean_kl(net, ids, logits)
    result = distill(net, tokenizer, texts, logits, gold, TEXTS, list(logits.argmax(1)[: len(TEXTS)]),
                     DistillConfig(epochs=15, batch_size=8, learning_rate=2e-2, max_length=16), progress=False, log=lambda m: None)
    after = mean_kl(net, ids, logits)
    assert after < 0.5 * before
    assert result["best_val_accuracy"] >= 0.75 and result["parameters"] > 0
    assert config["num_labels"] == 3 and config["vocab_size"] == tokenizer.get_vocab_size()


def test_bilstm_student_trains_too():
    logits = _teacher_logits(TEXTS)
    net, tokenizer, _ = make_student("bilstm", TEXTS, 3, {"vocab_size": 100, "min_frequency": 1, "embed_dim": 8, "hidden_dim": 8})
    ids = encode_batch(tokenizer, TEXTS, 16)
    before = mean_kl(net, ids, logits)
    distill(net, tokenizer, TEXTS, logits, [-1] * len(TEXTS), TEXTS, list(logits.argmax(1)),
            DistillConfig(epochs=8, batch_size=8, learning_rate=2e-2, max_length=16), progress=False, log=lambda m: None)
    assert mean_kl(net, ids, logits) < before


def test_teacher_logits_are_cached_by_texts_and_teacher(tmp_path):
    bundle = make_tiny_bundle(tmp_path / "b", TEXTS)
    cache = tmp_path / "cache"
    first = teacher_logits_cached(bundle / "teacher", TEXTS, cache, progress=False, log=lambda m: None)
    files = list(cache.glob("*.safetensors"))
    assert first.shape == (len(TEXTS), 3) and len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    again = teacher_logits_cached(bundle / "teacher", TEXTS, cache, progress=False, log=lambda m: None)
    assert np.array_equal(first, again) and files[0].stat().st_mtime_ns == mtime
    teacher_logits_cached(bundle / "teacher", TEXTS[:5], cache, progress=False, log=lambda m: None)
    assert len(list(cache.glob("*.safetensors"))) == 2  # other texts, other key


def test_mlp_pooling_ignores_padding_and_old_configs_still_build():
    from models.student_nets import build_student

    for extra in ({"pooling": "mean"}, {"pooling": "attention"}, {"pooling": "attention", "bigram_buckets": 7}):
        net = build_student("mlp", {"vocab_size": 50, "num_labels": 3, **extra}).eval()
        short = torch.tensor([[5, 6, 7]])
        padded = torch.tensor([[5, 6, 7, 0, 0]])
        assert torch.allclose(net(short), net(padded), atol=1e-6)
    old = build_student("mlp", {"vocab_size": 50, "num_labels": 3, "embed_dim": 16, "hidden_dim": 32})
    assert old.pooling == "mean" and not hasattr(old, "score")


def test_cnn_student_trains_and_ignores_padding():
    from models.student_nets import build_student

    logits = _teacher_logits(TEXTS)
    torch.manual_seed(0)
    net, tokenizer, config = make_student("cnn", TEXTS, 3, {"vocab_size": 100, "min_frequency": 1, "channels": 8})
    assert config == {"vocab_size": tokenizer.get_vocab_size(), "num_labels": 3, "embed_dim": 16, "channels": 8, "width": 5, "dropout": 0.1}
    ids = encode_batch(tokenizer, TEXTS, 16)
    before = mean_kl(net, ids, logits)
    distill(net, tokenizer, TEXTS, logits, [-1] * len(TEXTS), TEXTS, list(logits.argmax(1)),
            DistillConfig(epochs=8, batch_size=8, learning_rate=2e-2, max_length=16), progress=False, log=lambda m: None)
    assert mean_kl(net, ids, logits) < 0.5 * before
    net.eval()
    with torch.no_grad():
        net.embedding.weight[0] = 1.0  # a non-zero padding row still must not count
    short, padded = torch.tensor([[5, 6, 7]]), torch.tensor([[5, 6, 7, 0, 0]])
    assert torch.allclose(net(short), net(padded), atol=1e-6)
    assert not torch.allclose(net(torch.tensor([[5, 6, 7]])), net(torch.tensor([[7, 6, 5]])), atol=1e-4)  # word order counts
    with pytest.raises(ValueError, match="odd"):
        build_student("cnn", {"vocab_size": 10, "num_labels": 2, "width": 2})
