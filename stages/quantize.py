"""Quantize: int8 (or int4) weights of the merged student with optimum-quanto.

    python stages/quantize.py --params params.yaml --merged models/merged --out models/quantized
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from potstill.cli import friendly_errors
from potstill.io import write_json
from potstill.params import load_params
from potstill.quantize import quantize_model

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    merged: Annotated[Path, typer.Option(help="merged model folder")] = Path("models/merged"),
    out: Annotated[Path, typer.Option(help="quantized model folder")] = Path("models/quantized"),
    metrics: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/quantize.json"),
) -> None:
    """Quantize the merged student and verify it reloads identically."""
    quant = load_params(params, "quantize")["quantize"]
    figures = quantize_model(merged, out, quant.weights)
    write_json(metrics, figures)
    typer.echo(f"quantize: {figures}")


if __name__ == "__main__":
    app()
