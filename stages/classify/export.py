"""Classify export: the soft-label student as ONNX, fp32 and int8 weights, checked against PyTorch.

    python stages/classify/export.py --params params.yaml --student models/classify/student-soft \
        --gold data/classify/gold.jsonl --out models/classify/onnx --metrics metrics/classify/export.json

`torch.onnx.export(dynamo=True)` then onnxruntime `quantize_dynamic` (see potstill/classify/onnx_export.py
for why not optimum-onnx). The parity figures compare logits on the gold texts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from potstill.classify.data import read_texts
from potstill.classify.onnx_export import export, parity
from potstill.cli import friendly_errors
from potstill.io import atomic_dir, write_json
from potstill.params import load_params

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    student: Annotated[Path, typer.Option(help="trained student folder")] = Path("models/classify/student-soft"),
    gold: Annotated[Path, typer.Option(help="gold texts (parity check)")] = Path("data/classify/gold.jsonl"),
    out: Annotated[Path, typer.Option(help="ONNX folder to write")] = Path("models/classify/onnx"),
    metrics: Annotated[Path, typer.Option(help="metrics JSON")] = Path("metrics/classify/export.json"),
) -> None:
    """Export to ONNX and quantize."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    classify = load_params(params, "classify")["classify"]
    texts = [row["text"] for row in read_texts(gold, labels=classify.label_names)]
    model = AutoModelForSequenceClassification.from_pretrained(student)
    tokenizer = AutoTokenizer.from_pretrained(student)
    with atomic_dir(out) as tmp:
        sizes = export(model, tokenizer, tmp, texts, classify.int8_per_channel, classify.int8_reduce_range)
        check = parity(model, tokenizer, tmp, texts, classify.max_length)
    write_json(metrics, {**sizes, **check})
    typer.echo(f"classify export: int8 {sizes['int8_bytes'] / 1e6:.1f} MB (fp32 {sizes['onnx_bytes'] / 1e6:.1f} MB); "
               f"max |logit diff| fp32 {check['fp32_max_abs_logit_diff']:.2g}, int8 "
               f"{check['int8_max_abs_logit_diff']:.2g}; int8 argmax agreement {check['int8_argmax_agreement']:.3f}")


if __name__ == "__main__":
    app()
