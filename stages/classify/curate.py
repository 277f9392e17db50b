"""Classify curate: drop texts the teacher did not label, duplicates and gold restatements; split off val.

    python stages/classify/curate.py --params params.yaml --labelled data/classify/labelled \
        --out data/classify/curated --report reports/classify/curate.md --metrics metrics/classify/curate.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from potstill.classify.curate import curate_markdown, curate_rows
from potstill.cli import friendly_errors
from potstill.errors import InputError
from potstill.io import read_jsonl, write_json, write_jsonl, write_text_atomic
from potstill.params import load_params

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    labelled: Annotated[Path, typer.Option(help="the label stage's folder")] = Path("data/classify/labelled"),
    out: Annotated[Path, typer.Option(help="output folder")] = Path("data/classify/curated"),
    report: Annotated[Path, typer.Option(help="markdown report")] = Path("reports/classify/curate.md"),
    metrics: Annotated[Path, typer.Option(help="metrics JSON")] = Path("metrics/classify/curate.json"),
) -> None:
    """Curate the teacher-labelled texts."""
    classify = load_params(params, "classify")["classify"]
    rows = [row for _, row in read_jsonl(labelled / "texts.jsonl")]
    gold = [row for _, row in read_jsonl(labelled / "gold.jsonl")]
    splits, summary = curate_rows(rows, gold, classify.min_label_mass, classify.val_fraction, classify.seed)
    if len(splits["train"]) < len(classify.labels) or not splits["val"]:
        raise InputError(f"{labelled / 'texts.jsonl'}: only {summary['train']} train and {summary['val']} val rows "
                         f"left after curation ({summary['dropped']}); add texts or lower classify.min_label_mass")
    for name, split in splits.items():
        write_jsonl(out / f"{name}.jsonl", split)
    write_text_atomic(report, curate_markdown(summary, classify.min_label_mass))
    write_json(metrics, {k: v for k, v in summary.items() if k != "flagged_examples"})
    typer.echo(f"classify curate: {summary['train']} train, {summary['val']} val, dropped {summary['dropped']}")


if __name__ == "__main__":
    app()
