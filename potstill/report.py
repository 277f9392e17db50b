"""Static evaluation report: PNG charts (matplotlib, Agg) and a markdown page that embeds them.

`dvc plots show` writes HTML that loads vega from a CDN, so it renders blank offline; these PNGs
open anywhere (an image viewer, a markdown preview, a CI job summary).
"""

from __future__ import annotations

import csv
from pathlib import Path

from potstill.io import write_text_atomic

# (task or None for a top-level score, metric, axis label, lower is better)
HEADLINE_METRICS = (
    ("potstill_mc", "acc", "potstill_mc accuracy", False),
    ("potstill_gen", "exact_match", "potstill_gen exact match", False),
    (None, "heldout_nll", "held-out NLL (nats/token)", True),
)
MODEL_ORDER = ("teacher", "student_base", "merged", "quantized")
# DVCLive files (relative to metrics/train/plots/metrics) drawn on the loss chart, when present.
LOSS_CURVES = ("loss", "ce_loss", "kd_loss", "hidden_loss", "eval/loss", "eval/ce_loss", "eval/kd_loss")


def _pyplot():
    """Return matplotlib.pyplot on the Agg backend (no display needed: stages run headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def metric_value(scores: dict, task: str | None, metric: str) -> tuple[float | None, float | None]:
    """Return (value, stderr) of one metric from a model's scores; None where it is missing."""
    section = scores if task is None else scores.get(task) or {}
    value, stderr = section.get(metric), section.get(f"{metric}_stderr")
    return (float(value) if isinstance(value, int | float) else None,
            float(stderr) if isinstance(stderr, int | float) else None)


def metric_chart(report: dict, task: str | None, metric: str, label: str, out_file: Path) -> Path:
    """Return `out_file` after drawing one bar per model (with stderr bars where lm-eval gave one)."""
    plt = _pyplot()
    names = [name for name in MODEL_ORDER if name in report] + sorted(set(report) - set(MODEL_ORDER))
    values, errors = zip(*(metric_value(report[name], task, metric) for name in names), strict=True)
    heights = [value if value is not None else 0.0 for value in values]
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    # Error bars only where lm-eval reported a standard error (not for held-out NLL).
    yerr = [error or 0.0 for error in errors] if any(error is not None for error in errors) else None
    bars = axis.bar(names, heights, yerr=yerr, capsize=4,
                    color=["#4c72b0", "#8c8c8c", "#55a868", "#c44e52", "#8172b2"][: len(names)])
    for bar, value in zip(bars, values, strict=True):
        axis.annotate("n/a" if value is None else f"{value:.3g}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom", fontsize=9)
    axis.set_ylabel(label)
    axis.set_title(label)
    figure.tight_layout()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_file, format="png")
    plt.close(figure)
    return out_file


def read_curve(tsv: Path) -> tuple[list[float], list[float]]:
    """Return (steps, values) from a DVCLive TSV (`step<TAB>name` header)."""
    steps, values = [], []
    with tsv.open(newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            value_column = next(key for key in row if key not in ("step", "timestamp"))
            steps.append(float(row["step"]))
            values.append(float(row[value_column]))
    return steps, values


def loss_chart(train_plots: Path, out_file: Path) -> Path | None:
    """Return `out_file` after drawing the train (and eval) loss terms, or None when DVCLive wrote none."""
    curves = {name: train_plots / f"{name}.tsv" for name in LOSS_CURVES if (train_plots / f"{name}.tsv").is_file()}
    if not curves:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    for name, tsv in curves.items():
        steps, values = read_curve(tsv)
        # Eval points are few: markers keep a 1-4 point series visible.
        axis.plot(steps, values, label=name, linestyle="--" if name.startswith("eval/") else "-",
                  marker="o" if name.startswith("eval/") or len(steps) < 10 else None)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss")
    axis.set_title("train: total, CE and KD terms")
    axis.legend(fontsize=8)
    figure.tight_layout()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_file, format="png")
    plt.close(figure)
    return out_file


def write_report(report: dict, out_dir: Path, train_plots: Path | None = None) -> list[Path]:
    """Return the files written: one PNG per headline metric, the loss chart, and `out_dir`/eval.md.

    The PNGs go to `out_dir`/plots and eval.md links them with relative paths, so the folder can
    be moved or uploaded as a whole.
    """
    out_dir = Path(out_dir)
    plots_dir = out_dir / "plots"
    written: list[Path] = []
    lines = ["# potstill: evaluation", ""]
    names = [name for name in MODEL_ORDER if name in report] + sorted(set(report) - set(MODEL_ORDER))
    header = [label for _, _, label, _ in HEADLINE_METRICS]
    lines += ["| model | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for name in names:
        cells = []
        for task, metric, _, _ in HEADLINE_METRICS:
            value, stderr = metric_value(report[name], task, metric)
            cells.append("n/a" if value is None else f"{value:.4f}" + (f" ± {stderr:.4f}" if stderr else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    for task, metric, label, lower_is_better in HEADLINE_METRICS:
        file_name = f"{task or 'overall'}_{metric}.png"
        written.append(metric_chart(report, task, metric, label, plots_dir / file_name))
        lines += [f"## {label} ({'lower' if lower_is_better else 'higher'} is better)", "",
                  f"![{label}](plots/{file_name})", ""]
    losses = loss_chart(Path(train_plots), plots_dir / "train_losses.png") if train_plots else None
    if losses is not None:
        written.append(losses)
        lines += ["## Training losses", "", "![train losses](plots/train_losses.png)", ""]
    else:
        lines += ["## Training losses", "", f"No DVCLive loss curves found in {train_plots}.", ""]
    markdown = out_dir / "eval.md"
    write_text_atomic(markdown, "\n".join(lines))
    written.append(markdown)
    return written
