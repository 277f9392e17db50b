"""Gates (evaluate.gates): checks on the evaluated models that fail the run when a step did not work.

Retention gates catch a step that loses too much (quantize, merge); distillation gates catch a
train stage that did too little: `kl_gap_closed` (the share of student_base's KL to the teacher
that the model closed), a paired accuracy gain over student_base (`min_gain`), and the share of
greedy answers that loop. A gate with `warn_only` reports a known shortfall without failing; a
`lora_only` gate is reported as not applicable under train.method full, never passed vacuously.

Bounds:
  min / max       the model's value, exact (e.g. top1_vs_reference >= 0.97, kl_vs_teacher <= 2)
  max_abs_diff    |model - reference|, exact (e.g. merged vs adapter held-out NLL within 1e-3)
  min_gain        accuracy-type metrics, paired over the same items: passes when the lower end of the
                  95% CI of mean(model_i - reference_i) is above min_gain (0: a gain beyond the noise)
  min_ratio       accuracy-type metrics with per-item results: paired over the same items, the
                  gate fails only when mean(model_i - min_ratio * reference_i) is below 0 with the
                  upper end of its 95% confidence interval below 0 too. A 200-item task has ~3.5
                  points of noise: a ratio under min_ratio inside that noise passes, with a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.96


@dataclass(frozen=True)
class GateResult:
    """Outcome of one gate; `message` names the gate, the values and the models."""

    name: str
    passed: bool
    value: float | None
    message: str
    warning: bool = False
    applicable: bool = True


def lookup(scores: dict, metric: str) -> float | None:
    """Return a model's value for a dotted metric name (potstill_mc.acc, heldout_nll), None if absent."""
    node = scores
    for part in metric.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, int | float) else None


def per_item(scores: dict, metric: str) -> list[float] | None:
    """Return per-item values of a task metric (in item order) from a model's `items`, None if absent."""
    task, _, name = metric.rpartition(".")
    values = ((scores.get("items") or {}).get(task) or {}).get(name)
    return list(values) if values else None


def paired_ratio(model_items: list[float], reference_items: list[float], min_ratio: float) -> dict:
    """Return ratio of means and the 95% CI of mean(model_i - min_ratio * reference_i) over paired items."""
    if len(model_items) != len(reference_items):
        raise ValueError(f"paired items differ in number: {len(model_items)} vs {len(reference_items)}")
    n = len(model_items)
    diffs = [m - min_ratio * r for m, r in zip(model_items, reference_items, strict=True)]
    mean = sum(diffs) / n
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else math.inf
    model_mean, reference_mean = sum(model_items) / n, sum(reference_items) / n
    ratio = model_mean / reference_mean if reference_mean else (1.0 if model_mean == 0 else math.inf)
    return {"ratio": ratio, "model": model_mean, "reference": reference_mean, "n": n,
            "ci_low": mean - Z_95 * se, "ci_high": mean + Z_95 * se}


def paired_gain(model_items: list[float], reference_items: list[float]) -> dict:
    """Return mean(model_i - reference_i) over paired items and its 95% CI."""
    paired = paired_ratio(model_items, reference_items, 1.0)
    return {"gain": paired["model"] - paired["reference"], "n": paired["n"],
            "ci_low": paired["ci_low"], "ci_high": paired["ci_high"]}


def kl_gap_closed(model: dict, reference: dict) -> float | None:
    """Return the share of the reference's KL to the teacher that the model closed: 1 - KL_model / KL_reference."""
    ours, theirs = lookup(model, "kl_vs_teacher"), lookup(reference, "kl_vs_teacher")
    if ours is None or theirs is None or theirs <= 0:
        return None
    return 1.0 - ours / theirs


def check_gate(gate, results: dict[str, dict], train_method: str | None = None) -> GateResult:
    """Return the outcome of one gate (a GateParams) against {model name: its full results}."""
    result = _check(gate, results, train_method)
    if gate.warn_only and not result.passed:
        return GateResult(gate.name, True, result.value, result.message + " (warn_only: reported, not failed)",
                          warning=True)
    return result


def _check(gate, results: dict[str, dict], train_method: str | None) -> GateResult:
    from potstill.evaluation.metrics import top1_agreement

    model, reference = results[gate.model], results.get(gate.reference) if gate.reference else None
    where = f"gate {gate.name}: {gate.metric} of {gate.model}" + (f" vs {gate.reference}" if gate.reference else "")
    if gate.lora_only and train_method not in (None, "lora"):
        return GateResult(gate.name, True, None, f"{where}: not applicable with train.method {train_method} "
                          "(the train stage wrote whole weights; merge only re-saves them)", applicable=False)
    if gate.metric == "top1_vs_reference":
        value = top1_agreement(model["argmax"], reference["argmax"])
    elif gate.metric == "kl_gap_closed":
        value = kl_gap_closed(model, reference)
    else:
        value = lookup(model, gate.metric)
    if value is None:
        return GateResult(gate.name, False, None, f"{where}: {gate.model} has no value for {gate.metric}")
    if gate.min is not None:
        passed = value >= gate.min
        return GateResult(gate.name, passed, value, f"{where}: {value:.4g} {'>=' if passed else '<'} min {gate.min}")
    if gate.max is not None:
        passed = value <= gate.max
        return GateResult(gate.name, passed, value, f"{where}: {value:.4g} {'<=' if passed else '>'} max {gate.max}")
    ref_value = lookup(reference, gate.metric)
    if ref_value is None:
        return GateResult(gate.name, False, value, f"{where}: {gate.reference} has no value for {gate.metric}")
    if gate.max_abs_diff is not None:
        diff = abs(value - ref_value)
        passed = diff <= gate.max_abs_diff
        return GateResult(gate.name, passed, diff, f"{where}: {value:.6g} vs {ref_value:.6g}, |diff| {diff:.3g} "
                          f"{'<=' if passed else '>'} max_abs_diff {gate.max_abs_diff}")
    model_items, reference_items = per_item(model, gate.metric), per_item(reference, gate.metric)
    if gate.min_gain is not None:
        if model_items is None or reference_items is None:
            return GateResult(gate.name, False, value, f"{where}: min_gain needs per-item results of both models "
                              f"(an lm-eval task metric such as potstill_mc.acc)")
        gain = paired_gain(model_items, reference_items)
        passed = gain["ci_low"] > gate.min_gain
        return GateResult(gate.name, passed, gain["gain"], f"{where}: gain {gain['gain']:+.4f} over {gain['n']} paired "
                          f"items, 95% CI [{gain['ci_low']:+.4f}, {gain['ci_high']:+.4f}] "
                          f"{'above' if passed else 'not above'} min_gain {gate.min_gain}")
    if model_items is None or reference_items is None:  # no per-item results: compare the means, exactly
        ratio = value / ref_value if ref_value else (1.0 if value == 0 else math.inf)
        passed = ratio >= gate.min_ratio
        return GateResult(gate.name, passed, ratio, f"{where}: {value:.4g} / {ref_value:.4g} = ratio {ratio:.4f} "
                          f"{'>=' if passed else '<'} min_ratio {gate.min_ratio} (no per-item results: exact)")
    paired = paired_ratio(model_items, reference_items, gate.min_ratio)
    summary = (f"{where}: {paired['model']:.4f} / {paired['reference']:.4f} = ratio {paired['ratio']:.4f} "
               f"(min_ratio {gate.min_ratio}; {paired['n']} paired items, 95% CI of "
               f"mean(model - {gate.min_ratio} x reference): [{paired['ci_low']:.4f}, {paired['ci_high']:.4f}])")
    if paired["ratio"] >= gate.min_ratio:
        return GateResult(gate.name, True, paired["ratio"], summary)
    if paired["ci_high"] >= 0:
        return GateResult(gate.name, True, paired["ratio"], summary + ": below min_ratio but within the noise",
                          warning=True)
    return GateResult(gate.name, False, paired["ratio"], summary + ": below min_ratio beyond the noise")


def check_gates(gates, results: dict[str, dict], train_method: str | None = None) -> list[GateResult]:
    """Return the outcome of every gate, in params order."""
    return [check_gate(gate, results, train_method) for gate in gates]


# A violated gate fails its stage with this exit code, after the metrics and report are written.
EXIT_GATE_FAILED = 3


def unknown_gate_models(gates, models: list[str], param: str = "evaluate.gates",
                        where_from: str = " (formats come from quantize.formats)") -> list[str]:
    """Return '<param>[i] (name): model X is not evaluated' for gates naming a model not in `models`."""
    problems = []
    for index, gate in enumerate(gates):
        for role, name in (("model", gate.model), ("reference", gate.reference)):
            if name is not None and name not in models:
                problems.append(f"{param}[{index}] ({gate.name}): {role} {name!r} is not evaluated; "
                                f"evaluated models: {', '.join(models)}{where_from}")
    return problems


def unknown_gate_tasks(gates, tasks: list[str], param: str = "evaluate.gates") -> list[str]:
    """Return a line for each gate on a task metric (<task>.<metric>) whose task is not evaluated.

    Checked before any model loads: otherwise such a gate would fail only after the whole evaluation.
    """
    problems = []
    for index, gate in enumerate(gates):
        task, dot, _ = gate.metric.partition(".")
        if dot and task not in tasks and task != "ci95":
            problems.append(f"{param}[{index}] ({gate.name}): metric {gate.metric!r} is a score of task {task!r}, "
                            f"which evaluate.tasks does not run ({', '.join(tasks)}); add the task or change "
                            "the gate")
    return problems
