"""Evaluate: lm-eval on the shipped tasks + held-out NLL for teacher, student, merged, quantized.

    python stages/evaluate.py --params params.yaml --out metrics/eval.json

Every model is loaded from its saved folder with a check that each weight loaded (a quanto
folder read as a plain HF model would silently get random weights), then handed to lm-eval
in memory. Results go to one fixed-name JSON that `dvc metrics show` / `dvc exp show` read, and
to a static report (reports/eval.md + PNG charts of each headline metric and the train losses)
that renders offline, unlike `dvc plots show`'s CDN-loaded HTML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from potstill.cli import friendly_errors
from potstill.evaluate import ScoreCache, heldout_nll, lm_eval_scores
from potstill.io import write_json
from potstill.models import load_checked
from potstill.params import load_params
from potstill.quantize import load_quantized
from potstill.report import write_report
from potstill.tasks import task_manager


def run_evaluate(params_path: Path, models: dict[str, Path], test_file: Path) -> dict:
    """Return {model name: {task: {metric: value}, heldout_nll: value}} for each model folder."""
    ev = load_params(params_path, "evaluate")["evaluate"]
    from transformers import AutoTokenizer

    task_dir = Path(ev.task_dir)
    manager = task_manager(task_dir, ev.tasks)
    cache = ScoreCache({"tasks": ev.tasks, "limit": ev.limit}, task_dir, test_file)
    report: dict[str, dict] = {}
    for name, folder in models.items():
        cached = cache.get(folder)
        if cached is not None:
            typer.echo(f"evaluate: {name}: cached scores")
            report[name] = cached
            continue
        typer.echo(f"evaluate: {name} ({folder})")
        model = load_quantized(folder) if name == "quantized" else load_checked(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        scores = lm_eval_scores(model, tokenizer, ev.tasks, manager, ev.limit, ev.batch_size)
        scores["heldout_nll"] = heldout_nll(model, tokenizer, test_file)
        cache.put(folder, scores)
        report[name] = scores
    return report


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    teacher: Annotated[Path, typer.Option()] = Path("models/teacher"),
    student: Annotated[Path, typer.Option()] = Path("models/student-base"),
    merged: Annotated[Path, typer.Option()] = Path("models/merged"),
    quantized: Annotated[Path, typer.Option()] = Path("models/quantized"),
    test: Annotated[Path, typer.Option(help="held-out split")] = Path("data/curated/test.jsonl"),
    out: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/eval.json"),
    report: Annotated[Path, typer.Option(help="folder for eval.md and its PNG charts")] = Path("reports"),
    train_plots: Annotated[Path, typer.Option(help="DVCLive loss curves of the train stage")] = Path(
        "metrics/train/plots/metrics"),
) -> None:
    """Evaluate every model of the pipeline on the same tasks."""
    models = {"teacher": teacher, "student_base": student, "merged": merged, "quantized": quantized}
    scores_by_model = run_evaluate(params, models, test)
    write_json(out, scores_by_model)
    written = write_report(scores_by_model, report, train_plots)
    for name, scores in scores_by_model.items():
        typer.echo(f"  {name}: {scores}")
    typer.echo(f"evaluate: report: {', '.join(str(path) for path in written)}")


if __name__ == "__main__":
    app()
