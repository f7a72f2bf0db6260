"""Student embeddings that start from the teacher's reading of each word (models/training/word_vectors.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.student_nets import build_student
from models.student_tokenizer import PAD_ID, PAD_TOKEN, UNK_TOKEN, train_tokenizer
from models.teacher import TeacherClassifier
from models.testing import make_tiny_base_model
from models.training.word_vectors import principal_projection, start_from_teacher, teacher_word_vectors

TEXTS = ["the film was wonderful", "a dull and tedious plot", "unbelievably wonderful acting",
         "tedious tedious tedious", "i feel happy today", "i feel sad and tired", "the plot was happy"] * 3


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return TeacherClassifier.load(make_tiny_base_model(tmp_path_factory.mktemp("base"), TEXTS), max_length=16)


def test_a_word_reads_the_same_alone_as_in_a_padded_batch(teacher):
    words = ["wonderful", "tediously", "i", "tedious"]  # "tediously" is two word pieces: the others are padded
    together = teacher_word_vectors(teacher, words)
    alone = np.concatenate([teacher_word_vectors(teacher, [w]) for w in words])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5)
    assert together.shape == (4, teacher.model.config.hidden_size)
    assert len({tuple(np.round(v, 5)) for v in together}) == 4


def test_every_word_row_starts_from_the_teacher_and_the_special_rows_do_not(teacher):
    tokenizer = train_tokenizer(TEXTS, vocab_size=100, min_frequency=1)
    vocabulary = tokenizer.get_vocab()
    for arch, config in (("bilstm", {"embed_dim": 8, "hidden_dim": 4}), ("mlp", {"embed_dim": 4, "hidden_dim": 4, "pooling": "attention"})):
        torch.manual_seed(0)
        net = build_student(arch, {"vocab_size": len(vocabulary), "num_labels": 3, **config})
        before = net.embedding.weight.detach().clone()
        assert start_from_teacher(net, tokenizer, teacher) == len(vocabulary) - 2
        after = net.embedding.weight.detach()
        words = sorted((i, w) for w, i in vocabulary.items() if w not in (PAD_TOKEN, UNK_TOKEN))
        expected = principal_projection(teacher_word_vectors(teacher, [w for _, w in words]), after.shape[1])
        np.testing.assert_allclose(after[[i for i, _ in words]].numpy(), expected, rtol=1e-5, atol=1e-6)
        assert torch.equal(after[PAD_ID], torch.zeros_like(after[PAD_ID]))
        assert torch.equal(after[vocabulary[UNK_TOKEN]], before[vocabulary[UNK_TOKEN]])


def test_an_embedding_wider_than_the_words_span_keeps_its_random_columns(teacher):
    tokenizer = train_tokenizer(TEXTS[:2], vocab_size=100, min_frequency=1)  # 9 words: at most 9 principal axes
    torch.manual_seed(0)
    net = build_student("bilstm", {"vocab_size": tokenizer.get_vocab_size(), "num_labels": 3, "embed_dim": 12, "hidden_dim": 4})
    before = net.embedding.weight.detach().clone()
    assert start_from_teacher(net, tokenizer, teacher) == 9
    after = net.embedding.weight.detach()
    assert torch.equal(after[:, 9:], before[:, 9:]) and not torch.equal(after[2:, :9], before[2:, :9])
