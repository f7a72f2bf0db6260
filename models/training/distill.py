"""Distillation: cached teacher soft labels and student training on them.

The student minimises, per record, ``alpha * T² * KL(p_teacher^T || p_student^T) +
(1 - alpha) * CE(gold)`` on original records and ``T² * KL`` alone on augmented ones (no
gold label there). Teacher logits are cached in ``<cache>/<key>.safetensors`` with ``key``
a hash of the texts, the teacher's weights and ``max_length``, so students can be retrained
without running the teacher again.
"""

from __future__ import annotations

import copy
import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file as load_np
from safetensors.numpy import save_file as save_np
from tokenizers import Tokenizer
from torch import nn
from tqdm.auto import tqdm

from models.bundle import sha256_file
from models.student_nets import build_student, count_parameters
from models.student_tokenizer import PAD_ID, encode_batch, train_tokenizer
from models.teacher import TeacherClassifier
from models.training.checkpoints import texts_hash
from models.training.teacher_train import bucketed_batches

# --- teacher soft labels ---------------------------------------------------------------


def teacher_identity(teacher_dir: str | Path) -> str:
    """sha256 over the teacher folder's config and weights."""
    root = Path(teacher_dir)
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        if (root / name).is_file():
            digest.update(sha256_file(root / name).encode())
    return digest.hexdigest()


def logits_cache_key(texts: Sequence[str], teacher_id: str, max_length: int, precision: str = "fp32") -> str:
    """fp32 logits keep the key they always had; other precisions add theirs."""
    suffix = "" if precision == "fp32" else f"|{precision}"
    return hashlib.sha256(f"{texts_hash(texts)}|{teacher_id}|{max_length}{suffix}".encode()).hexdigest()[:32]


def teacher_logits_cached(
    teacher_dir: str | Path,
    texts: Sequence[str],
    cache_dir: str | Path,
    max_length: int = 64,
    chunk: int = 2048,
    progress: bool = True,
    teacher: TeacherClassifier | None = None,
    log: Callable[[str], None] = print,
    precision: str = "fp32",
) -> np.ndarray:
    """The teacher's logits for ``texts``, read from the cache when present, else computed and cached.

    ``precision`` is the one the logits are computed in (never ``auto``; a given ``teacher``
    must run in it): it is part of the cache key, so fp32 and bf16 logits never mix.
    """
    cache_dir = Path(cache_dir)
    if teacher is not None and teacher.precision != precision:
        raise ValueError(f"the teacher runs in {teacher.precision}, the logits asked for are {precision}")
    key = logits_cache_key(texts, teacher_identity(teacher_dir), max_length, precision)
    path = cache_dir / f"{key}.safetensors"
    if path.is_file():
        cached = load_np(path)["logits"]
        if cached.shape[0] == len(texts):
            log(f"teacher logits for {len(texts)} texts read from cache {path.name}")
            return cached
    if teacher is None:
        teacher = TeacherClassifier.load(teacher_dir, max_length=max_length, precision=precision, device="auto")
    parts = []
    started = time.perf_counter()
    with tqdm(total=len(texts), desc="teacher soft labels", unit="text", disable=not progress, mininterval=2.0) as bar:
        for start in range(0, len(texts), chunk):
            part = list(texts[start : start + chunk])
            parts.append(teacher.logits(part))
            bar.update(len(part))
    logits = np.concatenate(parts) if parts else np.zeros((0, teacher.num_labels), dtype=np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_np({"logits": np.ascontiguousarray(logits, dtype=np.float32)}, str(tmp), metadata={"texts": str(len(texts))})
    tmp.replace(path)
    log(f"teacher logits for {len(texts)} texts in {time.perf_counter() - started:.0f}s, cached as {path.name}")
    return logits


# --- students --------------------------------------------------------------------------

STUDENT_DEFAULTS: dict[str, dict] = {
    # Tango's MLP: vocab 5,000, embeddings of 16, one hidden layer; attention pooling
    # (one learnt weight per word) adds 5K: ~86K parameters. Mean pooling of the same net
    # reached 88.5% validation accuracy on emotion gold labels, attention pooling 90.7%.
    "mlp": {"vocab_size": 5000, "embed_dim": 16, "hidden_dim": 64, "dropout": 0.1, "pooling": "attention"},
    # most of the parameters are embeddings. 32 units a direction: on emotion as accurate as 64 and
    # 128 (docs/models.md, "The BiLSTM's width") at 0.6x the forward pass of 64 units. Embeddings of
    # 32: as accurate as 96 (test 93.55 / 93.45% against 93.25-93.40%; validation 93.65 / 93.85%
    # against 93.65-94.00%) with a third of the parameters (254K) and 0.8x the forward pass, which
    # every tweet pays (docs/models.md, "The BiLSTM's embeddings: 32 wide")
    "bilstm": {"vocab_size": 12000, "embed_dim": 32, "hidden_dim": 32, "layers": 1, "dropout": 0.2},
    # the MLP's embeddings, then one convolution over 5 words with 64 channels: ~86K parameters
    # (over 3 words: 0.25-0.4 points lower on emotion validation, docs/models.md)
    "cnn": {"vocab_size": 5000, "embed_dim": 16, "channels": 64, "width": 5, "dropout": 0.1},
}


@dataclass(frozen=True)
class DistillConfig:
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    temperature: float = 2.0
    alpha: float = 0.5
    max_length: int = 64
    seed: int = 13


SMALL_STUDENT_RECIPE = DistillConfig(epochs=20, batch_size=128, learning_rate=5e-3)
"""The ~85K-parameter students' (MLP and cnn) distillation: many cheap epochs."""

DISTILL_DEFAULTS: dict[str, DistillConfig] = {
    "mlp": SMALL_STUDENT_RECIPE,
    "bilstm": DistillConfig(epochs=5, batch_size=64, learning_rate=3e-3),
    "cnn": SMALL_STUDENT_RECIPE,
}


def make_student(arch: str, texts: Sequence[str], num_labels: int, overrides: dict | None = None) -> tuple[nn.Module, Tokenizer, dict]:
    """A fresh student and its tokenizer (vocabulary learnt from ``texts``) and its manifest config."""
    spec = {**STUDENT_DEFAULTS.get(arch, {}), **(overrides or {})}
    vocab_size = int(spec.pop("vocab_size", 5000))
    min_frequency = int(spec.pop("min_frequency", 2))
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size, min_frequency=min_frequency)
    config = {"vocab_size": tokenizer.get_vocab_size(), "num_labels": num_labels, **spec}
    return build_student(arch, config), tokenizer, config


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, gold: torch.Tensor, temperature: float, alpha: float,
            weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of the blended loss (weighted by ``weights`` when given); ``gold``
    is -1 where a record has no gold label."""
    t = temperature
    kl = F.kl_div(F.log_softmax(student_logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1), reduction="none", log_target=True).sum(dim=1) * t * t
    has_gold = gold >= 0
    ce = F.cross_entropy(student_logits, gold.clamp(min=0), reduction="none")
    loss = torch.where(has_gold, alpha * kl + (1 - alpha) * ce, kl)
    return loss.mean() if weights is None else (loss * weights).sum() / weights.sum().clamp(min=1e-12)


def mean_kl(net: nn.Module, ids: np.ndarray, teacher_logits: np.ndarray, temperature: float = 1.0) -> float:
    """Mean KL(teacher || student) at ``temperature`` over pre-encoded ``ids`` (for checks)."""
    net.eval()
    with torch.inference_mode():
        s = F.log_softmax(net(torch.from_numpy(ids)) / temperature, dim=1)
        t = F.log_softmax(torch.from_numpy(teacher_logits).float() / temperature, dim=1)
        return float(F.kl_div(s, t, reduction="batchmean", log_target=True))


def predict_ids(net: nn.Module, ids: np.ndarray, batch_size: int = 512) -> np.ndarray:
    net.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            batch = ids[start : start + batch_size]
            width = max(1, int((batch != PAD_ID).sum(axis=1).max()))
            out.append(net(torch.from_numpy(np.ascontiguousarray(batch[:, :width]))).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, net.out.out_features), dtype=np.float32)


def distill(
    net: nn.Module,
    tokenizer: Tokenizer,
    texts: Sequence[str],
    teacher_logits: np.ndarray,
    gold: Sequence[int],
    val_texts: Sequence[str],
    val_labels: Sequence[int],
    cfg: DistillConfig = DistillConfig(),
    progress: bool = True,
    desc: str = "student",
    log: Callable[[str], None] = print,
    weights: Sequence[float] | None = None,
) -> dict:
    """Train ``net`` in place on the teacher's logits (and gold where >= 0); keeps the best
    validation epoch's weights. Returns the history and the best validation accuracy.

    ``weights``, one per text, weigh each record's loss (``None``: all equal)."""
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    ids = encode_batch(tokenizer, texts, cfg.max_length)
    lengths = [int(x) for x in (ids != PAD_ID).sum(axis=1)]
    val_ids = encode_batch(tokenizer, val_texts, cfg.max_length)
    teacher_t = torch.from_numpy(np.asarray(teacher_logits, dtype=np.float32))
    gold_t = torch.tensor(list(gold), dtype=torch.long)
    weights_t = None if weights is None else torch.tensor(list(weights), dtype=torch.float32)
    val_gold = np.asarray(val_labels)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    rng = random.Random(cfg.seed)
    steps = max(1, cfg.epochs * ((len(texts) + cfg.batch_size - 1) // cfg.batch_size))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.05, 1 - step / steps))
    best_acc, best_state, history = -1.0, None, []
    for epoch in range(1, cfg.epochs + 1):
        net.train()
        started = time.perf_counter()
        batches = bucketed_batches(lengths, cfg.batch_size, rng)
        bar = tqdm(batches, desc=f"{desc} epoch {epoch}/{cfg.epochs}", unit="batch", disable=not progress, mininterval=2.0)
        running, seen = 0.0, 0
        for step, batch in enumerate(bar, 1):
            width = max(lengths[i] for i in batch)
            x = torch.from_numpy(ids[batch, :width])
            loss = kd_loss(net(x), teacher_t[batch], gold_t[batch], cfg.temperature, cfg.alpha,
                           None if weights_t is None else weights_t[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
            seen += len(batch)
            running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
            bar.set_postfix(loss=f"{running:.4f}", rec_s=f"{seen / (time.perf_counter() - started):.0f}", refresh=False)
        bar.close()
        val_acc = float((predict_ids(net, val_ids).argmax(axis=1) == val_gold).mean()) if len(val_gold) else 0.0
        history.append({"epoch": epoch, "loss": round(running, 5), "val_accuracy": val_acc, "seconds": round(time.perf_counter() - started, 1)})
        if val_acc > best_acc:
            best_acc, best_state = val_acc, copy.deepcopy(net.state_dict())
        log(f"{desc} epoch {epoch}: loss {running:.4f}, validation accuracy {val_acc:.4f}")
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return {"history": history, "best_val_accuracy": best_acc, "parameters": count_parameters(net)}
