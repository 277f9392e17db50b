"""Classifier grid: which encoder depth, alpha, temperature and epochs make the classify default.

Runs on the outputs of `make classify` up to curate (models/classify/encoder,
data/classify/curated). Every configuration trains a student with the classify train stage's own
`train_student` and is measured on the curated val split, which holds teacher-labelled texts only:
choices are made there, and the gold set (the evaluate stage's test) is never opened here.

Per configuration and per epoch (the train stage keeps the epoch with the best val agreement):
- agreement with the teacher's argmax on val, with its 95% bootstrap interval over texts;
- ECE of the student's top probability against the teacher's argmax on val (calibration to the
  labeller: the only labels val has), with its interval;
- train seconds and PyTorch items/s on the val texts at classify.speed_batch_size (speed of depth).

One JSON row per configuration is appended to bench/results/classify_grid_val.jsonl; a
configuration already there is skipped, so a killed grid resumes where it stopped:

    nohup .venv/bin/python bench/classify_grid.py run > classify_grid.log 2>&1 &
    .venv/bin/python bench/classify_grid.py table

`int8` chooses the export's int8 options the same way: it quantizes the exported fp32 ONNX model
(models/classify/onnx/model.onnx, from `make classify`) with each option set and counts how often
the int8 argmax equals fp32's on the val texts and the first 400 training texts (not gold):

    .venv/bin/python bench/classify_grid.py int8      # -> bench/results/classify_int8_val.jsonl
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from potstill.classify.labels import argmax  # noqa: E402
from potstill.evaluation.metrics import bootstrap_interval, expected_calibration_error  # noqa: E402
from potstill.io import read_jsonl  # noqa: E402
from potstill.params import load_params  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "classify_grid_val.jsonl"
CURATED = ROOT / "data" / "classify" / "curated"
ENCODER = ROOT / "models" / "classify" / "encoder"
HALF = [0, 2, 4]

# (name, overrides of the classify params). alpha 0 is the hard-label student, the comparison.
# Every configuration starts from BASE (the schedule the rows were measured at), not from
# params.yaml's current values, so a row's name keeps meaning the same run after the default moves.
BASE = {"learning_rate": 1e-4, "epochs": 3}
GRIDS = {
    "default-on-val": [
        ("hard-6", {"alpha": 0.0, "keep_layers": None}),
        ("soft-6-a0.5-T2", {"alpha": 0.5, "temperature": 2.0, "keep_layers": None}),
        ("hard-3", {"alpha": 0.0, "keep_layers": HALF}),
        ("soft-3-a0.5-T2", {"alpha": 0.5, "temperature": 2.0, "keep_layers": HALF}),
        ("soft-3-a0.5-T1", {"alpha": 0.5, "temperature": 1.0, "keep_layers": HALF}),
        ("soft-3-a0.5-T4", {"alpha": 0.5, "temperature": 4.0, "keep_layers": HALF}),
        ("soft-3-a0.9-T1", {"alpha": 0.9, "temperature": 1.0, "keep_layers": HALF}),
        ("soft-3-a0.9-T2", {"alpha": 0.9, "temperature": 2.0, "keep_layers": HALF}),
        ("soft-3-a0.2-T2", {"alpha": 0.2, "temperature": 2.0, "keep_layers": HALF}),
        # Is agreement still rising after 3 epochs? (the 90% target's frontier)
        ("soft-3-a0.5-T2-e6", {"alpha": 0.5, "temperature": 2.0, "keep_layers": HALF, "epochs": 6}),
        # Every student above was still rising at its last epoch: a larger step instead of more epochs.
        ("hard-3-lr3e-4", {"alpha": 0.0, "keep_layers": HALF, "learning_rate": 3e-4}),
        ("soft-3-a0.5-T2-lr3e-4", {"alpha": 0.5, "temperature": 2.0, "keep_layers": HALF, "learning_rate": 3e-4}),
        ("hard-6-lr3e-4", {"alpha": 0.0, "keep_layers": None, "learning_rate": 3e-4}),
        ("soft-6-a0.5-T2-lr3e-4", {"alpha": 0.5, "temperature": 2.0, "keep_layers": None, "learning_rate": 3e-4}),
        # Half the layers at the larger step: T 1 (best at 1e-4), more epochs, a larger step still.
        ("soft-3-a0.5-T1-lr3e-4", {"alpha": 0.5, "temperature": 1.0, "keep_layers": HALF, "learning_rate": 3e-4}),
        ("soft-3-a0.5-T1-lr3e-4-e5", {"alpha": 0.5, "temperature": 1.0, "keep_layers": HALF, "learning_rate": 3e-4,
                                      "epochs": 5}),
        ("hard-3-lr3e-4-e5", {"alpha": 0.0, "keep_layers": HALF, "learning_rate": 3e-4, "epochs": 5}),
        ("soft-3-a0.5-T1-lr6e-4-e5", {"alpha": 0.5, "temperature": 1.0, "keep_layers": HALF, "learning_rate": 6e-4,
                                      "epochs": 5}),
        ("soft-3-a0.9-T1-lr3e-4-e5", {"alpha": 0.9, "temperature": 1.0, "keep_layers": HALF, "learning_rate": 3e-4,
                                      "epochs": 5}),
    ],
}

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def val_figures(probs: list[list[float]], teacher_ids: list[int]) -> dict:
    """Return agreement with the teacher's argmax and ECE against it, each with a 95% interval over texts."""
    from potstill.classify.metrics import ece_interval

    predicted = [argmax(p) for p in probs]
    confidence = [max(p) for p in probs]
    agree = [p == t for p, t in zip(predicted, teacher_ids, strict=True)]
    ece = expected_calibration_error(confidence, agree)
    return {"agree": sum(agree) / len(agree), "ece": ece,
            "ci95": {"agree": bootstrap_interval([float(a) for a in agree]),
                     "ece": ece_interval(confidence, agree)}}


def run_one(name: str, overrides: dict, classify, train: list[dict], val: list[dict]) -> dict:
    """Train one configuration and measure it on val (per epoch: the train stage's history, plus the kept one)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from potstill.classify.student import predict_proba, train_student

    config = classify.model_copy(update={**BASE, **overrides})
    texts = [row["text"] for row in val]
    teacher_ids = [argmax(row["teacher_probs"]) for row in val]
    with tempfile.TemporaryDirectory(prefix="potstill-classify-grid-") as tmp:
        start = time.perf_counter()
        summary = train_student(ENCODER, train, val, config.label_names, config, config.alpha, Path(tmp),
                                progress=False)
        minutes = (time.perf_counter() - start) / 60
        model = AutoModelForSequenceClassification.from_pretrained(tmp).eval()
        tokenizer = AutoTokenizer.from_pretrained(tmp)
        batch = config.speed_batch_size
        predict_proba(model, tokenizer, texts[:batch], batch, config.max_length)  # warm-up
        start = time.perf_counter()
        probs = predict_proba(model, tokenizer, texts, batch, config.max_length)
        rate = len(texts) / (time.perf_counter() - start)
    return {"name": name, "overrides": overrides, "epochs": config.epochs, "learning_rate": config.learning_rate,
            "val_rows": len(val), "train_rows": len(train), "history": summary["epochs"],
            "best_epoch": summary["best_epoch"], **val_figures(probs, teacher_ids),
            "minutes": round(minutes, 2), "items_per_s": round(rate, 1), "speed_batch_size": batch}


@app.command()
def run(grid: Annotated[str, typer.Option(help=f"one of {sorted(GRIDS)}")] = "default-on-val",
        params: Annotated[Path, typer.Option()] = ROOT / "params.yaml",
        results: Annotated[Path, typer.Option()] = RESULTS) -> None:
    """Train and measure every configuration of a grid not yet in the results file."""
    classify = load_params(params, "classify")["classify"]
    train = [row for _, row in read_jsonl(CURATED / "train.jsonl")]
    val = [row for _, row in read_jsonl(CURATED / "val.jsonl")]
    done = {row["name"] for _, row in read_jsonl(results)} if results.exists() else set()
    for name, overrides in GRIDS[grid]:
        if name in done:
            continue
        row = run_one(name, overrides, classify, train, val)
        with results.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        typer.echo(f"{name}: agree {row['agree']:.3f} {row['ci95']['agree']}, ece {row['ece']:.3f}, "
                   f"{row['minutes']} min, {row['items_per_s']} items/s", err=True)


INT8_OPTIONS = {
    "onnxruntime defaults": {},
    "per channel": {"per_channel": True},
    "MatMul only": {"op_types_to_quantize": ["MatMul"]},
    "per channel, MatMul only": {"per_channel": True, "op_types_to_quantize": ["MatMul"]},
    "per channel, 7-bit weights": {"per_channel": True, "reduce_range": True},
}


@app.command()
def int8(onnx_dir: Annotated[Path, typer.Option()] = ROOT / "models" / "classify" / "onnx",
         results: Annotated[Path, typer.Option()] = RESULTS.parent / "classify_int8_val.jsonl") -> None:
    """Quantize the exported fp32 model with each option set; argmax agreement with fp32 on val and training texts."""
    import numpy as np
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoTokenizer

    from potstill.classify.onnx_export import ONNX_FILE, OnnxClassifier

    classify = load_params(ROOT / "params.yaml", "classify")["classify"]
    tokenizer = AutoTokenizer.from_pretrained(onnx_dir)
    texts = ([row["text"] for _, row in read_jsonl(CURATED / "val.jsonl")]
             + [row["text"] for _, row in read_jsonl(CURATED / "train.jsonl")][:400])
    batch, length = classify.speed_batch_size, classify.max_length
    reference = np.array(OnnxClassifier(onnx_dir / ONNX_FILE).predict_proba(tokenizer, texts, batch, length))
    with tempfile.TemporaryDirectory(prefix="potstill-int8-") as tmp:
        for name, options in INT8_OPTIONS.items():
            path = Path(tmp) / "int8.onnx"
            quantize_dynamic(str(onnx_dir / ONNX_FILE), str(path), weight_type=QuantType.QInt8, **options)
            model = OnnxClassifier(path)
            model.predict_proba(tokenizer, texts[:batch], batch, length)  # warm-up
            start = time.perf_counter()
            probs = np.array(model.predict_proba(tokenizer, texts, batch, length))
            rate = len(texts) / (time.perf_counter() - start)
            row = {"options": name, "texts": len(texts),
                   "argmax_agreement_with_fp32": float((probs.argmax(-1) == reference.argmax(-1)).mean()),
                   "max_abs_prob_diff": float(np.abs(probs - reference).max()), "items_per_s": round(rate, 1),
                   "megabytes": round(path.stat().st_size / 1e6, 1)}
            with results.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
            typer.echo(f"{name}: argmax agreement with fp32 {row['argmax_agreement_with_fp32']:.4f} on "
                       f"{len(texts)} texts, max |p diff| {row['max_abs_prob_diff']:.3f}, {rate:.0f} texts/s, "
                       f"{row['megabytes']} MB")


@app.command()
def table(results: Annotated[Path, typer.Option()] = RESULTS) -> None:
    """Print the grid's rows as a markdown table."""
    typer.echo("| config | val agree [95% CI] | val ECE vs teacher [95% CI] | agree by epoch | best | train min "
               "| items/s |")
    typer.echo("|---|---|---|---|---|---|---|")
    for _, row in read_jsonl(results):
        lo, hi = row["ci95"]["agree"]
        elo, ehi = row["ci95"]["ece"]
        by_epoch = " ".join(f"{e.get('eval_agree', float('nan')):.3f}" for e in row["history"])
        typer.echo(f"| {row['name']} | {row['agree']:.3f} [{lo:.3f}, {hi:.3f}] | {row['ece']:.3f} "
                   f"[{elo:.3f}, {ehi:.3f}] | {by_epoch} | {row['best_epoch']} | {row['minutes']} | "
                   f"{row['items_per_s']} |")


if __name__ == "__main__":
    app()
