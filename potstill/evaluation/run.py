"""Evaluate every model of the pipeline the same way: lm-eval tasks, held-out distillation metrics, cost.

Each model is loaded from its saved folder with every weight checked (a quanto folder read as a
plain HF model silently gets random weights; GGUF files run under llama.cpp) and wrapped in one
`EvalModel`, so scoring never asks which engine runs it. Scores are cached by content
(potstill.evaluation.score_cache): an unchanged teacher is scored once.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from potstill.device import resolve_device
from potstill.errors import ParamsError
from potstill.evaluation.gates import unknown_gate_models, unknown_gate_tasks
from potstill.evaluation.lm_eval import gguf_lm, hf_lm, lm_eval_results
from potstill.evaluation.metrics import (
    GenerateFn,
    LogitsFn,
    answer_figures,
    answer_prompts,
    count_parameters,
    distill_metrics,
    held_out_prompts,
    heldout_rows,
    hf_generate_fn,
    hf_logits_fn,
    intervals,
    onpolicy_kl,
    teacher_logprobs,
    time_generation,
)
from potstill.evaluation.score_cache import ScoreCache
from potstill.export.gguf_runtime import GGUFModel
from potstill.export.quantize import load_quantized, weight_bytes
from potstill.models import load_checked, load_teacher
from potstill.params import load_params
from potstill.tasks import task_dirs, task_manager, task_specs
from potstill.weights import load_tokenizer

# Per-model fields kept in the cache and used by gates and the report, but not written to eval.json
# (too large for `dvc exp show`).
DETAIL_FIELDS = ("items", "argmax", "samples", "rows", "answers", "categories", "outputs", "onpolicy_rows")


@dataclass
class EvalModel:
    """One model as evaluate sees it, whatever runs it: transformers (any device) or llama.cpp (GGUF)."""

    model: object  # the transformers model or the GGUFModel
    tokenizer: object
    logits_fn: LogitsFn
    generate_fn: GenerateFn
    lm: Callable[[int], object]  # batch size -> an lm-eval LM
    parameters: int | None  # None where the runtime does not expose its weights (GGUF)
    engine: str  # what runs it: "transformers (<device>)" or "llama.cpp"

    @classmethod
    def transformers(cls, model, tokenizer) -> EvalModel:
        return cls(model, tokenizer, hf_logits_fn(model), hf_generate_fn(model, tokenizer),
                   lambda batch_size: hf_lm(model, tokenizer, batch_size), count_parameters(model),
                   f"transformers ({next(model.parameters()).device.type})")

    @classmethod
    def gguf(cls, model: GGUFModel) -> EvalModel:
        return cls(model, model.tokenizer, model.logits, model.generate,
                   lambda batch_size: gguf_lm(model, batch_size), None, "llama.cpp (cpu)")


def load_model(kind: str, folder: Path, base: Path | None = None, device: torch.device | None = None) -> EvalModel:
    """Return a model folder ready to score; every weight checked on load.

    Full-precision models go to `device` (hardware.device); quantized formats stay on the CPU,
    the target they are built for.
    """
    if kind == "quantized":
        model = load_quantized(folder)
        if isinstance(model, GGUFModel):
            return EvalModel.gguf(model)
    elif kind == "adapter" and not (folder / "adapter_config.json").exists():
        model = load_checked(folder)  # train.method full: the train stage wrote whole weights
    elif kind == "adapter":
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_checked(base), folder).eval()
    else:
        model = load_checked(folder)
    if kind != "quantized" and device is not None:
        model = model.to(device)
    return EvalModel.transformers(model, load_tokenizer(folder if kind != "adapter" else base))


def measure(kind: str, folder: Path, base: Path | None, ev, tasks: tuple, rows, test_file: Path,
            teacher_lp, merged_bytes: int, device: torch.device | None = None, teacher_logits=None) -> dict:
    """Return one model's full record: task scores, per-item results, distillation, answers, calibration, cost.

    `tasks` = (lm-eval TaskManager, potstill.tasks.task_specs). `teacher_logits` (the teacher's
    logits_fn; None for the teacher itself or without its weights) adds the on-policy KL on the
    model's own answers.
    """
    model = load_model(kind, folder, base, device)
    record = distill_metrics(model.logits_fn, rows, teacher_lp)
    if kind == "adapter":  # the merge check needs NLL and argmax only
        return record
    manager, specs = tasks
    scores, items, calibration, categories, outputs = lm_eval_results(model.lm(ev.batch_size), specs, manager,
                                                                      ev.limit)
    prompts = held_out_prompts(model.tokenizer, test_file)
    answers = answer_prompts(model.generate_fn, model.tokenizer, prompts, ev.max_answer_tokens)
    if teacher_logits is not None:
        record.update(onpolicy_kl(model.logits_fn, teacher_logits, prompts, answers))
    size = weight_bytes(folder)
    record.update(scores, items=items, categories=categories, outputs=outputs, **calibration,
                  size_bytes=size, size_mb=size / 2**20,
                  size_ratio_vs_merged_fp32=size / merged_bytes, answers=answers, **answer_figures(answers),
                  samples=[{"prompt": a["prompt"], "answer": a["answer"]} for a in answers[:ev.sample_prompts]],
                  **time_generation(model.generate_fn, prompts[:max(ev.sample_prompts, 1)], ev.new_tokens),
                  engine=model.engine)
    if model.parameters is not None:
        record["params"] = model.parameters
    return record


def run_evaluate(params_path: Path, models: dict[str, tuple[str, Path, Path | None]], test_file: Path,
                 teacher: str = "teacher") -> dict[str, dict]:
    """Return {model name: full record} for each (kind, folder, base) in `models`; cached by content."""
    params = load_params(params_path, "evaluate", "hardware")
    ev, hardware = params["evaluate"], params["hardware"]
    device = resolve_device(hardware.device)
    print(f"evaluate: full-precision models on {device}; quantized formats on cpu")
    teacher_dir = models[teacher][1] if teacher in models else None
    problems = unknown_gate_models(ev.gates, list(models)) + unknown_gate_tasks(ev.gates, ev.tasks)
    if teacher_dir is None:
        problems += teacher_metric_gates(ev.gates)
    if problems:
        raise ParamsError(f"{params_path}: invalid params:\n  " + "\n  ".join(problems))
    # Every task, its data files and the gates' task names are checked before any model loads.
    manager = task_manager(ev.task_dir, ev.tasks)
    specs = task_specs(manager, ev.tasks)
    cache = ScoreCache({"tasks": ev.tasks, "limit": ev.limit, "sample_prompts": ev.sample_prompts,
                        "new_tokens": ev.new_tokens, "max_answer_tokens": ev.max_answer_tokens},
                       task_dirs(ev.task_dir), test_file, reference=teacher_dir, task_specs=specs)
    # Without teacher weights (an API teacher) the held-out split is read with the student's tokenizer
    # and there is no KL or top-1 to the teacher, only what each model does on its own.
    rows = heldout_rows(load_tokenizer(teacher_dir or models["student_base"][1]), test_file)
    merged_bytes = weight_bytes(models["merged"][1]) if "merged" in models else weight_bytes(teacher_dir)
    teacher_lp, teacher_logits, teacher_scored = None, None, teacher_dir is None
    results: dict[str, dict] = {}
    for name, (kind, folder, base) in models.items():
        key = (folder, base) if base is not None else folder
        cached = cache.get(key)
        if cached is not None:
            print(f"evaluate: {name}: cached scores")
            results[name] = cached
            continue
        if not teacher_scored:  # the teacher's distribution on the held-out split, once for every model
            # kept: it scores every model's answers
            teacher_logits = hf_logits_fn(load_teacher(teacher_dir, hardware, device, torch.float32))
            teacher_lp = teacher_logprobs(teacher_logits, rows)
            teacher_scored = True
            gc.collect()
        print(f"evaluate: {name} ({folder})")
        record = measure(kind, folder, base, ev, (manager, specs), rows, test_file, teacher_lp, merged_bytes, device,
                         teacher_logits=teacher_logits if name != teacher else None)
        results[name] = {**record, "ci95": intervals(record)}
        cache.put(key, results[name])
        gc.collect()
    # Answer length against the teacher's: on-policy KL must not be bought with shorter answers.
    reference = (results.get(teacher) or {}).get("answer_tokens")
    for record in results.values():
        if reference and record.get("answer_tokens") is not None:
            record["answer_tokens_vs_teacher"] = record["answer_tokens"] / reference
    return results


TEACHER_METRICS = ("kl_vs_teacher", "top1_vs_teacher", "kl_gap_closed")


def teacher_metric_gates(gates) -> list[str]:
    """Return a line for each gate that needs the teacher's weights (KL, top-1 to the teacher)."""
    return [f"evaluate.gates[{index}] ({gate.name}): {gate.metric} is measured against the teacher's weights, and "
            "teacher.weights is none; remove the gate (or give the teacher's weights)"
            for index, gate in enumerate(gates) if gate.metric in TEACHER_METRICS]


def headline(results: dict[str, dict]) -> dict[str, dict]:
    """Return the results without per-item details: what metrics/eval.json holds."""
    return {name: {key: value for key, value in record.items() if key not in DETAIL_FIELDS}
            for name, record in results.items()}
