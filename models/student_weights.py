"""A bundle's student weights: written by training, loaded to serve (torch; ``models.bundle`` reads
the manifest without it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import nn

from models.bundle import STUDENT_TOKENIZER, STUDENT_WEIGHTS, BundleError, sha256_file
from models.student import StudentClassifier
from models.student_nets import build_student, count_parameters
from models.student_serving import serving_net
from models.student_tokenizer import load_tokenizer


def load_student(weights: Path, tokenizer: Path, arch: str, config: dict[str, Any], max_length: int,
                 precision: str = "fp32") -> StudentClassifier:
    """The student to serve from its safetensors weights and tokenizer file, in ``precision`` (see ``serving_net``)."""
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if precision not in dtypes:
        raise ValueError(f"student precision {precision!r}: fp32 or bf16")
    trained = load_student_net(weights, arch, config)
    return StudentClassifier(load_tokenizer(tokenizer), serving_net(trained, dtypes[precision]), max_length,
                             trained_parameters=count_parameters(trained))


def load_student_net(weights: Path, arch: str, config: dict[str, Any]) -> nn.Module:
    """The trained student network as training built it, in fp32 and eval mode."""
    net = build_student(arch, config)
    try:
        net.load_state_dict(load_file(weights))
    except RuntimeError as exc:
        raise BundleError(f"{weights}: weights do not fit student config: {exc}") from exc
    return net.eval()


def save_student(root: str | Path, net: nn.Module, tokenizer: Tokenizer) -> dict[str, str]:
    """Write the student's weights and tokenizer into ``root``; returns their sha256 map."""
    root = Path(root)
    (root / STUDENT_WEIGHTS).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, root / STUDENT_WEIGHTS)
    tokenizer.save(str(root / STUDENT_TOKENIZER))
    return {name: sha256_file(root / name) for name in (STUDENT_WEIGHTS, STUDENT_TOKENIZER)}
