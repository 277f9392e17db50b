"""Classify label: the teacher gives every text (and every gold text) a distribution over the labels.

    python stages/classify/label.py --params params.yaml --texts data/classify/texts.jsonl \
        --gold data/classify/gold.jsonl --out data/classify/labelled --metrics metrics/classify/label.json

The label tokens are checked with the teacher's tokenizer before any request is sent. Requests
go through the same cache, dispatcher and ledger as generate: an interrupted run keeps every
answer so far and a rerun asks only for what is missing. The gold texts are labelled too, never
trained on: evaluate compares the students with the teacher's own answers on them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from potstill.classify.data import read_texts
from potstill.classify.labelling import label_rows, teacher_tokenizer
from potstill.classify.labels import label_tokens
from potstill.cli import friendly_errors
from potstill.io import write_json, write_jsonl
from potstill.params import load_params

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    texts: Annotated[Path, typer.Option(help="texts to label (JSONL: id, text)")] = Path("data/classify/texts.jsonl"),
    gold: Annotated[Path, typer.Option(help="gold set (JSONL: id, text, label)")] = Path("data/classify/gold.jsonl"),
    out: Annotated[Path, typer.Option(help="output folder")] = Path("data/classify/labelled"),
    metrics: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/classify/label.json"),
) -> None:
    """Ask the teacher for soft labels."""
    loaded = load_params(params, "teacher", "classify")
    teacher, classify = loaded["teacher"], loaded["classify"]
    rows = read_texts(texts)
    gold_rows = read_texts(gold, labels=classify.label_names)
    tokens = label_tokens(teacher_tokenizer(teacher, classify), classify.labels, classify.instruction)
    print(f"label tokens: {dict(zip(tokens.names, tokens.texts, strict=True))}", file=sys.stderr)
    labelled, stats = label_rows(rows + gold_rows, teacher, classify, tokens, what="texts (training and gold)")
    n = len(rows)
    write_jsonl(out / "texts.jsonl", labelled[:n])
    write_jsonl(out / "gold.jsonl", labelled[n:])
    low = sum(row["label_mass"] < classify.min_label_mass for row in labelled)
    summary = {"texts": n, "gold": len(gold_rows), "label_tokens": dict(zip(tokens.names, tokens.texts, strict=True)),
               "mean_label_mass": round(sum(r["label_mass"] for r in labelled) / len(labelled), 4),
               "below_min_label_mass": low, **stats}
    write_json(metrics, summary)
    ledger = stats["ledger"]
    typer.echo(f"classify label: {len(labelled)} texts ({stats['cached']} cached, {stats['requested']} asked), "
               f"mean label mass {summary['mean_label_mass']}, {low} below classify.min_label_mass, "
               f"{ledger['requests']} requests")


if __name__ == "__main__":
    app()
