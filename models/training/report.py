"""The bundle's human-readable report: ``report.md`` (tables) and ``tradeoff.png``
(cascade accuracy against expected speed-up at each threshold, beside teacher-only and
each student alone)."""

from __future__ import annotations

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
        "max softmax(student logits / temperature) < threshold.",
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
    times = extra.get("stage_seconds", {})
    if times:
        lines += ["", "## Stage wall times (seconds, when the stage last ran)", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in times.items()]
    lines += ["", "![accuracy vs speed-up](tradeoff.png)", ""]
    (out / "report.md").write_text("\n".join(lines))
    plot_tradeoff(out / "tradeoff.png", extra, summary)


def plot_tradeoff(path: Path, extra: dict, summary: dict[str, dict]) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    teacher_acc = extra["teacher_accuracy"]
    split = "test" if teacher_acc.get("test") is not None else "validation"
    teacher_cost = extra["teacher_cost_per_record"]
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:purple"]
    for color, (arch, entry) in zip(colors, summary.items()):
        rows = entry.get("test_sweep") if split == "test" else entry["validation_sweep"]
        rows = sorted(rows or entry["validation_sweep"], key=lambda r: r["speedup"])
        ax.plot([r["speedup"] for r in rows], [100 * r["accuracy"] for r in rows], "-", color=color, lw=1.4, label=f"cascade with {arch}")
        chosen = entry.get("test_cascade") if split == "test" else entry["validation_cascade"]
        if chosen:
            ax.plot(chosen["speedup"], 100 * chosen["accuracy"], "*", color=color, ms=13,
                    label=f"{arch}: chosen threshold {entry['threshold']:.3f} ({100 * chosen['teacher_fraction']:.0f}% to teacher)")
        alone = entry.get("test_accuracy") if split == "test" else entry["validation_accuracy"]
        ax.plot(teacher_cost / entry["cost_per_record"], 100 * alone, "o", color=color, ms=7, mfc="white", label=f"{arch} alone")
    ax.plot(1.0, 100 * teacher_acc[split], "s", color="black", ms=8, label="teacher only")
    ax.set_xscale("log")
    ax.set_xlabel("expected speed-up over teacher-only (log scale)")
    ax.set_ylabel(f"accuracy on {split} (%)")
    ax.set_title(f"{extra['dataset']}: accuracy vs speed-up by threshold")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
