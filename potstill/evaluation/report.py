"""Static evaluation report: PNG charts (matplotlib, Agg) and a markdown page that embeds them.

`dvc plots show` writes HTML that loads vega from a CDN, so it renders blank offline; these PNGs
open anywhere (an image viewer, a markdown preview, a CI job summary).
"""

from __future__ import annotations

import csv
from pathlib import Path

from potstill.io import write_text_atomic

# (task or None for a top-level score, metric, axis label, lower is better). Task metrics are
# found in the results (the primary metric of each evaluated task); these follow them.
TOP_LEVEL_METRICS = (
    (None, "heldout_nll", "held-out NLL (nats/token)", True),
    (None, "kl_vs_teacher", "KL(teacher ∥ model), held-out (nats/token)", True),
    (None, "top1_vs_teacher", "top-1 agreement with the teacher", False),
    (None, "onpolicy_kl", "KL(model ∥ teacher) on the model's own greedy answers (nats/token)", True),
    (None, "ece", "expected calibration error (multiple choice)", True),
    (None, "degenerate_share", "share of greedy answers that loop (held-out prompts)", True),
    (None, "answer_words", "mean answer length (words, stopped at end-of-turn)", False),
    (None, "answer_tokens_vs_teacher", "mean answer length / the teacher's (tokens)", False),
    (None, "size_mb", "weights on disk (MiB)", True),
    (None, "size_ratio_vs_merged_fp32", "size / merged fp32 size", True),
    (None, "ms_per_token", "ms per generated token (equal token counts; engine in the table)", True),
    (None, "tokens_per_s", "tokens/s (greedy)", False),
)
# Kept for callers that chart the two shipped tasks and NLL only.
HEADLINE_METRICS = (
    ("potstill_mc", "acc", "potstill_mc accuracy", False),
    ("potstill_gen", "exact_match", "potstill_gen exact match", False),
    (None, "heldout_nll", "held-out NLL (nats/token)", True),
)
PRIMARY_TASK_METRICS = ("acc", "exact_match")
# DVCLive files (relative to metrics/train/plots/metrics) drawn on the loss chart, when present.
LOSS_CURVES = ("loss", "ce_loss", "kd_loss", "hidden_loss", "eval/loss", "eval/ce_loss", "eval/kd_loss")
MODEL_ORDER = ("teacher", "student_base", "adapter", "merged")
NOT_MODELS = ("gates",)
TIED_EMBEDDING_NOTE = (
    "quanto and torchao quantize `Linear` layers only: the tied embedding / LM head (49,152 x 576 = 28.3M "
    "parameters for SmolLM2) stays fp32, so their int8 lands at 50-60% of the fp32 bytes, not 25%. "
    "GGUF quantizes the embedding too.")
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


def model_names(report: dict) -> list[str]:
    """Return the models of a report in pipeline order: teacher ... merged, then formats as given."""
    return [name for name in MODEL_ORDER if name in report] + [
        name for name in report if name not in MODEL_ORDER and name not in NOT_MODELS]


def headline_metrics(report: dict) -> list[tuple[str | None, str, str, bool]]:
    """Return (task, metric, label, lower is better) for each task's primary metric, then the top-level ones."""
    tasks: list[str] = []
    for name in model_names(report):
        tasks += [key for key, value in report[name].items() if isinstance(value, dict) and key not in tasks
                  and key != "items" and any(metric in value for metric in PRIMARY_TASK_METRICS)]
    found = []
    for task in tasks:
        metric = next(m for m in PRIMARY_TASK_METRICS if any(m in (report[n].get(task) or {}) for n in report
                                                                if n not in NOT_MODELS))
        found.append((task, metric, f"{task} {metric.replace('_', ' ')}", False))
    return found + [entry for entry in TOP_LEVEL_METRICS
                    if any(metric_value(report[n], None, entry[1])[0] is not None for n in model_names(report))]


def metric_chart(report: dict, task: str | None, metric: str, label: str, out_file: Path) -> Path:
    """Return `out_file` after drawing one bar per model (with stderr bars where lm-eval gave one)."""
    plt = _pyplot()
    names = model_names(report)
    values, errors = zip(*(metric_value(report[name], task, metric) for name in names), strict=True)
    heights = [value if value is not None else 0.0 for value in values]
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    # Error bars only where lm-eval reported a standard error (not for held-out NLL).
    yerr = [error or 0.0 for error in errors] if any(error is not None for error in errors) else None
    palette = ["#4c72b0", "#8c8c8c", "#937860", "#55a868", "#c44e52", "#8172b2", "#da8bc3", "#ccb974", "#64b5cd"]
    bars = axis.bar(names, heights, yerr=yerr, capsize=4, color=[palette[i % len(palette)] for i in range(len(names))])
    axis.tick_params(axis="x", labelrotation=30, labelsize=8)
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


def _cell(value: float | None, stderr: float | None = None, interval: list[float] | None = None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4f}"
    if interval:
        return text + f" [{interval[0]:.3f}, {interval[1]:.3f}]"
    return text + (f" ± {stderr:.4f}" if stderr else "")


# The plain verdict at the top of the report. A student is called usable when its greedy answers
# loop no more often than this (issue-tracker target for the default student) and every task's
# primary score keeps this share of the teacher's: a distilled model that loops or forgets the
# tasks is not a stand-in for its teacher, whatever its KL.
USABLE_MAX_DEGENERATE = 0.10
USABLE_MIN_TASK_SHARE = 0.90


def verdict_lines(report: dict, student: str = "merged", teacher: str = "teacher") -> list[str]:
    """Return the report's first section: is the distilled student usable, in figures next to the teacher's."""
    if student not in report or teacher not in report:
        return []
    s, t = report[student], report[teacher]
    lines = ["## Is the student usable?", ""]
    reasons = []
    degenerate = s.get("degenerate_share")
    if degenerate is not None:
        ci = (s.get("ci95") or {}).get("degenerate_share")
        interval = f" (95% CI {ci[0]:.0%}-{ci[1]:.0%})" if ci else ""
        lines.append(f"- Greedy answers that loop: **{degenerate:.0%}**{interval}"
                     f" for the student, {t.get('degenerate_share', float('nan')):.0%} for the teacher; mean length "
                     f"{s.get('answer_words', float('nan')):.0f} words vs {t.get('answer_words', float('nan')):.0f}.")
        if degenerate > USABLE_MAX_DEGENERATE:
            reasons.append(f"{degenerate:.0%} of its answers loop (> {USABLE_MAX_DEGENERATE:.0%})")
    for task, metric, label, _ in headline_metrics(report):
        if task is None:
            continue
        mine, theirs = metric_value(s, task, metric)[0], metric_value(t, task, metric)[0]
        if mine is None or theirs is None:
            continue
        lines.append(f"- {label}: **{mine:.3f}** for the student, {theirs:.3f} for the teacher.")
        if theirs > 0 and mine < USABLE_MIN_TASK_SHARE * theirs:
            reasons.append(f"{label} {mine:.3f} is below {USABLE_MIN_TASK_SHARE:.0%} of the teacher's {theirs:.3f}")
    if "kl_vs_teacher" in s and "student_base" in report and "kl_vs_teacher" in report["student_base"]:
        base = report["student_base"]["kl_vs_teacher"]
        closed = (base - s["kl_vs_teacher"]) / base if base else float("nan")
        lines.append(f"- KL to the teacher on held-out answers: {s['kl_vs_teacher']:.3f} (before training "
                     f"{base:.3f}: {closed:.0%} of the gap closed).")
    verdict = ("**Not yet usable as a stand-in for the teacher:** " + "; ".join(reasons) + "."
               if reasons else "**Usable:** its answers rarely loop and it keeps the teacher's task scores.")
    return lines + ["", verdict, ""]


def write_report(report: dict, out_dir: Path, train_plots: Path | None = None, gates: list | None = None,
                 formats: list[str] | None = None) -> list[Path]:
    """Return the files written: one PNG per headline metric, the loss chart, and `out_dir`/eval.md.

    eval.md holds the table of every model and metric, the gates, the charts, a few held-out prompts
    answered by every model side by side, and the training losses. The PNGs go to `out_dir`/plots
    and eval.md links them with relative paths, so the folder can be moved or uploaded as a whole.
    """
    out_dir = Path(out_dir)
    plots_dir = out_dir / "plots"
    written: list[Path] = []
    lines = ["# potstill: evaluation", ""]
    lines += verdict_lines(report)
    names = model_names(report)
    metrics = headline_metrics(report)
    lines += ["## Every model", "", "| model | " + " | ".join(label for _, _, label, _ in metrics) + " | engine |",
              "|---|" + "---|" * (len(metrics) + 1)]
    for name in names:
        intervals = report[name].get("ci95") or {}
        cells = [_cell(*metric_value(report[name], task, metric), intervals.get(metric) if task is None else None)
                 for task, metric, _, _ in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {report[name].get('engine', '')} |")
    lines += ["", "adapter = the train stage's output before the merge (student-base + the LoRA adapter via peft, "
              "or the whole weights with train.method full), scored for held-out NLL and top-1 only "
              "(it checks the merge). KL and top-1 are against the teacher on the held-out split's assistant "
              "tokens; [low, high] are 95% bootstrap intervals over held-out prompts; ± is lm-eval's standard "
              "error. Answers are greedy and stop at end-of-turn, as a user's would; ms/token is timed apart, "
              "every model generating the same number of tokens, on the engine named in the last column.", ""]
    quantized = [name for name in (formats or []) if name.split("-")[0] in ("quanto", "torchao")]
    if quantized or formats is None:
        lines += [f"**Note:** {TIED_EMBEDDING_NOTE}", ""]
    if gates:
        lines += ["## Gates", "", "| gate | result | detail |", "|---|---|---|"]
        for gate in gates:
            result = ("not applicable" if not gate.applicable else ("pass" + (" (warning)" if gate.warning else ""))
                      if gate.passed else "**FAIL**")
            lines.append(f"| {gate.name} | {result} | {gate.message} |")
        lines.append("")
    for task, metric, label, lower_is_better in metrics:
        file_name = f"{task or 'overall'}_{metric}.png"
        written.append(metric_chart(report, task, metric, label, plots_dir / file_name))
        lines += [f"## {label} ({'lower' if lower_is_better else 'higher'} is better)", "",
                  f"![{label}](plots/{file_name})", ""]
    lines += category_lines(report)
    answered = [name for name in names if report[name].get("samples")]
    if answered:
        lines += ["## Held-out prompts, answered greedily", ""]
        for index, sample in enumerate(report[answered[0]]["samples"]):
            lines += [f"**Prompt {index + 1}:** {_inline(sample['prompt'])}", "", "| model | answer |", "|---|---|"]
            lines += [f"| {name} | {_inline(report[name]['samples'][index]['answer'])} |" for name in answered
                      if index < len(report[name]["samples"])]
            lines.append("")
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


def category_lines(report: dict) -> list[str]:
    """Return a markdown table per task: each model's primary metric per item category (lm-eval docs' `category`)."""
    lines: list[str] = []
    names = [name for name in model_names(report) if report[name].get("categories")]
    for task, metric, label, _ in headline_metrics(report):
        if task is None:
            continue
        rows: dict[str, dict[str, float]] = {}
        for name in names:
            values = ((report[name].get("items") or {}).get(task) or {}).get(metric)
            kinds = (report[name].get("categories") or {}).get(task)
            if not values or not kinds or all(kind is None for kind in kinds):
                continue
            grouped: dict[str, list[float]] = {}
            for kind, value in zip(kinds, values, strict=True):
                grouped.setdefault(str(kind), []).append(value)
            rows[name] = {kind: sum(v) / len(v) for kind, v in grouped.items()}
            counts = {kind: len(v) for kind, v in grouped.items()}
        if not rows:
            continue
        kinds = sorted({kind for per in rows.values() for kind in per})
        header = " | ".join(f"{kind} ({counts.get(kind, 0)})" for kind in kinds)
        lines += [f"### {label} by category", "", f"| model | {header} |", "|---|" + "---|" * len(kinds)]
        lines += [f"| {name} | " + " | ".join(_cell(per.get(kind)) for kind in kinds) + " |"
                  for name, per in rows.items()]
        lines.append("")
    return (["## Task scores by category", "", "Items per category in brackets; the mean of the task's metric.", ""]
            + lines) if lines else []


def _inline(text: str) -> str:
    """Return text fit for one markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " <br> ").strip() or "(empty)"
