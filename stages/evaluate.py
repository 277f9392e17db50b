"""Evaluate: every model of the pipeline, scored the same way; a retention report; gates.

    python stages/evaluate.py --params params.yaml --out metrics/eval.json --report reports

Models: teacher, student_base, adapter (student-base + models/adapter via peft: held-out NLL and
top-1 only, to check the merge), merged, and each quantize.formats entry (models/quantized/<format>).
Each is loaded from its saved folder with a check that every weight loaded (a quanto folder read
as a plain HF model silently gets random weights; GGUF files run under llama.cpp), then measured:
lm-eval tasks (per-item results kept for paired gates; ECE on multiple-choice tasks), held-out
NLL, KL(teacher || model) and top-1 agreement with the teacher on the held-out split, parameter
count, bytes on disk and CPU ms per generated token. Results go to one fixed-name JSON for
`dvc metrics show` / `dvc exp show`, to reports/eval.md with PNG charts, to one model card per
exported model (reports/model_cards/), and every answer behind a score to
reports/outputs/<model>.jsonl. Gates run last: a violated one exits 3 after all is written.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from potstill.cli import friendly_errors
from potstill.evaluation.gates import EXIT_GATE_FAILED, check_gates
from potstill.evaluation.report import write_report
from potstill.evaluation.run import headline, run_evaluate
from potstill.evaluation.summary import summary
from potstill.export.model_card import card
from potstill.io import write_json, write_jsonl, write_text_atomic
from potstill.params import load_params
from potstill.weights import weights_dir

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    teacher: Annotated[Path, typer.Option()] = Path("models/teacher"),
    student: Annotated[Path, typer.Option()] = Path("models/student-base"),
    adapter: Annotated[Path, typer.Option(help="LoRA adapter (evaluated on student-base for the merge gate)")] = Path(
        "models/adapter"),
    merged: Annotated[Path, typer.Option()] = Path("models/merged"),
    quantized: Annotated[Path, typer.Option(help="folder holding one subfolder per quantize.formats entry")] = Path(
        "models/quantized"),
    test: Annotated[Path, typer.Option(help="held-out split")] = Path("data/curated/test.jsonl"),
    out: Annotated[Path, typer.Option(help="metrics JSON to write (every model, every figure)")] = Path(
        "metrics/eval.json"),
    summary_out: Annotated[Path, typer.Option("--summary", help="headline metrics JSON (dvc exp show)")] = Path(
        "metrics/summary.json"),
    report: Annotated[Path, typer.Option(help="folder for eval.md, its PNG charts and model cards")] = Path("reports"),
    train_plots: Annotated[Path, typer.Option(help="DVCLive loss curves of the train stage")] = Path(
        "metrics/train/plots/metrics"),
) -> None:
    """Evaluate every model of the pipeline on the same tasks and held-out split; check the gates."""
    sections = load_params(params, "teacher", "student", "kd", "train", "lora", "quantize", "evaluate")
    models: dict[str, tuple[str, Path, Path | None]] = {
        "teacher": ("hf", teacher, None), "student_base": ("hf", student, None),
        "adapter": ("adapter", adapter, student), "merged": ("hf", merged, None)}
    for fmt in sections["quantize"].formats:
        models[fmt] = ("quantized", quantized / fmt, None)
    if weights_dir(teacher) is None:  # teacher.weights none: an API teacher, nothing to load
        del models["teacher"]
    results = run_evaluate(params, models, test)
    gates = check_gates(sections["evaluate"].gates, results, sections["train"].method)
    metrics = headline(results)
    metrics["gates"] = {gate.name: {"passed": int(gate.passed), "value": gate.value, "warning": int(gate.warning),
                                    "applicable": int(gate.applicable)} for gate in gates}
    write_json(out, metrics)
    students = ["merged", *sections["quantize"].formats]
    write_json(summary_out, summary(metrics, sections["evaluate"].tasks, students))
    written = write_report(results, report, train_plots, gates=gates, formats=sections["quantize"].formats)
    for name, record in results.items():  # every answer behind a score, to read item by item
        rows = [{"task": task, **output} for task, outputs in (record.get("outputs") or {}).items()
                for output in outputs]
        rows += [{"task": "held-out prompts (greedy)", **answer} for answer in record.get("answers") or []]
        if rows:
            write_jsonl(report / "outputs" / f"{name}.jsonl", rows)
    build_sections = {name: sections[name] for name in ("teacher", "student", "kd", "train", "lora")}
    for name in ["merged", *sections["quantize"].formats]:
        facts = {"format": name, "size_bytes": results[name].get("size_bytes")}
        text = card(name, {**build_sections, "quantize": sections["quantize"]} if name != "merged"
                    else build_sections, facts, metrics[name])
        write_text_atomic(report / "model_cards" / f"{name}.md", text)
    typer.echo(f"evaluate: report: {', '.join(str(path) for path in written)}, {report / 'model_cards'}")
    for gate in gates:
        status = "N/A" if not gate.applicable else "PASS" if gate.passed else "FAIL"
        typer.echo(f"  {status}{' (warning)' if gate.warning else ''} {gate.message}")
    failed = [gate for gate in gates if not gate.passed]
    if failed:
        print("error: retention gate(s) failed (metrics and report are written):\n  "
              + "\n  ".join(gate.message for gate in failed), file=sys.stderr)
        raise SystemExit(EXIT_GATE_FAILED)


if __name__ == "__main__":
    app()
