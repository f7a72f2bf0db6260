"""The emotion MLP against the issue's 91.8% (≤ 100K parameters): variants on one bundle's soft labels.

Every variant distils a fresh MLP from the bundle's own teacher (its cached bf16 logits; new
transfer texts are labelled once and cached beside them), starts its embeddings from that
teacher (``--student-init teacher``) unless it says ``random``, keeps the best validation epoch
and is scored on the test split. One torch thread per run, so two runs can share the two cores.

    .venv/bin/python scripts/mlp_experiment.py --bundle ~/.cache/tango-stream/bundles/emotion-full \
        --variants base,heads4-vocab-4500 --json docs/bench/mlp-variants-emotion.json
    .venv/bin/python scripts/mlp_experiment.py --bundle ~/.cache/tango-stream/bundles/emotion-full --forward-cost

``--variants`` picks from ``VARIANTS`` (default: all); ``--json`` merges into an existing file, so
runs of different variants can fill one table. ``heads*`` and ``position`` are nets built here
only (several attention heads over the same embeddings; a learnt bias per position): tried, not
shipped. The ``conv*-not-an-mlp`` variants are the ``cnn`` student (``models.student_nets.CNNStudent``)
at a width and channel count: a convolution over neighbouring words under the same parameter
bound, which is not the published MLP.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.student_nets import count_parameters  # noqa: E402
from models.student_tokenizer import PAD_ID, encode_batch, train_tokenizer  # noqa: E402
from models.teacher import TeacherClassifier  # noqa: E402
from models.training.data import load_dataset  # noqa: E402
from models.training.distill import DISTILL_DEFAULTS, distill, make_student, predict_ids, teacher_logits_cached  # noqa: E402
from models.training.transfer_set import build_transfer_set  # noqa: E402
from models.training.word_vectors import start_from_teacher  # noqa: E402

VARIANTS: dict[str, dict] = {
    "base": {},  # the shipped MLP: vocabulary 5,000, embeddings 16, hidden 64, attention pooling
    "random-start": {"init": "random"},
    "hidden-256": {"net": {"hidden_dim": 256}},
    "embed-24-vocab-3500": {"net": {"vocab_size": 3500, "embed_dim": 24}},
    "bigrams-1000-vocab-4000": {"net": {"vocab_size": 4000, "bigram_buckets": 1000}},
    "T1-alpha-0.3": {"distill": {"temperature": 1.0, "alpha": 0.3}},
    "40-epochs-lr-3e-3": {"distill": {"epochs": 40, "learning_rate": 3e-3}},
    "heads4-vocab-4500": {"heads": 4, "net": {"vocab_size": 4500}},
    "position": {"heads": 1, "position": True},
    "heads3-position-vocab-4500": {"heads": 3, "position": True, "net": {"vocab_size": 4500}},
    "augment-16": {"augment_per_text": 16},
    "tweeteval-unlabelled": {"transfer_data": "tweeteval"},
    "conv3-not-an-mlp": {"conv": 3},  # word order under 100K parameters: a comparison, not an MLP
    "conv5-not-an-mlp": {"conv": 5},
    "conv3-128-channels-not-an-mlp": {"conv": 3, "channels": 128},
}


class HeadsMLP(nn.Module):
    """Tried, not shipped: ``heads`` attention distributions (a score per word and head, plus a
    learnt bias per position with ``position``) over the same word embeddings, concatenated."""

    def __init__(self, vocab_size: int, num_labels: int, embed_dim: int = 16, hidden_dim: int = 64, dropout: float = 0.1,
                 heads: int = 4, position: bool = False, max_length: int = 64):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.score = nn.Embedding(vocab_size, heads, padding_idx=PAD_ID)
        self.position = nn.Parameter(torch.zeros(max_length, heads)) if position else None
        self.hidden = nn.Sequential(nn.Dropout(dropout), nn.Linear(embed_dim * heads, hidden_dim), nn.ReLU(), nn.Dropout(dropout))
        self.out = nn.Linear(hidden_dim, num_labels)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != PAD_ID
        scores = self.score(ids)
        if self.position is not None:
            scores = scores + self.position[: ids.shape[1]]
        weights = torch.softmax(scores.masked_fill(~mask[:, :, None], float("-inf")), dim=1).nan_to_num(0.0)
        return self.out(self.hidden(torch.einsum("bth,btd->bhd", weights, self.embedding(ids)).flatten(1)))


def tweeteval_texts(data_root: Path, out: Path) -> str:
    """Every TweetEval tweet in ``data_root`` (both tasks, all splits), once, as a .txt file: out-of-domain unlabelled texts."""
    seen: dict[str, None] = {}
    for path in sorted(data_root.glob("tweeteval_*/*.jsonl")):
        for line in path.read_text().splitlines():
            text = json.loads(line)["text"].replace("\n", " ").strip()
            if text:
                seen.setdefault(text, None)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(f"{t}\n" for t in seen))
    return str(out)


def build_net(spec: dict, vocabulary_texts: list[str], num_labels: int) -> tuple[nn.Module, object]:
    if "conv" in spec:  # the shipped cnn student, at this width and channel count
        net, tokenizer, _ = make_student("cnn", vocabulary_texts, num_labels, {"width": spec["conv"], "channels": spec.get("channels", 64)})
        return net, tokenizer
    if "heads" not in spec:
        net, tokenizer, _ = make_student("mlp", vocabulary_texts, num_labels, spec.get("net"))
        return net, tokenizer
    config = {"vocab_size": 5000, **spec.get("net", {})}
    tokenizer = train_tokenizer(vocabulary_texts, vocab_size=config.pop("vocab_size"), min_frequency=2)
    net = HeadsMLP(tokenizer.get_vocab_size(), num_labels, heads=spec["heads"], position=spec.get("position", False), **config)
    return net, tokenizer


def run_variant(name: str, spec: dict, bundle: Path, data: str, teacher: TeacherClassifier) -> dict:
    dataset = load_dataset(data)
    train, val, test = dataset.split("train"), dataset.split("validation"), dataset.split("test")
    transfer_data = spec.get("transfer_data", "")
    if transfer_data == "tweeteval":
        transfer_data = tweeteval_texts(Path(data).parent, bundle / "work" / "experiments" / "tweeteval.txt")
    held_out = [t for split in (val, test) for t in split.texts]
    transfer = build_transfer_set(train.texts, train.labels, seed=13, held_out=held_out, transfer_data=transfer_data,
                                  augment={"per_text": spec.get("augment_per_text", 8)})
    torch.set_num_threads(2)
    logits = teacher_logits_cached(bundle / "teacher", transfer.texts, bundle / "work" / "cache", 64, progress=False,
                                   teacher=teacher, precision=teacher.precision)
    torch.set_num_threads(1)
    torch.manual_seed(13)
    net, tokenizer = build_net(spec, transfer.vocabulary_texts(), len(dataset.labels))
    if spec.get("init", "teacher") == "teacher":
        start_from_teacher(net, tokenizer, teacher)
    cfg = replace(DISTILL_DEFAULTS["cnn" if "conv" in spec else "mlp"], **spec.get("distill", {}))
    started = time.perf_counter()
    result = distill(net, tokenizer, transfer.texts, logits, transfer.gold, val.texts, val.labels, cfg, progress=False, log=lambda _: None)
    predictions = predict_ids(net, encode_batch(tokenizer, test.texts, 64)).argmax(axis=1)
    fit = predict_ids(net, encode_batch(tokenizer, transfer.texts, 64)).argmax(axis=1)
    return {"variant": name, "spec": spec, "parameters": count_parameters(net), "transfer_texts": len(transfer.texts),
            "validation": round(result["best_val_accuracy"], 4), "test": round(float((predictions == np.asarray(test.labels)).mean()), 4),
            "agrees_with_teacher_on_transfer": round(float((fit == logits.argmax(axis=1)).mean()), 4),
            "distill_seconds": round(time.perf_counter() - started)}


def forward_costs(data: str, rounds: int = 5) -> dict[str, float]:
    """CPU-µs a tweet of each net's forward pass alone: random weights, one thread, the test split in
    batches of 256 cut to each batch's own width; per batch the least of ``rounds``."""
    dataset = load_dataset(data)
    texts, labels = dataset.split("train").texts, len(dataset.labels)
    mlp, tokenizer, _ = make_student("mlp", texts, labels)  # its 5,000 words: ids every net below takes
    ids = encode_batch(tokenizer, dataset.split("test").texts, 64)
    nets = {"mlp": mlp, "cnn, 3 words": make_student("cnn", texts, labels, {"width": 3})[0],
            "cnn, 5 words": make_student("cnn", texts, labels, {"width": 5})[0], "bilstm (packed, fp32)": make_student("bilstm", texts, labels)[0]}
    torch.set_num_threads(1)
    costs = {}
    for name, net in nets.items():
        net.eval()
        best: dict[int, float] = {}
        with torch.inference_mode():
            for _ in range(rounds):
                for start in range(0, len(ids), 256):
                    batch = ids[start : start + 256]
                    x = torch.from_numpy(np.ascontiguousarray(batch[:, : max(1, int((batch != PAD_ID).sum(axis=1).max()))]))
                    began = time.process_time()
                    net(x)
                    best[start] = min(best.get(start, float("inf")), time.process_time() - began)
        costs[name] = round(sum(best.values()) / len(ids) * 1e6, 1)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bundle", type=Path, required=True, help="a trained bundle whose teacher labels the transfer sets")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "emotion"))
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--json", type=Path, help="merge the results into this JSON file")
    parser.add_argument("--forward-cost", action="store_true", help="only time the MLP's, the cnn's (3 and 5 words) and the BiLSTM's forward passes")
    args = parser.parse_args()
    if args.forward_cost:
        print(json.dumps({"cpu_us_per_tweet": forward_costs(args.data)}))
        return
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}")
    teacher = TeacherClassifier.load(args.bundle / "teacher", max_length=64, precision="bf16")
    for name in names:
        row = run_variant(name, VARIANTS[name], args.bundle, args.data, teacher)
        print(json.dumps(row), flush=True)
        if args.json:
            table = json.loads(args.json.read_text()) if args.json.is_file() else {}
            table[name] = row
            args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
