"""The teacher: a Hugging Face sequence classifier, loaded from a local folder or hub id.

Inference sorts a batch by token length and cuts it into chunks of at most
``token_budget`` padded tokens, so short tweets are never padded to the longest one.

Precision and device (``load(precision=, device=)``, ``resolve_target``): ``auto`` is bf16
on CPUs with AMX or AVX-512 BF16 and fp32 on other CPUs (``models/precision.py``), fp16 or
bf16 on CUDA, where the model moves to the GPU. bf16 and fp16 cast the weights (measured
faster than autocast, docs/models.md); ``int8`` is torch's deprecated dynamic quantisation
of the linear layers, kept only as an explicit opt-in that logs a warning.
"""

from __future__ import annotations

import ctypes
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from models.precision import choose_device, choose_precision

hf_logging.disable_progress_bar()
log = logging.getLogger("tango.teacher")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_target(precision: str = "auto", device: str = "auto") -> tuple[str, str]:
    """``(device, precision)``: CUDA if torch sees a GPU (``auto``; the CPU for int8), and the precision for it."""
    device = "cpu" if precision == "int8" and device == "auto" else choose_device(device, torch.cuda.is_available())
    cuda_bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    return device, choose_precision(precision, device, cuda_bf16=cuda_bf16)


def _int8(model: torch.nn.Module) -> torch.nn.Module:
    log.warning("teacher precision int8 (torch.ao dynamic quantisation) is deprecated in torch and slower than bf16 "
                "on CPUs with AMX or AVX-512 BF16; use auto (docs/models.md)")
    with warnings.catch_warnings():  # torch's own deprecation notice: said once above, in our words
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


ONEDNN_CACHE_ENTRIES = "64"
M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES = -3, 65536  # glibc mallopt: larger blocks are mmap'd, returned on free


def bulk_token_budget(device: str) -> int:
    """Padded tokens per forward pass on ``device``, where a load asks for none (``token_budget=0``):
    labelling, evaluation, and teacher workers whose ``teacher_token_budget`` is 0 (the default).

    On this CPU (MPNet-base, bf16, one thread, 384 tweets) a budget of 1,024 tokens took
    4.8 CPU-seconds, 2,048 took 5.2 and 8,192 took 7.2 plus four times the system time:
    large padded batches cost more than they save. A teacher worker in ``tango bench``
    spent 19.5-19.7 CPU-seconds per 1,000 tweets at 1,024 against 28.4-41.4 at 4,096
    (docs/benchmarks.md). A GPU wants large batches.
    """
    return 1024 if device == "cpu" else 16384


def bound_inference_memory() -> None:
    """Keep a serving process's memory flat when batch shapes vary (call before the first forward).

    Measured on 400 teacher batches of random sizes (bf16, one thread): resident memory went from
    1.1 to 2.3 GB and was still growing; with oneDNN's primitive cache at 64 entries (an
    environment default the user can override) and glibc returning large blocks on free, it
    levelled off at about 1.4 GB after 250 batches, no slower.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_CACHE_ENTRIES)
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def length_buckets(lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Indices grouped into chunks, shortest first, each with ``len(chunk) * max_len <= budget``.

    A text longer than the budget still gets a chunk of its own.

    >>> length_buckets([5, 1, 30, 2], token_budget=10)
    [[1, 3], [0], [2]]
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    chunks: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # sorted ascending, so the newest index is the chunk's longest text
        if current and (len(current) + 1) * max(lengths[index], 1) > token_budget:
            chunks.append(current)
            current = []
        current.append(index)
    if current:
        chunks.append(current)
    return chunks


@dataclass(frozen=True)
class TeacherClassifier:
    tokenizer: Any
    model: torch.nn.Module
    max_length: int = 64
    token_budget: int = 4096
    precision: str = "fp32"  # as run: fp32, bf16, fp16 or int8 (never auto)
    device: str = "cpu"

    @classmethod
    def load(cls, name_or_path: str | Path, *, max_length: int = 64, precision: str = "fp32", device: str = "cpu",
             token_budget: int = 0) -> "TeacherClassifier":
        """Load from a ``save_pretrained`` folder or a hub id; safetensors only, no remote code.

        ``precision`` and ``device`` may be ``auto`` (``resolve_target``); the defaults keep
        fp32 on the CPU, what training and evaluation use. ``token_budget`` 0 chooses by the
        device (``bulk_token_budget``).
        """
        device, precision = resolve_target(precision, device)
        token_budget = token_budget or bulk_token_budget(device)
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(name_or_path), trust_remote_code=False, use_safetensors=True
        )
        model.eval()
        if precision == "int8":
            model = _int8(model)
        else:
            model = model.to(device=device, dtype=DTYPES[precision])
        return cls(tokenizer=tokenizer, model=model, max_length=max_length, token_budget=token_budget,
                   precision=precision, device=device)

    @property
    def num_labels(self) -> int:
        return int(self.model.config.num_labels)

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Logits in input order, shape (len(texts), num_labels)."""
        out = np.zeros((len(texts), self.num_labels), dtype=np.float32)
        if not texts:
            return out
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        lengths = [len(ids) for ids in encoded]
        with torch.inference_mode():
            for chunk in length_buckets(lengths, self.token_budget):
                batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in chunk]}, return_tensors="pt")
                if self.device != "cpu":
                    batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                out[chunk] = self.model(**batch).logits.float().cpu().numpy()
        return out
