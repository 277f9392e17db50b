"""Score: the teacher's top-k soft targets for every curated training/validation response.

    python stages/score.py --params params.yaml --teacher models/teacher --curated data/curated --out data/soft-targets

With `kd.source: local` the teacher checkpoint runs once over the curated rows (exact token ids,
any k); with `api` or `none` the stage writes an empty set and train takes its targets elsewhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from potstill.cli import friendly_errors
from potstill.device import describe, resolve_device, resolve_dtype
from potstill.distill.score import score_rows
from potstill.distill.soft_targets import save_soft_targets, tokenizer_fingerprint
from potstill.io import read_jsonl
from potstill.models import load_teacher
from potstill.params import load_params
from potstill.weights import load_tokenizer


def run_score(params_path: Path, teacher_dir: Path, curated: Path, out_dir: Path) -> dict:
    """Score the curated train/val rows with the teacher; write the sidecar; return its size."""
    params = load_params(params_path, "kd", "train", "hardware")
    kd, train, hardware = params["kd"], params["train"], params["hardware"]
    torch.manual_seed(0)
    targets, tokenizer = {}, None
    # Only kd.source local scores here; api (train aligns the endpoint's log-probs) and none need no
    # teacher weights at all, and an API teacher has none (teacher.weights: none).
    if kd.source == "local":
        tokenizer = load_tokenizer(teacher_dir)
        rows = [row for split in ("train", "val") for _, row in read_jsonl(curated / f"{split}.jsonl")]
        device = resolve_device(hardware.device)
        dtype = resolve_dtype(hardware.dtype, device)
        placement = f"split by device_map {hardware.teacher_device_map}" if hardware.teacher_device_map else "on"
        typer.echo(f"score: teacher {placement} {describe(device, dtype)}")
        teacher = load_teacher(teacher_dir, hardware, device, dtype)
        # At kd.temperature itself: the top-k and the tail mass are then exact at the distillation temperature.
        targets = score_rows(teacher, tokenizer, rows, kd.top_k, train.max_seq_len, kd.score_batch_size,
                             temperature=kd.temperature)
    manifest = {"source": kd.source, "k": kd.top_k, "logprob_temperature": kd.temperature,
                "tokenizer": tokenizer_fingerprint(tokenizer) if tokenizer else None,
                "vocab_size": len(tokenizer) if tokenizer else None}
    save_soft_targets(out_dir, targets, manifest)
    return {"rows": len(targets), "tokens": sum(int(ids.shape[0]) for ids, _ in targets.values())}


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    teacher: Annotated[Path, typer.Option(help="teacher checkpoint")] = Path("models/teacher"),
    curated: Annotated[Path, typer.Option(help="curate stage output")] = Path("data/curated"),
    out: Annotated[Path, typer.Option(help="soft-target folder")] = Path("data/soft-targets"),
) -> None:
    """Compute the teacher's top-k soft targets."""
    typer.echo(f"score: {run_score(params, teacher, curated, out)}")


if __name__ == "__main__":
    app()
