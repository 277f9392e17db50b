"""The headline metrics: the dozen numbers a user decides on, in metrics/summary.json.

`dvc exp show` and `dvc metrics diff` read every declared metrics file; the full per-model record
(metrics/eval.json) has a hundred numbers. The summary keeps, for the distilled student and each
quantized format, its task scores, KL and top-1 agreement with the teacher, the share of answers
that loop, its size and its speed; for the teacher and the untrained student only what gives the
scale (task scores, loops, KL). dvc.yaml declares it first, so it leads every view.
"""

from __future__ import annotations

# What a distilled model is judged by, in column order (task scores come first, per task).
STUDENT_FIELDS = ("kl_vs_teacher", "top1_vs_teacher", "onpolicy_kl", "answer_tokens_vs_teacher", "degenerate_share",
                  "size_mb", "ms_per_token")
SCALE_FIELDS = {"teacher": ("degenerate_share",), "student_base": ("kl_vs_teacher", "degenerate_share")}
PRIMARY_TASK_METRICS = ("acc", "exact_match")


def task_score(record: dict, task: str) -> float | None:
    """Return a task's primary metric (accuracy, else exact match) from a model's record."""
    scores = record.get(task) or {}
    return next((float(scores[m]) for m in PRIMARY_TASK_METRICS if isinstance(scores.get(m), int | float)), None)


def summary(metrics: dict, tasks: list[str], students: list[str]) -> dict:
    """Return {model: {field: value}} for `students` (merged, formats) and the scale models, rounded for reading."""
    out: dict[str, dict] = {}
    for name in students:
        record = metrics.get(name)
        if record is None:
            continue
        row = {task: task_score(record, task) for task in tasks}
        row.update({field: record.get(field) for field in STUDENT_FIELDS})
        out[name] = {key: round(value, 4) for key, value in row.items() if isinstance(value, int | float)}
    for name, fields in SCALE_FIELDS.items():
        record = metrics.get(name)
        if record is None:
            continue
        row = {task: task_score(record, task) for task in tasks} | {field: record.get(field) for field in fields}
        out[name] = {key: round(value, 4) for key, value in row.items() if isinstance(value, int | float)}
    gates = metrics.get("gates") or {}
    out["gates_failed"] = sum(1 for gate in gates.values() if not gate.get("passed"))
    return out
