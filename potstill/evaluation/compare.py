"""A table of experiments a person can read: changed params and headline metrics, one row per run.

Fed with rows of (name, flat params, headline summary) by tools/compare.py, which reads them from
`dvc exp show --json`; this module knows nothing about DVC. The table fits `width` columns: the
headline metrics of one model always show, changed params fill what is left (the rest are counted
below the table), and the best value of each metric column carries a `*`.
"""

from __future__ import annotations

import os

from potstill.evaluation.summary import STUDENT_FIELDS

# (summary field, column title, higher is better); task scores come first and are found in the rows.
METRIC_COLUMNS = (("kl_vs_teacher", "KL", False), ("top1_vs_teacher", "top1", True),
                  ("degenerate_share", "loops", False), ("size_mb", "MiB", False), ("ms_per_token", "ms/tok", False))


def flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    """Return {"a.b.c": value} for a nested mapping (lists kept as values)."""
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def changed_params(rows: list[dict]) -> list[str]:
    """Return the params whose values differ between rows, in params.yaml order."""
    keys: list[str] = []
    for row in rows:
        keys += [key for key in row["params"] if key not in keys]
    return [key for key in keys if len({repr(row["params"].get(key)) for row in rows}) > 1]


def _short(value, limit: int = 10) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, list):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _task_columns(rows: list[dict], model: str) -> list[tuple[str, str, bool]]:
    fields = [f for f, _, _ in METRIC_COLUMNS] + list(STUDENT_FIELDS)  # the rest of a summary row are task scores
    tasks: list[str] = []
    for row in rows:
        tasks += [key for key in (row["summary"].get(model) or {}) if key not in fields and key not in tasks]
    prefix = os.path.commonprefix(tasks) if len(tasks) > 1 else ""
    prefix = prefix[:prefix.rfind("_") + 1] if "_" in prefix else ""
    return [(task, task.removeprefix(prefix), True) for task in tasks]


def compare_table(rows: list[dict], model: str = "merged", width: int = 120) -> str:
    """Return the experiments as a fixed-width text table of at most `width` characters a line.

    rows: [{"name": ..., "params": {flat key: value}, "summary": {model: {field: value}}}].
    """
    metrics = _task_columns(rows, model) + list(METRIC_COLUMNS)
    values = [[(row["summary"].get(model) or {}).get(field) for field, _, _ in metrics] for row in rows]
    best = []
    for index, (_, _, higher) in enumerate(metrics):
        present = [v[index] for v in values if isinstance(v[index], int | float)]
        best.append((max if higher else min)(present) if len(set(present)) > 1 else None)
    metric_cells = [[("-" if v is None else f"{v:.4g}") + ("*" if v is not None and v == best[i] else "")
                     for i, v in enumerate(row)] for row in values]
    metric_widths = [max(len(title), *(len(cells[i]) for cells in metric_cells)) for i, (_, title, _) in
                     enumerate(metrics)]
    name_width = min(max(len("experiment"), *(len(row["name"]) for row in rows)), 16)
    used = name_width + sum(w + 2 for w in metric_widths)
    params, shown = changed_params(rows), []
    for key in params:
        title = ".".join(key.split(".")[-2:])
        cell_width = max(len(title), *(len(_short(row["params"].get(key))) for row in rows))
        if used + cell_width + 2 > width:
            break
        shown.append((key, title, cell_width))
        used += cell_width + 2
    header = ["experiment".ljust(name_width)] + [t.rjust(w) for _, t, w in shown] + [
        title.rjust(w) for (_, title, _), w in zip(metrics, metric_widths, strict=True)]
    lines = ["  ".join(header)]
    for row, cells in zip(rows, metric_cells, strict=True):
        name = row["name"] if len(row["name"]) <= name_width else row["name"][:name_width - 1] + "…"
        line = [name.ljust(name_width)] + [_short(row["params"].get(key)).rjust(w) for key, _, w in shown] + [
            cell.rjust(w) for cell, w in zip(cells, metric_widths, strict=True)]
        lines.append("  ".join(line))
    notes = [f"metrics of {model}; * = best in its column"]
    if len(shown) < len(params):
        notes.append(f"{len(params) - len(shown)} more changed params: dvc exp show --only-changed")
    lines.append("; ".join(notes))
    return "\n".join(line[:width] for line in lines)


def compare_plot(rows: list[dict], curves: dict[str, tuple[list[float], list[float]]], model: str,
                 out_file) -> None:
    """Draw a PNG: each run's training loss curve, and bars of its headline task scores and KL, side by side."""
    from pathlib import Path

    from potstill.evaluation.report import _pyplot

    plt = _pyplot()
    tasks = [field for field, _, _ in _task_columns(rows, model)]
    panels = 1 + len(tasks) + 1
    figure, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.5), dpi=100)
    for name, (steps, values) in curves.items():
        axes[0].plot(steps, values, label=name, marker="o" if len(steps) < 10 else None)
    axes[0].set_title("train loss")
    axes[0].set_xlabel("optimizer step")
    if curves:
        axes[0].legend(fontsize=7)
    names = [row["name"] for row in rows]
    for axis, field in zip(axes[1:], [*tasks, "kl_vs_teacher"], strict=True):
        heights = [(row["summary"].get(model) or {}).get(field) or 0.0 for row in rows]
        axis.bar(names, heights, color="#4c72b0")
        axis.set_title(f"{field} ({model})")
        axis.tick_params(axis="x", labelrotation=30, labelsize=7)
    figure.tight_layout()
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_file, format="png")
    plt.close(figure)
