"""Evaluate: every model of the pipeline, scored the same way; a retention report; gates.

    python stages/evaluate.py --params params.yaml --out metrics/eval.json --report reports

Models: teacher, student_base, adapter (student-base + models/adapter via peft: held-out NLL and
top-1 only, to check the merge), merged, and each quantize.formats entry (models/quantized/<format>).
Each is loaded from its saved folder with a check that every weight loaded (a quanto folder read
as a plain HF model silently gets random weights; GGUF files run under llama.cpp), then measured:
lm-eval tasks (per-item results kept for paired gates; ECE on multiple-choice tasks), held-out
NLL, KL(teacher || model) and top-1 agreement with the teacher on the held-out split, parameter
count, bytes on disk and CPU ms per generated token. Results go to one fixed-name JSON for
`dvc metrics show` / `dvc exp show`, to reports/eval.md with PNG charts, and to one model card per
exported model (reports/model_cards/). Gates run last: a violated one exits 3 after all is written.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path
from typing import Annotated

import torch
import typer

from potstill.cli import friendly_errors
from potstill.device import resolve_device
from potstill.evaluate import ScoreCache, hf_lm, lm_eval_results
from potstill.gates import check_gates, unknown_gate_models
from potstill.io import write_json, write_text_atomic
from potstill.metrics import (
    count_parameters,
    distill_metrics,
    heldout_rows,
    hf_generate_fn,
    hf_logits_fn,
    sample_answers,
    teacher_logprobs,
)
from potstill.model_card import card
from potstill.models import load_checked
from potstill.params import ParamsError, load_params
from potstill.quantize import load_quantized, weight_bytes
from potstill.report import write_report
from potstill.tasks import task_manager

EXIT_GATE_FAILED = 3
# Per-model fields kept in the cache and used by gates and the report, but not written to eval.json
# (too large for `dvc exp show`).
DETAIL_FIELDS = ("items", "argmax", "samples")


def load_model(kind: str, folder: Path, base: Path | None = None, device: torch.device | None = None):
    """Return (model, tokenizer, is_gguf) for a model folder; every weight checked on load.

    Full-precision models go to `device` (hardware.device); quantized formats stay on the CPU,
    the target they are built for.
    """
    from transformers import AutoTokenizer

    if kind == "quantized":
        model = load_quantized(folder)
        if hasattr(model, "lm") and hasattr(model, "logits"):  # potstill.gguf.GGUFModel
            return model, model.tokenizer, True
    elif kind == "adapter" and not (folder / "adapter_config.json").exists():
        model = load_checked(folder)  # train.method full: the train stage wrote whole weights
    elif kind == "adapter":
        from peft import PeftModel

        model = PeftModel.from_pretrained(load_checked(base), folder).eval()
    else:
        model = load_checked(folder)
    if kind != "quantized" and device is not None:
        model = model.to(device)
    return model, AutoTokenizer.from_pretrained(folder if kind != "adapter" else base), False


def measure(name: str, kind: str, folder: Path, base: Path | None, ev, manager, rows, test_file: Path,
            teacher_lp, merged_bytes: int, device: torch.device | None = None) -> dict:
    """Return one model's full record: task scores, per-item results, distillation, calibration, cost."""
    model, tokenizer, is_gguf = load_model(kind, folder, base, device)
    logits_fn = model.logits if is_gguf else hf_logits_fn(model)
    record = distill_metrics(logits_fn, rows, teacher_lp)
    if kind == "adapter":  # the merge check needs NLL and argmax only
        return record
    lm = model.lm(ev.batch_size) if is_gguf else hf_lm(model, tokenizer, ev.batch_size)
    scores, items, calibration = lm_eval_results(lm, ev.tasks, manager, ev.limit)
    generate_fn = model.generate if is_gguf else hf_generate_fn(model, tokenizer)
    size = weight_bytes(folder)
    record.update(scores, items=items, **calibration, size_bytes=size, size_mb=size / 2**20,
                  size_ratio_vs_merged_fp32=size / merged_bytes,
                  **sample_answers(generate_fn, tokenizer, test_file, ev.sample_prompts, ev.new_tokens))
    if not is_gguf:
        record["params"] = count_parameters(model)
    return record


def run_evaluate(params_path: Path, models: dict[str, tuple[str, Path, Path | None]], test_file: Path,
                 teacher: str = "teacher") -> dict[str, dict]:
    """Return {model name: full record} for each (kind, folder, base) in `models`; cached by content."""
    params = load_params(params_path, "evaluate", "hardware")
    ev, hardware = params["evaluate"], params["hardware"]
    device = resolve_device(hardware.device)
    typer.echo(f"evaluate: full-precision models on {device}; quantized formats on cpu")
    problems = unknown_gate_models(ev.gates, list(models))
    if problems:
        raise ParamsError(f"{params_path}: invalid params:\n  " + "\n  ".join(problems))
    from transformers import AutoTokenizer

    task_dir = Path(ev.task_dir)
    manager = task_manager(task_dir, ev.tasks)
    teacher_dir = models[teacher][1]
    cache = ScoreCache({"tasks": ev.tasks, "limit": ev.limit, "sample_prompts": ev.sample_prompts,
                        "new_tokens": ev.new_tokens}, task_dir, test_file, reference=teacher_dir)
    rows = heldout_rows(AutoTokenizer.from_pretrained(teacher_dir), test_file)
    merged_bytes = weight_bytes(models["merged"][1]) if "merged" in models else weight_bytes(teacher_dir)
    teacher_lp = None
    results: dict[str, dict] = {}
    for name, (kind, folder, base) in models.items():
        key = (folder, base) if base is not None else folder
        cached = cache.get(key)
        if cached is not None:
            typer.echo(f"evaluate: {name}: cached scores")
            results[name] = cached
            continue
        if teacher_lp is None:  # the teacher's distribution on the held-out split, once for every model
            teacher_lp = teacher_logprobs(hf_logits_fn(load_checked(teacher_dir).to(device)), rows)
            gc.collect()
        typer.echo(f"evaluate: {name} ({folder})")
        results[name] = measure(name, kind, folder, base, ev, manager, rows, test_file, teacher_lp, merged_bytes,
                                device)
        cache.put(key, results[name])
        gc.collect()
    return results


def headline(results: dict[str, dict]) -> dict[str, dict]:
    """Return the results without per-item details: what metrics/eval.json holds."""
    return {name: {key: value for key, value in record.items() if key not in DETAIL_FIELDS}
            for name, record in results.items()}


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    params: Annotated[Path, typer.Option(help="params.yaml to read")] = Path("params.yaml"),
    teacher: Annotated[Path, typer.Option()] = Path("models/teacher"),
    student: Annotated[Path, typer.Option()] = Path("models/student-base"),
    adapter: Annotated[Path, typer.Option(help="LoRA adapter (evaluated on student-base for the merge gate)")] = Path(
        "models/adapter"),
    merged: Annotated[Path, typer.Option()] = Path("models/merged"),
    quantized: Annotated[Path, typer.Option(help="folder holding one subfolder per quantize.formats entry")] = Path(
        "models/quantized"),
    test: Annotated[Path, typer.Option(help="held-out split")] = Path("data/curated/test.jsonl"),
    out: Annotated[Path, typer.Option(help="metrics JSON to write")] = Path("metrics/eval.json"),
    report: Annotated[Path, typer.Option(help="folder for eval.md, its PNG charts and model cards")] = Path("reports"),
    train_plots: Annotated[Path, typer.Option(help="DVCLive loss curves of the train stage")] = Path(
        "metrics/train/plots/metrics"),
) -> None:
    """Evaluate every model of the pipeline on the same tasks and held-out split; check the gates."""
    sections = load_params(params, "teacher", "student", "kd", "train", "lora", "quantize", "evaluate")
    models: dict[str, tuple[str, Path, Path | None]] = {
        "teacher": ("hf", teacher, None), "student_base": ("hf", student, None),
        "adapter": ("adapter", adapter, student), "merged": ("hf", merged, None)}
    for fmt in sections["quantize"].formats:
        models[fmt] = ("quantized", quantized / fmt, None)
    results = run_evaluate(params, models, test)
    gates = check_gates(sections["evaluate"].gates, results)
    metrics = headline(results)
    metrics["gates"] = {gate.name: {"passed": int(gate.passed), "value": gate.value} for gate in gates}
    write_json(out, metrics)
    written = write_report(results, report, train_plots, gates=gates, formats=sections["quantize"].formats)
    build_sections = {name: sections[name] for name in ("teacher", "student", "kd", "train", "lora")}
    for name in ["merged", *sections["quantize"].formats]:
        facts = {"format": name, "size_bytes": results[name].get("size_bytes")}
        text = card(name, {**build_sections, "quantize": sections["quantize"]} if name != "merged"
                    else build_sections, facts, metrics[name])
        write_text_atomic(report / "model_cards" / f"{name}.md", text)
    typer.echo(f"evaluate: report: {', '.join(str(path) for path in written)}, {report / 'model_cards'}")
    for gate in gates:
        typer.echo(f"  {'PASS' if gate.passed else 'FAIL'}{' (warning)' if gate.warning else ''} {gate.message}")
    failed = [gate for gate in gates if not gate.passed]
    if failed:
        print("error: retention gate(s) failed (metrics and report are written):\n  "
              + "\n  ".join(gate.message for gate in failed), file=sys.stderr)
        raise SystemExit(EXIT_GATE_FAILED)


if __name__ == "__main__":
    app()
