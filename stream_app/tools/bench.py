"""``tango bench``: the cascade against teacher-only and the bare broker, in one run.

Configurations, one after another on the same broker, data and machine:

- ``passthrough``: the stream worker forwarding every record unchanged (no model): the
  transport's ceiling with the same clients and batching;
- ``student``: every record decided by the student (threshold 0);
- ``teacher``: every record routed to the teacher (threshold 1.0), one teacher worker;
- ``cascade-1`` / ``cascade-2``: the bundle's calibrated threshold, one / two teachers.

Each is measured from the first record produced to the last result written: throughput,
accuracy, teacher fraction, latency per tier, CPU seconds per 1,000 records (all the
run's worker processes, and per process, the broker's apart; the stream worker's also
without its student process), peak resident memory per
process and its growth from the first to the last quarter of the run (with 13 samples from
first to last, the timeline).

``--idle-seconds`` first leaves each warmed-up configuration without input for that long and
reports each process's CPU milliseconds a second (what an idle worker costs). ``--steady``
then sends, at ``--steady-fraction`` of the burst's measured throughput, for
``--steady-seconds``, and reports the latency per tier of that phase alone (a burst's latency
is mostly its own queue) with its CPU and memory; ``--soak 30m`` is a steady phase of that
length for memory growth.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import orjson

from stream_app.settings import add_setting_flags, settings_from_args
from stream_app.tools.runner import Collected, LocalRun, Replayed

CONFIGS = ("passthrough", "student", "teacher", "cascade-1", "cascade-2")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants: a worker's processes (the stream worker's student process)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], ()))
    return tree


def _tree_files(pid: int, name: str) -> list[str]:
    """``/proc/<member>/<name>`` of ``pid`` and of each descendant still there (``pid``'s own must be)."""
    texts = []
    for member in process_tree(pid):
        try:
            texts.append(Path(f"/proc/{member}/{name}").read_text())
        except OSError:
            if member == pid:
                raise
    return texts


def _proc_cpu_s(pid: int, descendants: bool = True) -> float:
    """CPU seconds of ``pid`` and its descendants (or of ``pid`` alone)."""
    import os

    ticks = 0
    for stat in _tree_files(pid, "stat") if descendants else [Path(f"/proc/{pid}/stat").read_text()]:
        fields = stat.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _proc_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants."""
    return sum(next((int(line.split()[1]) / 1024.0 for line in status.splitlines() if line.startswith("VmRSS:")), 0.0)
               for status in _tree_files(pid, "status"))


class Sampler(threading.Thread):
    """Samples each process's resident memory every ``every`` seconds."""

    def __init__(self, pids: dict[str, int], every: float = 0.5):
        super().__init__(daemon=True)
        self.pids, self.every = pids, every
        self.samples: dict[str, list[float]] = {name: [] for name in pids}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for name, pid in self.pids.items():
                try:
                    self.samples[name].append(_proc_rss_mb(pid))
                except (FileNotFoundError, ProcessLookupError):
                    pass
            self._halt.wait(self.every)

    def stop(self) -> dict[str, dict[str, float]]:
        self._halt.set()
        self.join()
        out = {}
        for name, values in self.samples.items():
            if not values:
                continue
            quarter = max(1, len(values) // 4)
            first, last = max(values[:quarter]), max(values[-quarter:])
            out[name] = {"peak": round(max(values), 1), "first_quarter": round(first, 1), "last_quarter": round(last, 1),
                         "growth": round(last / first - 1.0, 4) if first else 0.0, "timeline": timeline(values)}
        return out


def timeline(values: list[float], points: int = 13) -> list[float]:
    """``points`` samples evenly spread from the first to the last (where memory went, not only how much).

    >>> timeline([1.0, 2.0, 3.0, 4.0, 5.0], points=3)
    [1.0, 3.0, 5.0]
    """
    if len(values) <= points:
        return [round(v, 1) for v in values]
    return [round(values[round(i * (len(values) - 1) / (points - 1))], 1) for i in range(points)]


def plan(config: str) -> tuple[list[str], int, dict[str, str]]:
    """The stream command, the number of teachers and the settings of a configuration."""
    if config == "passthrough":
        return ["stream", "--passthrough"], 0, {}
    if config == "student":
        return ["stream"], 0, {"TANGO_THRESHOLD": "0.0"}
    if config == "teacher":
        return ["stream"], 1, {"TANGO_THRESHOLD": "1.0"}
    return ["stream"], int(config.split("-")[1]), {}


def cpu_seconds(pids: dict[str, int], descendants: bool = True) -> dict[str, float]:
    return {name: _proc_cpu_s(pid, descendants) for name, pid in pids.items()}


def cost_per_1k(before: dict[str, float], after: dict[str, float], records: int) -> dict[str, float]:
    """CPU seconds per 1,000 records of each process between two readings."""
    return {name: round((after[name] - before[name]) / records * 1000, 3) for name in before}


def idle_cpu(pids: dict[str, int], seconds: float) -> dict[str, float]:
    """Each process's CPU milliseconds a second over ``seconds`` without input: what an idle worker costs."""
    before = cpu_seconds(pids)
    time.sleep(seconds)
    after = cpu_seconds(pids)
    return {name: round((after[name] - before[name]) / seconds * 1000, 1) for name in pids}


def measure(run: LocalRun, consumer, items, gold, pids, timeout: float, rate: float = 0.0) -> dict:
    """Send ``items`` (at ``rate``, or as fast as possible) and measure until every result is back."""
    cpu_before, alone_before = cpu_seconds(pids), cpu_seconds(pids, descendants=False)
    sampler = Sampler(pids)
    sampler.start()
    started = run.send(items, rate=rate)
    collected = run.collect(consumer, gold, timeout=timeout, into=Collected(keep_results=False))
    memory = sampler.stop()
    per_process = cost_per_1k(cpu_before, cpu_seconds(pids), len(gold))
    alone = cost_per_1k(alone_before, cpu_seconds(pids, descendants=False), len(gold))
    # a worker with a child (the stream worker's student process): its own interpreter's share apart
    alone = {name: cost for name, cost in alone.items() if cost != per_process[name]}
    return {"collected": collected, "started": started, "memory": memory, "cpu_s_per_1k_by_process": per_process,
            "cpu_s_per_1k_without_children": alone, "cpu_s_per_1k": round(sum(v for k, v in per_process.items() if k != "broker"), 3)}


def run_config(config: str, args, settings, texts, labels, logs: Path) -> dict:
    stream_args, teachers, overrides = plan(config)
    run = LocalRun(settings, settings.bundle, logs, tag=f"bench-{config}", overrides=overrides)
    try:
        for i in range(teachers):
            run.start(f"teacher-{i + 1}", "teacher")
        run.start("stream", *stream_args)
        if teachers:
            run.wait_teachers(teachers)
        consumer = run.consumer()
        # warm-up: loads the models, joins the groups, fills the caches; not measured
        warm = Replayed(texts, args.warmup, prefix="warm-")
        run.send(warm)
        run.collect(consumer, warm.gold(labels), timeout=args.timeout)
        pids = {name: p.pid for name, p in run.processes.items()}
        if args.broker_pid:
            pids["broker"] = args.broker_pid
        idle = idle_cpu(pids, args.idle_seconds) if args.idle_seconds else None
        items = Replayed(texts, args.records, prefix="r")  # records and gold labels made as sent and read
        gold = items.gold(labels)
        summary = _summary(config, measure(run, consumer, items, gold, pids, args.timeout), gold)
        if idle is not None:
            summary["idle_cpu_ms_per_s"] = idle
        if args.steady or args.soak:
            seconds = parse_duration(args.soak) if args.soak else args.steady_seconds
            rate = args.steady_fraction * summary["throughput"]
            steady = Replayed(texts, max(1, int(rate * seconds)), prefix="s")  # a soak sends millions
            print(f"[bench] {config}: steady load at {rate:.0f} records/s ({args.steady_fraction:.0%} of "
                  f"{summary['throughput']:.0f}) for {seconds:.0f} s", flush=True)
            gold = steady.gold(labels)
            phase = measure(run, consumer, steady, gold, pids, args.timeout + seconds, rate=rate)
            summary["steady"] = {"rate": round(rate, 1), "seconds": seconds, **_summary(config, phase, gold)}
        consumer.close()
        return summary
    finally:
        run.stop()


def _summary(config: str, measured: dict, gold: Mapping[str, int]) -> dict:
    summary = measured["collected"].summary(gold, measured["started"])
    memory = measured["memory"]
    summary.update(cpu_s_per_1k=measured["cpu_s_per_1k"], cpu_s_per_1k_by_process=measured["cpu_s_per_1k_by_process"],
                   cpu_s_per_1k_without_children=measured["cpu_s_per_1k_without_children"], peak_rss_mb={name: m["peak"] for name, m in memory.items()}, memory=memory)
    if config == "passthrough":
        summary.update(accuracy=None, teacher_fraction=0.0)
    return summary


def parse_duration(text: str) -> float:
    """Seconds of ``90``, ``90s``, ``30m`` or ``2h``.

    >>> parse_duration("30m"), parse_duration("90"), parse_duration("1.5h")
    (1800.0, 90.0, 5400.0)
    """
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    text = text.strip().lower()
    if text and text[-1] in units:
        return float(text[:-1]) * units[text[-1]]
    return float(text)


def markdown(report: dict) -> str:
    lines = [
        f"Records per configuration: {report['records']}",
        "",
        "| configuration | records/s | accuracy | teacher fraction | p50 / p95 / p99 ms (per tier) | CPU s / 1k (per process) | peak RSS MB (per process) | RSS growth |",
        "|---|---:|---:|---:|---|---|---|---:|",
    ]
    steady = []
    for name, c in report["configs"].items():
        if name.startswith("cascade") and not c["teacher_fraction"]:
            name += " (routed nothing: the student path, not a cascade)"
        lines.append(_row(name, c))
        if "steady" in c:
            steady.append(_row(f"{name} at {c['steady']['rate']:.0f}/s", c["steady"]))
    if steady:
        lines += ["", "Steady load (the rate shown, a fraction of the burst's throughput):", "", *lines[2:4], *steady]
    r = report["ratios"]
    routed = report["configs"]["cascade-1"]["teacher_fraction"]
    versus = f"student / passthrough: **{r['student_vs_passthrough'] * 100:.0f}%**" if r["student_vs_passthrough"] else "no passthrough run"
    lines += ["", f"cascade-1 (routed fraction {routed:.3f}) / teacher throughput: **{r['cascade_vs_teacher']}×** at "
              f"{r['cascade_minus_teacher_accuracy_points']:+.2f} accuracy points against teacher-only; {versus}"]
    return "\n".join(lines)


def _row(name: str, c: dict) -> str:
    latency = "; ".join(f"{t}: {v['p50']:.0f} / {v['p95']:.0f} / {v['p99']:.0f}" for t, v in c["latency_ms"].items())
    rss = ", ".join(f"{p} {v:.0f}" for p, v in c["peak_rss_mb"].items())
    growth = max((m["growth"] for m in c.get("memory", {}).values()), default=0.0)
    accuracy = "—" if c["accuracy"] is None else f"{c['accuracy'] * 100:.2f}%"
    alone = c.get("cpu_s_per_1k_without_children", {})
    cpu = f"{c['cpu_s_per_1k']:.2f} (" + ", ".join(
        f"{p} {v:.2f}" + (f", of which itself {alone[p]:.2f}" if p in alone else "")
        for p, v in c.get("cpu_s_per_1k_by_process", {}).items()) + ")"
    return (f"| {name} | {c['throughput']:.0f} | {accuracy} | {c['teacher_fraction']:.3f} | {latency} | {cpu} | {rss} "
            f"| {growth * 100:+.1f}% |")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["configs"])
    throughput = [report["configs"][n]["throughput"] for n in names]
    accuracy = [float("nan") if report["configs"][n]["accuracy"] is None else report["configs"][n]["accuracy"] * 100 for n in names]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.bar(names, throughput, color="#4c72b0")
    ax.set_ylabel("end-to-end records/s")
    ax.set_yscale("log")
    ax2 = ax.twinx()
    ax2.plot(names, accuracy, "o", color="#dd8452", markersize=9)  # passthrough has no accuracy
    ax2.set_ylabel("accuracy (%), dots")
    known = [a for a in accuracy if a == a]
    if known:
        ax2.set_ylim(max(0.0, min(known) - 3), min(100.0, max(known) + 1))
    ax.set_title(f"tango bench: {report['records']} records per configuration")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_bench(args: argparse.Namespace) -> int:
    from stream_app.tools.runner import default_dataset, load_split, local_broker

    settings = settings_from_args(args)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"tango bench: unknown configurations {sorted(unknown)}; known: {list(CONFIGS)}")
    texts, labels, _ = load_split(args.data or default_dataset(), args.split, 0)
    logs = Path(args.logs or tempfile.mkdtemp(prefix="tango-bench-"))
    report: dict = {"records": args.records, "dataset": args.data or default_dataset(), "split": args.split, "configs": {}}
    with local_broker(settings, external=args.external_kafka, keep=args.keep_kafka) as broker_pid:
        args.broker_pid = broker_pid
        for config in configs:
            print(f"[bench] {config} ...", flush=True)
            report["configs"][config] = run_config(config, args, settings, texts, labels, logs)
            c = report["configs"][config]
            c["is_cascade"] = bool(config.startswith("cascade") and c["teacher_fraction"] > 0)
            if "idle_cpu_ms_per_s" in c:
                print(f"[bench] {config} idle for {args.idle_seconds:g} s: CPU ms a second {c['idle_cpu_ms_per_s']}", flush=True)
            print(f"[bench] {config}: {c['throughput']} records/s, accuracy {c['accuracy']}, routed fraction "
                  f"{c['teacher_fraction']}, CPU s/1k {c['cpu_s_per_1k']} {c['cpu_s_per_1k_by_process']}, "
                  f"without children {c['cpu_s_per_1k_without_children']}", flush=True)
            if "steady" in c:
                st = c["steady"]
                print(f"[bench] {config} steady at {st['rate']} records/s: latency ms {st['latency_ms']}, routed fraction "
                      f"{st['teacher_fraction']}, CPU s/1k {st['cpu_s_per_1k']} {st['cpu_s_per_1k_by_process']}, "
                      f"RSS growth {({k: m['growth'] for k, m in st['memory'].items()})}", flush=True)
            if config.startswith("cascade") and not c["is_cascade"]:
                print(f"[bench] warning: {config} routed nothing to the teacher (the bundle's threshold is "
                      f"{c.get('threshold', 'its own')}): it measures the student path, not a cascade", flush=True)
    c = report["configs"]
    ratio = lambda a, b: round(c[a]["throughput"] / c[b]["throughput"], 3) if a in c and b in c and c[b]["throughput"] else None  # noqa: E731
    points = lambda a, b: round(100 * (c[a]["accuracy"] - c[b]["accuracy"]), 2) if a in c and b in c and c[a]["accuracy"] is not None else None  # noqa: E731
    report["ratios"] = {"cascade_vs_teacher": ratio("cascade-1", "teacher"), "student_vs_passthrough": ratio("student", "passthrough"),
                        "cascade_1_routed_fraction": c["cascade-1"]["teacher_fraction"] if "cascade-1" in c else None,
                        "cascade_minus_teacher_accuracy_points": points("cascade-1", "teacher")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    if all(k in c for k in ("cascade-1", "teacher")):
        out.with_suffix(".md").write_text(markdown(report) + "\n")
    plot(report, out.with_suffix(".png"))
    print(json.dumps(report["ratios"]))
    print(f"[bench] wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')}; logs in {logs}")
    return 0


def run_models_bench(args: argparse.Namespace) -> int:
    from models.training.microbench import run_microbench
    from stream_app.tools.runner import default_dataset, load_split

    settings = settings_from_args(args)
    texts, labels, _ = load_split(args.data or default_dataset(), args.split, args.limit)
    report = run_microbench(settings.bundle, texts, labels, teacher_batch=settings.teacher_batch_size, threads=settings.torch_threads)
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def add_cli(commands) -> None:
    models = commands.add_parser("bench-models", help="micro-benchmark the student and teacher alone (every precision side by side, padded/bucketed)")
    models.add_argument("--data", default="", help="labelled dataset (default: ../shared/data/emotion, else dair-ai/emotion)")
    models.add_argument("--split", default="test")
    models.add_argument("--limit", type=int, default=0, help="use the first N records (0: all)")
    models.add_argument("--out", default="", help="also write the JSON report here")
    add_setting_flags(models)
    models.set_defaults(func=run_models_bench)

    bench = commands.add_parser("bench", help="benchmark passthrough, student-only, teacher-only and the cascade on the local broker")
    bench.add_argument("--out", default="bench.json", help="JSON report; the markdown table and the plot go beside it")
    bench.add_argument("--records", type=int, default=20_000, help="records per configuration (the split is replayed with unique ids)")
    bench.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {','.join(CONFIGS)}")
    bench.add_argument("--data", default="", help="labelled dataset (default: ../shared/data/emotion, else dair-ai/emotion)")
    bench.add_argument("--split", default="test")
    bench.add_argument("--warmup", type=int, default=500, help="records sent first and not measured")
    bench.add_argument("--timeout", type=float, default=1800.0, help="seconds one configuration may take")
    bench.add_argument("--logs", default="", help="folder for the processes' logs (default: a temporary folder)")
    bench.add_argument("--external-kafka", action="store_true", help="use the broker at --bootstrap-servers, start none")
    bench.add_argument("--keep-kafka", action="store_true", help="leave the local broker running afterwards")
    bench.add_argument("--steady", action="store_true",
                       help="after each burst, a steady-load phase at --steady-fraction of its throughput")
    bench.add_argument("--steady-fraction", type=float, default=0.5, help="steady rate as a fraction of the measured capacity")
    bench.add_argument("--steady-seconds", type=float, default=60.0, help="length of the steady phase")
    bench.add_argument("--soak", default="", help="a steady phase this long (30m, 2h) to watch memory; implies --steady")
    bench.add_argument("--idle-seconds", type=float, default=0.0,
                       help="after the warm-up, this long without input: each process's CPU ms a second (idle_cpu_ms_per_s)")
    add_setting_flags(bench)
    bench.set_defaults(func=run_bench)
