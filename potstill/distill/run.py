"""The train stage's work: fit the student on the curated chats with the distillation loss.

`run_train` loads params, the student, the soft targets (local, API or none) and the data,
picks up a checkpoint of an interrupted run with the same params and inputs, trains with
`DistillTrainer`, and saves the adapter (LoRA) or whole weights (full) atomically.
`accelerate_command` gives the `accelerate launch` command for the ddp / fsdp / deepspeed launchers.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import torch

from potstill.device import describe, resolve_device, resolve_dtype
from potstill.distill.checkpoints import checkpoint_dir, last_complete_checkpoint
from potstill.distill.data import DistillCollator, build_dataset, soft_targets_for
from potstill.distill.kd import exact_tail
from potstill.distill.onpolicy import ROLLOUTS_FILE, OnPolicyTrainer, training_prompts, truncate_rollouts
from potstill.distill.trainer import (
    PROJECTION_MODULE,
    DistillTrainer,
    check_hidden_matching,
    compatibility_warnings,
    parameter_count,
    read_layer_map,
    step_aligned_dvclive_callback,
)
from potstill.errors import InputError
from potstill.io import atomic_dir, write_text_atomic
from potstill.params import load_params
from potstill.weights import load_tokenizer, weights_dir

# Launcher configs as data (DDP, FSDP, DeepSpeed), one file per launcher.
ACCELERATE_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"


def accelerate_command(launcher: str, script: Path, script_args: list[str]) -> list[str]:
    """Return the `accelerate launch` command that runs `script` under `launcher`."""
    gpus = torch.cuda.device_count()
    if launcher in ("fsdp", "deepspeed") and gpus == 0:
        raise InputError(f"train.launcher: {launcher} needs CUDA GPUs and none is visible; "
                         "use ddp (2 CPU processes) or single")
    config = {"ddp": "multi_gpu.yaml" if gpus else "ddp_cpu.yaml", "fsdp": "fsdp.yaml",
              "deepspeed": "deepspeed_zero2.yaml"}[launcher]
    # The GPU configs leave the process count to the machine: one process per visible GPU.
    processes = ["--num_processes", str(gpus)] if gpus else []
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ACCELERATE_CONFIGS / config),
            *processes, str(Path(script).resolve()), *script_args]


def run_train(params_path: Path, student_dir: Path, curated: Path, generated: Path,
              soft_targets_dir: Path, out_dir: Path, live_dir: Path, teacher_dir: Path | None = None,
              rollouts_out: Path | None = None) -> dict:
    """Return the final metrics after fitting the student (LoRA adapter or full weights) into out_dir.

    `teacher_dir` (the local teacher checkpoint) is read with kd.source local: its size for the
    teacher-vs-student check, and its hidden states when kd.hidden_weight > 0; and with
    onpolicy.scorer local, to score the student's rollouts. With onpolicy.steps > 0 an on-policy
    phase follows the off-policy steps (potstill.distill.onpolicy); its rollouts go to `rollouts_out`
    (an empty file when the phase is off).
    """
    params = load_params(params_path, "kd", "train", "lora", "hardware", "onpolicy")
    kd, train, lora, hardware = params["kd"], params["train"], params["lora"], params["hardware"]
    onpolicy = params["onpolicy"]
    from dvclive import Live
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, TrainingArguments

    torch.manual_seed(train.seed)
    tokenizer = load_tokenizer(student_dir)
    soft_targets, align_stats, capture_temperature, k = soft_targets_for(kd, tokenizer, generated, soft_targets_dir)
    splits = {name: curated / f"{name}.jsonl" for name in ("train", "val")}

    model = AutoModelForCausalLM.from_pretrained(weights_dir(student_dir), dtype=torch.float32, use_safetensors=True)
    warnings: list[str] = []
    if kd.source != "none" and kd.tail == "bucket" and not exact_tail(kd.temperature, capture_temperature):
        warnings.append(f"kd.tail bucket at kd.temperature {kd.temperature} from log-probs captured at "
                        f"{capture_temperature}: the tail bucket is tempered as one token, an approximation of "
                        "the tempered KL; use kd.tail: renorm, or kd.source: local (scored at kd.temperature)")
    teacher, layer_map = None, None
    if kd.source == "local" and teacher_dir is not None and teacher_dir.is_dir() and weights_dir(teacher_dir):
        warnings = compatibility_warnings(parameter_count(teacher_dir), model.num_parameters())
    if kd.hidden_weight > 0:
        if teacher_dir is None or not teacher_dir.is_dir():
            raise InputError(f"kd.hidden_weight > 0 runs the teacher during training: pass --teacher with the "
                             f"teacher checkpoint folder (got {teacher_dir}), or set kd.hidden_weight: 0")
        from potstill.models import load_checked

        teacher = load_checked(teacher_dir)
        layer_map = dict(kd.hidden_layer_map) if kd.hidden_layer_map else read_layer_map(student_dir)
        check_hidden_matching(model, teacher, layer_map)
    if train.max_steps == 0 and onpolicy.steps == 0:
        raise InputError(f"{params_path}: train.max_steps and onpolicy.steps are both 0: nothing to train")
    scorer = rollout_scorer(params_path, onpolicy, train, tokenizer, teacher_dir, teacher) if onpolicy.steps else None
    if train.method == "lora":
        model = get_peft_model(model, LoraConfig(
            r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
            target_modules=lora.target_modules, task_type="CAUSAL_LM",
        ))
    # An empty split file is no split at all (see build_dataset).
    has_val = splits["val"].is_file() and splits["val"].stat().st_size > 0
    checkpoints = checkpoint_dir(
        {name: section.model_dump() for name, section in params.items()},
        [student_dir, *splits.values(), soft_targets_dir, generated / "logprobs.jsonl",
         # hidden matching learns from the teacher's weights; on-policy steps from its scores
         *([teacher_dir] if teacher is not None or (scorer is not None and onpolicy.scorer == "local") else [])],
    )
    select_best = train.select_best and has_val
    if train.select_best and not has_val:
        print("train: warning: train.select_best needs a validation split (curate.val_fraction > 0); "
                   "keeping the last checkpoint", file=sys.stderr)
    resume = last_complete_checkpoint(checkpoints)
    if resume:
        print(f"train: resuming from {resume}")
    device = resolve_device(hardware.device)
    dtype = resolve_dtype(hardware.dtype, device)
    print(f"train: {describe(device, dtype)}")
    common = dict(
        per_device_train_batch_size=train.batch_size, per_device_eval_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum, bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16,
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        logging_steps=train.logging_steps, save_strategy="steps", save_total_limit=2, report_to=[],
        remove_unused_columns=False, seed=train.seed, data_seed=train.seed, use_cpu=device.type == "cpu",
        dataloader_num_workers=0,
        # Compute in tokens (the campaign compares arms at equal tokens): kept in the checkpoint state.
        include_num_input_tokens_seen="non_padding",
    )
    args = TrainingArguments(
        output_dir=str(checkpoints), max_steps=train.max_steps, learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler, warmup_steps=train.warmup_steps,
        eval_strategy="steps" if has_val else "no",
        # select_best compares checkpoints by validation loss, so evaluation runs at every checkpoint.
        eval_steps=train.save_steps if select_best else max(train.max_steps // 4, 1),
        save_steps=train.save_steps,
        load_best_model_at_end=select_best, metric_for_best_model="eval_loss", greater_is_better=False, **common,
    )
    # Under accelerate launch every process runs this function; only the main one writes outputs.
    is_main = args.process_index == 0
    with args.main_process_first(desc="tokenising"):  # the others then reuse its datasets cache
        data = build_dataset(tokenizer, splits, soft_targets, k, train.max_seq_len)
    if "train" not in data:
        raise InputError(f"{splits['train']}: no training rows; check the curate report")
    for warning in warnings if is_main else []:
        print(f"train: warning: {warning}", file=sys.stderr)
    live = Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None, resume=bool(resume)) if is_main else None
    trainer_settings = dict(
        kd_alpha=kd.alpha if kd.source != "none" else 0.0, kd_temperature=kd.temperature,
        capture_temperature=capture_temperature, kd_tail=kd.tail, kd_loss=kd.loss, jsd_beta=kd.jsd_beta,
        kd_chunk_rows=kd.chunk_rows,
        vocab_limit=len(tokenizer) if model.get_input_embeddings().num_embeddings > len(tokenizer) else None,
        teacher=teacher, layer_map=layer_map, hidden_weight=kd.hidden_weight, hidden_loss=kd.hidden_loss,
    )
    trainer = DistillTrainer(
        model=model, args=args, train_dataset=data["train"],
        eval_dataset=data["val"] if has_val else None,
        data_collator=DistillCollator(tokenizer.pad_token_id, k),
        callbacks=[step_aligned_dvclive_callback(live)] if is_main else [],
        **trainer_settings,
    )
    phase2_dir, phase1_file = checkpoints / "onpolicy", checkpoints / "offpolicy.json"
    resume2 = last_complete_checkpoint(phase2_dir) if onpolicy.steps else None
    if resume2 is None:
        final = {"global_step": 0, **align_stats, "train_rows": len(data["train"]),
                 "val_rows": len(data["val"]) if has_val else 0,
                 "resumed_from_step": int(resume.rsplit("-", 1)[-1]) if resume else 0, "selected_step": 0}
        if train.max_steps:  # 0: on-policy only, from the student as given
            result = trainer.train(resume_from_checkpoint=resume)
            final.update(train_loss=result.training_loss, global_step=result.global_step,
                         tokens_student_offpolicy=trainer.state.num_input_tokens_seen,
                         selected_step=_step_of(trainer.state.best_model_checkpoint) if select_best
                         else result.global_step)
        if onpolicy.steps and is_main:
            phase1_file.write_text(json.dumps(final))
    elif not phase1_file.is_file():
        raise InputError(f"{phase1_file}: not found beside the on-policy checkpoints; "
                         f"delete {checkpoints} to start over")
    else:
        final = json.loads(phase1_file.read_text())
        print(f"train: off-policy phase done; resuming the on-policy phase from {resume2}")
    rollouts_file = phase2_dir / ROLLOUTS_FILE
    if onpolicy.steps:
        phase2_dir.mkdir(parents=True, exist_ok=True)
        truncate_rollouts(rollouts_file, _step_of(resume2))  # what a resume samples again goes
        # Checkpoints on rollout-round boundaries: a resume samples its round again from the same weights.
        every = onpolicy.resample_every
        args2 = TrainingArguments(
            output_dir=str(phase2_dir), max_steps=onpolicy.steps, learning_rate=onpolicy.learning_rate,
            lr_scheduler_type="constant_with_warmup", warmup_steps=onpolicy.warmup_steps, eval_strategy="no",
            save_steps=math.ceil(train.save_steps / every) * every, **common)
        trainer = OnPolicyTrainer(
            model=trainer.model, args=args2, train_dataset=data["train"],
            eval_dataset=data["val"] if has_val else None,
            data_collator=DistillCollator(tokenizer.pad_token_id, k),
            callbacks=[step_aligned_dvclive_callback(live, offset=train.max_steps)] if is_main else [],
            onpolicy=onpolicy, prompts=training_prompts(tokenizer, splits["train"]), scorer=scorer,
            tokenizer_for_rollouts=tokenizer, seed=train.seed, rollouts_file=rollouts_file,
            **trainer_settings,
        )
        result2 = trainer.train(resume_from_checkpoint=resume2)
        final.update(onpolicy_steps=result2.global_step, onpolicy_train_loss=result2.training_loss,
                     onpolicy_resumed_from_step=_step_of(resume2), **trainer.tokens,
                     rollouts=sum(1 for _ in rollouts_file.open()) if rollouts_file.is_file() else 0)
    if has_val:
        final.update(trainer.evaluate())  # every process: evaluation gathers across them
    final["warnings"] = warnings
    # Collective: under FSDP every process hands in its shard; under DDP it is the plain state dict.
    state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if not is_main:
        return final
    # Hidden-state projections only served the loss: the student does not keep them.
    state_dict = {key: value for key, value in state_dict.items() if PROJECTION_MODULE not in key}
    live.summary.update({f"final/{key}": value for key, value in final.items() if isinstance(value, int | float)})
    live.summary["warnings"] = warnings
    live.end()
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
    if rollouts_out is not None:
        write_text_atomic(rollouts_out, rollouts_file.read_text(encoding="utf-8")
                          if onpolicy.steps and rollouts_file.is_file() else "")
    # The output is safe: the checkpoints have done their job.
    shutil.rmtree(checkpoints, ignore_errors=True)
    return final


def rollout_scorer(params_path: Path, onpolicy, train, tokenizer, teacher_dir: Path | None, teacher=None):
    """Return what scores the on-policy rollouts, refusing before any training what cannot.

    local: the teacher checkpoint, which must share the student's token ids (`teacher`, when hidden
    matching has loaded it already, is reused rather than loaded twice). api: the first
    teacher.base_url, which must return vLLM's prompt log-probs and read ids as the student does.
    """
    if train.launcher != "single":
        raise InputError(f"onpolicy.steps > 0 runs with train.launcher: single for now (got {train.launcher}); "
                         "set train.launcher: single, or onpolicy.steps: 0")
    if onpolicy.scorer == "api":
        from potstill.distill.onpolicy import PromptLogprobsScorer
        from potstill.teacher.client import make_client

        teacher = load_params(params_path, "teacher")["teacher"]
        urls = teacher.endpoints or []
        if not urls:
            raise InputError("onpolicy.scorer api needs teacher.base_url (a vLLM server); the embedded llama.cpp "
                             "teacher cannot score given text (no prompt log-probs). Use onpolicy.scorer: local")
        scorer = PromptLogprobsScorer(make_client(urls[0], teacher.api_key_env, teacher.timeout_s), teacher.model,
                                      onpolicy.top_k, urls[0])
        scorer.check(tokenizer, tokenizer("The sky is blue.", add_special_tokens=False)["input_ids"])
        return scorer
    if teacher_dir is None or not teacher_dir.is_dir() or not weights_dir(teacher_dir):
        raise InputError(f"onpolicy.scorer local scores rollouts with the teacher checkpoint; {teacher_dir} holds "
                         "none (teacher.weights none?). Give the teacher's weights, or onpolicy.scorer: api")
    from potstill.chat import tokenizer_differences
    from potstill.distill.onpolicy import LocalScorer
    from potstill.models import load_checked

    differences = tokenizer_differences(load_tokenizer(teacher_dir), tokenizer)
    if differences:
        raise InputError("onpolicy.scorer local: the teacher and student tokenizers differ, and the teacher must "
                         "score the student's token ids:\n  " + "\n  ".join(differences)
                         + "\nUse a student of the teacher's family, or onpolicy.steps: 0")
    model = teacher if teacher is not None else load_checked(teacher_dir)
    return LocalScorer(model, onpolicy.top_k, len(tokenizer), tokenizer.pad_token_id)


def _step_of(checkpoint: str | None) -> int:
    """Return the step of a `checkpoint-N` folder name (0 when there is none)."""
    return int(checkpoint.rsplit("-", 1)[-1]) if checkpoint else 0
