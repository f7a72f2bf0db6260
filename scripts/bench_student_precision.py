"""The student's forward pass at the batch sizes the stream sees: fp32, bf16 and int8, 1 and 2 threads.

    .venv/bin/python scripts/bench_student_precision.py [--bundle DIR] [--data ../shared/data/emotion]
    .venv/bin/python scripts/bench_student_precision.py --memory 1200 [--bundle DIR]

The student is the one the bundle serves (an MLP, a BiLSTM or a cnn, trained). Prints first the
tokeniser's wall and CPU microseconds per record (``WordIds``, as the workers tokenise, and the
library alone), then one JSON line per variant: milliseconds per batch of 256 (median of 30),
microseconds per record, the share of test labels equal to fp32's and the accuracy on the test
split. The variants run the network as training built it (a BiLSTM packs its batch) in each
precision, and a BiLSTM or a cnn also as the workers serve it ("served fp32", "served bf16":
``models/student_serving.py``; a BiLSTM also "served fp32, kernel": fp32 through oneDNN's kernel, as
bf16 is served). ``--memory N`` instead runs N batches of the shapes a stream sees
(1-256 tweets of 3-64 tokens, seeded) through the served student in fp32 and in bf16, each in a
fresh process, and prints the resident memory as it goes.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np
import torch

from models.bundle import load_bundle
from models.student_nets import count_parameters
from models.student_serving import ServedBiLSTM, ServedCNN, SteppedBiLSTM, serving_net
from models.student_tokenizer import WordIds
from models.student_weights import load_student_net
from stream_app.memory_trim import resident_bytes
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


def variants(trained: torch.nn.Module):
    """Each way to run the trained network: as training built it (a BiLSTM packs its batch), and served."""
    def run(net):
        def forward(ids):
            with torch.inference_mode():
                return net(ids).float()
        return forward

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao dynamic int8 is deprecated; measured for the record
        int8_net = torch.ao.quantization.quantize_dynamic(build_copy(trained), {torch.nn.Linear, torch.nn.LSTM}, dtype=torch.qint8)

    def bf16_autocast(ids):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return trained(ids).float()

    out = {"fp32": run(trained), "bf16 autocast": bf16_autocast, "bf16 weights": run(build_copy(trained).to(torch.bfloat16)),
           "int8 dynamic": run(int8_net)}
    served = serving_net(build_copy(trained))
    if isinstance(served, (SteppedBiLSTM, ServedCNN)):  # an MLP is served as it is: the rows above
        out.update({"served fp32": run(served), "served bf16": run(serving_net(build_copy(trained), torch.bfloat16))})
    if isinstance(served, SteppedBiLSTM):  # fp32 through oneDNN's kernel, as bf16 is served
        out["served fp32, kernel"] = run(ServedBiLSTM(build_copy(trained)))
    return out


def build_copy(net: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(net).eval()


def rss_mb() -> float:
    return resident_bytes() / 2**20


def memory_run(bundle_dir: str, precision: str, batches: int) -> None:
    """Resident memory over ``batches`` forward passes of varying shapes, in ``precision``."""
    torch.set_num_threads(1)
    student = load_bundle(bundle_dir).load_student(precision)
    rng, vocab, started = random.Random(0), student.tokenizer.get_vocab_size(), time.perf_counter()
    for i in range(batches):
        rows, longest = rng.randint(1, 256), rng.randint(3, 64)
        ids = torch.zeros((rows, longest), dtype=torch.long)
        for row in range(rows):
            length = longest if row == 0 else rng.randint(1, longest)
            ids[row, :length] = torch.randint(5, vocab, (length,))
        with torch.inference_mode():
            student.net(ids)
        if i % max(1, batches // 8) == 0 or i == batches - 1:
            print(json.dumps({"precision": precision, "batches": i + 1, "rss_mb": round(rss_mb(), 1),
                              "seconds": round(time.perf_counter() - started, 1)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(CACHE_DIR / "bundles" / "emotion-quick"))
    parser.add_argument("--data", default="")
    parser.add_argument("--memory", type=int, default=0, help="instead: resident memory over this many batches, fp32 and bf16")
    parser.add_argument("--precision", default="", help=argparse.SUPPRESS)  # --memory's child process
    args = parser.parse_args()
    if args.memory and args.precision:
        return memory_run(args.bundle, args.precision, args.memory)
    if args.memory:
        for precision in ("fp32", "bf16"):  # a fresh process each: what one allocated stays with it
            subprocess.run([sys.executable, __file__, "--bundle", args.bundle, "--memory", str(args.memory), "--precision", precision], check=True)
        return
    bundle = load_bundle(args.bundle)
    student = bundle.load_student()
    texts, gold, _ = load_split(args.data or default_dataset(), "test", 0)
    batches = [texts[i:i + BATCH] for i in range(0, len(texts) - BATCH + 1, BATCH)]
    words = WordIds(student.tokenizer)
    ids_all = [torch.from_numpy(words(b, bundle.manifest.max_length)) for b in batches]
    # tokenising, as the workers do (WordIds) and through the library alone (its threads' CPU counted too)
    for tokeniser, encode in (("word_ids", lambda b: words(b, bundle.manifest.max_length)),
                              ("library", lambda b: student.tokenizer.encode_batch(b, add_special_tokens=False))):
        wall, cpu = time.perf_counter(), time.process_time()
        for b in batches:
            encode(b)
        per_record = 1e6 / (len(batches) * BATCH)
        print(json.dumps({"tokeniser": tokeniser, "wall_us_per_record": round((time.perf_counter() - wall) * per_record, 2),
                          "cpu_us_per_record": round((time.process_time() - cpu) * per_record, 2), "batch": BATCH}))
    spec = bundle.manifest.student
    net, name = load_student_net(bundle.root / spec.weights, spec.arch, spec.config), spec.arch
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
