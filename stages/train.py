"""Train: LoRA on the student with the HF Trainer; loss = CE on teacher tokens + KD on soft targets.

    python stages/train.py --params params.yaml --student models/student-base \
        --curated data/curated --generated data/generated --soft-targets data/soft-targets \
        --out models/adapter

Multi-GPU: `accelerate launch stages/train.py ...` runs the same code under DDP/FSDP/DeepSpeed.
Loss curves and the CE and KD terms (logged apart, so a mis-scaled KD term shows) go to
metrics/train through DVCLive.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import torch
import typer

from potstill.cli import friendly_errors
from potstill.io import InputError, atomic_dir
from potstill.params import load_params
from potstill.score import load_soft_targets
from potstill.train import (
    DistillCollator,
    DistillTrainer,
    build_dataset,
    load_api_soft_targets,
    read_manifest,
)


def run_train(params_path: Path, student_dir: Path, curated: Path, generated: Path,
              soft_targets_dir: Path, out_dir: Path, live_dir: Path) -> dict:
    """Fit a LoRA adapter on the curated rows; save it to out_dir and return the final metrics."""
    params = load_params(params_path, "kd", "train", "lora")
    kd, train, lora = params["kd"], params["train"], params["lora"]
    from dvclive import Live
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments
    from transformers.integrations import DVCLiveCallback

    torch.manual_seed(train.seed)
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    soft_targets, align_stats, capture_temperature, k = {}, {}, 1.0, 1
    if kd.source == "local":
        k = kd.top_k
        soft_targets, manifest = load_soft_targets(soft_targets_dir, tokenizer, k)
        capture_temperature = manifest["logprob_temperature"]
    elif kd.source == "api":
        manifest = read_manifest(generated / "manifest.json")
        if manifest["logprobs_k"] == 0:
            raise InputError("kd.source is 'api' but generate stored no logprobs (teacher.logprobs: 0); "
                             "set teacher.logprobs > 0 or use kd.source: local / none")
        k = min(kd.top_k, manifest["logprobs_k"])
        capture_temperature = manifest["endpoint"]["logprob_temperature"]
        soft_targets, align_stats = load_api_soft_targets(tokenizer, generated, k)
        if not soft_targets:
            raise InputError(
                f"{generated / 'logprobs.jsonl'}: no response's logprobs line up with the student's "
                "tokenizer; the teacher must share it for kd.source: api (use kd.source: none)"
            )
    splits = {name: curated / f"{name}.jsonl" for name in ("train", "val")}
    data = build_dataset(tokenizer, splits, soft_targets, k, train.max_seq_len)
    if "train" not in data:
        raise InputError(f"{splits['train']}: no training rows; check the curate report")

    model = AutoModelForCausalLM.from_pretrained(student_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=lora.target_modules, task_type="CAUSAL_LM",
    ))
    has_val = "val" in data
    with tempfile.TemporaryDirectory(prefix="potstill-train-") as scratch:
        args = TrainingArguments(
            output_dir=scratch, max_steps=train.max_steps, learning_rate=train.learning_rate,
            per_device_train_batch_size=train.batch_size, per_device_eval_batch_size=train.batch_size,
            gradient_accumulation_steps=train.grad_accum, warmup_steps=train.warmup_steps,
            logging_steps=train.logging_steps, eval_strategy="steps" if has_val else "no",
            eval_steps=max(train.max_steps // 4, 1), save_strategy="no", report_to=[],
            remove_unused_columns=False, seed=train.seed, data_seed=train.seed,
            use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        )
        live = Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)
        trainer = DistillTrainer(
            model=model, args=args, train_dataset=data["train"],
            eval_dataset=data["val"] if has_val else None,
            data_collator=DistillCollator(tokenizer.pad_token_id, k),
            callbacks=[DVCLiveCallback(live=live)],
            kd_alpha=kd.alpha if kd.source != "none" else 0.0, kd_temperature=kd.temperature,
            capture_temperature=capture_temperature, kd_tail=kd.tail,
        )
        result = trainer.train()
        final = {"train_loss": result.training_loss, **align_stats,
                 "train_rows": len(data["train"]), "val_rows": len(data["val"]) if has_val else 0}
        if has_val:
            final.update(trainer.evaluate())
        live.summary.update({f"final/{key}": value for key, value in final.items()
                             if isinstance(value, int | float)})
        live.end()
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return final


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    student: Annotated[Path, typer.Option(help="student checkpoint")] = Path("models/student-base"),
    curated: Annotated[Path, typer.Option(help="curate stage output")] = Path("data/curated"),
    generated: Annotated[Path, typer.Option(help="generate stage output")] = Path("data/generated"),
    soft_targets: Annotated[Path, typer.Option(help="score stage output")] = Path("data/soft-targets"),
    out: Annotated[Path, typer.Option(help="adapter output folder")] = Path("models/adapter"),
    live: Annotated[Path, typer.Option(help="DVCLive folder")] = Path("metrics/train"),
) -> None:
    """Distil the teacher into a LoRA adapter on the student."""
    typer.echo(f"train: {run_train(params, student, curated, generated, soft_targets, out, live)}")


if __name__ == "__main__":
    app()
