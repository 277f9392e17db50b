"""Retention gates (evaluate.gates): checks on the evaluated models that fail the run when a step loses too much.

Bounds:
  min / max       the model's value, exact (e.g. top1_vs_reference >= 0.97, kl_vs_teacher <= 2)
  max_abs_diff    |model - reference|, exact (e.g. merged vs adapter held-out NLL within 1e-3)
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


def check_gate(gate, results: dict[str, dict]) -> GateResult:
    """Return the outcome of one gate (a GateParams) against {model name: its full results}."""
    from potstill.evaluation.metrics import top1_agreement

    model, reference = results[gate.model], results.get(gate.reference) if gate.reference else None
    where = f"gate {gate.name}: {gate.metric} of {gate.model}" + (f" vs {gate.reference}" if gate.reference else "")
    if gate.metric == "top1_vs_reference":
        value = top1_agreement(model["argmax"], reference["argmax"])
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


def check_gates(gates, results: dict[str, dict]) -> list[GateResult]:
    """Return the outcome of every gate, in params order."""
    return [check_gate(gate, results) for gate in gates]


def unknown_gate_models(gates, models: list[str]) -> list[str]:
    """Return 'evaluate.gates[i] (name): model X is not evaluated' for gates naming a model not in `models`."""
    problems = []
    for index, gate in enumerate(gates):
        for role, name in (("model", gate.model), ("reference", gate.reference)):
            if name is not None and name not in models:
                problems.append(f"evaluate.gates[{index}] ({gate.name}): {role} {name!r} is not evaluated; "
                                f"evaluated models: {', '.join(models)} (formats come from quantize.formats)")
    return problems
