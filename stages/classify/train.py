"""Classify train: fine-tune the encoder on the teacher's labels, soft (KD) or hard (argmax only).

    python stages/classify/train.py --params params.yaml --target soft --curated data/classify/curated \
        --encoder models/classify/encoder --out models/classify/student-soft --metrics metrics/classify/train-soft.json

soft: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(teacher argmax), with
classify.alpha and classify.temperature; hard: CE on the teacher's argmax alone (alpha 0), the
comparison the soft labels must beat. The epoch with the best val agreement with the teacher is kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from potstill.classify.student import train_student
from potstill.cli import friendly_errors
from potstill.errors import InputError
from potstill.io import atomic_dir, read_jsonl, write_json
from potstill.params import load_params

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    target: Annotated[str, typer.Option(help="soft (KD on the teacher's distribution) or hard (its argmax)")] = "soft",
    curated: Annotated[Path, typer.Option(help="the curate stage's folder")] = Path("data/classify/curated"),
    encoder: Annotated[Path, typer.Option(help="the encoder to start from")] = Path("models/classify/encoder"),
    out: Annotated[Path, typer.Option(help="student folder to write")] = Path("models/classify/student-soft"),
    metrics: Annotated[Path, typer.Option(help="metrics JSON")] = Path("metrics/classify/train-soft.json"),
) -> None:
    """Train one student."""
    if target not in ("soft", "hard"):
        raise InputError(f"--target {target!r}: use soft or hard")
    classify = load_params(params, "classify")["classify"]
    train = [row for _, row in read_jsonl(curated / "train.jsonl")]
    val = [row for _, row in read_jsonl(curated / "val.jsonl")]
    alpha = classify.alpha if target == "soft" else 0.0
    with atomic_dir(out) as tmp:
        summary = train_student(encoder, train, val, classify.label_names, classify, alpha, tmp)
    write_json(metrics, summary)
    typer.echo(f"classify train ({target}): best epoch {summary['best_epoch']} of {classify.epochs}, "
               f"val agreement {summary['best_val_agree']:.3f}, {summary['train_runtime_s']} s")


if __name__ == "__main__":
    app()
