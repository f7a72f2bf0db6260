"""The transfer set the students are distilled on: labelled texts, augmented variants, unlabelled texts.

Pure but for reading ``--transfer-data``: the same inputs give the same set, which is how
``tango distill --from-stream`` rebuilds a bundle's own set from its manifest.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from models.training.augment import AugmentConfig, augment_texts
from models.training.transfer_data import load_unlabelled


def subsample(texts: list[str], labels: list[int], limit: int, seed: int) -> tuple[list[str], list[int]]:
    """At most ``limit`` (0: all) of the records, a seeded sample kept in file order."""
    if not limit or limit >= len(texts):
        return texts, labels
    order = sorted(random.Random(seed).sample(range(len(texts)), limit))
    return [texts[i] for i in order], [labels[i] for i in order]


@dataclass(frozen=True)
class TransferSet:
    """What the students learn from: the train texts (with gold), their augmented variants
    and the ``--transfer-data`` texts (both gold -1: the teacher's soft labels only)."""

    texts: list[str]
    gold: list[int]
    unlabelled: int  # how many of the last texts came from --transfer-data

    def vocabulary_texts(self) -> list[str]:
        """Real texts the student tokenizer learns its words from (not the augmented ones)."""
        labelled = [t for t, g in zip(self.texts, self.gold) if g >= 0]
        return labelled + (self.texts[len(self.texts) - self.unlabelled :] if self.unlabelled else [])


def build_transfer_set(train_texts: list[str], train_labels: list[int], *, seed: int, transfer_limit: int = 0,
                       augment: dict[str, Any] | None = None, transfer_data: str = "",
                       held_out: Iterable[str] = ()) -> TransferSet:
    """The train records, augmented variants of (at most ``transfer_limit`` of) them, then the unlabelled texts.

    Unlabelled texts that are also in ``held_out`` (the splits the bundle is calibrated and
    measured on) are left out, so a transfer folder that holds them cannot leak them into training.
    """
    aug_cfg = AugmentConfig(**{**asdict(AugmentConfig(seed=seed)), **(augment or {})})
    seeds, _ = subsample(train_texts, train_labels, transfer_limit, seed + 1)
    augmented = augment_texts(seeds, aug_cfg) if aug_cfg.per_text > 0 else []
    unlabelled = load_unlabelled(transfer_data, exclude=[*train_texts, *held_out]) if transfer_data else []
    extra = augmented + unlabelled
    return TransferSet(list(train_texts) + extra, list(train_labels) + [-1] * len(extra), len(unlabelled))
