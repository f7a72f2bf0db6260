"""Public helpers to build small, untrained bundles: for tests and smoke runs, never for serving.

``make_tiny_bundle`` writes a complete, valid bundle in seconds: a word-level student
tokenizer and MLP with random weights, and a randomly initialised two-layer BERT saved
with ``save_pretrained``. Its threshold is set so that about ``teacher_fraction`` of the
given texts fall below it, so both tiers of the cascade see traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tokenizers import (
    Tokenizer,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    PreTrainedTokenizerFast,
)

from models.bundle import (
    Manifest,
    StudentSpec,
    TeacherSpec,
    hash_teacher,
    load_bundle,
    write_manifest,
)
from models.cascade import calibrated_probs
from models.student import StudentClassifier
from models.student_nets import build_student
from models.student_tokenizer import train_tokenizer
from models.student_weights import save_student


def _teacher_tokenizer(texts: Sequence[str]) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=2000, special_tokens=specials))
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )


def make_tiny_bundle(
    root: str | Path,
    texts: Sequence[str],
    labels: Sequence[str] = ("negative", "neutral", "positive"),
    teacher_fraction: float = 0.3,
    seed: int = 0,
) -> Path:
    """Write an untrained but complete bundle to ``root`` and return its path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    labels = tuple(labels)

    tokenizer = train_tokenizer(texts, vocab_size=500, min_frequency=1)
    config = {"vocab_size": tokenizer.get_vocab_size(), "num_labels": len(labels), "embed_dim": 16, "hidden_dim": 32}
    net = build_student("mlp", config)
    with torch.no_grad():  # spread the random logits so confidences vary across texts
        net.out.weight.mul_(8.0)
    net.eval()
    student_hashes = save_student(root, net, tokenizer)

    teacher_config = BertConfig(
        vocab_size=2000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, num_labels=len(labels),
        id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)},
    )
    BertForSequenceClassification(teacher_config).save_pretrained(root / "teacher", safe_serialization=True)
    _teacher_tokenizer(texts).save_pretrained(root / "teacher")

    confidences = calibrated_probs(StudentClassifier(tokenizer, net).logits(list(texts))).max(axis=1)
    threshold = float(np.quantile(confidences, teacher_fraction)) if len(texts) else 0.5
    manifest = Manifest(
        labels=labels,
        threshold=threshold,
        temperature=1.0,
        student=StudentSpec(arch="mlp", config=config, sha256=student_hashes),
        teacher=TeacherSpec(sha256=hash_teacher(root)),
        extra={"untrained": True},
    )
    write_manifest(root, manifest)
    load_bundle(root)  # what this helper writes must pass the loader's checks
    return root


def make_tiny_base_model(root: str | Path, texts: Sequence[str], seed: int = 0) -> Path:
    """A randomly initialised two-layer BERT encoder with a WordPiece tokenizer trained on
    ``texts``, saved with ``save_pretrained``: a stand-in ``--base-model`` for tests."""
    from transformers import BertModel  # noqa: PLC0415

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=2000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(root)
    _teacher_tokenizer(texts).save_pretrained(root)
    return root


def make_tiny_dataset(root: str | Path, sizes: dict[str, int] | None = None, seed: int = 0) -> Path:
    """A small 3-label folder dataset (train/validation/test.jsonl + labels.json) whose
    labels follow keywords, so even tiny models learn something."""
    import json  # noqa: PLC0415
    import random  # noqa: PLC0415

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    labels = ["negative", "neutral", "positive"]
    cue = {0: ["awful", "sad", "terrible", "hate"], 1: ["table", "monday", "train", "paper"], 2: ["great", "happy", "love", "wonderful"]}
    filler = ["i", "feel", "today", "the", "so", "really", "was", "it", "and", "my", "day", "@someone", "http://x.co/a", "#mood"]
    (root / "labels.json").write_text(json.dumps(labels))
    for split, n in (sizes or {"train": 120, "validation": 40, "test": 40}).items():
        with open(root / f"{split}.jsonl", "w") as handle:
            for _ in range(n):
                label = rng.randrange(3)
                words = rng.sample(filler, rng.randint(2, 6)) + [rng.choice(cue[label])]
                rng.shuffle(words)
                handle.write(json.dumps({"text": " ".join(words), "label": label}) + "\n")
    return root
