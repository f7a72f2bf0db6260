"""What the teacher said on the stream, as distillation data (pure functions).

Teacher workers keep, per tweet they answered, its text and the teacher's probabilities on
the knowledge topic (``knowledge_topic``; ``stream_app.records.knowledge_record``). Two
kinds of tweet arrive there, and they are not a sample of the stream alike:

- ``routed``: every tweet the student was unsure of: a biased sample of the hard ones;
- ``shadow``: the shadow audit's sample, a fraction ``shadow_fraction`` (by id hash) of the
  tweets the student kept.

So a shadow record stands for ``1 / shadow_fraction`` kept tweets and a routed one for
itself: ``stream_weights`` weighs them so, capped at ``max_weight``, and the student does not
learn from the hard tweets alone. Probabilities become logits as their logarithms (clipped
away from 0: they were rounded), which softmax maps back to the same distribution.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

SOURCES = ("routed", "shadow")
MIN_PROB = 1e-4


@dataclass(frozen=True)
class StreamExamples:
    texts: list[str]
    logits: np.ndarray  # log-probabilities, (len(texts), num_labels)
    sources: list[str]
    teacher_versions: list[str]
    skipped: int  # records that were not knowledge records for this bundle's labels

    def counts(self) -> dict[str, int]:
        return {source: self.sources.count(source) for source in SOURCES}


def parse_knowledge(records: Iterable[dict], num_labels: int) -> StreamExamples:
    """The newest answer per tweet id, in id order; records of another shape are counted, not used.

    Id order, not arrival order: the knowledge topic's partitions interleave differently on
    every read, and a round must see the same records in the same order to be repeatable.

    >>> ex = parse_knowledge([{"id": "c", "text": "z", "probs": [0.5, 0.5], "source": "shadow"},
    ...                       {"id": "a", "text": "x", "probs": [0.9, 0.1], "source": "routed", "models": {"teacher": "t1"}},
    ...                       {"id": "a", "text": "x", "probs": [0.2, 0.8], "source": "routed", "models": {"teacher": "t2"}},
    ...                       {"id": "b", "text": "y", "probs": [1.0], "source": "shadow"}], num_labels=2)
    >>> ex.texts, ex.teacher_versions, ex.skipped, np.exp(ex.logits).astype(float).round(2).tolist()
    (['x', 'z'], ['t2', ''], 1, [[0.2, 0.8], [0.5, 0.5]])
    """
    newest: dict[str, dict] = {}
    skipped = 0
    for record in records:
        probs = record.get("probs") if isinstance(record, dict) else None
        if (not isinstance(record, dict) or not isinstance(record.get("id"), str) or not isinstance(record.get("text"), str)
                or not record["text"].strip() or record.get("source") not in SOURCES or not isinstance(probs, list)
                or len(probs) != num_labels or not all(isinstance(p, (int, float)) for p in probs)):
            skipped += 1
            continue
        newest[record["id"]] = record  # a later answer for the same tweet replaces the earlier one
    kept = [newest[i] for i in sorted(newest)]
    probs = np.asarray([r["probs"] for r in kept], dtype=np.float64).reshape(len(kept), num_labels)
    logits = np.log(np.clip(probs, MIN_PROB, 1.0)).astype(np.float32)
    return StreamExamples(texts=[r["text"] for r in kept], logits=logits, sources=[r["source"] for r in kept],
                          teacher_versions=[str((r.get("models") or {}).get("teacher", "")) for r in kept], skipped=skipped)


def stream_weights(sources: Sequence[str], shadow_fraction: float, max_weight: float = 20.0) -> np.ndarray:
    """Per record: 1 for a routed tweet, ``min(1 / shadow_fraction, max_weight)`` for a shadow one.

    >>> stream_weights(["routed", "shadow", "shadow"], 0.1).tolist()
    [1.0, 10.0, 10.0]
    >>> stream_weights(["shadow"], 0.01, max_weight=20).tolist()
    [20.0]
    """
    if not 0 < shadow_fraction <= 1:
        raise ValueError(f"shadow_fraction must be in (0, 1] to weigh shadow records, got {shadow_fraction}")
    shadow = min(1.0 / shadow_fraction, max_weight)
    return np.asarray([shadow if s == "shadow" else 1.0 for s in sources], dtype=np.float64)
