"""The bundle's human-readable report: ``report.md`` (tables) and ``tradeoff.png``, the
Tango figure: accuracy against measured CPU-seconds per 1,000 records for the cascade at
each threshold, random routing and the oracle (``tango_curve.json``, from
``models.training.tango_curve``), beside teacher-only and each student alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def _short(base_model: str) -> str:
    """A hub id as is; a local folder by its last two path parts."""
    path = Path(base_model)
    return "/".join(path.parts[-2:]) if path.is_absolute() else base_model


def _pick_rows(rows: list[dict], chosen: float, count: int = 20) -> list[dict]:
    """About ``count`` rows spread over the sweep, always including the chosen threshold."""
    if len(rows) <= count:
        return rows
    step = max(1, len(rows) // count)
    picked = rows[::step] + [r for r in rows if abs(r["threshold"] - chosen) < 1e-9] + [rows[-1]]
    unique = {r["threshold"]: r for r in picked}
    return [unique[t] for t in sorted(unique)]


def write_report(out: Path, manifest_extra: dict[str, Any], summary: dict[str, dict]) -> None:
    extra = manifest_extra
    cascade = extra["cascade"]
    serve = cascade["student"]
    teacher_acc = extra["teacher_accuracy"]
    teacher_cost = extra["teacher_cost_per_record"]
    training = extra.get("teacher_training", {})
    tcfg = training.get("config", {})
    lines = [
        f"# Tango bundle: {extra['dataset']}",
        "",
        f"Data: `{extra['data']}`. Routing: a record goes to the teacher when "
        "max softmax(student logits / temperature) < threshold. Temperature and threshold fitted on: "
        f"{extra.get('calibration_split', 'validation')} (the tables' \"validation\" columns).",
        "",
        "## Teacher",
        "",
        "| base model | epochs | lr | max length | validation | test | ms/record | training time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| `{_short(str(tcfg.get('base_model', '?')))}` | {tcfg.get('epochs', '?')} | {tcfg.get('learning_rate', '?')} | {tcfg.get('max_length', '?')} "
        f"| {_pct(teacher_acc.get('validation'))} | {_pct(teacher_acc.get('test'))} | {1e3 * teacher_cost:.2f} | {training.get('seconds', '?')} s |",
        "",
        "## Students (distilled)",
        "",
        "| student | parameters | validation | test | temperature | ms/record | served |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for arch, entry in summary.items():
        lines.append(
            f"| {arch} | {entry['parameters']:,} | {_pct(entry['validation_accuracy'])} | {_pct(entry.get('test_accuracy'))} "
            f"| {entry['temperature']:.3f} | {1e3 * entry['cost_per_record']:.3f} | {'yes' if arch == serve else ''} |"
        )
    val, test = cascade["validation"], cascade.get("test") or {}
    budget = cascade.get("teacher_budget")
    if budget is not None:
        policy = f"the most accurate threshold with at most {budget} of records to the teacher"
    else:
        policy = f"the cheapest threshold within {cascade['margin']} points of the teacher's validation accuracy"
    lines += [
        "",
        "## Chosen cascade",
        "",
        f"Student `{serve}`, threshold {cascade['threshold']:.4f}, temperature {summary[serve]['temperature']:.3f}; "
        f"policy: {policy} "
        f"({cascade['rule']}).",
        "",
        "| split | cascade accuracy | teacher accuracy | to teacher | expected speed-up |",
        "|---|---:|---:|---:|---:|",
        f"| validation | {_pct(val.get('accuracy'))} | {_pct(teacher_acc.get('validation'))} | {_pct(val.get('teacher_fraction'))} | {val.get('speedup', 0):.2f}x |",
    ]
    if test:
        lines.append(f"| test | {_pct(test.get('accuracy'))} | {_pct(teacher_acc.get('test'))} | {_pct(test.get('teacher_fraction'))} | {test.get('speedup', 0):.2f}x |")
    lines += ["", "## Other students as cascades", "", "| student | threshold | validation acc | test acc | to teacher (test) | speed-up (test) |", "|---|---:|---:|---:|---:|---:|"]
    for arch, entry in summary.items():
        v, t = entry["validation_cascade"], entry.get("test_cascade") or {}
        lines.append(f"| {arch} | {entry['threshold']:.4f} | {_pct(v['accuracy'])} | {_pct(t.get('accuracy'))} | {_pct(t.get('teacher_fraction'))} | {t.get('speedup', 0):.2f}x |")
    lines += ["", f"## Threshold sweep ({serve})", "", "| threshold | to teacher (val) | accuracy (val) | speed-up (val) | to teacher (test) | accuracy (test) |", "|---:|---:|---:|---:|---:|---:|"]
    test_rows = {r["threshold"]: r for r in summary[serve].get("test_sweep", [])}
    for row in _pick_rows(summary[serve]["validation_sweep"], cascade["threshold"]):
        t = test_rows.get(row["threshold"], {})
        mark = " **←**" if abs(row["threshold"] - cascade["threshold"]) < 1e-9 else ""
        lines.append(
            f"| {row['threshold']:.4f}{mark} | {_pct(row['teacher_fraction'])} | {_pct(row['accuracy'])} | {row['speedup']:.2f}x "
            f"| {_pct(t.get('teacher_fraction'))} | {_pct(t.get('accuracy'))} |"
        )
    curves_path = out / "tango_curve.json"
    curves = json.loads(curves_path.read_text()) if curves_path.is_file() else None
    if curves:
        lines += measured_cost_lines(curves)
    times = extra.get("stage_seconds", {})
    if times:
        lines += ["", "## Stage wall times (seconds, when the stage last ran)", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in times.items()]
    lines += ["", "![accuracy vs measured cost](tradeoff.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    if curves:
        plot_tango(out / "tradeoff.png", extra["dataset"], curves)


def at_threshold(points: list[dict], threshold: float) -> dict:
    """The curve point whose threshold is nearest ``threshold``."""
    return min(points, key=lambda p: abs(p["threshold"] - threshold))


def measured_cost_lines(curves: dict) -> list[str]:
    """The report's table of measured CPU costs on the curve's split, and the real cascade run."""
    teacher = curves["teacher"]
    lines = ["", f"## Measured cost ({curves['split']} split, {curves['records']:,} records, teacher in {curves['teacher_precision']})", "",
             "CPU-seconds per 1,000 records from a timed run of each model over the split (all threads of the process).", "",
             "| configuration | accuracy | to teacher | CPU-s / 1k records | speed-up over teacher-only |", "|---|---:|---:|---:|---:|",
             f"| teacher only | {_pct(teacher['accuracy'])} | 100.00% | {teacher['cpu_s_per_1k']:.3f} | 1.00x |"]
    for arch, entry in curves["students"].items():
        lines.append(f"| {arch} alone | {_pct(entry['accuracy'])} | 0.00% | {entry['cpu_s_per_1k']:.3f} | {teacher['cpu_s_per_1k'] / entry['cpu_s_per_1k']:.1f}x |")
        at = at_threshold(entry["cascade"], entry["threshold"])
        lines.append(f"| cascade, {arch}, threshold {entry['threshold']:.4f} (curve) | {_pct(at['accuracy'])} | {_pct(at['teacher_fraction'])} "
                     f"| {at['cpu_s_per_1k']:.3f} | {teacher['cpu_s_per_1k'] / at['cpu_s_per_1k']:.1f}x |")
    run = curves.get("measured_cascade")
    if run:
        lines.append(f"| cascade, {curves['served']}, run for real | — | {_pct(run['teacher_fraction'])} | {run['cpu_s_per_1k']:.3f} "
                     f"| {teacher['cpu_s_per_1k'] / run['cpu_s_per_1k']:.1f}x |")
    return lines


def plot_tango(path: Path, dataset: str, curves: dict) -> None:
    """Accuracy against measured CPU cost: cascade, random routing and oracle per student."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
    xy = lambda points: ([p["cpu_s_per_1k"] for p in points], [100 * p["accuracy"] for p in points])  # noqa: E731
    for color, (arch, entry) in zip(colors, curves["students"].items()):
        ax.plot(*xy(sorted(entry["cascade"], key=lambda p: p["cpu_s_per_1k"])), "-", color=color, lw=1.6, label=f"cascade, {arch} student")
        ax.plot(*xy(entry["random"]), "--", color=color, lw=1.0, alpha=0.8, label=f"random routing, {arch}")
        ax.plot(*xy(entry["oracle"]), ":", color=color, lw=1.4, label=f"oracle (teacher only where {arch} is wrong)")
        at = at_threshold(entry["cascade"], entry["threshold"])
        ax.plot(at["cpu_s_per_1k"], 100 * at["accuracy"], "*", color=color, ms=13,
                label=f"{arch}: threshold {entry['threshold']:.3f} ({100 * at['teacher_fraction']:.1f}% to teacher)")
        ax.plot(entry["cpu_s_per_1k"], 100 * entry["accuracy"], "o", color=color, ms=7, mfc="white", label=f"{arch} alone")
    teacher = curves["teacher"]
    ax.plot(teacher["cpu_s_per_1k"], 100 * teacher["accuracy"], "s", color="black", ms=8, label=f"teacher only ({curves['teacher_precision']})")
    run = curves.get("measured_cascade")
    if run:
        ax.axvline(run["cpu_s_per_1k"], color="grey", lw=0.8, alpha=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("CPU-seconds per 1,000 records, measured (log scale)")
    ax.set_ylabel(f"accuracy on {curves['split']} (%)")
    ax.set_title(f"{dataset}: accuracy against measured cost")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
