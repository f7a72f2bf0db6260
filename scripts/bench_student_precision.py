"""The student's forward pass at the batch sizes the stream sees: fp32, bf16 and int8, 1 and 2 threads.

    .venv/bin/python scripts/bench_student_precision.py [--bundle DIR] [--data ../shared/data/emotion]

The student is the one the bundle serves (an MLP or a BiLSTM, trained). Prints one JSON line per
variant: milliseconds per batch of 256 (median of 30), microseconds per record, the share of
test labels equal to fp32's and the accuracy on the test split.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import numpy as np
import torch

from models.bundle import load_bundle
from models.student_nets import count_parameters
from models.student_tokenizer import encode_batch
from stream_app.settings import CACHE_DIR
from stream_app.tools.runner import default_dataset, load_split

BATCH = 256


def timed(forward, ids: torch.Tensor, repeats: int = 30) -> float:
    for _ in range(3):
        forward(ids)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        forward(ids)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def variants(net: torch.nn.Module):
    def fp32(ids):
        with torch.inference_mode():
            return net(ids).float()

    def bf16_autocast(ids):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return net(ids).float()

    bf16_net = build_copy(net).to(torch.bfloat16)

    def bf16_weights(ids):
        with torch.inference_mode():
            return bf16_net(ids).float()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao dynamic int8 is deprecated; measured for the record
        int8_net = torch.ao.quantization.quantize_dynamic(build_copy(net), {torch.nn.Linear, torch.nn.LSTM}, dtype=torch.qint8)

    def int8(ids):
        with torch.inference_mode():
            return int8_net(ids).float()

    return {"fp32": fp32, "bf16 autocast": bf16_autocast, "bf16 weights": bf16_weights, "int8 dynamic": int8}


def build_copy(net: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(net).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(CACHE_DIR / "bundles" / "emotion-quick"))
    parser.add_argument("--data", default="")
    args = parser.parse_args()
    bundle = load_bundle(args.bundle)
    student = bundle.load_student()
    texts, gold, _ = load_split(args.data or default_dataset(), "test", 0)
    batches = [texts[i:i + BATCH] for i in range(0, len(texts) - BATCH + 1, BATCH)]
    ids_all = [torch.from_numpy(encode_batch(student.tokenizer, b, bundle.manifest.max_length)) for b in batches]
    started = time.perf_counter()
    for b in batches:
        encode_batch(student.tokenizer, b, bundle.manifest.max_length)
    tokenise_us = (time.perf_counter() - started) / (len(batches) * BATCH) * 1e6
    print(json.dumps({"tokenise_us_per_record": round(tokenise_us, 2), "batch": BATCH}))
    net, name = student.net, bundle.manifest.student.arch
    reference = None
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for variant, forward in variants(net).items():
            seconds = timed(forward, ids_all[0])
            labels = np.concatenate([forward(ids).argmax(1).numpy() for ids in ids_all])
            reference = labels if variant == "fp32" and reference is None else reference
            print(json.dumps({"student": name, "parameters": count_parameters(net), "variant": variant, "threads": threads,
                              "ms_per_batch": round(seconds * 1000, 3), "us_per_record": round(seconds / BATCH * 1e6, 2),
                              "same_labels_as_fp32": round(float((labels == reference).mean()), 4),
                              "accuracy": round(float((labels == np.asarray(gold[:len(labels)])).mean()), 4)}), flush=True)


if __name__ == "__main__":
    main()
