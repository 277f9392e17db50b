"""Merge: fold the LoRA adapter into the student's weights; save safetensors + tokenizer.

    python stages/merge.py --student models/student-base --adapter models/adapter --out models/merged
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from potstill.cli import friendly_errors
from potstill.models import load_checked, save_model


def run_merge(student_dir: Path, adapter_dir: Path, out_dir: Path) -> dict:
    """Merge adapter into base, check the merged model predicts what base+adapter did, save it.

    With `train.method: full` the train stage wrote whole weights, not an adapter: they are
    re-saved as they are.
    """
    from peft import PeftModel
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        save_model(load_checked(adapter_dir), tokenizer, out_dir)
        return {"max_logit_drift": 0.0, "method": "full"}
    model = PeftModel.from_pretrained(load_checked(student_dir), adapter_dir).eval()
    probe = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name three primary colours."}],
        tokenize=False, add_generation_prompt=True,
    )
    probe_ids = tokenizer(probe, return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        before = model(probe_ids).logits
        merged = model.merge_and_unload()
        after = merged(probe_ids).logits
    drift = float((before - after).abs().max())
    if drift > 1e-3:
        raise RuntimeError(f"merged model drifts from base+adapter by {drift:.2e} on a probe")
    save_model(merged, tokenizer, out_dir)
    return {"max_logit_drift": drift}


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    student: Annotated[Path, typer.Option(help="student checkpoint")] = Path("models/student-base"),
    adapter: Annotated[Path, typer.Option(help="LoRA adapter")] = Path("models/adapter"),
    out: Annotated[Path, typer.Option(help="merged model folder")] = Path("models/merged"),
) -> None:
    """Merge the adapter into the student."""
    typer.echo(f"merge: {run_merge(student, adapter, out)}")


if __name__ == "__main__":
    app()
