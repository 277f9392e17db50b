"""Quantize: one quantize.formats entry of the merged student (dvc.yaml runs one stage per format).

    python stages/quantize.py --params params.yaml --format quanto-int8 --merged models/merged \
        --out models/quantized/quanto-int8 --metrics metrics/quantize/quanto-int8.json

Formats: quanto-int8, quanto-int4, torchao-int8 (transformers + safetensors), gguf-f16, gguf-q8_0,
gguf-q8_0-gptq (q8_0 rounded by GPTQ on the training split, --calibration), gguf-q4_k_m (llama.cpp /
ollama). Each is saved, reloaded with a check that every weight loaded,
and compared with the merged model; its folder gets a README.md model card with build-time facts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from potstill.cli import friendly_errors
from potstill.errors import ParamsError
from potstill.export.model_card import card
from potstill.export.quantize import quantize_format
from potstill.io import write_json, write_text_atomic
from potstill.params import QUANTIZE_FORMATS, load_params

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    fmt: Annotated[str, typer.Option("--format", help=f"one of {', '.join(QUANTIZE_FORMATS)}")] = "quanto-int8",
    merged: Annotated[Path, typer.Option(help="merged model folder")] = Path("models/merged"),
    out: Annotated[Path, typer.Option(help="folder for this format")] = Path("models/quantized/quanto-int8"),
    metrics: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/quantize/quanto-int8.json"),
    calibration: Annotated[Path, typer.Option(help="training chats (JSONL) for gguf-q8_0-gptq")] = Path(
        "data/curated/train.jsonl"),
) -> None:
    """Quantize the merged student into one format and verify it reloads."""
    # Validates quantize.formats (unknown names listed with the allowed ones) before any output.
    sections = load_params(params, "quantize", "teacher")
    if fmt not in QUANTIZE_FORMATS:
        raise ParamsError(f"{params}: quantize.formats: unknown format {fmt!r}; "
                          f"allowed: {', '.join(QUANTIZE_FORMATS)}")
    figures = quantize_format(merged, out, fmt, calibration)
    write_text_atomic(out / "README.md", card(fmt, {"teacher": sections["teacher"]}, figures))
    write_json(metrics, figures)
    typer.echo(f"quantize {fmt}: {figures}")


if __name__ == "__main__":
    app()
