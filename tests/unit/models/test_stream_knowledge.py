"""What the teacher said on the stream becomes the same distillation data however it was read back."""

import random

import numpy as np

from models.training.stream_knowledge import parse_knowledge


def _records(n: int) -> list[dict]:
    rng = random.Random(5)
    out = []
    for i in range(n):
        p = rng.random()
        out.append({"id": f"t{i}", "text": f"tweet {i}", "probs": [round(p, 3), round(1 - p, 3)],
                    "source": "shadow" if i % 4 == 0 else "routed", "models": {"teacher": "teacher-abc"}})
    return out


def test_a_round_sees_the_same_records_in_the_same_order_however_partitions_interleave():
    records = _records(60)
    # four partitions read back in two different interleavings, with a re-answered tweet in each
    partitions = [records[p::4] for p in range(4)]
    first = [r for group in zip(*partitions) for r in group] + [records[7] | {"probs": [0.5, 0.5]}]
    second = [r for group in reversed(partitions) for r in group] + [records[7] | {"probs": [0.5, 0.5]}]
    a, b = parse_knowledge(first, 2), parse_knowledge(second, 2)
    assert a.texts == b.texts and a.sources == b.sources and a.teacher_versions == b.teacher_versions
    assert np.array_equal(a.logits, b.logits)
    assert len(a.texts) == 60 and a.counts() == {"routed": 45, "shadow": 15}
    assert np.allclose(np.exp(a.logits[a.texts.index("tweet 7")]), [0.5, 0.5])  # the newest answer wins
