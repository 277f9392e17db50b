"""Curate: drop empty, truncated and duplicate responses; split train/val/test; report why.

    python stages/curate.py --params params.yaml --generated data/generated --out data/curated
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from potstill.cli import friendly_errors
from potstill.curate import flag_rows, report, report_markdown, split_rows
from potstill.io import InputError, read_jsonl, write_json, write_jsonl, write_text_atomic
from potstill.params import load_params


def run_curate(params_path: Path, generated: Path, out_dir: Path) -> dict:
    """Flag, filter and split the generated rows; write the splits and return the report."""
    cur = load_params(params_path, "curate")["curate"]
    rows = [row for _, row in read_jsonl(generated / "responses.jsonl")]
    if not rows:
        raise InputError(f"{generated / 'responses.jsonl'}: no rows; rerun the generate stage")
    reasons = flag_rows(rows, cur.min_response_chars, cur.drop_truncated)
    kept = [row for row, why in zip(rows, reasons, strict=True) if not why]
    split = split_rows(kept, cur.val_fraction, cur.test_fraction, cur.seed)
    for name, part in split.items():
        write_jsonl(out_dir / f"{name}.jsonl", part)
    write_jsonl(out_dir / "flagged.jsonl", [
        {"id": row["id"], "reasons": why} for row, why in zip(rows, reasons, strict=True) if why
    ])
    figures = report(rows, reasons, split)
    write_text_atomic(out_dir / "report.md", report_markdown(figures))
    return figures


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    generated: Annotated[Path, typer.Option(help="generate stage output folder")] = Path("data/generated"),
    out: Annotated[Path, typer.Option(help="output folder")] = Path("data/curated"),
    metrics: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/curate.json"),
) -> None:
    """Curate the generated rows into train/val/test splits."""
    figures = run_curate(params, generated, out)
    write_json(metrics, {k: v for k, v in figures.items() if k != "examples"})
    typer.echo(f"curate: {figures['rows_in']} in, {figures['kept']} kept, dropped {figures['dropped']}")


if __name__ == "__main__":
    app()
