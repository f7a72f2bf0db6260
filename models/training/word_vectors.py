"""Student word embeddings that start from what the fine-tuned teacher reads in each word.

A student learns its embeddings from the transfer set alone: a word met a few times starts
random and stays close to it. The fine-tuned teacher already has a view of every word in the
student's vocabulary, so each word is run through the teacher on its own and the teacher's
last hidden states are mean-pooled (how sentence encoders such as MiniLM and MPNet pool).
Those vectors are projected onto the student's embedding width by PCA (the directions along
which the teacher's words differ most) and scaled to ``nn.Embedding``'s N(0, 1) start.
Distillation then trains them as before.

Measured on emotion (the quick bundle's recipe, MiniLM teacher, docs/models.md "Student
embeddings from the teacher"): the MLP 84.05 → 86.20% on test, the BiLSTM 89.05 → 91.60%. With
the whole train split and eight augmented variants a tweet it made no difference (90.65 → 90.40%,
93.35 → 93.30%): it pays where labelled data is scarce.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from models.student_tokenizer import PAD_TOKEN, UNK_TOKEN
from models.teacher import TeacherClassifier

STUDENT_INITS = ("teacher", "random")
"""How a student's word embeddings start: ``teacher``, from the teacher's reading of each word
(this module); ``random``, ``nn.Embedding``'s N(0, 1)."""


def principal_projection(vectors: np.ndarray, dim: int) -> np.ndarray:
    """``vectors`` (rows) centred and projected onto their first ``dim`` principal axes (fewer when
    the rows span fewer), scaled to a standard deviation of 1 over all entries.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(50, 6)) * np.array([9.0, 5.0, 1.0, 0.1, 0.1, 0.1])
    >>> p = principal_projection(x, 2)
    >>> p.shape, round(float(p.std()), 6), round(float(abs(p.mean(axis=0)).max()), 6)
    ((50, 2), 1.0, 0.0)
    >>> float(p[:, 0].var()) > float(p[:, 1].var())
    True
    """
    centred = vectors - vectors.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ axes[:dim].T
    scale = float(projected.std())
    return (projected / scale if scale > 0 else projected).astype(np.float32)


def teacher_word_vectors(teacher: TeacherClassifier, words: Sequence[str], batch_size: int = 512) -> np.ndarray:
    """Each word alone through the teacher, in its precision: the last hidden states mean-pooled over the
    word's input (its word pieces and the teacher's own special tokens; padding left out)."""
    vectors = np.zeros((len(words), int(teacher.model.config.hidden_size)), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(words), batch_size):
            batch = teacher.tokenizer(list(words[start : start + batch_size]), padding=True, truncation=True,
                                      max_length=teacher.max_length, return_tensors="pt").to(teacher.device)
            states = teacher.model(**batch, output_hidden_states=True).hidden_states[-1].float()
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            vectors[start : start + len(states)] = ((states * mask).sum(dim=1) / mask.sum(dim=1)).cpu().numpy()
    return vectors


def start_from_teacher(net: nn.Module, tokenizer: Tokenizer, teacher: TeacherClassifier) -> int:
    """Set ``net.embedding``'s rows of the vocabulary's words (not ``[PAD]`` or ``[UNK]``) from the
    teacher's word vectors; returns how many rows were set. Columns beyond the teacher's width keep
    their random start."""
    vocabulary = tokenizer.get_vocab()
    words = [(index, word) for word, index in sorted(vocabulary.items(), key=lambda item: item[1])
             if word not in (PAD_TOKEN, UNK_TOKEN)]
    if len(words) < 2:
        return 0
    weight = net.embedding.weight
    projected = principal_projection(teacher_word_vectors(teacher, [w for _, w in words]), weight.shape[1])
    with torch.no_grad():
        rows = torch.tensor([i for i, _ in words])
        weight[rows, : projected.shape[1]] = torch.from_numpy(projected).to(weight.dtype)
    return len(words)
