"""Classify evaluate: every model on the gold set, with intervals, speed, a reliability diagram and gates.

    python stages/classify/evaluate.py --params params.yaml --labelled data/classify/labelled \
        --curated data/classify/curated --soft models/classify/student-soft --hard models/classify/student-hard \
        --onnx models/classify/onnx --metrics metrics/classify/eval.json --report reports/classify

Models: the teacher (its labels from the label stage), a majority-class baseline, TF-IDF + logistic
regression on the teacher's labels, the hard- and soft-label students, and the ONNX int8 export.
The teacher's items/s is measured now, with `classify.teacher_speed_texts` uncached requests.
A violated gate fails the stage (exit 3) after the metrics and report are written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from potstill.classify.evaluate import MODELS, evaluate_models, per_label_accuracy
from potstill.classify.labelling import time_teacher
from potstill.classify.metrics import reliability_plot
from potstill.classify.report import eval_markdown, targets
from potstill.cli import friendly_errors
from potstill.errors import ParamsError
from potstill.evaluation.gates import EXIT_GATE_FAILED, check_gates, unknown_gate_models
from potstill.io import read_jsonl, write_json, write_text_atomic
from potstill.params import load_params

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    labelled: Annotated[Path, typer.Option(help="the label stage's folder")] = Path("data/classify/labelled"),
    curated: Annotated[Path, typer.Option(help="the curate stage's folder")] = Path("data/classify/curated"),
    soft: Annotated[Path, typer.Option(help="soft-label student")] = Path("models/classify/student-soft"),
    hard: Annotated[Path, typer.Option(help="hard-label student")] = Path("models/classify/student-hard"),
    onnx: Annotated[Path, typer.Option(help="ONNX folder")] = Path("models/classify/onnx"),
    metrics: Annotated[Path, typer.Option(help="metrics JSON")] = Path("metrics/classify/eval.json"),
    report: Annotated[Path, typer.Option(help="report folder (eval.md, reliability.png)")] = Path("reports/classify"),
) -> None:
    """Evaluate the classifiers."""
    loaded = load_params(params, "teacher", "classify")
    teacher, classify = loaded["teacher"], loaded["classify"]
    problems = unknown_gate_models(classify.gates, list(MODELS), "classify.gates", where_from="")
    if problems:  # before any model loads
        raise ParamsError("\n".join(problems))
    gold = [row for _, row in read_jsonl(labelled / "gold.jsonl")]
    train = [row for _, row in read_jsonl(curated / "train.jsonl")]
    results, speeds = evaluate_models(gold, train, {"student_hard": hard, "student_soft": soft}, onnx, classify)
    print(f"timing the teacher on {classify.teacher_speed_texts} uncached requests", file=sys.stderr)
    speeds["teacher"] = time_teacher(gold[: classify.teacher_speed_texts], teacher, classify)
    gate_results = check_gates(classify.gates, results)
    report.mkdir(parents=True, exist_ok=True)
    reliability_plot({name: results[name] for name in ("teacher", "student_hard", "student_soft", "onnx_int8")},
                     report / "reliability.png")
    unlabelled = sum(row["teacher_probs"] is None for row in gold)
    write_text_atomic(report / "eval.md", eval_markdown(results, speeds, gate_results,
                                                        per_label_accuracy(results, gold, classify.label_names),
                                                        len(gold), unlabelled))
    write_json(metrics, {
        "models": {name: {**scores["gold"], "ci95": scores["ci95"],
                          **({"items_per_s": round(speeds[name]["items_per_s"], 2)} if name in speeds else {})}
                   for name, scores in results.items()},
        "onnx_int8_speedup_vs_teacher": round(speeds["onnx_int8"]["items_per_s"] / speeds["teacher"]["items_per_s"], 1),
        "targets": {what: {"met": ok, "measured": value} for what, ok, value in targets(results, speeds)},
        "gates": {g.name: {"passed": g.passed, "warning": g.warning, "value": g.value} for g in gate_results},
        "gold_texts": len(gold), "speed": {name: {k: v for k, v in s.items()} for name, s in speeds.items()},
    })
    soft_scores = results["student_soft"]["gold"]
    typer.echo(f"classify evaluate: teacher acc {results['teacher']['gold']['acc']:.3f}; student_soft acc "
               f"{soft_scores['acc']:.3f}, agreement {soft_scores['agree']:.3f}; onnx int8 "
               f"{speeds['onnx_int8']['items_per_s']:.0f} texts/s vs teacher {speeds['teacher']['items_per_s']:.1f}")
    for result in gate_results:
        if result.warning or not result.passed:
            print(f"{'warning' if result.passed else 'gate failed'}: {result.message}", file=sys.stderr)
    if not all(result.passed for result in gate_results):
        raise SystemExit(EXIT_GATE_FAILED)


if __name__ == "__main__":
    app()
